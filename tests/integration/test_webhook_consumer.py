"""The example consumer, run by ``dag.test()``, on webhook events and the poll's events together:
each order is exported once, whatever order, repeats or gaps the webhooks came with."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_revox._internal.webhooks.airflow import event_extra
from airflow_provider_revox._simulator.profile import AttemptDraw
from airflow_provider_revox._simulator.timeline import OrderScript
from tests.support.paths import ROOT
from tests.support.versions import needs_asset_state_store


def place(simulator: Any, assistant_id: str = "asst_webhooks") -> str:
    call = simulator.place_call(
        phone_number="+33612345678",
        assistant={"id": assistant_id},
        script=OrderScript(attempts=(AttemptDraw(kind="human", talk_seconds=40),)),
    )
    return str(call["id"])


@needs_asset_state_store
@pytest.mark.airflow
def test_the_consumer_exports_webhook_named_orders_once_and_the_poll_only_reconciles_the_rest(
    revox_simulator: Any, run_dag: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models import dagrun
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    sim = revox_simulator
    # The watcher follows one assistant; a webhook set on another one names its calls too.
    monkeypatch.setenv("REVOX_CALL_EVENTS_WATCH", json.dumps({"assistant_ids": ["asst_webhooks"]}))
    named = [place(sim) for _ in range(4)]
    foreign = place(sim, "asst_other")
    sim.finish(*named, foreign)
    still_open = place(sim)  # placed after the clock moved: it has not ended
    ended = {i: sim.get_call(i)["ended_at"] for i in named}
    named.sort(key=lambda i: (ended[i], i))
    a, b, c, d = named

    def webhook(*ids: str) -> dict[str, Any]:
        return event_extra([{"id": i, "announced": True} for i in ids])

    def poll(*ids: str) -> dict[str, Any]:
        calls = [{"id": i, "status": "completed", "ended_at": ended[i]} for i in ids]
        return {
            "from_trigger": True,
            "payload": {"calls": calls, "count": len(calls), "ended_at": ended[ids[-1]]},
        }

    # Run 1: webhooks out of order, one twice, one for an order still open, one for an unknown id,
    # one for another assistant's order; a's and c's webhooks are lost. Run 2: the poll names every
    # order, and d's webhook is replayed.
    runs = [
        [webhook(d), webhook(b), webhook(b, still_open), webhook("call_unknown"), webhook(foreign)],
        [poll(a, b, c, d), webhook(d)],
    ]
    real = dagrun.get_or_create_dagrun

    def with_triggering_events(*args: Any, **kwargs: Any) -> Any:
        run = real(*args, **kwargs)
        session = kwargs["session"]
        asset = session.scalar(select(AssetModel).where(AssetModel.name == "revox_calls_finished"))
        for extra in runs.pop(0):
            event = AssetEvent(asset_id=asset.id, extra=extra)
            session.add(event)
            run.consumed_asset_events.append(event)
        session.flush()
        return run

    monkeypatch.setattr(dagrun, "get_or_create_dagrun", with_triggering_events)
    source = (ROOT / "example_dags" / "revox_on_calls_finished.py").read_text()
    searches_before = sim.stats()["by_endpoint"].get("POST /call/search", 0)
    exported = []
    for n in (1, 2):
        out = tmp_path / f"run{n}"
        dag_run = run_dag(
            source.replace("file:///tmp/revox-finished", out.as_uri()), "revox_on_calls_finished"
        )
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
        assert states == dict.fromkeys(
            ("finished_call_ids", "export_finished_calls", "remember_exported"), "success"
        )
        (run_dir,) = [p for p in out.iterdir() if p.name.startswith("load=")]
        rows = [json.loads(line) for line in (run_dir / "calls.jsonl").read_text().splitlines()]
        exported.append(sorted(row["call_id"] for row in rows))
    assert exported == [sorted([b, d]), sorted([a, c])]
    assert still_open not in str(exported) and foreign not in str(exported)
    # The announced orders were read by id: one search per run with webhook events (besides the export's).
    assert sim.stats()["by_endpoint"].get("POST /call/search", 0) > searches_before
