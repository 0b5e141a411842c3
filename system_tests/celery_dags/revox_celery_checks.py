"""DAGs of the system test's CeleryExecutor cell: placements whose worker the harness kills
mid-POST, many deferred waits started in the triggerers, and an export by search."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator, RevoxPlaceCallOperator
from airflow_provider_revox.sensors.revox import RevoxCallSensor

START = pendulum.datetime(2025, 1, 1, tz="UTC")


@task
def from_conf(key: str, **context: Any) -> list[str]:
    """A list from the run's conf, to map a task over."""
    return list(context["dag_run"].conf[key])


with DAG(
    dag_id="stc_place",
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_tasks=16,
    doc_md="One order per mapped task; the harness SIGKILLs a Celery worker while a POST is in flight.",
):
    RevoxPlaceCallOperator.partial(
        task_id="place",
        assistant_id="asst_plain",
        skip_calling_window=True,
        wait_for_completion=False,
        retries=2,
        retry_delay=timedelta(seconds=3),
    ).expand(phone_number=from_conf("phones"))

#: Waits per run of ``stc_waits`` (the harness starts as many runs as its waits need).
WAITS_PER_RUN = 10

with DAG(
    dag_id="stc_waits",
    schedule=None,
    start_date=START,
    catchup=False,
    # Every run at once: the harness releases the orders only once every wait is deferred.
    max_active_runs=64,
    doc_md="Deferrable waits that start and end in the triggerers; the run's conf gives the ids.",
):
    # Not mapped: Airflow 3.3 starts only unmapped tasks in the triggerer. A few per run keep the
    # serialized DAG the triggerer reads for each wait (to render its templates) small.
    for index in range(WAITS_PER_RUN):
        RevoxCallSensor(
            task_id=f"wait_{index}",
            call_id=f"{{{{ dag_run.conf['call_ids'][{index}] }}}}",
            deferrable=True,
            poke_interval=5,
            # A retry covers a try lost on a loaded host (the check counts them).
            retries=1,
            retry_delay=timedelta(seconds=3),
        )

with DAG(
    dag_id="stc_export",
    schedule=None,
    start_date=START,
    catchup=False,
    doc_md="The orders of one assistant, found by search and exported as Parquet.",
):
    RevoxCallsToStorageOperator(
        task_id="export",
        search={"assistant_ids": ["{{ dag_run.conf['assistant_id'] }}"]},
        destination="{{ dag_run.conf['destination'] }}",
        file_format="parquet",
        tables=["calls", "structured_output"],
    )
