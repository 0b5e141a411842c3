"""Webhooks at scale: 10,000 orders ending over a simulated day, pushed by webhooks, the poll reconciling.

The simulator runs in-process on a manual virtual clock, over real HTTP on loopback, as in
``bench/events.py`` (orders scheduled uniformly through 09:00-17:00, each one dial answered).
Its webhook sender (``_simulator/webhooks.py``) posts each ended order to the assistant's
``webhook_url``, with 5% of webhooks dropped, 5% sent twice and a delivery delay of up to 2 s
(orders ending within 2 s of each other are announced out of order; ``--faults`` adds more, e.g.
``reorder=0.02`` holds 2% back up to 20 s). The receiver is the provider's own webhook app
(``_internal/webhooks/app.py``), served by uvicorn on loopback under ``/revox`` as the
api-server mounts it; its recorder stores each asset event in memory with the simulated time,
where the api-server's calls ``register_asset_change``. The watcher's poll
(``RevoxCallEventTrigger``'s ``CallPoll``, made rare: ``poll_interval`` one hour) adds its own
events to the same Asset. A consumer, every 30 simulated seconds, takes the events since its
last run, reads the announced orders by id (``RevoxHook.aresolve_announced``) and keeps its mark
with ``first_named``, as ``example_dags/revox_on_calls_finished.py`` does.

Figures, under ``webhooks``: ``p95_event_delay_s`` (simulated seconds from an order's end to the
first asset event naming it; target <= 5), ``requests_per_finished_order`` (the watcher's API
requests over orders that ended; target <= 0.012), ``lost`` (orders never exported; 0) and
``exported_twice`` (0). The consumer's reads by id are reported apart
(``consumer_requests_per_finished_order``). The bench fails when its faults did not happen.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import random
import sys
import threading
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_revox._simulator.profile import AttemptDraw
from airflow_provider_revox._simulator.timeline import OrderScript
from airflow_provider_revox._simulator.webhooks import WebhookFaults, WebhookSender
from airflow_provider_revox.testing import running_simulator
from bench.events import Store
from bench.results import merge_results

ORDERS = 10_000
DAY_S = 24 * 3600
WINDOW = (9 * 3600, 17 * 3600)
POLL_INTERVAL = 3600.0
MAX_POLL_INTERVAL = 6 * 3600.0
CONSUMER_EVERY = 30.0
FAULTS = "drop=0.05,duplicate=0.05,delay=2,retries=3,retry_wait=5"
SEED = 11
TARGETS = {
    "p95_event_delay_s": 5.0,
    "requests_per_finished_order": 0.012,
    "lost": 0,
    "exported_twice": 0,
}
ASSISTANT = "asst_bench_webhooks"
# One line per webhook would be 10,000 lines of output.
logging.getLogger("airflow_provider_revox._internal.webhooks.app").setLevel(logging.WARNING)


class Asset:
    """The watched Asset's events, in the order stored, each with the simulated time it was stored."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.events: list[tuple[dt.datetime, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def record(self, extra: dict[str, Any]) -> bool:
        with self.lock:
            self.events.append((self.clock.now(), extra))
        return True


def serve(app: Any) -> tuple[str, Any, threading.Thread]:
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


async def run(
    sim: Any, ends: dict[str, dt.datetime], start: dt.datetime, asset: Asset, sender: Any
) -> dict[str, Any]:
    from airflow_provider_revox._internal.triggers.call_events import CallPoll, RevoxCallEventTrigger
    from airflow_provider_revox.export import Watermark, first_named
    from airflow_provider_revox.hooks.revox import RevoxHook

    kwargs: dict[str, Any] = {
        "assistant_ids": [ASSISTANT],
        "poll_interval": POLL_INTERVAL,
        "max_poll_interval": MAX_POLL_INTERVAL,
    }
    store = Store()
    hook, consumer_hook = RevoxHook(), RevoxHook()
    pace = RevoxCallEventTrigger(**kwargs)
    poll = CallPoll(hook, pace.filters, interval=pace.poll_interval, max_interval=pace.max_poll_interval)
    mark = Watermark()
    exported: dict[str, int] = {}
    consumed = 0
    consumer_requests = 0
    end_times = sorted(ends.values())
    next_end = 0
    poll_at = sim.clock.now()
    consume_at = sim.clock.now()
    sim.reset_stats()
    try:
        while (sim.clock.now() - start).total_seconds() < DAY_S:
            now = sim.clock.now()
            sender.step()
            if now >= poll_at:
                batch = await poll.poll()
                if batch is not None:
                    trigger = RevoxCallEventTrigger(**kwargs)
                    trigger.asset_state_store = store  # type: ignore[assignment]

                    async def one(raw: dict[str, Any] = batch) -> AsyncIterator[Any]:
                        yield raw

                    async for event in trigger.filter_shared_stream(one()):
                        asset.record({"from_trigger": True, "payload": event.payload})
                poll_at = await poll.next_poll_at(batch)
            if now >= consume_at:
                with asset.lock:
                    fresh = [extra for _, extra in asset.events[consumed:]]
                    consumed = len(asset.events)
                calls = [call for extra in fresh for call in extra["payload"]["calls"]]
                announced = len({c["id"] for c in calls if c.get("announced")})
                consumer_requests += -(-announced // 100)
                resolved = await consumer_hook.aresolve_announced(calls, **pace.filters)
                taken, mark = first_named(mark, resolved)
                for call_id in taken:
                    exported[call_id] = exported.get(call_id, 0) + 1
                consume_at = now + timedelta(seconds=CONSUMER_EVERY)
            while next_end < len(end_times) and end_times[next_end] <= now:
                next_end += 1
            wakes = [poll_at, consume_at, start + timedelta(seconds=DAY_S)]
            if next_end < len(end_times):
                wakes.append(end_times[next_end])
            due = sender.next_due()
            if due is not None:
                wakes.append(due)
            wake = max(min(wakes), now + timedelta(milliseconds=10))
            sim.advance((wake - now).total_seconds())
    finally:
        await hook.aclose()
        await consumer_hook.aclose()
    return {
        "exported": exported,
        "requests": poll.requests,
        "probes": poll.probes,
        "consumer_requests": consumer_requests,
        "served": sim.stats()["by_endpoint"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=FAULTS, help="the webhook sender's fault SPEC")
    parser.add_argument("--no-save", action="store_true", help="print the figures only")
    args = parser.parse_args(argv)
    from fastapi import FastAPI

    from airflow_provider_revox._internal.core.webhook import new_token
    from airflow_provider_revox._internal.webhooks.airflow import event_extra
    from airflow_provider_revox._internal.webhooks.app import create_app

    random.seed(SEED)
    load_start = os.getloadavg()[0]
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    token = new_token()
    with running_simulator(seed=SEED) as sim:
        os.environ["AIRFLOW_CONN_REVOX_DEFAULT"] = sim.connection_json()
        asset = Asset(sim.clock)
        api_server = FastAPI()
        api_server.mount(
            "/revox", create_app(lambda: [token], lambda calls: asset.record(event_extra(calls)))
        )
        base, server, thread = serve(api_server)
        url = f"{base}/revox/webhooks?token={token}"
        start = sim.clock.now()
        ends: dict[str, dt.datetime] = {}
        for _ in range(ORDERS):
            call_id = sim.engine.place(
                phone_number="+33612345678",
                assistant={"id": ASSISTANT, "webhook_url": url},
                scheduled_at=start + timedelta(seconds=random.uniform(*WINDOW)),
                skip_calling_window=True,
                script=OrderScript(
                    attempts=(AttemptDraw(kind="human", talk_seconds=random.uniform(30, 240)),)
                ),
            )
            ends[call_id] = sim.engine.terminal_at(call_id)
        sender = WebhookSender(sim.engine, WebhookFaults.parse(args.faults), seed=SEED)
        try:
            result = asyncio.run(run(sim, ends, start, asset, sender))
        finally:
            sender.stop()
            server.should_exit = True
            thread.join(10)
    first_named_at: dict[str, dt.datetime] = {}
    by_webhook: set[str] = set()
    for moment, extra in asset.events:
        for call in extra["payload"]["calls"]:
            if call["id"] not in first_named_at:
                first_named_at[call["id"]] = moment
                if extra.get("from_webhook"):
                    by_webhook.add(call["id"])
    delays = sorted((first_named_at[i] - ends[i]).total_seconds() for i in ends if i in first_named_at)
    exported = result["exported"]
    lost = len(set(ends) - set(exported))
    exported_twice = sum(1 for count in exported.values() if count > 1)
    reconciled = len(set(ends) - by_webhook)
    counts = sender.counts
    # The stress claimed: webhooks dropped and duplicated, and the poll reconciling the lost ones.
    stress = {
        "webhooks_dropped": counts["dropped"],
        "webhooks_duplicated": counts["duplicated"],
        "webhooks_sent": counts["sent"],
        "webhooks_retried": counts["retried"],
        "orders_first_named_by_the_poll": reconciled,
    }
    if counts["dropped"] == 0 or counts["duplicated"] == 0 or reconciled < counts["dropped"]:
        print(f"webhooks: the stress did not happen: {stress}")
        return 1
    p95 = delays[int(0.95 * (len(delays) - 1))] if delays else float("inf")
    figures: dict[str, Any] = {
        "title": f"{ORDERS:,} orders ending over a simulated day, webhooks with 5% dropped and 5% "
        "duplicated, the watcher polling hourly to reconcile",
        "started_at": started_at,
        "seed": SEED,
        "orders": ORDERS,
        "webhook_faults": args.faults,
        "poll_interval_s": POLL_INTERVAL,
        "max_poll_interval_s": MAX_POLL_INTERVAL,
        **stress,
        "asset_events": len(asset.events),
        "requests": result["requests"],
        "probes": result["probes"],
        "requests_served_by_endpoint": result["served"],
        "requests_per_finished_order": round(result["requests"] / ORDERS, 4),
        "consumer_requests_per_finished_order": round(result["consumer_requests"] / ORDERS, 4),
        "p95_event_delay_s": round(p95, 2),
        "max_event_delay_s": round(delays[-1], 1) if delays else None,
        "lost": lost,
        "exported_twice": exported_twice,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_average_at_start": round(load_start, 2),
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "targets": {name: f"<= {value:g}" for name, value in TARGETS.items()},
    }
    figures["targets_met"] = {name: figures[name] <= value for name, value in TARGETS.items()}
    if not args.no_save:
        merge_results("webhooks", figures)
    print(f"webhooks: {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
