"""One rate for a fleet: ten processes sharing one Revox account converge to its limit by themselves.

The simulator runs in its own process (``revox-simulator --rate-limit 50``): the account may send
50 requests per second, from all its clients together; beyond that it answers 429 with a
``Retry-After``. Against it run ten OS processes (forked once the provider is imported, so that
ten Airflow imports do not fight over the CPU first), each with its own ``RevoxHook`` and its own
rate limiter on the same connection (``max_requests_per_second=50``: each process alone would
be allowed the whole account), as a deployment's Celery workers and triggerers would:

* 8 "workers": blocking ``get_call`` in a tight loop;
* 2 "triggerers": 4 coroutines each on one event loop, ``aget_call`` in a tight loop.

Every process tries to go as fast as its ceiling lets it, for ``REVOX_BENCH_FLEET_SECONDS``
(default 240) after a common start, and at most ``MAX_REQUESTS`` requests. No process knows of the
others: only the adaptive rate (connection extra ``adaptive_rate``, on by default) holds the
fleet to the account's limit.

Figures under ``fleet`` in bench/results.json, each target evaluated from its figure:

* ``accepted_rate_ratio``: requests the simulator accepted per second over the limit (>= 0.9);
* ``share_429``: 429 answers over all answers (<= 0.02);
* ``failed_for_good``: hook calls that failed after their retries (0);
* ``min_max_share``: requests served to the least served process over the most served (>= 0.5).

Why four minutes: a process learns its share only from the 429s it receives, and which process
a 429 reaches is chance. At the 2 % of 429s allowed here, each of the ten processes receives about
one every ten seconds, so over 80 s its share rests on some eight refusals and varies by about a
fifth by luck alone (measured: ``min_max_share`` 0.41 to 0.56 over four 80-s runs of the same
code); over 240 s it rests on some twenty-four.

The bench checks its own stress: ten processes ran, the account's limit was reached (a second
with the limit's worth of accepted requests), and 429s came in the first seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_revox.exceptions import RevoxError
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.testing import SimulatorProcess
from bench.results import evaluate, merge_results

API_KEY = "bench-fleet-key"
SEED = 23
LIMIT = 50.0
WORKERS = 8
TRIGGERERS = 2
COROUTINES = 4
MAX_REQUESTS = 20_000
#: The first seconds, in which the fleet must have met 429s (each process starts at the ceiling).
FIRST_SECONDS = 5.0
#: The start moment (epoch seconds), set just before the start is given; read by every process.
go_time = multiprocessing.get_context("fork").Value("d", 0.0)
TARGETS = {"accepted_rate_ratio": 0.9, "share_429": 0.02, "failed_for_good": 0, "min_max_share": 0.5}


def _seconds() -> float:
    text = os.environ.get("REVOX_BENCH_FLEET_SECONDS", "240")
    try:
        seconds = float(text)
    except ValueError:
        raise SystemExit(f"REVOX_BENCH_FLEET_SECONDS must be a number of seconds, not {text!r}") from None
    if not 10 <= seconds <= 600:
        raise SystemExit("REVOX_BENCH_FLEET_SECONDS must lie between 10 and 600")
    return seconds


# -- one process of the fleet -------------------------------------------------------------------


def member_main(kind: str, call_id: str, seconds: float, ready: Any, go: Any, results: Any) -> None:
    """One process of the fleet: say it is ready, wait for the start, call until the end, report."""
    counts = {"ok": 0, "failed": 0}
    ready.put(kind)
    go.wait()
    end = go_time.value + seconds

    def more() -> bool:
        return time.time() < end and counts["ok"] + counts["failed"] < MAX_REQUESTS

    if kind == "worker":
        with RevoxHook() as hook:
            while more():
                try:
                    hook.get_call(call_id)
                    counts["ok"] += 1
                except RevoxError:
                    counts["failed"] += 1
    else:

        async def loop(hook: RevoxHook) -> None:
            while more():
                try:
                    await hook.aget_call(call_id)
                    counts["ok"] += 1
                except RevoxError:
                    counts["failed"] += 1

        async def main() -> None:
            async with RevoxHook() as hook:
                await asyncio.gather(*(loop(hook) for _ in range(COROUTINES)))

        asyncio.run(main())
    results.put({"kind": kind, "pid": os.getpid(), **counts})


# -- the run ------------------------------------------------------------------------------------


def _accepted(stats: dict[str, Any]) -> int:
    return int(stats["by_status"].get("200", 0))


def _refused(stats: dict[str, Any]) -> int:
    return int(stats["by_status"].get("429", 0))


def run(seconds: float) -> dict[str, Any]:
    """Start the simulator and the fleet, sample the simulator every second, gather the figures."""
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    with SimulatorProcess(api_key=API_KEY, seed=SEED, calls=1, rate_limit_per_second=LIMIT) as sim:
        (call_id,) = sim.get("/_simulator/calls")["call_ids"]
        # The processes are forked once the provider is imported: real, separate OS processes, each
        # with its own hook and rate limiter, without ten Airflow imports fighting for the CPU.
        os.environ.update(sim.connection_env(max_requests_per_second=LIMIT))
        context = multiprocessing.get_context("fork")
        ready, results, go = context.Queue(), context.Queue(), context.Event()
        kinds = ["worker"] * WORKERS + ["triggerer"] * TRIGGERERS
        members = [
            context.Process(target=member_main, args=(kind, call_id, seconds, ready, go, results))
            for kind in kinds
        ]
        for member in members:
            member.start()
        for _ in members:
            ready.get(timeout=120)
        before = sim.get("/_simulator/stats")
        go_time.value = time.time()
        go.set()
        samples = [(0.0, before)]
        while any(member.is_alive() for member in members) and time.time() - go_time.value < seconds + 60:
            time.sleep(1.0)
            samples.append((time.time() - go_time.value, sim.get("/_simulator/stats")))
        reports = [results.get(timeout=60) for _ in members]
        for member in members:
            member.join(10)
        after = sim.get("/_simulator/stats")
    accepted = _accepted(after) - _accepted(before)
    refused = _refused(after) - _refused(before)
    answered = after["requests_total"] - before["requests_total"]
    per_second = [
        _accepted(b) - _accepted(a) for (_, a), (tb, b) in itertools.pairwise(samples) if tb <= seconds
    ]
    early_429 = max((_refused(s) - _refused(before) for t, s in samples if t <= FIRST_SECONDS), default=0)
    served = [report["ok"] for report in reports]
    figures: dict[str, Any] = {
        "title": (
            f"{WORKERS} worker and {TRIGGERERS} triggerer processes sharing one account limited to "
            f"{LIMIT:g} requests/s, each process allowed {LIMIT:g}/s ({seconds:g}-s run)"
        ),
        "started_at": started_at,
        "seed": SEED,
        "seconds": seconds,
        "limit_per_second": LIMIT,
        "per_process_ceiling": LIMIT,
        "processes": {"workers": WORKERS, "triggerers": TRIGGERERS, "coroutines_per_triggerer": COROUTINES},
        "processes_reported": len(reports),
        "accepted": accepted,
        "refused_429": refused,
        "answered": answered,
        "accepted_rate_ratio": round(accepted / seconds / LIMIT, 3),
        "share_429": round(refused / answered, 4) if answered else 1.0,
        "failed_for_good": sum(report["failed"] for report in reports),
        "min_max_share": round(min(served) / max(served), 3) if max(served) else 0.0,
        "served_per_process": served,
        "peak_accepted_per_second": round(max(per_second, default=0), 1),
        "refused_429_in_first_seconds": early_429,
        "first_seconds": FIRST_SECONDS,
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "targets": {
            "accepted_rate_ratio": f">= {TARGETS['accepted_rate_ratio']}",
            "share_429": f"<= {TARGETS['share_429']}",
            "failed_for_good": f"== {TARGETS['failed_for_good']}",
            "min_max_share": f">= {TARGETS['min_max_share']}",
        },
    }
    figures["targets_met"] = evaluate(figures, figures["targets"])
    return figures


def check_stress(figures: dict[str, Any]) -> list[str]:
    """What says the run did not load the account as meant (empty when it did)."""
    problems = []
    if figures["processes_reported"] != WORKERS + TRIGGERERS:
        problems.append(f"{figures['processes_reported']} processes reported, not {WORKERS + TRIGGERERS}")
    if figures["peak_accepted_per_second"] < 0.9 * LIMIT:
        problems.append(
            f"the account's limit was never reached: at most {figures['peak_accepted_per_second']}/s"
        )
    if figures["refused_429_in_first_seconds"] == 0:
        problems.append(f"no 429 in the first {FIRST_SECONDS:g} s: the fleet did not press on the limit")
    return problems


def main() -> int:
    figures = run(_seconds())
    problems = check_stress(figures)
    figures["stress_checks"] = problems or "ok"
    merge_results("fleet", figures)
    print(json.dumps(figures, indent=2))
    if problems:
        print("fleet: " + "; ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
