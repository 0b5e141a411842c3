"""Create a Revox campaign, show a person what it would dial, and launch it only once they approve.

Nothing is dialled when the campaign is created. A preview task reads what the create task
kept and rejected and the campaign's rows, and writes it as the approval's body: contacts to
call, rejected or skipped rows by reason, a sample of rows (numbers masked), and the calls and
attempts the launch may make. ``ApprovalOperator`` (Airflow's human-in-the-loop operators, in
``apache-airflow-providers-standard``) then waits for a person in the Airflow UI ("Required
actions"): "Approve" launches the campaign, "Reject", or no answer within a day, skips the
launch and the wait. Runs on Airflow 3.2 and later with a scheduler and a triggerer; under
``dag.test()`` it needs Airflow 3.3, whose ``dag.test()`` waits for the answer (3.2's runs the
approval's trigger in-process, where it cannot read the answer, and the approval fails)::

    airflow dags trigger revox_campaign_with_approval --conf '{
        "contacts_path": "s3://bucket/contacts.csv", "assistant_id": "asst_..."}'
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_revox.operators.revox import RevoxCreateCampaignOperator, RevoxLaunchCampaignOperator
from airflow_provider_revox.sensors.revox import RevoxCampaignSensor

try:  # Airflow's human-in-the-loop operators: apache-airflow-providers-standard 1.5 and later
    from airflow.providers.standard.operators.hitl import ApprovalOperator
except ImportError:  # pragma: no cover - an older standard provider: the DAG still loads
    ApprovalOperator = None

#: Retries at most twice in a window open all week: a demo that runs whatever the weekday.
RETRIES = {
    "calling_windows": [
        {"calling_window_start_time": "00:00", "calling_window_end_time": "23:59", "retry_delay_seconds": 600}
    ],
    "allowed_days": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    "max_retry_attempts": 2,
    "call_twice_in_a_row": False,
}
CAMPAIGN_ID = "{{ ti.xcom_pull(task_ids='create_campaign')['campaign_id'] }}"
#: Rows shown to the approver.
SAMPLE_ROWS = 5


def masked(number: str) -> str:
    """``+33•••••••78``: enough to recognise a list, not to dial anyone."""
    return number[:3] + "•" * max(len(number) - 5, 0) + number[-2:] if len(number) > 5 else "•" * len(number)


@dag(
    dag_id="revox_campaign_with_approval",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"contacts_path": "file:///tmp/revox-contacts.csv", "assistant_id": "asst_demo"},
    tags=["revox", "example"],
)
def revox_campaign_with_approval() -> None:
    """Create -> preview -> a person approves -> launch -> wait."""
    create = RevoxCreateCampaignOperator(
        task_id="create_campaign",
        name="Renewal reminders {{ ds }}",
        assistant_id="{{ params.assistant_id }}",
        contacts_path="{{ params.contacts_path }}",
        max_rejected_rows=50,
        call_retry_config=RETRIES,
    )

    @task
    def preview(created: dict[str, Any]) -> dict[str, Any]:
        """What the launch would do: counts by reason, a sample of rows, the calls it may make."""
        from airflow.sdk import ObjectStoragePath

        from airflow_provider_revox.hooks.revox import RevoxHook

        with RevoxHook() as hook:
            rows = hook.get_campaign_rows(created["campaign_id"])
        waiting = [row for row in rows if row.call is not None and row.call.status == "not_launched"]
        reasons: Counter[str] = Counter()
        for reason, count in (created.get("skipped_by_reason") or {}).items():
            reasons[f"skipped: {reason}"] += int(count)
        if created.get("rejects_path"):
            with ObjectStoragePath(created["rejects_path"]).open("r") as lines:
                for line in lines:
                    reasons[f"rejected: {json.loads(line)['reason'].split(':')[0]}"] += 1
        sample = [
            {"row": row.row_index, "phone": masked(row.phone_number), "variables": sorted(row.input_data)}
            for row in sorted(rows, key=lambda row: row.row_index)[:SAMPLE_ROWS]
        ]
        attempts = len(waiting) * RETRIES["max_retry_attempts"]
        lines_md = [
            f"**{len(waiting)} contacts** will be called (campaign `{created['campaign_id']}`): "
            f"{len(waiting)} call orders, at most {attempts} dial attempts.",
            "",
            "| left out | rows |",
            "| --- | --- |",
            *(f"| {reason} | {count} |" for reason, count in reasons.most_common()),
            "",
            "| row | phone | prompt variables |",
            "| --- | --- | --- |",
            *(f"| {s['row']} | {s['phone']} | {', '.join(s['variables'])} |" for s in sample),
        ]
        return {
            "campaign_id": created["campaign_id"],
            "calls": len(waiting),
            "max_attempts": attempts,
            "left_out": dict(reasons),
            "sample": sample,
            "markdown": "\n".join(lines_md),
        }

    shown = preview(create.output)
    launch = RevoxLaunchCampaignOperator(task_id="launch_campaign", campaign_id=CAMPAIGN_ID)
    wait = RevoxCampaignSensor(task_id="wait_for_campaign", campaign_id=CAMPAIGN_ID, deferrable=True)
    if ApprovalOperator is not None:
        approve = ApprovalOperator(
            task_id="approve_launch",
            subject="Launch campaign {{ ti.xcom_pull(task_ids='preview')['campaign_id'] }}?",
            body="{{ ti.xcom_pull(task_ids='preview')['markdown'] }}",
            defaults="Reject",  # no answer within the timeout: nobody is called
            response_timeout=timedelta(days=1),
        )
        shown >> approve >> launch >> wait
    else:

        @task
        def approve_launch() -> None:
            """Stands in for the approval where the standard provider has no HITL operators."""
            raise RuntimeError(
                "revox_campaign_with_approval needs apache-airflow-providers-standard with "
                "airflow.providers.standard.operators.hitl; nothing is launched"
            )

        shown >> approve_launch() >> launch >> wait


revox_campaign_with_approval()
