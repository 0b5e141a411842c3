"""``python -m system_tests.celery_sim``: the simulator of the CeleryExecutor cell.

The command-line simulator plus two things that command line cannot do:

* ``--slow-post NUMBER=SECONDS``: the first ``POST /call`` to NUMBER is answered after SECONDS
  (the order is stored then), so the harness can kill the worker while that request is in flight;
* ``--release FILE``: once FILE exists, the clock jumps to the scenario's last dial time, so the
  waits' orders end only after the harness has seen every one of them deferred, however slowly
  the machine started them (and not so far ahead that the waits' derived deadlines pass).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from airflow_provider_revox.testing import Faults, ScaledClock, running_simulator


class JumpingClock(ScaledClock):
    """A scaled clock that can jump ahead once."""

    def __init__(self, speed: float) -> None:
        super().__init__(speed)
        self.offset = timedelta(0)

    def now(self) -> datetime:
        """The scaled time plus the jump, once it happened."""
        return super().now() + self.offset


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m system_tests.celery_sim", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--slow-post", action="append", default=[], metavar="NUMBER=SECONDS")
    parser.add_argument("--release", required=True, help="jump the clock once this file exists")
    args = parser.parse_args(argv)
    faults = Faults(None)
    for entry in args.slow_post:
        number, _, seconds = entry.partition("=")
        faults.script(number, [f"slow:{float(seconds):g}"])
    clock = JumpingClock(args.speed)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    release = Path(args.release)
    scenario = json.loads(Path(args.scenario).read_text(encoding="utf-8"))
    last_dial = max(datetime.fromisoformat(call["scheduled_at"]) for call in scenario["calls"])
    with running_simulator(
        api_key=args.api_key, clock=clock, faults=faults, port=args.port, scenario=args.scenario
    ) as sim:
        print(f"Revox simulator listening on {sim.base_url}", flush=True)
        while not stop.wait(0.2):
            if clock.offset or not release.exists():
                continue
            clock.offset = max(last_dial - clock.now(), timedelta(0)) + timedelta(seconds=1)
            print(f"released at {time.time():.1f}: clock now {clock.now().isoformat()}", flush=True)
    print("Revox simulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
