"""Call events at scale: 10,000 orders ending over a simulated day, watched by RevoxCallEventTrigger.

The simulator runs in-process on a manual virtual clock, over real HTTP on loopback. Orders are
scheduled uniformly through one calling window (09:00 to 17:00 of the simulated day; the rest of
the day nothing ends), each one dial answered by a person. The trigger's shared poll
(:class:`~airflow_provider_revox._internal.triggers.call_events.CallPoll`) runs for one simulated day on the
virtual clock with the trigger's own pace (:mod:`~airflow_provider_revox._internal.waiting.pace`: after an
empty poll, one search of the open orders says when the next can end), and each raw batch is
turned into events by a fresh trigger instance reading its cursor from the same asset state
store (as after a triggerer restart at every poll). Figures, under ``events``:

* ``requests_per_finished_order``: API requests (polls and probes) over orders that ended
  (target <= 0.05);
* ``p95_event_delay_s``: 95th percentile of the simulated seconds from an order's end to the
  event naming it (target <= 60);
* every order is named by exactly one event (checked);
* ``floor_requests_x_p95_s``: no pace does better than this product (orders ending evenly
  through a span need polls that close together), against ``requests_x_p95_s`` measured.

``max_poll_interval`` is the sensors' longest sleep (six hours): it bounds how late an order
placed while the trigger sleeps, and ended before it wakes, is named. ``--max-poll-interval``
shows its cost: the quiet hours cost one request per ``max_poll_interval``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_revox._internal.waiting.schedule import DEFAULT_MAX_SLEEP
from airflow_provider_revox._simulator.profile import AttemptDraw
from airflow_provider_revox._simulator.timeline import OrderScript
from airflow_provider_revox.testing import running_simulator
from bench.results import evaluate, merge_results

ORDERS = 10_000
DAY_S = 24 * 3600
WINDOW = (9 * 3600, 17 * 3600)
POLL_INTERVAL = 60.0
MAX_POLL_INTERVAL = DEFAULT_MAX_SLEEP.total_seconds()
SEED = 7
REQUESTS_TARGET = 0.05
DELAY_TARGET = 60.0


class Accessor:
    """An asset state store accessor held in memory."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))


class Store:
    """The ``asset_state_store`` the triggerer injects: one watched Asset."""

    def __init__(self) -> None:
        self._by_name = {"revox_calls_finished": Accessor()}
        self._by_uri: dict[str, Accessor] = {}


async def run(
    sim: Any, ends: dict[str, float], start: Any, interval: float, longest: float
) -> dict[str, Any]:
    from airflow_provider_revox._internal.triggers.call_events import CallPoll, RevoxCallEventTrigger
    from airflow_provider_revox.hooks.revox import RevoxHook

    kwargs: dict[str, Any] = {"assistant_ids": ["asst_bench_events"], "poll_interval": interval}
    kwargs["max_poll_interval"] = longest
    store = Store()
    named: dict[str, int] = {}
    delays: list[float] = []
    events = 0
    hook = RevoxHook()
    pace = RevoxCallEventTrigger(**kwargs)
    poll = CallPoll(hook, pace.filters, interval=pace.poll_interval, max_interval=pace.max_poll_interval)
    sim.reset_stats()
    try:
        while (sim.clock.now() - start).total_seconds() < DAY_S:
            batch = await poll.poll()
            now = (sim.clock.now() - start).total_seconds()
            if batch is not None:
                trigger = RevoxCallEventTrigger(**kwargs)
                trigger.asset_state_store = store  # type: ignore[assignment]

                async def one(raw: dict[str, Any] = batch) -> AsyncIterator[Any]:
                    yield raw

                async for event in trigger.filter_shared_stream(one()):
                    events += 1
                    for call in event.payload["calls"]:
                        named[call["id"]] = named.get(call["id"], 0) + 1
                        delays.append(now - ends[call["id"]])
            wake = await poll.next_poll_at(batch)
            sim.advance((wake - sim.clock.now()).total_seconds())
    finally:
        await hook.aclose()
    served = sim.stats()["by_endpoint"]
    return {
        "named": named,
        "delays": delays,
        "events": events,
        "requests": poll.requests,
        "probes": poll.probes,
        "served": served,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poll-interval", type=float, default=POLL_INTERVAL)
    parser.add_argument("--max-poll-interval", type=float, default=MAX_POLL_INTERVAL)
    parser.add_argument("--no-save", action="store_true", help="print the figures only")
    args = parser.parse_args(argv)
    random.seed(SEED)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    with running_simulator(seed=SEED) as sim:
        os.environ["AIRFLOW_CONN_REVOX_DEFAULT"] = sim.connection_json()
        start = sim.clock.now()
        ends: dict[str, float] = {}
        for _ in range(ORDERS):
            offset = random.uniform(*WINDOW)
            call_id = sim.engine.place_call(
                phone_number="+33612345678",
                assistant={"id": "asst_bench_events"},
                scheduled_at=start + timedelta(seconds=offset),
                skip_calling_window=True,
                script=OrderScript(
                    attempts=(AttemptDraw(kind="human", talk_seconds=random.uniform(30, 240)),)
                ),
            )
            call_id = call_id if isinstance(call_id, str) else call_id["id"]
            end = sim.engine.terminal_at(call_id)
            ends[call_id] = (end - start).total_seconds()
        result = asyncio.run(run(sim, ends, start, args.poll_interval, args.max_poll_interval))
    named, delays = result["named"], sorted(result["delays"])
    if set(named) != set(ends) or any(count != 1 for count in named.values()):
        missing = len(set(ends) - set(named))
        repeated = sum(1 for count in named.values() if count != 1)
        print(f"events: {missing} orders never named, {repeated} named more than once")
        return 1
    p95 = delays[int(0.95 * (len(delays) - 1))]
    span = max(ends.values()) - min(ends.values())
    figures: dict[str, Any] = {
        "title": (
            f"{ORDERS:,} orders ending over a simulated day (09:00-17:00), watched by "
            f"RevoxCallEventTrigger with poll_interval {args.poll_interval:g} s and max_poll_interval "
            f"{args.max_poll_interval / 3600:g} h (chosen knobs: the delay target follows poll_interval)"
        ),
        "started_at": started_at,
        "seed": SEED,
        "orders": ORDERS,
        "calling_window": "09:00-17:00 of a 24 h simulated day",
        "poll_interval_s": args.poll_interval,
        "max_poll_interval_s": args.max_poll_interval,
        "requests": result["requests"],
        "probes": result["probes"],
        "requests_served_by_endpoint": result["served"],
        "events": result["events"],
        "requests_per_finished_order": round(result["requests"] / ORDERS, 4),
        "p95_event_delay_s": round(p95, 1),
        "max_event_delay_s": round(delays[-1], 1),
        # Orders ending evenly over a span S, polled N times: a p95 delay of P needs
        # N >= 0.95 * S / P, so requests per order x p95 >= 0.95 * S / orders, whatever the pace.
        "requests_x_p95_s": round(result["requests"] / ORDERS * p95, 3),
        "floor_requests_x_p95_s": round(0.95 * span / ORDERS, 3),
        "each_order_named_once": True,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "targets": {
            "requests_per_finished_order": f"<= {REQUESTS_TARGET:g}",
            "p95_event_delay_s": f"<= {DELAY_TARGET:g}",
        },
    }
    figures["targets_met"] = evaluate(figures, figures["targets"])
    if not args.no_save:
        merge_results("events", figures)
    print(f"events: {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
