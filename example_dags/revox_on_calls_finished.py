"""Run whenever Revox call orders finish: an Asset watched by ``RevoxCallEventTrigger``.

The triggerer polls the Revox API (one search per poll, less often while nothing changes) and
adds an asset event per batch of orders that reached a terminal status; each event names the
orders (ids and statuses only). This DAG is scheduled on that Asset and exports the orders named
by the events that triggered it, with the warehouse-ready ``calls`` and ``attempts`` tables.
A manual run can name orders instead: ``--conf '{"call_ids": ["<id>"]}'``.

With the provider's webhook endpoint on (see the Webhooks guide), Revox's webhooks add events
to the same Asset within seconds, naming orders ``"announced": true``; the task reads those
orders from the API by id, and the watcher's poll, made rare, reconciles whatever no webhook
announced.

Events come at least once: a triggerer killed just after storing an event names its orders again
after its restart, a webhook may come twice, and the poll names the orders a webhook announced.
So the DAG keeps a mark in the Asset's state store, advanced only once an export succeeded, and
each run exports only the orders named for the first time.

Its tasks have retries: a task runner talks to the Airflow api-server (the execution API), so a
task running while the api-server restarts can fail. The retry exports the same orders again
(the mark has not moved) into the same load, which replaces the failed try's: still once.

Per deployment, without editing the file: ``REVOX_CALL_EVENTS_WATCH`` holds the trigger's
arguments as JSON (filters and pace, e.g. ``{"campaign_ids": ["camp_1"], "poll_interval": 10}``)
and ``REVOX_CALLS_FINISHED_DESTINATION`` where the exports go.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, AssetWatcher, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from airflow_provider_revox.export import ALL_TABLES, Watermark, first_named
from airflow_provider_revox.hooks.revox import RevoxHook
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

#: The state key of the last order exported, in the Asset's state store.
EXPORTED_MARK = "revox_calls_finished_exported"

WATCHER = RevoxCallEventTrigger(**WATCH)
CALLS_FINISHED = Asset(
    "revox_calls_finished",
    watchers=[AssetWatcher(name="revox_calls_finished_watcher", trigger=WATCHER)],
)


@dag(
    dag_id="revox_on_calls_finished",
    schedule=[CALLS_FINISHED],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs advance one mark, in order
    # An api-server restart (or any brief outage) fails the tasks running then: try again.
    default_args={"retries": 3, "retry_delay": timedelta(seconds=15)},
    params={
        "destination": os.environ.get("REVOX_CALLS_FINISHED_DESTINATION") or "file:///tmp/revox-finished"
    },
    tags=["revox", "example"],
)
def revox_on_calls_finished() -> None:
    """Collect the finished orders' ids from the triggering events, then export them."""

    @task(inlets=[CALLS_FINISHED], multiple_outputs=True)
    def finished_call_ids(asset_state_store: Any = None, **context: Any) -> dict[str, Any]:
        """The ids the triggering events name for the first time, in event order (or the run's conf)."""
        calls = [
            call
            for event in context["triggering_asset_events"].get(CALLS_FINISHED, [])
            for call in ((event.extra or {}).get("payload") or {}).get("calls", [])
        ]
        # A webhook's event only hints (any order, no trusted time, any of the assistant's calls):
        # the API dates those orders, one search per 100 ids under the watcher's own filters, and
        # the mark keeps them until the poll's events pass them.
        calls = RevoxHook(WATCH["revox_conn_id"]).resolve_announced(calls, **WATCHER.filters)
        # No asset state store before Airflow 3.3: no mark, every named order is exported.
        stored = (
            asset_state_store[CALLS_FINISHED].get(EXPORTED_MARK) if asset_state_store is not None else None
        )
        mark = Watermark.from_state(stored)
        ids, after = first_named(mark, calls)
        ids += [str(i) for i in context["dag_run"].conf.get("call_ids") or [] if str(i) not in ids]
        if not ids:
            raise AirflowSkipException("no call order named for the first time by the triggering events")
        return {"call_ids": ids, "mark": after.to_state()}

    @task(inlets=[CALLS_FINISHED])
    def remember_exported(mark: dict[str, Any], asset_state_store: Any = None) -> None:
        """Advance the mark once the export succeeded: a failed run is exported again on retry."""
        if asset_state_store is not None:
            asset_state_store[CALLS_FINISHED].set(EXPORTED_MARK, mark)

    finished = finished_call_ids()
    export = RevoxCallsToStorageOperator(
        task_id="export_finished_calls",
        call_ids=finished["call_ids"],
        destination="{{ params.destination }}",  # each run adds its own load=<run>/ folder
        tables=list(ALL_TABLES),
    )
    export >> remember_exported(finished["mark"])


revox_on_calls_finished()
