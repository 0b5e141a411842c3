"""RevoxLaunchCampaignOperator dials every row it was given once, whatever other launchers did.

Through a real Airflow (``dag.test()``, which runs the task's retries) and real HTTP against the
simulator, with its faults: two launchers sharing a campaign, one of them meeting a run of 429s;
a launch whose answer is lost; a launch that cannot be checked; a launch still unanswered when
the task's ``execution_timeout`` ends it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_revox._internal.core import compat
from airflow_provider_revox.exceptions import RevoxPlacementUnknownError
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.operators.revox import RevoxLaunchCampaignOperator
from airflow_provider_revox.testing import ALWAYS_OPEN_RETRY_CONFIG, SimulatorHandle

LAUNCH_DAG = """
import datetime
import pendulum
from datetime import timedelta
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxLaunchCampaignOperator

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    RevoxLaunchCampaignOperator(task_id="launch", campaign_id={campaign_id!r}, retries={retries},
                                retry_delay=timedelta(0), **{kwargs!r})

build()
"""


def new_campaign(size: int) -> tuple[str, list[str]]:
    """A campaign of ``size`` rows, none launched; its id and its rows' call ids in row order."""
    contacts = [
        {"to_phone_number": f"+336123457{i:02d}", "prompt_variables": {"n": str(i)}} for i in range(size)
    ]
    with RevoxHook() as hook:
        created = hook.create_campaign(
            name="Launch",
            assistant_id="asst_demo",
            contacts=contacts,
            call_retry_config=ALWAYS_OPEN_RETRY_CONFIG,
        )
        rows = hook.get_campaign_rows(created.id)
    return created.id, [row.call_id or "" for row in sorted(rows, key=lambda row: row.row_index)]


def statuses(sim: SimulatorHandle, campaign_id: str) -> list[str]:
    return sim.engine.campaigns.statuses(campaign_id)


def run_launch(
    run_dag: Callable[..., Any], dag_id: str, campaign_id: str, retries: int = 0, **kwargs: Any
) -> Any:
    source = LAUNCH_DAG.format(dag_id=dag_id, campaign_id=campaign_id, retries=retries, kwargs=kwargs)
    (ti,) = run_dag(source, dag_id).get_task_instances()
    return ti


def test_a_retry_after_a_429_storm_launches_its_rows_though_another_launcher_started_one(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The launchers: l1 launches r0; l2 (every row but r0) meets a run of 429s on its
    # first try. Its second try must launch r1..r3, not take r0's launch for its own.
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", revox_simulator.connection_json(max_retries=1))
    campaign_id, (r0, *_) = new_campaign(4)
    l1 = run_launch(run_dag, "launcher_l1", campaign_id, call_ids=[r0], rows_mode="only")
    assert l1.state == "success"
    assert l1.xcom_pull(task_ids="launch")["launched"] == 1
    assert statuses(revox_simulator, campaign_id)[1:] == ["not_launched"] * 3

    # The first try's launch, and its one resend, are refused with 429.
    revox_simulator.faults.script("POST /campaigns/{id}/launch-calls", ["429", "429"])
    l2 = run_launch(run_dag, "launcher_l2", campaign_id, retries=1, call_ids=[r0], rows_mode="all_except")

    assert l2.state == "success" and l2.try_number == 2
    summary = l2.xcom_pull(task_ids="launch")
    assert summary["launched"] == 3 and summary["already_started"] == 0
    assert summary["launched_by_task"] == (3 if compat.has_task_state_store() else None)
    assert "not_launched" not in statuses(revox_simulator, campaign_id)
    assert revox_simulator.stats()["by_status"]["429"] == 2


def test_a_launch_whose_answer_is_lost_is_checked_with_the_rows_and_not_resent(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    campaign_id, _ = new_campaign(3)
    revox_simulator.faults.script(campaign_id, ["ok", "drop_after_commit"])
    ti = run_launch(run_dag, "launch_lost_answer", campaign_id, retries=1)
    assert ti.state == "success" and ti.try_number == 1
    summary = ti.xcom_pull(task_ids="launch")
    assert summary["launched"] == 3 and summary["skipped"] is None and summary["already_started"] == 0
    assert revox_simulator.stats()["by_endpoint"]["POST /campaigns/{id}/launch-calls"] == 1
    assert "not_launched" not in statuses(revox_simulator, campaign_id)


def test_a_launch_that_cannot_be_checked_fails_naming_its_rows_and_the_retry_launches_them(
    revox_simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The launch's connection drops (it may have reached Revox) and the rows cannot be read back:
    # the task cannot tell which rows started, so it fails naming them; its next try launches them.
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", revox_simulator.connection_json(max_retries=0))
    campaign_id, call_ids = new_campaign(3)
    revox_simulator.faults.script(campaign_id, ["ok", "drop", "503"])
    operator = RevoxLaunchCampaignOperator(task_id="launch", campaign_id=campaign_id)
    with pytest.raises(RevoxPlacementUnknownError, match="cannot be checked") as raised:
        operator.execute({})  # type: ignore[arg-type]
    assert all(call_id in str(raised.value) for call_id in call_ids)
    assert statuses(revox_simulator, campaign_id) == ["not_launched"] * 3

    retried = RevoxLaunchCampaignOperator(task_id="launch", campaign_id=campaign_id).execute({})  # type: ignore[arg-type]
    assert retried["launched"] == 3
    assert "not_launched" not in statuses(revox_simulator, campaign_id)


def test_a_second_launcher_of_the_same_rows_launches_nothing_and_says_so(
    revox_simulator: SimulatorHandle,
) -> None:
    campaign_id, _ = new_campaign(3)
    first = RevoxLaunchCampaignOperator(task_id="a", campaign_id=campaign_id).execute({})  # type: ignore[arg-type]
    second = RevoxLaunchCampaignOperator(task_id="b", campaign_id=campaign_id).execute({})  # type: ignore[arg-type]
    assert (first["launched"], first["already_started"]) == (3, 0)
    assert (second["launched"], second["already_started"]) == (0, 3)
    assert revox_simulator.stats()["by_endpoint"]["POST /campaigns/{id}/launch-calls"] == 1


def answered(sim: SimulatorHandle, endpoint: str) -> int:
    """Requests to ``endpoint`` the simulator has answered, once a delayed one is answered too."""
    for _ in range(200):  # a slow fault's delay is a few seconds: wait for its answer, not a time
        count = sim.stats()["by_endpoint"].get(endpoint, 0)
        if count:
            return int(count)
        time.sleep(0.05)
    return 0


LAUNCH = "POST /campaigns/{id}/launch-calls"


def test_execution_timeout_while_the_launch_is_unanswered_cancels_the_campaign(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # The rows are read, then the launch's answer is held past the task's execution_timeout:
    # Airflow ends the task (and calls on_kill); the campaign must not go on dialling alone.
    campaign_id, _ = new_campaign(3)
    revox_simulator.faults.script(campaign_id, ["ok", "slow:3"])
    ti = run_launch(run_dag, "launch_timeout", campaign_id, execution_timeout=timedelta(seconds=1))

    assert ti.state == "failed"
    assert revox_simulator.engine.campaigns.campaign(campaign_id).cancelled
    assert revox_simulator.stats()["by_endpoint"]["POST /campaigns/{id}/cancel"] == 1
    out = capsys.readouterr().out
    assert (
        f"Campaign {campaign_id} cancelled because the task ran past its execution_timeout "
        "(cancel_on_timeout)" in out
    )
    # The held launch reaches a cancelled campaign: refused, no row dialled.
    assert answered(revox_simulator, LAUNCH) == 1
    assert revox_simulator.stats()["by_status"]["409"] == 1
    assert statuses(revox_simulator, campaign_id) == ["cancelled"] * 3


def test_without_cancel_on_timeout_execution_timeout_leaves_the_campaign_and_says_so(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # cancel_on_kill stays on: the on_kill Airflow calls after the timeout leaves the decision to
    # cancel_on_timeout.
    campaign_id, _ = new_campaign(3)
    revox_simulator.faults.script(campaign_id, ["ok", "slow:2"])
    ti = run_launch(
        run_dag, "launch_timeout_kept", campaign_id, execution_timeout=timedelta(seconds=1),
        cancel_on_timeout=False,
    )  # fmt: skip

    assert ti.state == "failed"
    assert not revox_simulator.engine.campaigns.campaign(campaign_id).cancelled
    assert "POST /campaigns/{id}/cancel" not in revox_simulator.stats()["by_endpoint"]
    assert (
        f"Campaign {campaign_id}: the task ran past its execution_timeout; the campaign is left as "
        "it is (cancel_on_timeout=False)" in capsys.readouterr().out
    )
    assert answered(revox_simulator, LAUNCH) == 1
    assert "not_launched" not in statuses(revox_simulator, campaign_id)


def test_a_statuses_filter_that_would_dial_rows_again_is_refused_when_the_dag_is_parsed() -> None:
    with pytest.raises(ValueError, match=r"launch: filters\['statuses'\] may only be \['not_launched'\]"):
        RevoxLaunchCampaignOperator(task_id="launch", campaign_id="c", filters={"statuses": ["completed"]})
    RevoxLaunchCampaignOperator(task_id="launch", campaign_id="c", filters={"statuses": ["not_launched"]})
