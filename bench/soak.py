"""Soak: 500 calls through RevoxCallsSensor and the storage export under 20% transient faults.

A real Airflow run (``dag.test()`` in its own process, with its own AIRFLOW_HOME, SQLite
database and dags folder) waits on 500 scripted orders with a deferrable
``RevoxCallsSensor`` and exports them to Parquet with ``RevoxCallsToStorageOperator``,
against the simulator (on a thread of the bench's process, 120x real time once released:
its clock stands still until the sensor's first look has asked for every order, so the wait
starts with every order live, whatever Airflow's start-up took, and they end over the wait)
failing one request in five:
``429=0.06,503=0.04,502=0.02,drop=0.04,slow=0.04:0.2``. Every order carries other people's
credentials (a custom LLM's ``api_key``, a tool's ``Authorization`` header and ``api_key``
query parameter), and the connection uses a known API key. Reported, all with target 0:

* ``task_failures``: task tries that did not succeed (tasks run with ``retries=0``);
* ``lost_rows`` / ``duplicate_rows``: transcript rows (one per turn of
  ``Call.iter_turns("best")`` on the simulator's own view of each call) and structured rows
  (one per call) missing from, or repeated in, the output;
* ``leaked_secrets``: planted secrets or the API key found in any output file, any XCom
  value, the Airflow process's console output (``dag.test()`` logs there), or any file under
  AIRFLOW_HOME (task logs and the metadata database included);
* crash and rerun: the export alone, in a fresh process, SIGKILLed once half the calls were
  staged, then rerun to the same destination: ``published_after_kill`` (files visible at
  the destination after the kill) and ``rerun_differing_files`` (published files whose bytes
  differ from the undisturbed Airflow run's; compared byte for byte).

Figures go to bench/results.json under ``soak``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_revox._internal.export.staging import STAGING_DIR
from airflow_provider_revox._simulator.clock import ScaledClock
from airflow_provider_revox.testing import (
    ALWAYS_OPEN_RETRY_CONFIG,
    SimulatorHandle,
    running_simulator,
    write_scenario,
)
from bench.results import evaluate, merge_results

CALLS = 500
SEED = 3
# Simulated seconds per real second once the clock runs; the orders are dialled from LEAD after
# the clock's start and end one after the other over the wait.
SPEED = 120.0
LEAD = timedelta(minutes=10)
SPREAD_SLOTS, SLOT = 40, timedelta(minutes=3)
FAULTS = "429=0.06,503=0.04,502=0.02,drop=0.04,slow=0.04:0.2"
API_KEY = "rvx_live_soak_connection_key_Hq71"
# The connection keeps its default retries: the sensor and the export wait out a call whose
# requests keep failing, rather than relying on a larger retry budget.
MARKER = "PLANTED"
LEAK = re.compile(rf"{MARKER}|{re.escape(API_KEY)}".encode())
CONCURRENCY = 16
# The wait sends one GET per due order (the connection's ``batch_polls: false``) rather than one
# search per hundred, so every order's every look goes through the faults; and the connection's
# rate does not adapt to the 429s (``adaptive_rate: false``): the faults' 429s are random, not an
# account limit, and an adapted rate would stretch the first look past the orders' ends.
CONNECTION_EXTRA = {"batch_polls": False, "adaptive_rate": False}

DAG = """
import json
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator
from airflow_provider_revox.sensors.revox import RevoxCallsSensor

CALL_IDS = json.load(open({ids_path!r}))

@dag(dag_id="revox_soak", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    wait = RevoxCallsSensor(
        task_id="wait",
        call_ids=CALL_IDS,
        deferrable=True,
        poke_interval=5,
        min_completed_ratio=0.9,
        max_concurrency={concurrency},
        retries=0,
    )
    RevoxCallsToStorageOperator(
        task_id="export",
        call_ids=wait.output,
        destination={destination!r},
        file_format="parquet",
        max_concurrency={concurrency},
        retries=0,
    )

build()
"""


def call_ids() -> list[str]:
    """The ids of the scripted orders."""
    return [f"soak-{i:04d}" for i in range(CALLS)]


def planted(kind: str, index: int) -> str:
    """A credential of someone else's, unique per order."""
    return f"sk-live-{MARKER}-{kind}-{index:04d}-9fQ2"


def order(index: int, call_id: str, start: datetime) -> dict[str, Any]:
    """A scripted order: mostly reached at once or on a retry, one in twenty a dead number."""
    kind = index % 20
    if kind == 19:
        attempts: list[dict[str, Any]] = [{"dial_error": "number_non_attributed"}]
    elif kind >= 16:
        attempts = [{"dial_error": "no_answer"}, {"dial_error": "busy"}, {"result": "human", "duration": 150}]
    elif kind >= 12:
        attempts = [{"result": "voicemail", "duration": 20}, {"result": "human", "duration": 90}]
    else:
        attempts = [{"result": "human", "duration": 60 + 10 * (index % 7)}]
    entry: dict[str, Any] = {
        "id": call_id,
        "phone_number": "+33612345678",
        "scheduled_at": (start + LEAD + SLOT * (index % SPREAD_SLOTS)).isoformat(),
        "call_retry_config": ALWAYS_OPEN_RETRY_CONFIG,
        "attempts": attempts,
        "post_processing_seconds": 30,
        "assistant": {
            "id": "asst_soak",
            "llm_model": {
                "type": "custom",
                "api_key": planted("llm", index),
                "api_url": "https://llm.example/v1",
            },
            "custom_tools": [
                {
                    "name": "crm_lookup",
                    "url": "https://crm.example/lookup",
                    "headers": {"Authorization": f"Bearer {planted('tool', index)}", "X-Team": "sales"},
                    "query_params": {"api_key": planted("query", index)},
                }
            ],
            "structured_output_config": [
                {"name": "confirmed", "type": "boolean", "required": True},
                {"name": "notes", "type": "string"},
            ],
        },
    }
    if kind == 19:
        entry["final_status"] = "errored"
    else:
        entry["structured_output"] = {"confirmed": index % 3 != 0, "notes": f"order {index}"}
    return entry


# -- the Airflow process ------------------------------------------------------------------------


def _airflow_env(home: Path) -> None:
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(home / "dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'airflow.db'}"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"


def initdb_main(spec: dict[str, Any]) -> None:
    """Create the soak's metadata database (before the simulator starts: it takes a while)."""
    _airflow_env(Path(spec["home"]))
    from airflow.utils import db

    db.initdb()


def airflow_main(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the soak DAG with ``dag.test()``; return task states, failed tries and every XCom.

    ``dag.test()`` runs the tasks (and the deferred sensor's trigger) in this process and logs
    to the console; here its log goes, as a task's does under Airflow's supervisor, through
    Airflow's own logging set-up (secrets masker included) into a JSON log file under
    ``[logging] base_log_folder``, which the leak check scans.
    """
    home = Path(spec["home"])
    _airflow_env(home)
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.log import configure_logging, init_log_file

    log_file = init_log_file("dag_id=revox_soak/run_id=soak/dag_test.log").open("ab")
    configure_logging(json_output=True, output=log_file)
    bag = DagBag(str(home / "dags"))
    if bag.import_errors:
        raise RuntimeError(f"the soak DAG does not import: {bag.import_errors}")
    dag = bag.get_dag("revox_soak")
    assert dag is not None
    dag_run = dag.test()

    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        history = session.query(TaskInstanceHistory).filter_by(run_id=dag_run.run_id).all()
        xcoms = session.query(XComModel).filter_by(run_id=dag_run.run_id).all()
        xcom_values = {f"{x.task_id}.{x.key}": x.value for x in xcoms}
    tis = dag_run.get_task_instances()
    sensor_result = next(ti for ti in tis if ti.task_id == "wait").xcom_pull(task_ids="wait")
    return {
        "states": {ti.task_id: ti.state for ti in tis},
        "earlier_tries": [(h.task_id, h.try_number, h.state) for h in history],
        "xcoms": json.dumps(xcom_values, default=str),
        "sensor_result": sensor_result,
    }


# -- the export alone, for the crash --------------------------------------------------------------


def export_main(spec: dict[str, Any]) -> None:
    """Run the export operator alone, as the Airflow task would."""
    _airflow_env(Path(spec["home"]))
    from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator

    operator = RevoxCallsToStorageOperator(
        task_id="export",
        call_ids=spec["call_ids"],
        destination=spec["destination"],
        file_format="parquet",
        max_concurrency=CONCURRENCY,
    )
    # The killed run and its rerun are one DAG run's tries: the rerun replaces that load.
    task_instance = SimpleNamespace(dag_id="revox_soak_crash", task_id="export", run_id="crash", map_index=-1)
    operator.execute({"ti": task_instance})  # type: ignore[typeddict-item]


def run_export(
    sim: SimulatorHandle, work: Path, name: str, ids: Any, destination: Path
) -> subprocess.Popen[str]:
    """Start a fresh process exporting ``ids`` to ``destination``."""
    home = work / f"home-{name}"
    home.mkdir()
    spec = {"home": str(home), "call_ids": ids, "destination": destination.as_uri()}
    return subprocess.Popen(
        [sys.executable, __file__, "--export", json.dumps(spec)],
        env={**os.environ, **connection_env(sim)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def crash_and_rerun(sim: SimulatorHandle, work: Path, ids: Any) -> tuple[Path, dict[str, Any]]:
    """SIGKILL an export once half the calls are staged, then rerun it to the same place."""
    destination = work / "out-crash"
    process = run_export(sim, work, "killed", ids, destination)
    staged = 0
    staging = destination / STAGING_DIR
    while process.poll() is None:
        staged = sum(1 for _ in staging.glob("*/*-*.json")) if staging.is_dir() else 0
        if staged >= CALLS // 2:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    output, _ = process.communicate()
    if process.returncode != -signal.SIGKILL:
        raise RuntimeError(
            f"the export ended before it could be killed ({process.returncode}):\n{output[-2000:]}"
        )
    published = list(published_files(destination))
    stale = [p for p in staging.rglob("*") if p.is_file()]
    rerun = run_export(sim, work, "rerun", ids, destination)
    output, _ = rerun.communicate()
    if rerun.returncode != 0:
        raise RuntimeError(f"the rerun failed:\n{output[-3000:]}")
    return destination, {
        "staged_calls_at_kill": staged,
        "published_after_kill": len(published),
        "stale_staging_files_after_kill": len(stale),
        "stale_staging_files_after_rerun": sum(1 for p in staging.rglob("*") if p.is_file()),
    }


# -- checks ---------------------------------------------------------------------------------------


def published_files(root: Path) -> dict[str, bytes]:
    """Every published (not hidden) file under ``root``, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def truth(sim: SimulatorHandle, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each order as the simulator's engine has it now (no fault on this path)."""
    return {call_id: sim.get_call(call_id) for call_id in ids}


def connection_env(sim: SimulatorHandle, **extra: Any) -> dict[str, str]:
    """The environment variable pointing ``revox_default`` at the simulator."""
    return {"AIRFLOW_CONN_REVOX_DEFAULT": sim.connection_json(**extra)}


class HeldClock(ScaledClock):
    """A :class:`ScaledClock` standing at ``start`` until :meth:`release`, then running."""

    def __init__(self, speed: float, start: datetime) -> None:
        super().__init__(speed, start)
        self.released = False

    def release(self) -> None:
        """Start the clock from ``start`` now."""
        self._origin = time.monotonic()
        self.released = True

    def now(self) -> datetime:
        """The simulated time: ``start`` until released."""
        return super().now() if self.released else self._start


def release_after_first_look(
    sim: SimulatorHandle, clock: HeldClock, done: threading.Event
) -> dict[str, float]:
    """Release the clock once a request has named every order (the sensor's first look)."""
    began = time.monotonic()
    released: dict[str, float] = {}

    def watch() -> None:
        while not done.is_set():
            if len(sim.stats()["by_call_id"]) >= CALLS:
                clock.release()
                released["clock_released_after_s"] = round(time.monotonic() - began, 1)
                return
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    return released


def only_load(root: Path) -> Path:
    """The one load folder an export (or a killed export and its rerun) left under ``root``."""
    (folder,) = (p for p in root.iterdir() if p.name.startswith("load="))
    return folder


def load_data(root: Path) -> dict[str, bytes]:
    """The data files of the one load under ``root`` (not its manifest: it names its DAG run)."""
    return {k: v for k, v in published_files(only_load(root)).items() if not k.startswith("_")}


def count_rows(root: Path, calls: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Lost and duplicate rows of both tables against the simulator's view of the calls."""
    import pyarrow.parquet as pq

    root = only_load(root)

    from airflow_provider_revox.hooks.revox import Call

    expected_turns: Counter[tuple[Any, ...]] = Counter()
    for call_id, payload in calls.items():
        for attempt, index, _ in Call.from_response(payload).iter_turns("best"):
            expected_turns[(call_id, attempt.id, index)] += 1
    rows = pq.read_table(root / "transcripts.parquet").to_pylist()
    actual_turns = Counter((r["call_id"], r["attempt_id"], r["turn_index"]) for r in rows)
    structured = pq.read_table(root / "structured_output.parquet", columns=["call_id"]).column("call_id")
    actual_calls = Counter(structured.to_pylist())
    expected_calls = Counter(list(calls))
    return {
        "transcript_rows_expected": sum(expected_turns.values()),
        "transcript_rows_written": len(rows),
        "lost_rows": sum((expected_turns - actual_turns).values())
        + sum((expected_calls - actual_calls).values()),
        "duplicate_rows": sum((actual_turns - expected_turns).values())
        + sum((actual_calls - expected_calls).values()),
    }


def leaks(label: str, data: bytes, found: list[str]) -> None:
    """Record every planted secret or API key occurrence in ``data``."""
    for match in LEAK.finditer(data):
        found.append(f"{label}: {data[max(0, match.start() - 40) : match.end() + 20]!r}")


#: The stress the soak claims, each checked on what the run did: the bench fails without it.
MIN_API_REQUESTS = 500
MIN_FAULTED_RESPONSES = 50
MIN_TRIGGER_PROGRESS_ROUNDS = 5
MIN_LIVE_AT_WAIT_START = CALLS // 2
ZERO_TARGETS = (
    "task_failures",
    "lost_rows",
    "duplicate_rows",
    "leaked_secrets",
    "published_after_kill",
    "rerun_differing_files",
)
PROGRESS = re.compile(rb"(\d+) of (\d+) call orders settled")
DEFERRED = b"[DAG TEST] running trigger in line"


def wait_progress(logs: bytes) -> dict[str, int]:
    """What the Airflow log says of the wait: the first look, the deferral and the trigger's rounds.

    The sensor logs "N of M call orders settled" when it defers, and the trigger logs the same
    each round the counts change: the first line is the orders settled at the start of the wait.
    """
    settled = [int(m.group(1)) for m in PROGRESS.finditer(logs)]
    return {
        "settled_at_wait_start": settled[0] if settled else -1,
        "live_at_wait_start": CALLS - settled[0] if settled else 0,
        "deferrals": logs.count(DEFERRED),
        "trigger_progress_rounds": max(0, len(settled) - 1),
    }


def stress_checks(figures: dict[str, Any]) -> dict[str, bool]:
    """Whether the stress the soak claims happened (not the targets: those are targets_met)."""
    return {
        f"api_requests >= {MIN_API_REQUESTS}": figures["api_requests"] >= MIN_API_REQUESTS,
        f"faulted_responses >= {MIN_FAULTED_RESPONSES}": figures["faulted_responses"]
        >= MIN_FAULTED_RESPONSES,
        f"live_at_wait_start >= {MIN_LIVE_AT_WAIT_START}": figures["live_at_wait_start"]
        >= MIN_LIVE_AT_WAIT_START,
        "the sensor deferred": figures["deferrals"] >= 1,
        f"trigger_progress_rounds >= {MIN_TRIGGER_PROGRESS_ROUNDS}": figures["trigger_progress_rounds"]
        >= MIN_TRIGGER_PROGRESS_ROUNDS,
        "airflow_log_files_scanned > 0": figures["airflow_log_files_scanned"] > 0,
        "the export was killed with calls staged": figures["staged_calls_at_kill"] > 0,
        "the rerun compared files": figures["rerun_compared_files"] > 0,
    }


def main() -> int:
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    started = time.monotonic()
    ids = call_ids()
    with tempfile.TemporaryDirectory(prefix="revox-bench-soak-") as tmp:
        work = Path(tmp)
        home = work / "airflow-home"
        (home / "dags").mkdir(parents=True)
        ids_path = work / "call_ids.json"
        ids_path.write_text(json.dumps(ids))
        main_out = work / "out-main"
        (home / "dags" / "revox_soak.py").write_text(
            DAG.format(ids_path=str(ids_path), destination=main_out.as_uri(), concurrency=CONCURRENCY)
        )
        subprocess.run(
            [sys.executable, __file__, "--initdb", json.dumps({"home": str(home)})],
            check=True,
            capture_output=True,
        )
        now = datetime.now(timezone.utc)
        scenario = write_scenario(work / "scenario.json", [order(i, c, now) for i, c in enumerate(ids)])

        clock = HeldClock(SPEED, now)
        with running_simulator(
            api_key=API_KEY, clock=clock, seed=SEED, scenario=scenario, faults=FAULTS
        ) as sim:
            done = threading.Event()
            released = release_after_first_look(sim, clock, done)
            airflow = subprocess.run(
                [sys.executable, __file__, "--airflow", json.dumps({"home": str(home)})],
                env={**os.environ, **connection_env(sim, **CONNECTION_EXTRA)},
                capture_output=True,
                check=False,
            )
            done.set()
            console = airflow.stdout + airflow.stderr
            log_paths = (
                [p for p in (home / "logs").rglob("*") if p.is_file()] if (home / "logs").exists() else []
            )
            logs = b"".join(p.read_bytes() for p in log_paths)
            if airflow.returncode != 0:
                tail = (console + logs)[-4000:].decode(errors="replace")
                raise RuntimeError(f"the Airflow run failed:\n{tail}")
            run = json.loads(airflow.stdout.decode().strip().splitlines()[-1])
            if set(run["states"].values()) != {"success"}:
                first = max(logs.find(b"Traceback"), 0)
                tail = logs[first : first + 6000].decode(errors="replace")
                raise RuntimeError(f"the soak DAG run did not succeed: {run['states']}\n{tail}")
            stats = sim.stats()
            exported_ids = [*run["sensor_result"]["completed"], *run["sensor_result"]["failed"]]
            calls = truth(sim, ids)
            crash_dir, crash = crash_and_rerun(sim, work, run["sensor_result"])

        rows = count_rows(main_out, {c: calls[c] for c in exported_ids})
        reference, rerun = load_data(main_out), load_data(crash_dir)
        differing = sorted(set(reference) ^ set(rerun)) + [
            k for k in reference if k in rerun and reference[k] != rerun[k]
        ]

        found: list[str] = []
        leaks("xcom", run["xcoms"].encode(), found)
        leaks("airflow console", console, found)
        for root in (home, main_out, crash_dir):
            for path in root.rglob("*"):
                if path.is_file():
                    leaks(str(path.relative_to(work)), path.read_bytes(), found)

    failures = sum(1 for state in run["states"].values() if state != "success") + len(run["earlier_tries"])
    fault_responses = sum(v for k, v in stats["by_status"].items() if k != "200")
    figures: dict[str, Any] = {
        "title": (
            f"{CALLS} calls ending over the wait, {FAULTS} transient faults, a real Airflow run "
            "(deferred sensor, one GET per due order, adaptive_rate off; Parquet export), then the "
            "export SIGKILLed and rerun"
        ),
        "started_at": started_at,
        "seed": SEED,
        "load_average_at_start": load_at_start,
        "calls": CALLS,
        "simulator_speed": SPEED,
        "exported_calls": len(exported_ids),
        "completed": len(run["sensor_result"]["completed"]),
        "failed_orders": len(run["sensor_result"]["failed"]),
        "task_states": run["states"],
        "task_failures": failures,
        **rows,
        "leaked_secrets": len(found),
        "leak_samples": found[:5],
        "airflow_log_files_scanned": len(log_paths),
        "airflow_log_bytes_scanned": len(logs),
        **wait_progress(logs),
        "clock_released_after_s": released.get("clock_released_after_s", -1),
        "api_requests": stats["requests_total"],
        "faulted_responses": fault_responses,
        "faults": FAULTS,
        "connection_max_retries": "default (5)",
        "connection_extra": CONNECTION_EXTRA,
        **crash,
        "rerun_compared_files": len(reference),
        "rerun_differing_files": len(differing),
        "rerun_comparison": "byte-equal published files (parquet tables and calls/*.json)",
        "seconds": round(time.monotonic() - started, 1),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    figures["stress_checks"] = stress_checks(figures)
    figures["targets"] = dict.fromkeys(ZERO_TARGETS, "== 0")
    figures["targets_met"] = evaluate(figures, figures["targets"])
    merge_results("soak", figures)
    print(json.dumps(figures, indent=2))
    missing = [name for name, happened in figures["stress_checks"].items() if not happened]
    if missing:
        print("the soak's stress did not happen: " + "; ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--initdb":
        initdb_main(json.loads(sys.argv[2]))
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--airflow":
        print(json.dumps(airflow_main(json.loads(sys.argv[2])), default=str))
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--export":
        export_main(json.loads(sys.argv[2]))
        sys.exit(0)
    sys.exit(main())
