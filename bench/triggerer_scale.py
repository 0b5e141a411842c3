"""1,000 RevoxCallTriggers in one event loop, as Airflow's triggerer runs them, for a few minutes.

The simulator runs as ``python -m airflow_provider_revox.testing`` in its own process, with 1,000
scripted orders whose one attempt is a two-hour conversation: every order stays ``calling`` for the whole run,
so each trigger polls on the 10-s ``poke_interval`` cadence. The triggers run in a separate
process (the "triggerer") with the connection in ``AIRFLOW_CONN_REVOX_DEFAULT``; they start
spread over the first poll interval, as tasks that deferred at different moments. A ticker task
measures how late ``asyncio.sleep(0.1)`` wakes up (the event loop's lag).

Three variants, one after the other, each with a fresh simulator and triggerer process:

* ``batched``: the provider as shipped; the triggers share one client, and the polls that fall
  due within 0.2 s of each other share one ``POST /call/search``;
* ``get_per_poll``: the same triggers with the connection extra ``batch_polls`` off: one
  ``GET /call/{id}`` per poll, over the same shared client;
* ``new_client_per_poll``: the reference, what Airflow's dbt Cloud trigger does, a new
  ``httpx.AsyncClient`` (with httpx's defaults) for every poll, one GET each. The triggerer
  process binds the poller's hook class to :class:`NewClientPerPollHook`, so the trigger's own
  code runs unchanged and only the client differs.

A fourth run measures one ``RevoxCallsTrigger`` (what ``RevoxCallsSensor`` defers to) waiting on
10,000 such orders at the same 10-s cadence, with its default bounded concurrency, on a loaded
machine: one busy process per core runs beside it for the whole run (each reports the CPU it
burnt, and the bench fails when one did not run). Target: loop lag p99 <= 50 ms.

``REVOX_BENCH_ONLY=calls_trigger`` runs that fourth run alone and prints its figures without
writing bench/results.json.

``REVOX_BENCH_SECONDS`` sets the wall time of each variant (default 120). Figures are merged into
bench/results.json under ``triggerer_scale``; targets: CPU <= 10 % of one core and peak RSS
<= 150 MB for the shipped variant.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_revox.testing import SimulatorProcess
from bench.results import merge_results

API_KEY = "bench-triggerer-key"
TRIGGERS = 1000
POKE_INTERVAL = 10.0
TICK = 0.1
WARMUP_SECONDS = POKE_INTERVAL + 2.0
CPU_TARGET = 0.10
RSS_TARGET_MB = 150.0
VARIANTS = ("batched", "get_per_poll", "new_client_per_poll")
#: Connection extras of each variant.
EXTRAS: dict[str, dict[str, Any]] = {
    "batched": {},
    "get_per_poll": {"batch_polls": False},
    "new_client_per_poll": {"batch_polls": False},
    "calls_trigger": {},
}
CALLS_TRIGGER_ORDERS = 10_000
LOOP_LAG_TARGET_MS = 50.0
#: A busy process: spins until stdin closes, then prints the CPU seconds it burnt.
HOG = (
    "import sys, threading, time\n"
    "done = threading.Event()\n"
    "threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()\n"
    "x = 0\n"
    "while not done.is_set():\n"
    "    for i in range(20000): x += i\n"
    "print(time.process_time())\n"
)


class CpuHog:
    """One busy process per core for the life of the block; :attr:`cpu_seconds` says each one ran."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []
        self.cpu_seconds: list[float] = []

    def __enter__(self) -> CpuHog:
        for _ in range(os.cpu_count() or 1):
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", HOG], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            out, _ = process.communicate("", timeout=60)
            self.cpu_seconds.append(float(out.strip() or 0.0))


def _bench_seconds() -> float:
    text = os.environ.get("REVOX_BENCH_SECONDS", "120")
    try:
        seconds = float(text)
    except ValueError:
        raise SystemExit(f"REVOX_BENCH_SECONDS must be a number of seconds, not {text!r}") from None
    if seconds < 2 * POKE_INTERVAL:
        raise SystemExit(f"REVOX_BENCH_SECONDS must be at least {2 * POKE_INTERVAL:g} (two poll intervals)")
    return seconds


def call_ids(count: int) -> list[str]:
    """The ids of the scripted orders."""
    return [f"bench-live-{i:05d}" for i in range(count)]


def scenario(count: int) -> dict[str, Any]:
    """Orders dialled at once (a window all day, every day) into a two-hour conversation."""
    every_day = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    retry_config = {
        "timezone": "UTC",
        "allowed_days": every_day,
        "max_retry_attempts": 1,
        "calling_windows": [{"calling_window_start_time": "00:00", "calling_window_end_time": "24:00"}],
    }
    return {
        "calls": [
            {
                "id": call_id,
                "phone_number": "+33612345678",
                # The default assistant hangs up after 10 minutes; this one talks for hours.
                "assistant": {"id": "asst_bench", "name": "Bench", "max_call_duration_secs": 4 * 3600},
                "call_retry_config": retry_config,
                "attempts": [{"result": "human", "duration": 7200, "ring_seconds": 1, "queue_seconds": 0}],
            }
            for call_id in call_ids(count)
        ]
    }


def run_variant(variant: str, seconds: float, scenario_path: Path, count: int) -> dict[str, Any]:
    """Start a simulator and a triggerer process for one variant; return the triggerer's figures."""
    with SimulatorProcess(api_key=API_KEY, scenario=scenario_path) as sim:
        env = {**os.environ, **sim.connection_env(**EXTRAS[variant])}
        hog = CpuHog() if variant == "calls_trigger" else None
        if hog is not None:
            hog.__enter__()
        try:
            child = subprocess.run(
                [sys.executable, __file__, "--triggerer", variant, str(seconds), str(count)],
                env=env,
                capture_output=True,
                text=True,
                timeout=seconds + 300,
            )
        finally:
            if hog is not None:
                hog.__exit__(None, None, None)
        if child.returncode != 0:
            raise SystemExit(f"triggerer process for {variant} failed:\n{child.stderr[-4000:]}")
        figures: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
        stats = sim.get("/_simulator/stats")
    figures["gets_served"] = stats["by_endpoint"].get("GET /call/{id}", 0)
    figures["searches_served"] = stats["by_endpoint"].get("POST /call/search", 0)
    figures["orders_served"] = sum(stats["by_call_id"].values())
    figures["non_200"] = {code: n for code, n in stats["by_status"].items() if code != "200"}
    if hog is not None:
        figures["hog_processes"] = len(hog.cpu_seconds)
        figures["hog_cpu_seconds"] = [round(cpu, 1) for cpu in hog.cpu_seconds]
        # The load must really have been there: every busy process burnt a share of the run.
        idle = [cpu for cpu in hog.cpu_seconds if cpu < 0.1 * seconds]
        if idle:
            raise SystemExit(f"the CPU hog did not run: {hog.cpu_seconds} CPU seconds over {seconds:g} s")
    return figures


# -- the triggerer process ---------------------------------------------------------------------


def _new_client_per_poll_hook() -> type:
    import httpx

    from airflow_provider_revox.hooks.revox import RevoxHook

    class NewClientPerPollHook(RevoxHook):
        """A hook that opens a new ``httpx.AsyncClient`` for every request and closes it after."""

        async def _asend(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
            settings = await self._aresolve()
            # A client as a trigger would naively open it: httpx's own TLS context and pool limits.
            options = self._client_options(settings)
            options.pop("verify", None)
            options.pop("limits", None)
            async with httpx.AsyncClient(**options) as client:
                response = await client.send(request)
                await response.aread()
            self.server_clock.observe(response.headers)
            return response

    return NewClientPerPollHook


def _p99(ordered: list[float]) -> float:
    return ordered[int(0.99 * (len(ordered) - 1))]


async def _ticker(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        await asyncio.sleep(TICK)
        lags.append(time.perf_counter() - began - TICK)


async def _drive(trigger: Any, delay: float, events: list[dict[str, Any]]) -> None:
    await asyncio.sleep(delay)
    async for event in trigger.run():
        events.append(event.payload)


async def _triggerer(variant: str, seconds: float, count: int) -> dict[str, Any]:
    from airflow_provider_revox._internal.hooks import poller as poller_module
    from airflow_provider_revox._internal.triggers import call as trigger_module

    if variant == "new_client_per_poll":
        poller_module.RevoxHook = _new_client_per_poll_hook()  # type: ignore[misc]
    if variant == "calls_trigger":
        # One RevoxCallsSensor's trigger waiting on the whole batch.
        triggers = [trigger_module.RevoxCallsTrigger(call_ids=call_ids(count), poke_interval=POKE_INTERVAL)]
    else:
        triggers = [
            trigger_module.RevoxCallTrigger(call_id=call_id, poke_interval=POKE_INTERVAL)
            for call_id in call_ids(count)
        ]
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lags: list[float] = []
    events: list[dict[str, Any]] = []
    stop = asyncio.Event()
    cpu_began, wall_began = time.process_time(), time.perf_counter()
    ticker = asyncio.create_task(_ticker(lags, stop))
    tasks = [
        asyncio.create_task(_drive(trigger, i * POKE_INTERVAL / len(triggers), events))
        for i, trigger in enumerate(triggers)
    ]
    # Every trigger has started and polled once by the end of the first interval: what follows
    # is the steady state a long-running triggerer sees.
    await asyncio.sleep(WARMUP_SECONDS)
    cpu_warm, wall_warm, lags_warm = time.process_time(), time.perf_counter(), len(lags)
    await asyncio.sleep(seconds - WARMUP_SECONDS)
    stop.set()
    cpu_end, wall_end = time.process_time(), time.perf_counter()
    cpu, wall = cpu_end - cpu_began, wall_end - wall_began
    steady_cpu, steady_wall = cpu_end - cpu_warm, wall_end - wall_warm
    await ticker
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [
        repr(r) for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
    ]
    steady_lags = sorted(lags[lags_warm:])
    lags.sort()
    return {
        "triggers": len(triggers),
        "orders": count,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "cpu_fraction": round(steady_cpu / steady_wall, 4),
        "cpu_fraction_with_startup": round(cpu / wall, 4),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_mb_before_triggers": round(rss_before_mb, 1),
        "loop_lag_p50_ms": round(statistics.median(steady_lags) * 1000, 2),
        "loop_lag_p99_ms": round(_p99(steady_lags) * 1000, 2),
        "loop_lag_max_ms": round(steady_lags[-1] * 1000, 2),
        "loop_lag_p99_ms_with_startup": round(_p99(lags) * 1000, 2),
        "loop_lag_max_ms_with_startup": round(lags[-1] * 1000, 2),
        "events": len(events),
        "failures": failures[:5],
    }


def triggerer_main(variant: str, seconds: float, count: int) -> int:
    """Entry of the triggerer process: print its figures as one JSON line."""
    # Imported as the triggerer would have them, before the clock starts.
    import airflow.sdk  # noqa: F401

    import airflow_provider_revox._internal.triggers.call  # noqa: F401

    figures = asyncio.run(_triggerer(variant, seconds, count))
    print(json.dumps(figures))
    return 0


# -- the driver --------------------------------------------------------------------------------


def calls_trigger_only(seconds: float) -> int:
    """The loaded 10,000-order run alone, printed, not merged."""
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="revox-bench-") as tmp:
        path = Path(tmp) / "live_calls.json"
        path.write_text(json.dumps(scenario(CALLS_TRIGGER_ORDERS)))
        run = run_variant("calls_trigger", seconds, path, CALLS_TRIGGER_ORDERS)
    run["load_average_at_start"] = load_at_start
    run["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"calls_trigger: {json.dumps(run)}", flush=True)
    return 0 if not run["failures"] and not run["events"] and not run["non_200"] else 1


def main() -> int:
    seconds = _bench_seconds()
    if os.environ.get("REVOX_BENCH_ONLY") == "calls_trigger":
        return calls_trigger_only(seconds)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="revox-bench-") as tmp:
        path = Path(tmp) / "live_calls.json"
        path.write_text(json.dumps(scenario(TRIGGERS)))
        for variant in VARIANTS:
            runs[variant] = run_variant(variant, seconds, path, TRIGGERS)
            print(f"{variant}: {json.dumps(runs[variant])}", flush=True)
        path.write_text(json.dumps(scenario(CALLS_TRIGGER_ORDERS)))
        runs["calls_trigger"] = run_variant("calls_trigger", seconds, path, CALLS_TRIGGER_ORDERS)
        print(f"calls_trigger: {json.dumps(runs['calls_trigger'])}", flush=True)

    shipped, per_poll, reference = runs["batched"], runs["get_per_poll"], runs["new_client_per_poll"]
    batch = runs["calls_trigger"]
    expected_polls = TRIGGERS * seconds / POKE_INTERVAL
    figures: dict[str, Any] = {
        "title": (
            f"1,000 RevoxCallTriggers in one loop for {seconds:g} s at {POKE_INTERVAL:g}-s polls, "
            "three ways; "
            f"one RevoxCallsTrigger over {CALLS_TRIGGER_ORDERS:,} orders beside a busy process per core"
        ),
        "started_at": started_at,
        "seed": None,
        "load_average_at_start": load_at_start,
        "triggers": TRIGGERS,
        "poke_interval_s": POKE_INTERVAL,
        "seconds": seconds,
        "cpu_fraction_1000_triggers": shipped["cpu_fraction"],
        "rss_mb_1000_triggers": shipped["rss_mb"],
        "loop_lag_p99_ms_1000_triggers": shipped["loop_lag_p99_ms"],
        "requests_1000_triggers": shipped["searches_served"] + shipped["gets_served"],
        "orders_served_1000_triggers": shipped["orders_served"],
        "cpu_fraction_1000_triggers_get_per_poll": per_poll["cpu_fraction"],
        "rss_mb_1000_triggers_get_per_poll": per_poll["rss_mb"],
        "loop_lag_p99_ms_1000_triggers_get_per_poll": per_poll["loop_lag_p99_ms"],
        "cpu_fraction_1000_triggers_new_client_per_poll": reference["cpu_fraction"],
        "rss_mb_1000_triggers_new_client_per_poll": reference["rss_mb"],
        "loop_lag_p99_ms_1000_triggers_new_client_per_poll": reference["loop_lag_p99_ms"],
        "cpu_ratio_batched_vs_get_per_poll": round(shipped["cpu_fraction"] / per_poll["cpu_fraction"], 3),
        "cpu_ratio_batched_vs_new_client_per_poll": round(
            shipped["cpu_fraction"] / reference["cpu_fraction"], 3
        ),
        "calls_trigger_10000_cpu_fraction": batch["cpu_fraction"],
        "calls_trigger_10000_rss_mb": batch["rss_mb"],
        "calls_trigger_10000_loop_lag_p99_ms": batch["loop_lag_p99_ms"],
        "calls_trigger_10000_requests": batch["searches_served"] + batch["gets_served"],
        "calls_trigger_10000_orders_served": batch["orders_served"],
        "polls_per_trigger_expected": round(expected_polls / TRIGGERS, 1),
        "variants": runs,
        "calls_trigger_10000_hog_processes": batch["hog_processes"],
        "calls_trigger_10000_hog_cpu_seconds": batch["hog_cpu_seconds"],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "targets": {
            "cpu_fraction_1000_triggers": f"<= {CPU_TARGET}",
            "rss_mb_1000_triggers": f"<= {RSS_TARGET_MB:g}",
            "calls_trigger_10000_loop_lag_p99_ms": f"<= {LOOP_LAG_TARGET_MS:g}",
        },
    }
    figures["targets_met"] = {
        "cpu_fraction_1000_triggers": shipped["cpu_fraction"] <= CPU_TARGET,
        "rss_mb_1000_triggers": shipped["rss_mb"] <= RSS_TARGET_MB,
        "calls_trigger_10000_loop_lag_p99_ms": batch["loop_lag_p99_ms"] <= LOOP_LAG_TARGET_MS,
    }
    figures["meets_targets"] = all(figures["targets_met"].values())
    merge_results("triggerer_scale", figures)
    print(
        f"1,000 triggers for {seconds:g} s at {POKE_INTERVAL:g}-s polls: "
        f"CPU {shipped['cpu_fraction']:.1%} of a core, peak RSS {shipped['rss_mb']:.0f} MB, "
        f"loop lag p99 {shipped['loop_lag_p99_ms']:.1f} ms, {figures['requests_1000_triggers']} requests "
        f"serving {shipped['orders_served']} orders (~{expected_polls:.0f} polls expected); "
        f"one GET per poll: CPU {per_poll['cpu_fraction']:.1%}, RSS {per_poll['rss_mb']:.0f} MB; "
        f"new client per poll: CPU {reference['cpu_fraction']:.1%}, RSS {reference['rss_mb']:.0f} MB, "
        f"lag p99 {reference['loop_lag_p99_ms']:.1f} ms"
    )
    healthy = all(not run["failures"] and not run["events"] and not run["non_200"] for run in runs.values())
    return 0 if healthy else 1


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--triggerer":
        sys.exit(triggerer_main(sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
    sys.exit(main())
