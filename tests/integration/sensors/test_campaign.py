"""RevoxCampaignSensor and the launch operator through real Airflow and real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.operators.revox import RevoxLaunchCampaignOperator
from airflow_provider_revox.testing import ALWAYS_OPEN_RETRY_CONFIG, SimulatorHandle
from airflow_provider_revox.triggers.revox import RevoxCampaignTrigger

DAG = """
import pendulum
from datetime import timedelta
from airflow.sdk import dag
from airflow_provider_revox.sensors.revox import RevoxCampaignSensor

@dag(dag_id="campaign_wait", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    RevoxCampaignSensor(task_id="wait", campaign_id="{campaign_id}", retries=2,
        retry_delay=timedelta(0), **{{"poke_interval": 1, **{kwargs}}})

build()
"""
MODES = {"poke": {"mode": "poke"}, "deferrable": {"deferrable": True}}
GET_CAMPAIGN = "GET /campaigns/{id}"


def campaign(size: int, *, launch: bool = True) -> str:
    contacts = [
        {"to_phone_number": f"+336123456{i:02d}", "prompt_variables": {"n": str(i)}} for i in range(size)
    ]
    with RevoxHook() as hook:
        created = hook.create_campaign(
            name="Wait",
            assistant_id="asst_demo",
            contacts=contacts,
            call_retry_config=ALWAYS_OPEN_RETRY_CONFIG,
            max_concurrent_calls=size,
        )
        if launch:
            hook.launch_campaign(created.id)
    return created.id


def end_campaign(sim: SimulatorHandle, campaign_id: str) -> None:
    deadline = time.monotonic() + 120
    while sim.stats()["by_endpoint"].get("GET /campaigns/{id}", 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    ends = [sim.engine.terminal_at(i) for i in sim.engine.campaigns.campaign(campaign_id).call_ids]
    sim.clock.set(max(end for end in ends if end is not None))


def wait(run_dag: Callable[..., Any], campaign_id: str, **kwargs: Any) -> Any:
    run = run_dag(DAG.format(campaign_id=campaign_id, kwargs=kwargs), "campaign_wait")
    return next(ti for ti in run.get_task_instances() if ti.task_id == "wait")


@pytest.mark.parametrize("mode", list(MODES))
def test_succeeds_when_completed_with_one_get_per_poll(
    mode: str, revox_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    campaign_id = campaign(12)
    revox_simulator.reset_stats()
    # The manual clock stands still until the sensor has looked three times, then jumps to the end.
    finish = threading.Thread(target=end_campaign, args=(revox_simulator, campaign_id), daemon=True)
    finish.start()
    ti = wait(run_dag, campaign_id, **MODES[mode])
    assert ti.state == "success"
    summary = ti.xcom_pull(task_ids="wait")
    assert summary["campaign_id"] == campaign_id and summary["status"] == "completed"
    assert summary["is_cancelled"] is False
    rows = summary["row_stats"]
    assert rows["total"] == 12 and rows["completed"] + rows["failed"] + rows["skipped"] == 12
    assert summary["funnel_stats"]["total_leads"] == 12
    assert summary["statistics"]["funnel"]["called"]["imported_rows"] == 12
    assert "leads" not in summary["statistics"]
    endpoints = revox_simulator.stats()["by_endpoint"]
    # However many orders: one GET of the campaign per poll, the statistics once, nothing else.
    assert set(endpoints) == {"GET /campaigns/{id}", "GET /campaigns/{id}/statistics"}, endpoints
    assert endpoints["GET /campaigns/{id}/statistics"] == 1
    assert 4 <= endpoints["GET /campaigns/{id}"] <= 30


@pytest.mark.parametrize("mode", list(MODES))
def test_fails_at_once_when_cancelled(
    mode: str, revox_fast_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    campaign_id = campaign(3)
    with RevoxHook() as hook:
        assert hook.cancel_campaign(campaign_id)
    ti = wait(run_dag, campaign_id, **MODES[mode])
    assert ti.state == "failed" and ti.try_number == 1  # no retries spent on a cancelled campaign


@pytest.mark.parametrize("mode", list(MODES))
def test_cancelled_is_skipped_with_soft_fail(
    mode: str, revox_fast_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    campaign_id = campaign(2, launch=False)
    with RevoxHook() as hook:
        assert hook.cancel_campaign(campaign_id)
    assert wait(run_dag, campaign_id, soft_fail=True, **MODES[mode]).state == "skipped"


def test_unknown_campaign_fails(revox_fast_simulator: SimulatorHandle, run_dag: Callable[..., Any]) -> None:
    ti = wait(run_dag, "cmp_nobody", deferrable=True)
    assert ti.state == "failed"


def test_sensor_rejects_a_malformed_event() -> None:
    from airflow.exceptions import AirflowException

    from airflow_provider_revox.sensors.revox import RevoxCampaignSensor

    sensor = RevoxCampaignSensor(task_id="wait", campaign_id="cmp_1")
    for event in (None, {"status": "bogus"}, {"status": "success", "summary": {"campaign_id": "cmp_2"}}):
        with pytest.raises(AirflowException):
            sensor.execute_complete({}, event)  # type: ignore[arg-type]


@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_launch_on_kill_cancels_the_campaign(revox_simulator: SimulatorHandle, cancel_on_kill: bool) -> None:
    campaign_id = campaign(3, launch=False)
    operator = RevoxLaunchCampaignOperator(
        task_id="launch", campaign_id=campaign_id, cancel_on_kill=cancel_on_kill
    )
    result = operator.execute({})  # type: ignore[arg-type]
    assert result["campaign_id"] == campaign_id and result["launched"] == 3
    operator.on_kill()
    with RevoxHook() as hook:
        assert hook.get_campaign(campaign_id).is_cancelled is cancel_on_kill
    endpoints = revox_simulator.stats()["by_endpoint"]
    assert endpoints.get("POST /campaigns/{id}/cancel", 0) == (1 if cancel_on_kill else 0)


LAUNCH_DAG = """
import pendulum
from datetime import timedelta
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxLaunchCampaignOperator

@dag(dag_id="campaign_launch", schedule=None, start_date=pendulum.datetime(2025, 1, 1), catchup=False)
def build():
    RevoxLaunchCampaignOperator(task_id="launch", campaign_id="{campaign_id}", retries=1,
                                retry_delay=timedelta(0))

build()
"""


def test_launch_after_a_lost_answer_reads_the_rows_and_does_not_launch_again(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    # The rows show the launch happened: the task succeeds on its first try, launching nothing more.
    campaign_id = campaign(3, launch=False)
    revox_simulator.faults.script(campaign_id, ["ok", "drop_after_commit"])
    run = run_dag(LAUNCH_DAG.replace("{campaign_id}", campaign_id), "campaign_launch")
    [ti] = run.get_task_instances()
    assert ti.state == "success" and ti.try_number == 1
    summary = ti.xcom_pull(task_ids="launch")
    assert (summary["campaign_id"], summary["launched"], summary["skipped"]) == (campaign_id, 3, None)
    assert revox_simulator.stats()["by_endpoint"]["POST /campaigns/{id}/launch-calls"] == 1


def test_a_deferred_wait_does_not_repeat_the_sensors_look(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sensor looks once, then defers: the trigger first sleeps until the sensor's next look was
    # due (at most one poke_interval), not polling straight away (which cost a second GET on every
    # start of the wait). Checked as an order of events, whatever the machine's speed.
    campaign_id = campaign(2)
    revox_simulator.reset_stats()
    pauses: list[tuple[float, int]] = []
    asleep = RevoxCampaignTrigger.pause

    async def pause(seconds: float) -> None:
        pauses.append((seconds, revox_simulator.stats()["by_endpoint"].get(GET_CAMPAIGN, 0)))
        await asleep(seconds)

    monkeypatch.setattr(RevoxCampaignTrigger, "pause", staticmethod(pause))

    def cancel_after_two_looks() -> None:
        deadline = time.monotonic() + 120
        while revox_simulator.stats()["by_endpoint"].get(GET_CAMPAIGN, 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        with RevoxHook() as hook:
            hook.cancel_campaign(campaign_id)

    watcher = threading.Thread(target=cancel_after_two_looks, daemon=True)
    watcher.start()
    ti = wait(run_dag, campaign_id, deferrable=True, poke_interval=3)
    watcher.join(timeout=10)
    assert ti.state == "failed"
    # The trigger's first act is a sleep, with only the sensor's look made: then it polls.
    (first, gets_before), *_ = pauses
    assert gets_before == 1
    assert 0 < first <= 3
    assert revox_simulator.stats()["by_endpoint"][GET_CAMPAIGN] >= 2
