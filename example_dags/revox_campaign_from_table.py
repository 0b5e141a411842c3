"""Create a Revox campaign from a contacts table, run it, and export its calls as Parquet.

The contacts file (CSV, JSON Lines or Parquet, on any object storage Airflow knows) has a
``to_phone_number`` column; every other column becomes a prompt variable. Bad rows are written
to ``<file>.rejects.jsonl`` and up to ``max_rejected_rows`` of them are tolerated::

    airflow dags trigger revox_campaign_from_table --conf '{
        "contacts_path": "s3://bucket/contacts.csv",
        "assistant_id": "asst_...",
        "destination": "s3://bucket/revox"}'
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_revox.operators.revox import (
    RevoxCallsToStorageOperator,
    RevoxCreateCampaignOperator,
    RevoxLaunchCampaignOperator,
)
from airflow_provider_revox.sensors.revox import RevoxCampaignSensor

#: Every day, all day, retries ten minutes apart: a demo that runs whatever the weekday.
OPEN_ALL_WEEK = {
    "calling_windows": [
        {"calling_window_start_time": "00:00", "calling_window_end_time": "23:59", "retry_delay_seconds": 600}
    ],
    "allowed_days": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    "max_retry_attempts": 2,
    "call_twice_in_a_row": False,
}
CAMPAIGN_ID = "{{ ti.xcom_pull(task_ids='create_campaign')['campaign_id'] }}"


@dag(
    dag_id="revox_campaign_from_table",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "contacts_path": "file:///tmp/revox-contacts.csv",
        "assistant_id": "asst_demo",
        "destination": "file:///tmp/revox-campaign-export",
    },
    tags=["revox", "example"],
)
def revox_campaign_from_table() -> None:
    """Contacts file -> campaign -> launch -> deferrable wait -> Parquet export -> read-back."""
    create = RevoxCreateCampaignOperator(
        task_id="create_campaign",
        name="Appointment confirmations {{ ds }}",
        assistant_id="{{ params.assistant_id }}",
        contacts_path="{{ params.contacts_path }}",
        max_rejected_rows=10,
        call_retry_config=OPEN_ALL_WEEK,
        max_concurrent_calls=5,
    )
    launch = RevoxLaunchCampaignOperator(task_id="launch_campaign", campaign_id=CAMPAIGN_ID)
    wait = RevoxCampaignSensor(
        task_id="wait_for_campaign", campaign_id=CAMPAIGN_ID, deferrable=True, poke_interval=5
    )

    @task
    def campaign_call_ids(summary: dict[str, Any], **context: Any) -> list[str]:
        """The ids of the campaign's orders, from its rows (one request)."""
        from airflow_provider_revox.hooks.revox import RevoxHook

        with RevoxHook() as hook:
            rows = hook.get_campaign_rows(summary["campaign_id"])
        return [row.call_id for row in rows if row.call_id]

    call_ids = campaign_call_ids(wait.output)
    export = RevoxCallsToStorageOperator(
        task_id="export_calls",
        call_ids=call_ids,
        destination="{{ params.destination }}",  # each run adds its own load=<run>/ folder
        file_format="parquet",
    )

    @task
    def read_back(export: dict[str, Any], call_ids: list[str]) -> dict[str, int]:
        """Read the Parquet tables back and check one structured-output row per call."""
        import pyarrow.parquet as pq
        from airflow.sdk import ObjectStoragePath

        counts = {}
        for uri in export["tables"].values():
            with ObjectStoragePath(uri).open("rb") as handle:
                counts[uri.rsplit("/", 1)[-1]] = pq.read_table(handle).num_rows
        outputs = counts.get("structured_output.parquet")
        if outputs != len(call_ids):
            raise ValueError(f"expected {len(call_ids)} structured-output rows, read {outputs}")
        return counts

    create >> launch >> wait
    read_back(export.output, call_ids)


revox_campaign_from_table()
