"""The deployment of the system test's CeleryExecutor cell: a :class:`~system_tests.stack.Stack` on
Redis and two Celery workers, and the orders its simulator starts with."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from system_tests.orders import ALL_DAY, Plan, scripted_order
from system_tests.processes import Postgres, Process, wait_until
from system_tests.redis_server import Redis
from system_tests.stack import ROOT, Stack

WAITS = 200
#: Waits per run of ``stc_waits``: its DAG file's ``WAITS_PER_RUN``.
WAITS_PER_RUN = 10
#: The database the first cell copies for this one once migrated, in the same PostgreSQL cluster.
DATABASE = "airflow_celery"
# By its import path, as the provider documents it.
CELERY_EXECUTOR = "airflow.providers.celery.executors.celery_executor.CeleryExecutor"
#: One mapped placement per number; no other order goes to these numbers.
PHONES = tuple(f"+336123401{n:02d}" for n in range(20, 24))
#: How long the simulator holds the first ``POST /call`` to each of :data:`PHONES` before storing it.
SLOW_POST_SECONDS = 20.0
EXPORT_ASSISTANT = "asst_celery_export"
EXPORT_FINALS = ("completed", "errored", "completed", "cancelled", "completed", "completed")
# A wait sleeps at most six simulated hours between polls of an order still to dial: at 1,200x
# that is 18 real seconds, the longest a wait sleeps through the harness's release. The orders
# dial 20 simulated days ahead (24 real minutes) unless released.
SIM_SPEED = 1200.0
DIAL_AHEAD = timedelta(days=20)
#: The waits' orders may retry six hours apart (none does: the first attempt completes), so a
#: wait's derived deadline is about half a day after the dial: a wait that slept through the
#: release (up to six simulated hours) still looks before giving up.
SLOW_RETRIES = {
    **ALL_DAY,
    "calling_windows": [
        {
            "calling_window_start_time": "00:00",
            "calling_window_end_time": "23:59",
            "retry_delay_seconds": 21600,
        }
    ],
}
WORKERS = ("celery-worker-1", "celery-worker-2")
EXPECTED_DAGS = {"stc_place", "stc_waits", "stc_export"}


@dataclass(frozen=True)
class CeleryPlan(Plan):
    """The cell's orders: waits whose orders end only when the harness releases the clock, and
    orders of one assistant, ended from the start, for the export by search."""

    def orders(self, speed: float, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every order of the cell; the waits' orders are dialled :data:`DIAL_AHEAD`."""
        start = now or datetime.now(timezone.utc)

        def order(call_id: str, at: datetime, final: str, **extra: Any) -> dict[str, Any]:
            entry = scripted_order(call_id, at, final, **extra)
            if final == "completed":
                entry["structured_output"] = {"confirmed": True, "contact_name": "Ada"}
            return entry

        later = start + DIAL_AHEAD
        calls = [
            order(f"cw-{i}", later, "completed", assistant_id="asst_plain", call_retry_config=SLOW_RETRIES)
            for i in range(1, WAITS + 1)
        ]
        calls += [
            order(f"cx-{i}", start, final, assistant=self.assistant(EXPORT_ASSISTANT))
            for i, final in enumerate(EXPORT_FINALS, start=1)
        ]
        return calls


class CeleryStack(Stack):
    """A :class:`Stack` on the CeleryExecutor: Redis as the broker, two Celery workers."""

    def __init__(self, postgres: Postgres | None = None) -> None:
        """``postgres``: the first cell's cluster, holding a migrated :data:`DATABASE` (else a
        cluster of its own, migrated here)."""
        self.redis = Redis()
        super().__init__("postgres", postgres=postgres, migrated_copy=DATABASE if postgres else None)
        self.plan = CeleryPlan()
        self.workers: dict[str, Process] = {}
        self.release_file = self.home / "release"

    def _environment(self) -> dict[str, str]:
        env = super()._environment()
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": CELERY_EXECUTOR,
                "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "6",
                # Preloads the provider in each worker (system_tests/celery_config.py), as a
                # deployment can: every task process is forked with it already imported.
                "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "system_tests.celery_config.CELERY_CONFIG",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                # A message a killed worker had taken is never handed out again within the run
                # (its ack is late): the scheduler's heartbeat check retries that try instead.
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
                # Room for every wait on the two triggerers, but not on one: both must hold some.
                "AIRFLOW__TRIGGERER__CAPACITY": str(WAITS * 3 // 4),
                "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "40",
            }
        )
        return env

    def _copy_dags(self) -> None:
        self.dags.mkdir()
        for source in sorted((ROOT / "system_tests" / "celery_dags").glob("*.py")):
            shutil.copy(source, self.dags / source.name)

    def _database(self) -> None:
        super()._database()
        self.env["AIRFLOW__CELERY__RESULT_BACKEND"] = f"db+{self.env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']}"

    def start(self, expected_dags: set[str], timeout: float = 300.0) -> None:
        """Redis, then the deployment with two Celery workers; return once both are ready."""
        self.redis.start(self.logs)
        super().start(expected_dags, timeout)
        wait_until(lambda: all(self.worker_ready(n) for n in WORKERS) or self._died(), timeout, "two workers")
        self._check_alive()

    def start_more(self) -> None:
        """The two Celery workers, started with the other components."""
        for name in WORKERS:
            self.start_worker(name)

    def start_worker(self, name: str) -> Process:
        """One ``airflow celery worker`` with its own name and pid file, serving no logs."""
        process = self._airflow(
            name,
            "celery",
            "worker",
            "--celery-hostname",
            f"{name}@%h",
            "--pid",
            str(self.home / f"{name}.pid"),
            "--skip-serve-logs",
            "--without-mingle",
            "--without-gossip",
        )
        self.workers[name] = process
        return process

    def worker_ready(self, name: str) -> bool:
        """True once the worker's Celery banner says it is ready."""
        return " ready." in self.workers[name].output()

    def simulator_argv(self, scenario: Path) -> list[str]:
        """The cell's simulator: slowed first POSTs to :data:`PHONES`, a clock released on demand."""
        base = super().simulator_argv(scenario)
        base[base.index("--speed") + 1] = str(SIM_SPEED)
        argv = [
            base[0],
            str(ROOT / "system_tests" / "celery_sim.py"),
            *base[base.index("--port") :],  # no webhooks in this cell
            "--release",
            str(self.release_file),
        ]
        for phone in PHONES:
            argv += ["--slow-post", f"{phone}={SLOW_POST_SECONDS:g}"]
        return argv

    def tails(self) -> str:
        """The last lines of every process's output, Redis's included."""
        redis = f"\n--- redis ---\n{self.redis.process.tail(10)}" if self.redis.process else ""
        return super().tails() + redis

    def close(self, keep: bool = False, keep_postgres: bool = False) -> None:
        """Stop everything, then Redis."""
        try:
            super().close(keep, keep_postgres)
        finally:
            self.redis.stop()
