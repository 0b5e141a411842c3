"""DAGs of the system test: the deferrable sensors on a conf-given order, connection and timeout,
one placement whose worker the harness kills, and one deferred placement that gives up."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, BaseSensorOperator

from airflow_provider_revox.operators.revox import RevoxPlaceCallOperator
from airflow_provider_revox.sensors.revox import RevoxCallSensor, RevoxCallsSensor

START = pendulum.datetime(2025, 1, 1, tz="UTC")
CALL_ID = "{{ dag_run.conf['call_id'] }}"
CALL_IDS = "{{ dag_run.conf['call_ids'] }}"
CONN_ID = "{{ dag_run.conf.get('conn_id') or 'revox_default' }}"


def sensor_dag(dag_id: str, sensor: type[BaseSensorOperator], doc: str, **kwargs: Any) -> DAG:
    """One DAG with one deferrable sensor ``wait`` polling every 2 s; the run's conf gives the ids."""
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=32,
        render_template_as_native_obj=sensor is RevoxCallsSensor,  # the conf's list stays a list
        doc_md=doc,
    ) as dag:
        sensor(task_id="wait", deferrable=True, poke_interval=2, revox_conn_id=CONN_ID, **kwargs)
    return dag


# A retry is allowed where the wait can fail: a failed order must still fail at once, without it.
RETRY = {"retries": 1, "retry_delay": timedelta(seconds=5)}

sensor_dag("st_call_wait", RevoxCallSensor, "One order, the derived deadline.", call_id=CALL_ID, **RETRY)
sensor_dag(
    "st_call_timeout", RevoxCallSensor, "An order that cannot end in 20 s.", call_id=CALL_ID, timeout=20
)
sensor_dag(
    "st_calls_wait",
    RevoxCallsSensor,
    "A batch where half must complete.",
    call_ids=CALL_IDS,
    min_completed_ratio=0.5,
    **RETRY,
)
sensor_dag(
    "st_calls_timeout", RevoxCallsSensor, "A batch that cannot end in 20 s.", call_ids=CALL_IDS, timeout=20
)


def placement_dag(dag_id: str, doc: str, **kwargs: Any) -> DAG:
    """One DAG with one ``place`` task: the run's conf gives the number and the dial time (the
    simulator's clock, given by the harness), dialled whatever the calling window."""
    with DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False, doc_md=doc) as dag:
        RevoxPlaceCallOperator(
            task_id="place",
            phone_number="{{ dag_run.conf['phone'] }}",
            assistant_id="asst_plain",
            scheduled_at="{{ dag_run.conf['scheduled_at'] }}",
            skip_calling_window=True,
            **kwargs,
        )
    return dag


placement_dag(
    "st_place_kill",
    "One order placed and waited for on a worker; the harness SIGKILLs that worker mid-wait.",
    # Dialled after the retry has reattached. The simulator draws the order's outcome: any end is
    # fine, the check is on the placing.
    fail_on_statuses=[],
    wait_for_completion=True,
    deferrable=False,
    mode="poke",
    poke_interval=3,
    retries=2,
    retry_delay=timedelta(seconds=5),
)
placement_dag(
    "st_place_timeout",
    "One order dialled days ahead, waited for in a triggerer for 20 s: the task gives up.",
    deferrable=True,
    timeout=20,  # system_tests.place_timeout.TIMEOUT_SECONDS; cancel_on_timeout is on by default
)
