"""The system test's CeleryExecutor cell: the same provider on Celery workers with a Redis broker.

A second, smaller deployment after the LocalExecutor one: PostgreSQL, Redis (Debian's
``redis-server``), the simulator, scheduler, dag-processor, api-server, two triggerers and two
``airflow celery worker`` processes. It runs placements (one order per mapped task) with a worker
SIGKILLed while a ``POST /call`` is in flight, :data:`WAITS` deferrable waits that both triggerers
must share (started and ended in the triggerers: no worker runs them), and an export by search
whose Parquet rows are read back. It shares the first cell's PostgreSQL cluster, in a database
of its own copied from that cell's freshly migrated one.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from airflow_provider_revox._internal.core import compat
from system_tests.airflow_api import TERMINAL_RUN_STATES
from system_tests.celery_stack import (
    EXPECTED_DAGS,
    EXPORT_ASSISTANT,
    EXPORT_FINALS,
    PHONES,
    WAITS,
    WAITS_PER_RUN,
    CeleryStack,
)
from system_tests.context import CheckFailed, as_dict, expect, simulator_search
from system_tests.processes import Postgres, Process, wait_until
from system_tests.worker_runs import worker_runs

FOUND = "found by its idempotency key"


@dataclass
class Cell:
    """What the cell's checks read."""

    stack: CeleryStack
    #: run id -> dag id, for every run the cell started.
    runs: dict[str, str] = field(default_factory=dict)
    #: run id -> its last state.
    states: dict[str, str] = field(default_factory=dict)
    kill: dict[str, Any] = field(default_factory=dict)
    release: dict[str, Any] = field(default_factory=dict)

    def search(self, **filters: Any) -> list[dict[str, Any]]:
        """The simulator's orders matching ``filters`` (one page of 1,000)."""
        return simulator_search(self.stack.sim_base_url, self.stack.api_key, **filters)

    def posts(self) -> int:
        """How many ``POST /call`` requests the simulator has served."""
        response = httpx.get(f"{self.stack.sim_base_url}/_simulator/stats", timeout=10)
        response.raise_for_status()
        entry = (response.json().get("by_endpoint") or {}).get("POST /call", 0)
        return int(sum(entry.values()) if isinstance(entry, dict) else entry)

    def tis(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        """Every task instance of the cell's runs of ``dag_id`` (mapped ones included)."""
        path = f"/dags/{dag_id}/dagRuns/~/taskInstances"
        found: list[dict[str, Any]] = []
        while True:
            body = self.stack.api.get(path, limit=100, offset=len(found), **params)
            found += body["task_instances"]
            if len(found) >= body["total_entries"] or not body["task_instances"]:
                return found


def _placed(cell: Cell) -> dict[str, int]:
    return dict(Counter(o["to_phone_number"] for o in cell.search() if o["to_phone_number"] in PHONES))


def _in_flight(worker: Process, port: int) -> list[psutil.Process]:
    """Descendants of ``worker`` with an open connection to the simulator."""
    found = []
    for member in psutil.Process(worker.pid).children(recursive=True):
        try:
            if any(c.raddr and c.raddr.port == port for c in member.net_connections(kind="tcp")):
                found.append(member)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def kill_worker_mid_post(cell: Cell, timeout: float = 180.0) -> None:
    """SIGKILL the Celery worker (and its task processes) whose task waits on a slowed POST."""
    stack = cell.stack
    try:

        def posting() -> str | None:
            if len(_placed(cell)) == len(PHONES):
                raise RuntimeError("every order was placed before a worker could be killed")
            for name, worker in stack.workers.items():
                if _in_flight(worker, stack.sim_port):
                    return name
            return None

        def steady() -> str | None:
            name = posting()
            time.sleep(1.0)  # still open a second later, with the order still missing: a POST
            return name if name and name == posting() else None

        name = str(wait_until(steady, timeout, "a placement's POST in flight on a worker", interval=0.5))
        worker = stack.workers[name]
        victims = [*psutil.Process(worker.pid).children(recursive=True), psutil.Process(worker.pid)]
        placed = _placed(cell)
        running = [
            ti for ti in cell.tis("stc_place") if ti["task_id"] == "place" and ti["state"] == "running"
        ]
        for victim in victims:
            try:
                victim.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                continue
        worker.kill()
        stack.start_worker(f"{name}-restarted")
        cell.kill.update(
            {
                "worker": name,
                "processes": len(victims),
                "placed_at_kill": placed,
                "running_at_kill": len(running),
            }
        )
    except (TimeoutError, RuntimeError, KeyError, psutil.Error, httpx.HTTPError) as error:
        cell.kill["error"] = f"{type(error).__name__}: {error}"


def release_when_deferred(cell: Cell, timeout: float = 300.0) -> None:
    """Once every wait is deferred and held by a triggerer, note the holders and end the orders."""
    try:

        def held() -> list[dict[str, Any]] | None:
            tis = cell.tis("stc_waits", state="deferred")
            # Keyed: pages read while states change may repeat a task instance.
            waits = {
                (ti["dag_run_id"], ti["task_id"]): ti
                for ti in tis
                if (ti.get("trigger") or {}).get("triggerer_id")
            }
            return list(waits.values()) if len(waits) >= WAITS else None

        waits = wait_until(held, timeout, f"{WAITS} waits deferred in the triggerers", interval=3.0)
        assert isinstance(waits, list)
        holders = Counter(int(ti["trigger"]["triggerer_id"]) for ti in waits)
        cell.stack.release_file.touch()
        cell.release.update({"holders": dict(holders), "at": time.monotonic()})
    except (TimeoutError, KeyError, httpx.HTTPError) as error:
        cell.release["error"] = f"{type(error).__name__}: {error}"


def _ended(cell: Cell, dag_id: str) -> set[str]:
    """The last states of the cell's runs of ``dag_id``."""
    return {state for run_id, state in cell.states.items() if cell.runs[run_id] == dag_id}


def _wait_number(ti: dict[str, Any]) -> int:
    """The number of the order a wait of ``stc_waits`` waits for (``cw-<number>``)."""
    run = int(ti["dag_run_id"].rsplit("_", 1)[1])
    return run * WAITS_PER_RUN + int(ti["task_id"].removeprefix("wait_")) + 1


def check_place_killed(cell: Cell) -> str:
    """A worker is SIGKILLed mid-POST; every mapped placement ends with exactly one order."""
    report = cell.kill
    expect(report and "error" not in report, f"the kill did not happen: {report.get('error')}")
    missing = [p for p in PHONES if p not in report["placed_at_kill"]]
    expect(missing, f"every order existed at the kill: {report}")
    expect(_ended(cell, "stc_place") == {"success"}, f"stc_place ended {_ended(cell, 'stc_place')}")
    tis = [ti for ti in cell.tis("stc_place") if ti["task_id"] == "place"]
    expect(len(tis) == len(PHONES) and all(ti["state"] == "success" for ti in tis), f"placements {tis}")
    placed = _placed(cell)
    expect(placed == dict.fromkeys(PHONES, 1), f"orders per number: {placed}")
    posts = cell.posts()
    expect(posts == len(PHONES), f"the simulator served {posts} POST /call for {len(PHONES)} tasks")
    found, retried = 0, 0
    for ti in tis:
        summary = cell.stack.api.xcoms(ti).get("return_value")
        expect(isinstance(summary, (str, dict)), f"map {ti['map_index']}: summary {summary!r}")
        if ti["try_number"] > 1:
            retried += 1
            found += FOUND in cell.stack.api.log(ti)
    # The killed try's POST was stored after the kill; its retry found it instead of placing again.
    expect(found >= 1, f"no retry reattached to an order its killed try placed ({retried} retried)")
    return (
        f"killed {report['worker']} ({report['processes']} processes) with {len(missing)} of "
        f"{len(PHONES)} POSTs in flight; {retried} tasks retried, {found} found their order by its "
        f"idempotency key; 1 order per task, {posts} POST /call"
    )


def check_waits(cell: Cell) -> str:
    """Every wait deferred at once, both triggerers held some, and every wait succeeded."""
    release = cell.release
    reason = release.get("error") or "not before the deadline"
    expect(release and "error" not in release, f"the waits were not all deferred at once: {reason}")
    holders = release["holders"]
    jobs = cell.stack.triggerer_jobs
    for name, job in jobs.items():
        expect(holders.get(job), f"{name} (job {job}) held none of the {WAITS} waits: {holders}")
    expect(_ended(cell, "stc_waits") == {"success"}, f"stc_waits runs ended {_ended(cell, 'stc_waits')}")
    tis = cell.tis("stc_waits")
    bad = [(ti["dag_run_id"], ti["task_id"], ti["state"]) for ti in tis if ti["state"] != "success"]
    expect(len(tis) == WAITS and not bad, f"{len(tis)} waits, not succeeded: {bad[:10]}")
    # A second try is a first one lost on a loaded host (the scheduler log says how).
    retried = sum(1 for ti in tis if ti["try_number"] > 1)
    for ti in tis[:: WAITS // 8]:
        where = f"{ti['dag_run_id']} {ti['task_id']}"
        summary = as_dict(cell.stack.api.xcoms(ti).get("return_value"), where)
        expected = f"cw-{_wait_number(ti)}"
        expect(
            summary.get("call_id") == expected and summary.get("status") == "completed", f"summary {summary}"
        )
    # Started and ended in the triggerers: the scheduler logged no executor event for any wait.
    runs = worker_runs(cell.stack.output("scheduler"))
    on_workers = sum(count for (dag_id, _, _), count in runs.items() if dag_id == "stc_waits")
    wanted = 0 if compat.has_start_from_trigger() else 2 * WAITS
    expect(runs and on_workers == wanted, f"{on_workers} worker runs for the waits, expected {wanted}")
    return (
        f"{WAITS} waits deferred at once, held per triggerer job {holders}; all succeeded "
        f"({retried} on a second try); {on_workers} worker runs"
    )


def check_export(cell: Cell) -> str:
    """The export by search wrote exactly the assistant's orders, and no secret."""
    import pyarrow.parquet as pq

    expect(_ended(cell, "stc_export") == {"success"}, f"stc_export ended {_ended(cell, 'stc_export')}")
    ti = next(ti for ti in cell.tis("stc_export") if ti["task_id"] == "export")
    summary = as_dict(cell.stack.api.xcoms(ti).get("return_value"), "the export's summary")
    tables = as_dict(summary.get("tables"), "the export's tables")
    calls = pq.read_table(Path(tables["calls"].removeprefix("file://"))).to_pylist()
    outputs = pq.read_table(Path(tables["structured_output"].removeprefix("file://"))).to_pylist()
    expected = {f"cx-{i}": final for i, final in enumerate(EXPORT_FINALS, start=1)}
    got = {row["call_id"]: row["status"] for row in calls}
    expect(got == expected, f"exported calls {got}, expected {expected}")
    expect({row["assistant_id"] for row in calls} == {EXPORT_ASSISTANT}, "rows of another assistant")
    answers = {row["call_id"]: (row["confirmed"], row["contact_name"]) for row in outputs}
    completed = {k: (True, "Ada") for k, v in expected.items() if v == "completed"}
    expect(set(answers) == set(expected), f"structured_output rows for {sorted(answers)}")
    expect(completed.items() <= answers.items(), f"structured_output answers {answers}")
    planted = cell.stack.plan.planted.encode()
    leaked = [p for p in cell.stack.export_dir.rglob("*") if p.is_file() and planted in p.read_bytes()]
    expect(not leaked, f"the planted secret is in {leaked}")
    statuses = sorted(Counter(got.values()).items())
    return f"{len(calls)} calls rows {statuses}, {len(outputs)} structured_output rows"


CHECKS = [
    ("m1 celery: worker SIGKILLed mid-POST, one order per task", check_place_killed),
    (f"m2 celery: {WAITS} deferred waits over two triggerers", check_waits),
    ("m3 celery: export by search, rows read back", check_export),
]


def run_celery_cell(
    deadline: float, keep: bool = False, postgres: Postgres | None = None
) -> dict[str, tuple[bool, str, float]]:
    """Start the Celery deployment, run the cell, print one line per check, stop everything.

    ``postgres``: the first cell's cluster, with the migrated copy this cell uses (left running).
    """
    started = time.monotonic()
    results: dict[str, tuple[bool, str, float]] = {}
    stack = CeleryStack(postgres)
    print(f"celery cell: AIRFLOW_HOME {stack.home}", flush=True)
    try:
        stack.start(EXPECTED_DAGS)
        print(f"celery cell: Airflow and two workers up after {time.monotonic() - started:.0f} s", flush=True)
        stack.start_simulator()
        cell = Cell(stack)
        stack.export_dir.mkdir(parents=True, exist_ok=True)
        confs: dict[str, tuple[str, dict[str, Any]]] = {
            "celery_stc_place": ("stc_place", {"phones": list(PHONES)}),
            "celery_stc_export": (
                "stc_export",
                {"assistant_id": EXPORT_ASSISTANT, "destination": stack.export_dir.as_uri()},
            ),
        }
        for run in range(WAITS // WAITS_PER_RUN):
            ids = [f"cw-{run * WAITS_PER_RUN + i}" for i in range(1, WAITS_PER_RUN + 1)]
            confs[f"celery_stc_waits_{run}"] = ("stc_waits", {"call_ids": ids})
        for run_id, (dag_id, conf) in confs.items():
            cell.runs[stack.api.trigger(dag_id, conf, run_id=run_id)] = dag_id
        threads = [
            threading.Thread(target=kill_worker_mid_post, args=(cell,), daemon=True),
            threading.Thread(
                target=release_when_deferred, args=(cell, deadline - 90 - time.monotonic()), daemon=True
            ),
        ]
        for thread in threads:
            thread.start()
        pending = set(cell.runs)
        while pending and time.monotonic() < deadline - 30:
            for run_id in sorted(pending):
                with_state = stack.api.run_state(cell.runs[run_id], run_id)
                cell.states[run_id] = with_state
                if with_state in TERMINAL_RUN_STATES:
                    pending.discard(run_id)
            time.sleep(2.0)
        for thread in threads:
            thread.join(timeout=5)
        states = dict(Counter(cell.states.values()))
        print(f"celery cell: runs ended after {time.monotonic() - started:.0f} s: {states}", flush=True)
        for label, check in CHECKS:
            began = time.monotonic()
            try:
                results[label] = (True, check(cell), time.monotonic() - began)
            except (
                CheckFailed,
                KeyError,
                TypeError,
                ValueError,
                httpx.HTTPError,
                RuntimeError,
                OSError,
            ) as error:
                results[label] = (False, f"{type(error).__name__}: {error}", time.monotonic() - began)
            passed, detail, took = results[label]
            print(f"{'PASS' if passed else 'FAIL'}  {label}  ({took:.1f} s)  {detail}", flush=True)
    except KeyboardInterrupt as stop:
        print(f"celery cell interrupted ({stop}); stopping everything", flush=True)
    except Exception:
        traceback.print_exc()
    finally:
        for label, _ in CHECKS:
            if label not in results:
                results[label] = (False, "not run", 0.0)
                print(f"FAIL  {label}  (not run)", flush=True)
        failed = any(not passed for passed, _, _ in results.values())
        if failed:
            print("\n=== celery cell: last lines of each process ===\n" + stack.tails(), flush=True)
        stack.close(keep=keep)
        print(f"celery cell: {time.monotonic() - started:.0f} s in all", flush=True)
    return results
