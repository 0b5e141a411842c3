"""Worker runs per deferrable wait, counted on a real Airflow: scheduler, dag-processor, two
triggerers, api-server and LocalExecutor on SQLite (the system test's stack), the simulator at
600x real time.

Five runs of a deferrable ``RevoxCallSensor`` (on orders that end while they wait) and five of a
deferrable ``RevoxPlaceCallOperator`` (placing, then waiting). Every task process the executor
starts ends with one executor event in the scheduler's log; the bench counts them per task.
Targets: ``sensor_worker_runs_per_wait`` 0 (the wait starts and ends in the triggerer),
``placement_worker_runs_per_wait`` 1 (the POST needs a worker; the wait ends in the triggerer).
The bench fails when a run did not succeed or pushed no summary XCom, or when the scheduler
logged no executor event (nothing was counted).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import merge_results
from system_tests.airflow_api import TERMINAL_RUN_STATES
from system_tests.processes import wait_until
from system_tests.stack import Stack
from system_tests.worker_runs import worker_runs

WAITS = 5
DAGS = """
import pendulum
from airflow.sdk import DAG

from airflow_provider_revox.operators.revox import RevoxPlaceCallOperator
from airflow_provider_revox.sensors.revox import RevoxCallSensor

START = pendulum.datetime(2025, 1, 1, tz="UTC")

with DAG(dag_id="bw_sensor", schedule=None, start_date=START, catchup=False, max_active_runs=16):
    RevoxCallSensor(
        task_id="wait", call_id="{{ dag_run.conf['call_id'] }}", deferrable=True, poke_interval=2, retries=2
    )

with DAG(dag_id="bw_place", schedule=None, start_date=START, catchup=False, max_active_runs=16):
    RevoxPlaceCallOperator(
        task_id="place",
        phone_number="{{ dag_run.conf['phone'] }}",
        assistant_id="asst_plain",
        skip_calling_window=True,
        fail_on_statuses=[],
        wait_for_completion=True,
        deferrable=True,
        poke_interval=2,
    )
"""


def main() -> int:
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    stack = Stack("sqlite")
    try:
        stack.start({"st_call_wait"})
        (stack.dags / "bench_worker_runs.py").write_text(DAGS)
        wait_until(
            lambda: {"bw_sensor", "bw_place"} <= stack.api.dag_ids(), 300, "the bench DAGs", interval=2.0
        )
        stack.start_simulator()
        runs: dict[str, tuple[str, str, str]] = {}
        for i in range(1, WAITS + 1):
            run_id = stack.api.trigger("bw_sensor", {"call_id": f"ha-{i}"}, run_id=f"bw_sensor_{i}")
            runs[run_id] = ("bw_sensor", run_id, "wait")
            phone = f"+336123450{i:02d}"
            run_id = stack.api.trigger("bw_place", {"phone": phone}, run_id=f"bw_place_{i}")
            runs[run_id] = ("bw_place", run_id, "place")
        states: dict[str, str] = {}
        deadline = time.monotonic() + 400
        while len(states) < len(runs) and time.monotonic() < deadline:
            for run_id, (dag_id, _, _) in runs.items():
                if run_id not in states:
                    state = stack.api.run_state(dag_id, run_id)
                    if state in TERMINAL_RUN_STATES:
                        states[run_id] = state
            time.sleep(2.0)
        # The last executor events reach the scheduler's log a heartbeat after the runs end.
        time.sleep(6.0)
        counted = worker_runs(stack.output("scheduler"))
        # A wait that ended in the triggerer still returned the order's summary.
        summaries = {
            run_id: stack.api.xcoms(stack.api.task_instance(dag_id, run_id, task_id)).get("return_value")
            for run_id, (dag_id, _, task_id) in runs.items()
            if states.get(run_id) == "success"
        }
    finally:
        stack.close(keep=bool(os.environ.get("REVOX_BENCH_KEEP")))
    failed = {
        run_id: states.get(run_id, "not finished") for run_id in runs if states.get(run_id) != "success"
    }
    if failed:
        raise SystemExit(f"runs did not succeed: {failed}")
    unsummarised = [
        run_id
        for run_id, summary in summaries.items()
        if not (isinstance(summary, dict) and summary.get("status") and summary.get("call_id"))
    ]
    if unsummarised:
        shown = {run_id: summaries[run_id] for run_id in unsummarised}
        raise SystemExit(f"runs without their summary XCom: {shown}")
    if not counted:
        raise SystemExit("the scheduler logged no executor event: nothing was counted")
    sensor = [counted[key] for key in runs.values() if key[0] == "bw_sensor"]
    place = [counted[key] for key in runs.values() if key[0] == "bw_place"]
    figures: dict[str, Any] = {
        "title": (
            f"{WAITS} deferrable RevoxCallSensor waits and {WAITS} deferrable placements on a real "
            "scheduler, two triggerers and LocalExecutor; task processes counted from executor events"
        ),
        "started_at": started_at,
        "seed": None,
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "sensor_worker_runs_per_wait": sum(sensor) / len(sensor),
        "placement_worker_runs_per_wait": sum(place) / len(place),
        "sensor_worker_runs": sensor,
        "placement_worker_runs": place,
        "targets": {"sensor_worker_runs_per_wait": "<= 0", "placement_worker_runs_per_wait": "<= 1"},
    }
    figures["targets_met"] = {
        "sensor_worker_runs_per_wait": figures["sensor_worker_runs_per_wait"] <= 0,
        "placement_worker_runs_per_wait": figures["placement_worker_runs_per_wait"] <= 1,
    }
    merge_results("worker_runs", figures)
    print(
        f"worker runs per wait: sensor {figures['sensor_worker_runs_per_wait']:g} {sensor}, "
        f"placement {figures['placement_worker_runs_per_wait']:g} {place}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
