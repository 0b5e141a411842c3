"""The example DAGs import cleanly and run end to end against the simulator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_provider_revox.hooks.revox import Call
from airflow_provider_revox.testing import ALWAYS_OPEN_RETRY_CONFIG, SimulatorHandle
from tests.support.hitl import answer_when_asked
from tests.support.paths import ROOT
from tests.support.versions import needs_awaiting_input

pytestmark = pytest.mark.airflow

EXAMPLES = ROOT / "example_dags"
ASSISTANT = {
    "id": "asst_example",
    "structured_output_config": [
        {"name": "confirmed", "type": "boolean", "required": True},
        {"name": "notes", "type": "string", "required": False},
    ],
    "call_retry_config": ALWAYS_OPEN_RETRY_CONFIG,
}


def test_example_dags_import_without_errors(airflow_db: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(EXAMPLES))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        "revox_call_completion",
        "revox_campaign_export",
        "revox_campaign_from_table",
        "revox_campaign_with_approval",
        "revox_on_calls_finished",
    }


def test_call_completion_runs_end_to_end(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    call_id = fast_simulator.place_call(phone_number="+33612345678", assistant=ASSISTANT)["id"]
    source = (EXAMPLES / "revox_call_completion.py").read_text()
    dag_run = run_dag(source, "revox_call_completion", conf={"call_id": call_id})

    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert {k: ti.state for k, ti in tis.items()} == {
        "wait_for_call": "success",
        "call_results": "success",
        "route_lead": "success",
    }
    truth = Call.from_response(fast_simulator.get_call(call_id))
    summary = tis["call_results"].xcom_pull(task_ids="call_results")
    assert summary["call_id"] == call_id
    assert summary["status"] == truth.status == "completed"
    assert summary["structured_output"] == truth.result_structured_output
    decision = tis["route_lead"].xcom_pull(task_ids="route_lead")
    assert decision["call_id"] == call_id
    assert decision["fields"] == sorted(truth.result_structured_output)


def test_campaign_export_runs_end_to_end(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    numbers = ["+33612345678", "+12125550123", "+81312345678"]
    call_ids = [fast_simulator.place_call(phone_number=n, assistant=ASSISTANT)["id"] for n in numbers]
    source = (EXAMPLES / "revox_campaign_export.py").read_text()
    dag_run = run_dag(
        source, "revox_campaign_export", conf={"call_ids": call_ids, "destination": tmp_path.as_uri()}
    )

    states = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    assert set(states.values()) == {"success"}, states
    assert sum(1 for task_id, _ in states if task_id == "wait_for_call") == len(call_ids)

    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    calls = [Call.from_response(fast_simulator.get_call(c)) for c in call_ids]
    transcripts = pq.read_table(run_dir / "transcripts.parquet").to_pylist()
    structured = pq.read_table(run_dir / "structured_output.parquet").to_pylist()
    assert [row["call_id"] for row in structured] == call_ids
    assert len(transcripts) == sum(sum(1 for _ in c.iter_turns("best")) for c in calls)
    assert sorted(p.name for p in (run_dir / "calls").iterdir()) == sorted(f"{c}.json" for c in call_ids)

    ti = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "read_back")
    assert ti.xcom_pull(task_ids="read_back") == {
        "structured_output.parquet": len(call_ids),
        "transcripts.parquet": len(transcripts),
    }


@needs_awaiting_input
@pytest.mark.parametrize("answer", ["Approve", "Reject"])
def test_campaign_with_approval_launches_only_once_a_person_approves(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path, answer: str
) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        "to_phone_number,first_name\n+33612345601,Ana\n+33612345602,Ben\n0612345678,Cy\n+12125550123,Dee\n"
    )
    dag_id = "revox_campaign_with_approval"
    answered = answer_when_asked(dag_id, "approve_launch", answer)
    dag_run = run_dag(
        (EXAMPLES / f"{dag_id}.py").read_text(),
        dag_id,
        conf={"contacts_path": contacts.as_uri(), "assistant_id": "asst_example"},
    )
    answered.join(timeout=10)

    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    preview = tis["preview"].xcom_pull(task_ids="preview")
    assert (preview["calls"], preview["max_attempts"]) == (3, 6)
    assert sum(preview["left_out"].values()) == 1 and all(
        r.startswith("rejected: ") for r in preview["left_out"]
    )
    assert [row["phone"] for row in preview["sample"]] == ["+33•••••••01", "+33•••••••02", "+12•••••••23"]
    assert "**3 contacts** will be called" in preview["markdown"]
    (campaign_id,) = fast_simulator.engine.campaigns.ids()
    launched = fast_simulator.engine.campaigns.statuses(campaign_id)
    if answer == "Approve":
        assert states["launch_campaign"] == states["wait_for_campaign"] == "success", states
        assert "not_launched" not in launched
    else:
        assert states["launch_campaign"] == states["wait_for_campaign"] == "skipped", states
        assert launched == ["not_launched"] * 3
