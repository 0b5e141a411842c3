"""A real Airflow deployment in a temporary AIRFLOW_HOME: metadata database, simulator and components."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

from system_tests.airflow_api import AirflowApi
from system_tests.orders import Plan
from system_tests.processes import Postgres, Process, free_port, wait_until
from system_tests.webhook_sim import webhook_sim_args

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SPEED = 600.0


class Stack:
    """Everything the system test starts; :meth:`close` stops all of it, whatever happened."""

    def __init__(
        self,
        database: str = "postgres",
        *,
        postgres: Postgres | None = None,
        migrated_copy: str | None = None,
        copy_for_next: str | None = None,
    ) -> None:
        """``postgres``: a running cluster to use (not stopped here), with ``migrated_copy`` the
        already migrated database to use in it; ``copy_for_next``: once migrated, copy the
        database under that name for the next deployment (a copy takes a second, a migration
        tens of them)."""
        self.home = Path(tempfile.mkdtemp(prefix="revox-systest-"))
        self.logs = self.home / "process-logs"
        self.logs.mkdir()
        self.dags = self.home / "dags"
        self.export_dir = self.home / "export"
        self.finished_dir = self.export_dir / "finished"
        self.database = database
        self.postgres: Postgres | None = postgres
        self.shared_postgres = postgres is not None
        self.migrated_copy = migrated_copy
        self.copy_for_next = copy_for_next
        self.processes: list[Process] = []
        self.triggerers: dict[str, Process] = {}
        self.api_port = free_port()
        self.sim_port = free_port()
        self.api_key = f"sk_sim_systest_{secrets.token_hex(12)}"
        # The Revox webhook endpoint's secret (system_tests.webhooks): in the connection only.
        self.webhook_token = secrets.token_urlsafe(32)
        self.sim_base_url = f"http://127.0.0.1:{self.sim_port}/api"
        self.plan = Plan()
        self.sim_started = (datetime.now(timezone.utc), time.monotonic())
        self.api = AirflowApi(f"http://127.0.0.1:{self.api_port}")
        self.env = self._environment()

    # -- configuration ---------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
        api = f"http://127.0.0.1:{self.api_port}"
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "32",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": api,
                "AIRFLOW__API__WORKERS": "1",
                # Every run starts at once: with the default pool (5 + 10) the api-server's requests
                # wait 30 s for a connection on a loaded machine and the tasks' start calls time out.
                "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "10",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "10",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                # A worker SIGKILLed mid-task is noticed within ~40 s instead of 5 minutes.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "20",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                # Left alone, the first triggerer takes every wait; few per loop and a capacity
                # spread them over both, as Airflow advises for HA deployments.
                "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "2",
                "AIRFLOW__TRIGGERER__CAPACITY": "12",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": "0",
                "AIRFLOW_CONN_REVOX_DEFAULT": json.dumps(
                    {
                        "conn_type": "revox",
                        "host": self.sim_base_url,
                        "password": self.api_key,
                        "extra": {"webhook_base_url": api, "webhook_token": self.webhook_token},
                    }
                ),
                # revox_on_calls_finished: the watcher's filters and pace, and where its exports go.
                "REVOX_CALL_EVENTS_WATCH": json.dumps(self.plan.watch()),
                "REVOX_CALLS_FINISHED_DESTINATION": self.finished_dir.as_uri(),
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            }
        )
        if self.database == "sqlite":
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{self.home}/airflow.db"
            env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
            env["AIRFLOW__CORE__PARALLELISM"] = "4"
        return env

    def _airflow(self, name: str, *args: str) -> Process:
        process = Process(name, [str(BIN / "airflow"), *args], self.env, self.logs)
        self.processes.append(process)
        return process

    def _copy_dags(self) -> None:
        self.dags.mkdir()
        for source in sorted((ROOT / "example_dags").glob("*.py")) + sorted(
            (ROOT / "system_tests" / "dags").glob("*.py")
        ):
            shutil.copy(source, self.dags / source.name)

    # -- start-up --------------------------------------------------------------------------

    def _database(self) -> None:
        if self.database == "postgres":
            if self.postgres is None:
                self.postgres = Postgres(self.logs)
                self.postgres.start()
            self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.postgres.url_of(
                self.migrated_copy or "airflow"
            )
            if self.migrated_copy:
                return
        log = self.logs / "db-migrate.log"
        with log.open("wb") as out:
            result = subprocess.run(
                [str(BIN / "airflow"), "db", "migrate"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        if result.returncode != 0:
            raise RuntimeError("airflow db migrate failed:\n" + "\n".join(log.read_text().splitlines()[-30:]))
        if self.postgres is not None and self.copy_for_next:
            self.postgres.copy_database("airflow", self.copy_for_next)

    def start(self, expected_dags: set[str], timeout: float = 300.0) -> None:
        """Database first, then every component at once; return when the DAGs are parsed."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            copying = pool.submit(self._copy_dags)
            self._database()
            copying.result()
        self.start_api_server()
        self._airflow("scheduler", "scheduler", "--skip-serve-logs")
        self._airflow("dag-processor", "dag-processor")
        self.start_triggerer("triggerer-1")
        self.start_more()
        wait_until(self.api.healthy, timeout, "the api-server", interval=1.0)
        first = self.triggerer_job_ids()
        self.start_triggerer("triggerer-2")
        wait_until(lambda: len(self.triggerer_job_ids()) >= 2 or self._died(), timeout, "two triggerers")
        self._check_alive()
        self.triggerer_jobs = {"triggerer-1": min(first) if first else -1}
        other = self.triggerer_job_ids() - set(first)
        self.triggerer_jobs["triggerer-2"] = min(other) if other else -1
        wait_until(
            lambda: expected_dags <= self.api.dag_ids() or self._died(),
            timeout,
            "the DAGs to be parsed",
            interval=2.0,
        )
        self._check_alive()

    def start_api_server(self) -> Process:
        """Start the api-server (again, after a kill: same port, same log file)."""
        return self._airflow(
            "api-server", "api-server", "--port", str(self.api_port), "--host", "127.0.0.1", "--workers", "1"
        )

    def start_more(self) -> None:
        """Start further components along with the others (none here)."""

    def _died(self) -> bool:
        return any(not p.alive() for p in self.processes)

    def _check_alive(self) -> None:
        dead = [p.name for p in self.processes if not p.alive()]
        if dead:
            raise RuntimeError(f"components exited during start-up: {', '.join(dead)}")

    def start_triggerer(self, name: str) -> Process:
        """Start one triggerer (its log server off: nothing listens beyond the api-server)."""
        process = self._airflow(name, "triggerer", "--skip-serve-logs")
        self.triggerers[name] = process
        return process

    def triggerer_job_ids(self) -> set[int]:
        """Ids of the triggerer jobs that are running now."""
        jobs = self.api.get("/jobs", job_type="TriggererJob", is_alive="true", limit=100)["jobs"]
        return {int(job["id"]) for job in jobs}

    def start_simulator(self) -> Process:
        """The simulator with the plan's scenario; its orders are timed from this moment."""
        self.sim_started = (datetime.now(timezone.utc), time.monotonic())
        scenario = self.plan.write(self.home / "scenario.json", SPEED)
        process = Process("simulator", self.simulator_argv(scenario), self.env, self.logs)
        self.processes.append(process)
        wait_until(lambda: "listening on" in process.output() or not process.alive(), 30, "the simulator")
        if not process.alive():
            raise RuntimeError(f"the simulator did not start:\n{process.tail()}")
        return process

    def simulator_argv(self, scenario: Path) -> list[str]:
        """The simulator's command line (the test kit's, with the plan's scenario and a record of its
        webhooks: :mod:`system_tests.webhook_sim`)."""
        return [
            sys.executable,
            "-m",
            "system_tests.webhook_sim",
            *webhook_sim_args(self.home),
            "--port",
            str(self.sim_port),
            "--speed",
            str(SPEED),
            "--api-key",
            self.api_key,
            "--scenario",
            str(scenario),
        ]

    def sim_time(self, ahead: float) -> datetime:
        """The simulator's clock ``ahead`` real seconds from now (it runs at ``SPEED`` from its start)."""
        wall, mono = self.sim_started
        return wall + timedelta(seconds=(time.monotonic() - mono + ahead) * SPEED)

    def listening(self) -> list[tuple[str, str, int]]:
        """Listening TCP sockets of the deployment's processes and their children: (name, address, port)."""
        import psutil

        owners: dict[int, str] = {}
        roots = [(p.name, p.pid) for p in self.processes if p.alive()]
        if self.postgres is not None and self.postgres.pid():
            roots.append(("postgres", int(str(self.postgres.pid()))))
        for name, pid in roots:
            try:
                parent = psutil.Process(pid)
                for member in [parent, *parent.children(recursive=True)]:
                    owners[member.pid] = name
            except psutil.NoSuchProcess:
                continue
        return sorted(
            (owners[conn.pid], conn.laddr.ip, conn.laddr.port)
            for conn in psutil.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN and conn.pid in owners
        )

    # -- shutdown --------------------------------------------------------------------------

    def output(self, name: str) -> str:
        """Everything the named process wrote (empty when there is no such process).

        A process started again under its name (the api-server) writes on in the same file: read once.
        """
        files = {p.log_path: p for p in self.processes if p.name == name}
        return "".join(p.output() for p in files.values())

    def tails(self) -> str:
        """The last lines of every process's output, for a failure report."""
        parts = [f"--- {p.name} ({p.log_path}) ---\n{p.tail(25)}" for p in self.processes]
        if self.postgres is not None:
            parts.append(f"--- postgres ---\n{self.postgres.tail(10)}")
        return "\n".join(parts)

    def close(self, keep: bool = False, keep_postgres: bool = False) -> None:
        """Stop every process (components first, then the simulator and the database, unless
        shared or ``keep_postgres``: the next deployment uses it)."""
        self.api.close()
        components = [p for p in self.processes if p.name != "simulator"]
        with ThreadPoolExecutor(max_workers=max(len(components), 1)) as pool:
            list(pool.map(lambda p: p.stop(grace=10.0), components))
        for process in self.processes:
            process.stop(grace=5.0)
        if self.postgres is not None and not (self.shared_postgres or keep_postgres):
            self.postgres.stop()
        if not keep:
            shutil.rmtree(self.home, ignore_errors=True)
