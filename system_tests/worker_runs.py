"""How many worker runs a deferrable wait costs, counted from the scheduler's executor events.

Every task process the executor starts ends with one executor event, which the scheduler logs as
``Received executor event with state <state> for task instance TaskInstanceKey(...)``. A wait that
starts and ends in the triggerer (Airflow 3.3's ``start_from_trigger``) has none; one that
defers from a worker and resumes on one has two.
"""

from __future__ import annotations

import re
from collections import Counter

from system_tests.context import Context, expect

EVENT = re.compile(
    r"Received executor event with state (?P<state>[\w.]+) for task instance "
    r"TaskInstanceKey\(dag_id='(?P<dag_id>[^']+)', task_id='(?P<task_id>[^']+)', "
    r"run_id='(?P<run_id>[^']+)'"
)
#: States an executor reports when a task process has ended (not while it starts or runs).
ENDED = {"success", "failed", "skipped", "up_for_retry", "deferred", "up_for_reschedule"}


def worker_runs(scheduler_log: str) -> Counter[tuple[str, str, str]]:
    """Task processes that ended, by (dag_id, run_id, task_id), from the scheduler's log."""
    runs: Counter[tuple[str, str, str]] = Counter()
    for match in EVENT.finditer(scheduler_log):
        state = match["state"].rsplit(".", 1)[-1].lower()
        if state in ENDED:
            runs[(match["dag_id"], match["run_id"], match["task_id"])] += 1
    return runs


def check_sensor_worker_runs(ctx: Context) -> str:
    """Deferrable RevoxCallSensor waits that succeeded started and ended in the triggerer (the
    default on Airflow 3.3+): 0 worker runs, a SIGKILLed triggerer's included."""
    from airflow_provider_revox._internal.core import compat

    runs = worker_runs(ctx.stack.output("scheduler"))
    expect(runs, "the scheduler logged no executor event at all: cannot count worker runs")
    waits = [
        (run.dag_id, run.run_id, "wait")
        for run in ctx.runs.values()
        if run.dag_id == "st_call_wait" and run.state == "success"
    ]
    expect(waits, "no st_call_wait run succeeded: nothing to count")
    per_wait = [runs[key] for key in waits]
    expected = 0 if compat.has_start_from_trigger() else 2
    counted = {key[1]: runs[key] for key in waits}
    expect(
        all(count == expected for count in per_wait), f"worker runs per wait {counted}, expected {expected}"
    )
    return f"sensor_worker_runs_per_wait {sum(per_wait) / len(per_wait):g} over {len(waits)} waits"
