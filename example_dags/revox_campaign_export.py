"""Wait for a batch of Revox call orders and export what they produced as Parquet.

Trigger it with the ids and a destination (any scheme Airflow's object storage knows)::

    airflow dags trigger revox_campaign_export \
        --conf '{"call_ids": ["<id 1>", "<id 2>"], "destination": "s3://bucket/revox"}'
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator
from airflow_provider_revox.sensors.revox import RevoxCallSensor


@dag(
    dag_id="revox_campaign_export",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"call_ids": [], "destination": "file:///tmp/revox-export"},
    tags=["revox", "example"],
)
def revox_campaign_export() -> None:
    """Mapped deferrable sensors, one export of every order, then a read-back of the Parquet."""

    @task
    def campaign_call_ids(**context: Any) -> list[str]:
        """The ids to wait for: from the run's conf, else the DAG's params."""
        ids = context["dag_run"].conf.get("call_ids") or context["params"]["call_ids"]
        if not ids:
            raise ValueError("pass the call ids to export as conf {'call_ids': [...]}")
        return list(ids)

    # Every terminal status ends the wait: a campaign export wants the failed orders too.
    waits = RevoxCallSensor.partial(
        task_id="wait_for_call", deferrable=True, poke_interval=15, fail_on_statuses=()
    ).expand(call_id=campaign_call_ids())

    export = RevoxCallsToStorageOperator(
        task_id="export_calls",
        call_ids=waits.output,
        # One base for every run: each run adds its own load=<run>/ folder, listed in _loads.jsonl.
        destination="{{ dag_run.conf.get('destination') or params.destination }}",
        file_format="parquet",
    )

    @task
    def read_back(export: dict[str, Any]) -> dict[str, int]:
        """Read the Parquet tables back, as a warehouse load step would.

        The export returns a small summary: counts, the URIs of this run's tables and manifest.
        A reader that does not run after the export in the same DAG reads ``_loads.jsonl`` at
        the base (``airflow_provider_revox.export.read_loads``) to find the complete loads.
        """
        import pyarrow.parquet as pq
        from airflow.sdk import ObjectStoragePath

        counts = {}
        for uri in export["tables"].values():
            with ObjectStoragePath(uri).open("rb") as handle:
                counts[uri.rsplit("/", 1)[-1]] = pq.read_table(handle).num_rows
        return counts

    read_back(export.output)


revox_campaign_export()
