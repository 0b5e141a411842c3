"""Wait for one Revox call order, then use what the call produced.

Trigger it with the call order's id::

    airflow dags trigger revox_call_completion --conf '{"call_id": "<call id>"}'
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_revox.operators.revox import RevoxCallResultsOperator
from airflow_provider_revox.sensors.revox import RevoxCallSensor


@dag(
    dag_id="revox_call_completion",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"call_id": ""},
    tags=["revox", "example"],
)
def revox_call_completion() -> None:
    """Deferrable wait for the order, fetch its results, act on its structured_output."""
    wait = RevoxCallSensor(
        task_id="wait_for_call",
        call_id="{{ dag_run.conf.get('call_id') or params.call_id }}",
        deferrable=True,
        poke_interval=15,
    )
    results = RevoxCallResultsOperator(
        task_id="call_results",
        call_id="{{ dag_run.conf.get('call_id') or params.call_id }}",
    )

    @task
    def route_lead(summary: dict[str, Any]) -> dict[str, Any]:
        """A stand-in for your own logic: decide what to do with the lead."""
        output = summary.get("structured_output") or {}
        interested = summary.get("outcome") == "interested" or bool(output.get("interested"))
        return {"call_id": summary["call_id"], "follow_up": interested, "fields": sorted(output)}

    wait >> results
    route_lead(results.output)


revox_call_completion()
