"""Run whenever Revox call orders finish: an Asset watched by ``RevoxCallEventTrigger``.

The triggerer polls the Revox API (one search per poll, less often while nothing changes) and
adds an asset event per batch of orders that reached a terminal status; each event names the
orders (ids and statuses only). This DAG is scheduled on that Asset and exports the orders named
by the events that triggered it, with the warehouse-ready ``calls`` and ``attempts`` tables.
A manual run can name orders instead: ``--conf '{"call_ids": ["<id>"]}'``.

Per deployment, without editing the file: ``REVOX_CALL_EVENTS_WATCH`` holds the trigger's
arguments as JSON (filters and pace, e.g. ``{"campaign_ids": ["camp_1"], "poll_interval": 10}``)
and ``REVOX_CALLS_FINISHED_DESTINATION`` where the exports go.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pendulum
from airflow.sdk import Asset, AssetWatcher, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from airflow_provider_revox.export.run import ALL_TABLES
from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator
from airflow_provider_revox.triggers.revox import RevoxCallEventTrigger

# Only configuration in the kwargs, the same at every parse: the trigger's identity is a hash of
# them, so changing the variable replaces the watcher (the cursor stays with the Asset).
WATCH: dict[str, Any] = {
    "revox_conn_id": "revox_default",
    "poll_interval": 30,
    "max_poll_interval": 600,
    **json.loads(os.environ.get("REVOX_CALL_EVENTS_WATCH") or "{}"),
}

CALLS_FINISHED = Asset(
    "revox_calls_finished",
    watchers=[AssetWatcher(name="revox_calls_finished_watcher", trigger=RevoxCallEventTrigger(**WATCH))],
)


@dag(
    dag_id="revox_on_calls_finished",
    schedule=[CALLS_FINISHED],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "destination": os.environ.get("REVOX_CALLS_FINISHED_DESTINATION") or "file:///tmp/revox-finished"
    },
    tags=["revox", "example"],
)
def revox_on_calls_finished() -> None:
    """Collect the finished orders' ids from the triggering events, then export them."""

    @task(inlets=[CALLS_FINISHED])
    def finished_call_ids(**context: Any) -> list[str]:
        """The ids the triggering events name, each once, in event order (or the run's conf)."""
        ids: list[str] = []
        for event in context["triggering_asset_events"].get(CALLS_FINISHED, []):
            payload = (event.extra or {}).get("payload") or {}
            ids.extend(str(call["id"]) for call in payload.get("calls", []))
        ids.extend(context["dag_run"].conf.get("call_ids") or [])
        if not ids:
            raise AirflowSkipException("no finished call orders named by the triggering events")
        return list(dict.fromkeys(ids))

    RevoxCallsToStorageOperator(
        task_id="export_finished_calls",
        call_ids=finished_call_ids(),
        destination="{{ params.destination }}/{{ run_id }}",
        tables=list(ALL_TABLES),
    )


revox_on_calls_finished()
