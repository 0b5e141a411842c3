"""The do-not-contact gate through real Airflow (dag.test) and real HTTP against the simulator.

Before any ``POST /call`` or ``POST /campaigns`` the task reads ``GET /calls/phone-history``
once; numbers marked do-not-contact, and those the policies name, are never sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_revox._internal.core import compat
from airflow_provider_revox.testing import SimulatorHandle

pytestmark = pytest.mark.airflow

HISTORY = "GET /calls/phone-history"
#: Before it places, a placement reads the number's history; on Airflow 3.2 (no task state store)
#: each try first searches for an order under its key, which is what finds nothing here.
BEFORE_PLACING = {HISTORY: 1} if compat.has_task_state_store() else {"POST /call/search": 1, HISTORY: 1}
DNC = "+33612345601"
DNC_2 = "+33612345609"
HUMAN = "+33612345602"
VOICEMAIL = "+33612345603"
IN_CAMPAIGN = "+33612345604"
CLEAN = "+33612345605"

PLACE = """
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxPlaceCallOperator

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    RevoxPlaceCallOperator(task_id="call", assistant_id="asst_demo", wait_for_completion=False, **{kwargs})

build()
"""

CREATE = """
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxCreateCampaignOperator

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    RevoxCreateCampaignOperator(task_id="create", name="Reminders", assistant_id="asst_demo", **{kwargs})

build()
"""


def run_task(run_dag: Callable[..., Any], template: str, dag_id: str, **kwargs: Any) -> Any:
    (ti,) = run_dag(template.format(dag_id=dag_id, kwargs=kwargs), dag_id).get_task_instances()
    return ti


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str], caplog: Any) -> Callable[[], str]:
    """What the tasks logged (``dag.test()`` prints the task logs)."""

    def read() -> str:
        captured = capsys.readouterr()
        return captured.out + captured.err + caplog.text

    return read


def endpoints(sim: SimulatorHandle) -> dict[str, int]:
    return dict(sim.stats()["by_endpoint"])


def called(sim: SimulatorHandle) -> list[str]:
    return sorted(sim.get_call(call_id)["to_phone_number"] for call_id in sim.engine.call_ids())


def history_of_calls(sim: SimulatorHandle) -> None:
    """Campaign "Reminders" called IN_CAMPAIGN three days ago; now a person answered HUMAN and a
    voicemail answered VOICEMAIL; DNC and DNC_2 are marked do-not-contact."""
    book = sim.engine.campaigns
    campaign = book.create(
        name="Reminders [af-earlier @ other_dag/create]",
        assistant_id="asst_demo",
        contacts=[{"to_phone_number": IN_CAMPAIGN, "prompt_variables": {}}],
        call_retry_config={
            "calling_windows": [{"calling_window_start_time": "00:00", "calling_window_end_time": "23:59"}],
            "allowed_days": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
        },
    )
    book.launch(campaign, mode="ai_first", selection={})
    sim.finish(*book.campaign(campaign).call_ids)
    sim.advance(3 * 86400)
    sim.place_scripted("c-human", [{"result": "human", "duration": 60}], phone_number=HUMAN)
    sim.place_scripted("c-voicemail", [{"result": "voicemail", "duration": 20}], phone_number=VOICEMAIL)
    sim.finish("c-human", "c-voicemail")
    sim.engine.phone_book.mark([DNC, DNC_2])
    sim.reset_stats()


# -- RevoxPlaceCallOperator ---------------------------------------------------------------------


def test_placement_never_dials_a_do_not_contact_number(
    simulator: SimulatorHandle, run_dag: Callable[..., Any], logs: Callable[[], str]
) -> None:
    simulator.engine.phone_book.mark([DNC])
    ti = run_task(run_dag, PLACE, "dnc_place", phone_number=DNC)
    assert ti.state == "skipped"
    assert endpoints(simulator) == BEFORE_PLACING
    assert simulator.engine.call_ids() == []
    assert f"No call placed to {DNC}: do_not_contact" in logs()


def test_placement_override_dials_with_a_warning(
    simulator: SimulatorHandle, run_dag: Callable[..., Any], logs: Callable[[], str]
) -> None:
    simulator.engine.phone_book.mark([DNC])
    ti = run_task(run_dag, PLACE, "dnc_place_override", phone_number=DNC, dial_do_not_contact=True)
    assert ti.state == "success"
    assert endpoints(simulator)["POST /call"] == 1 and endpoints(simulator)[HISTORY] == 1
    assert called(simulator) == [DNC]
    assert logs().count(f"Dialling {DNC} although it is marked do-not-contact") == 1


@pytest.mark.parametrize(
    ("number", "policy", "reason"),
    [
        (HUMAN, {"skip_reached_human_within_days": 2}, "reached_human_within_days"),
        (VOICEMAIL, {"skip_called_within_hours": 24}, "called_within_hours"),
    ],
)
def test_placement_policies_skip_with_their_reason(
    number: str,
    policy: dict[str, Any],
    reason: str,
    simulator: SimulatorHandle,
    run_dag: Callable[..., Any],
    logs: Callable[[], str],
) -> None:
    history_of_calls(simulator)
    ti = run_task(run_dag, PLACE, f"dnc_place_{reason}", phone_number=number, **policy)
    assert ti.state == "skipped"
    assert "POST /call" not in endpoints(simulator)
    assert f"No call placed to {number}: {reason}" in logs()


def test_placement_fails_safe_when_the_history_is_cut_off(
    simulator: SimulatorHandle, run_dag: Callable[..., Any], logs: Callable[[], str]
) -> None:
    simulator.faults.script(HISTORY, ["truncate"])
    ti = run_task(run_dag, PLACE, "dnc_place_cut", phone_number=CLEAN)
    assert ti.state == "failed"
    assert endpoints(simulator) == BEFORE_PLACING
    assert simulator.engine.call_ids() == []
    assert "RevoxPhoneHistoryError" in logs()


# -- RevoxCreateCampaignOperator ----------------------------------------------------------------


def test_campaign_policies_skip_into_the_rejects_file_with_counts(
    simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path, logs: Callable[[], str]
) -> None:
    history_of_calls(simulator)
    source = tmp_path / "contacts.csv"
    numbers = [CLEAN, DNC, HUMAN, "0612", VOICEMAIL, IN_CAMPAIGN, DNC_2]
    source.write_text("to_phone_number,first_name\n" + "".join(f"{n},Ana\n" for n in numbers))
    ti = run_task(
        run_dag,
        CREATE,
        "dnc_create_policies",
        contacts_path=source.as_uri(),
        max_rejected_rows=1,
        skip_reached_human_within_days=2,
        skip_called_within_hours=24,
        skip_already_in_campaign=True,
    )
    assert ti.state == "success"
    result = ti.xcom_pull(task_ids="create")
    assert result["contacts"] == 1 and result["rejected"] == 1
    assert result["skipped"] == {
        "total": 6,
        "skipped": 5,
        "by_reason": {
            "do_not_contact": 2,
            "reached_human_within_days": 1,
            "called_within_hours": 1,
            "already_in_campaign": 1,
        },
        "dialled_do_not_contact": 0,
    }
    rejects = [json.loads(line) for line in Path(str(source) + ".rejects.jsonl").read_text().splitlines()]
    assert [(r["row"], r.get("skipped")) for r in rejects] == [
        (2, "do_not_contact"),
        (3, "reached_human_within_days"),
        (4, None),
        (5, "called_within_hours"),
        (6, "already_in_campaign"),
        (7, "do_not_contact"),
    ]
    assert rejects[0]["input"]["to_phone_number"] == DNC
    expected = "skipped: already_in_campaign (already called by campaign 'Reminders ["
    assert rejects[4]["reason"].startswith(expected)
    (campaign_id,) = [i for i in simulator.engine.campaigns.ids() if i != simulator.engine.campaigns.ids()[0]]
    rows = simulator.engine.campaigns.campaign(campaign_id).call_ids
    assert [simulator.get_call(i)["to_phone_number"] for i in rows] == [CLEAN]
    assert endpoints(simulator)[HISTORY] == 1
    assert (
        "Do-not-contact gate: 5 of 6 contacts skipped (do_not_contact: 2, reached_human_within_days: 1, "
        "called_within_hours: 1, already_in_campaign: 1)" in logs()
    )


def test_campaign_never_sends_a_do_not_contact_number(
    simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    simulator.engine.phone_book.mark([DNC])
    contacts = [{"to_phone_number": n, "prompt_variables": {}} for n in (DNC, CLEAN)]
    rejects = tmp_path / "rejects.jsonl"
    ti = run_task(run_dag, CREATE, "dnc_create_list", contacts=contacts, rejects_path=str(rejects))
    assert ti.state == "success"
    assert called(simulator) == [CLEAN]
    assert ti.xcom_pull(task_ids="create")["skipped"]["by_reason"] == {"do_not_contact": 1}
    (line,) = [json.loads(text) for text in rejects.read_text().splitlines()]
    assert line["row"] == 1 and line["skipped"] == "do_not_contact"


def test_campaign_override_sends_them_with_a_warning_each(
    simulator: SimulatorHandle, run_dag: Callable[..., Any], logs: Callable[[], str]
) -> None:
    simulator.engine.phone_book.mark([DNC, DNC_2])
    contacts = [{"to_phone_number": n, "prompt_variables": {}} for n in (DNC, CLEAN, DNC_2)]
    ti = run_task(run_dag, CREATE, "dnc_create_override", contacts=contacts, dial_do_not_contact=True)
    assert ti.state == "success"
    assert called(simulator) == sorted([DNC, CLEAN, DNC_2])
    assert ti.xcom_pull(task_ids="create")["skipped"]["dialled_do_not_contact"] == 2
    text = logs()
    assert text.count(f"Dialling {DNC} although") == 1 and text.count(f"Dialling {DNC_2} although") == 1


def test_campaign_all_skipped_creates_nothing_and_skips(
    simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    simulator.engine.phone_book.mark([DNC])
    contacts = [{"to_phone_number": DNC, "prompt_variables": {}}]
    ti = run_task(run_dag, CREATE, "dnc_create_none", contacts=contacts)
    assert ti.state == "skipped"
    assert "POST /campaigns" not in endpoints(simulator) and simulator.engine.campaigns.ids() == []


def test_campaign_fails_safe_when_the_history_cannot_be_read(
    simulator: SimulatorHandle, run_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow_provider_revox._internal.hooks.revox as hook_module

    monkeypatch.setattr(hook_module, "retry_sleep", lambda seconds: None)
    simulator.faults.script(HISTORY, ["503"] * 10)
    contacts = [{"to_phone_number": CLEAN, "prompt_variables": {}}]
    ti = run_task(run_dag, CREATE, "dnc_create_unreadable", contacts=contacts)
    assert ti.state == "failed"
    assert "POST /campaigns" not in endpoints(simulator) and simulator.engine.campaigns.ids() == []
    assert endpoints(simulator)[HISTORY] >= 2  # retried, then gave up: nothing created
