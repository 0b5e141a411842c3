"""Pause, resume and cancel operators through real Airflow against the simulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.testing import SimulatorHandle

DAG = """
import pendulum
from airflow.sdk import dag, task
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.operators.revox import (
    RevoxCancelCampaignOperator, RevoxPauseCampaignOperator, RevoxResumeCampaignOperator,
)

@dag(dag_id="campaign_actions", schedule=None, start_date=pendulum.datetime(2025, 1, 1), catchup=False)
def build():
    @task
    def status(step: str) -> str:
        with RevoxHook() as hook:
            campaign = hook.get_campaign("{campaign_id}")
        return "cancelled" if campaign.is_cancelled else campaign.status

    pause = RevoxPauseCampaignOperator(task_id="pause", campaign_id="{campaign_id}")
    resume = RevoxResumeCampaignOperator(task_id="resume", campaign_id="{campaign_id}")
    cancel = RevoxCancelCampaignOperator(task_id="cancel", campaign_id="{campaign_id}")
    after_pause, after_resume, after_cancel = (
        status.override(task_id="after_pause")("pause"),
        status.override(task_id="after_resume")("resume"),
        status.override(task_id="after_cancel")("cancel"),
    )
    pause >> after_pause >> resume >> after_resume >> cancel >> after_cancel

build()
"""


def test_pause_resume_cancel(revox_simulator: SimulatorHandle, run_dag: Callable[..., Any]) -> None:
    contacts = [{"to_phone_number": "+33612345601", "prompt_variables": {}}]
    with RevoxHook() as hook:
        campaign = hook.create_campaign(name="Actions", assistant_id="asst_demo", contacts=contacts)
        hook.launch_campaign(campaign.id)
    run = run_dag(DAG.replace("{campaign_id}", campaign.id), "campaign_actions")
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert {ti.state for ti in tis.values()} == {"success"}
    seen = [tis[t].xcom_pull(task_ids=t) for t in ("after_pause", "after_resume", "after_cancel")]
    assert seen == ["paused", "running", "cancelled"]
    assert tis["cancel"].xcom_pull(task_ids="cancel") == {
        "campaign_id": campaign.id,
        "action": "cancel",
        "success": True,
    }
    endpoints = revox_simulator.stats()["by_endpoint"]
    assert [endpoints[f"POST /campaigns/{{id}}/{a}"] for a in ("pause", "resume", "cancel")] == [1, 1, 1]
