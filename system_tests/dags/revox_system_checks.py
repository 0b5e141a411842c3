"""DAGs of the system test: the deferrable sensors on a conf-given order, connection and timeout."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_provider_revox.sensors.revox import RevoxCallSensor, RevoxCallsSensor

START = pendulum.datetime(2025, 1, 1, tz="UTC")
CONN_ID = "{{ dag_run.conf.get('conn_id') or 'revox_default' }}"


@dag(dag_id="st_call_wait", schedule=None, start_date=START, catchup=False, max_active_runs=32)
def st_call_wait() -> None:
    """One order, the derived deadline, the default failing statuses."""
    RevoxCallSensor(
        task_id="wait",
        call_id="{{ dag_run.conf['call_id'] }}",
        revox_conn_id=CONN_ID,
        deferrable=True,
        poke_interval=2,
    )


@dag(dag_id="st_call_timeout", schedule=None, start_date=START, catchup=False)
def st_call_timeout() -> None:
    """One order that cannot end in time: an explicit 20-second timeout."""
    RevoxCallSensor(
        task_id="wait", call_id="{{ dag_run.conf['call_id'] }}", deferrable=True, poke_interval=2, timeout=20
    )


@dag(
    dag_id="st_calls_wait",
    schedule=None,
    start_date=START,
    catchup=False,
    render_template_as_native_obj=True,
    max_active_runs=8,
)
def st_calls_wait() -> None:
    """A batch where half the orders must complete."""
    RevoxCallsSensor(
        task_id="wait",
        call_ids="{{ dag_run.conf['call_ids'] }}",
        deferrable=True,
        poke_interval=2,
        min_completed_ratio=0.5,
    )


@dag(
    dag_id="st_calls_timeout",
    schedule=None,
    start_date=START,
    catchup=False,
    render_template_as_native_obj=True,
)
def st_calls_timeout() -> None:
    """A batch that cannot end in time: an explicit 20-second timeout."""
    RevoxCallsSensor(
        task_id="wait",
        call_ids="{{ dag_run.conf['call_ids'] }}",
        deferrable=True,
        poke_interval=2,
        timeout=20,
    )


st_call_wait()
st_call_timeout()
st_calls_wait()
st_calls_timeout()
