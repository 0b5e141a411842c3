"""The example DAG revox_campaign_from_table end to end: real Airflow, real HTTP, a fast simulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_provider_revox.testing import SimulatorHandle
from tests.support.paths import ROOT

EXAMPLE = ROOT / "example_dags" / "revox_campaign_from_table.py"


def test_campaign_from_table_runs_end_to_end(
    revox_fast_simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        "to_phone_number,first_name,appointment\n"
        "+33612345601,Ana,Monday 10:00\n"
        "+33612345602,Ben,Tuesday 11:00\n"
        "not-a-number,Cy,Friday 9:00\n"
        "+12125550123,Dee,Friday 15:00\n"
    )
    conf = {
        "contacts_path": contacts.as_uri(),
        "assistant_id": "asst_demo",
        "destination": (tmp_path / "export").as_uri(),
    }
    run = run_dag(EXAMPLE.read_text(), "revox_campaign_from_table", conf=conf)
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    states = {task_id: ti.state for task_id, ti in tis.items()}
    assert states == dict.fromkeys(states, "success"), states
    created = tis["create_campaign"].xcom_pull(task_ids="create_campaign")
    assert created["contacts"] == 3 and created["rejected"] == 1
    rejects = [
        json.loads(line) for line in (tmp_path / "contacts.csv.rejects.jsonl").read_text().splitlines()
    ]
    assert [r["row"] for r in rejects] == [3] and "not-a-number" in json.dumps(rejects[0]["input"])
    assert revox_fast_simulator.stats()["campaigns"] == 1
    summary = tis["wait_for_campaign"].xcom_pull(task_ids="wait_for_campaign")
    assert summary["campaign_id"] == created["campaign_id"] and summary["status"] == "completed"
    assert (
        summary["row_stats"]["total"] == 3 and summary["statistics"]["funnel"]["called"]["imported_rows"] == 3
    )
    counts = tis["read_back"].xcom_pull(task_ids="read_back")
    assert counts["structured_output.parquet"] == 3
