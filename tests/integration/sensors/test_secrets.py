"""No secret leaves a wait: a server echoing the connection's key, or a credential in a URL, into
an order's fields must not reach XCom, the metadata database, log files or the task's output."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_revox.testing import SimulatorHandle
from tests.support.xcom import stored_xcom
from tests.unit.export.test_staging import only_load

pytestmark = pytest.mark.airflow

DAG = """
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.sensors.revox import RevoxCallSensor, RevoxCallsSensor

@dag(dag_id="wait_secrets", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    RevoxCallSensor(task_id="poked", call_id="leak-poked", poke_interval=5)
    RevoxCallSensor(task_id="deferred", call_id="leak-deferred", poke_interval=5, deferrable=True)
    RevoxCallSensor(task_id="errored", call_id="leak-errored", poke_interval=5)
    RevoxCallsSensor(
        task_id="batch", call_ids=["leak-poked", "leak-errored"], poke_interval=5, min_completed_ratio=0.5
    )

build()
"""

PASSWORD = "hunter2-correct-horse"


def test_an_echoed_key_and_a_url_password_never_leave_a_wait(
    fast_simulator: SimulatorHandle,
    run_dag: Callable[..., Any],
    airflow_db: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = fast_simulator.api_key
    echoed = {"result": "human", "duration": 60, "end_reason": f"caller said {key}"}
    fast_simulator.place_scripted("leak-poked", [echoed], outcome=key)
    # Dialled once the deferred sensor has looked, so it really defers to its trigger.
    later = fast_simulator.clock.now() + timedelta(minutes=30)
    fast_simulator.place_scripted("leak-deferred", [echoed], outcome=key, scheduled_at=later.isoformat())
    # The simulator only dials documented dial errors; the free text rides on end_reason.
    reason = f"webhook https://crm.example/in?password={PASSWORD}&region=eu failed for {key}"
    failed = {"dial_error": "busy", "end_reason": reason}
    fast_simulator.place_scripted("leak-errored", [failed], final_status="errored")

    dag_run = run_dag(DAG, "wait_secrets")

    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"poked": "success", "deferred": "success", "errored": "failed", "batch": "success"}
    values = {task_id: stored_xcom("wait_secrets", task_id) for task_id in ("poked", "deferred")}
    for value in values.values():
        assert '"outcome": "***"' in value
        assert "caller said ***" in value
    output = capfd.readouterr()
    written = [output.out, output.err, caplog.text]
    written += [path.read_bytes().decode("latin-1") for path in airflow_db.rglob("*") if path.is_file()]
    # The task's log (printed by dag.test) names the failure, masked.
    assert "end_reason=webhook https://crm.example/in?password=***&region=eu failed for ***" in output.out
    for text in written:
        assert key not in text
        assert PASSWORD not in text


AUTH_TOKEN = "tok-planted-no-colon-7781"

GAPS_DAG = """
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator
from airflow_provider_revox.sensors.revox import RevoxCallSensor

@dag(dag_id="wait_secret_gaps", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"))
def build():
    wait = RevoxCallSensor(task_id="wait", call_id="leak-no-colon", poke_interval=5)
    wait >> RevoxCallsToStorageOperator(
        task_id="export", call_ids=wait.output, destination=%r, tables=["structured_output", "attempts"]
    )

build()
"""


def test_a_credential_without_a_colon_never_reaches_xcom_or_the_export(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any], airflow_db: Path, tmp_path: Path
) -> None:
    reason = (
        f"webhook refused: Authorization token {AUTH_TOKEN} (see https://crm.example/cb?session={PASSWORD})"
    )
    fast_simulator.place_scripted(
        "leak-no-colon", [{"result": "human", "duration": 60, "end_reason": reason}]
    )

    dag_run = run_dag(GAPS_DAG % str(tmp_path), "wait_secret_gaps")

    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"wait": "success", "export": "success"}
    summary_text = stored_xcom("wait_secret_gaps", "wait")
    assert "Authorization token ***" in summary_text and "session=***" in summary_text
    document = (only_load(tmp_path) / "calls" / "leak-no-colon.json").read_text()
    assert "Authorization token ***" in document and "session=***" in document
    attempts = (only_load(tmp_path) / "attempts.jsonl").read_text()
    assert "Authorization token ***" in attempts and "session=***" in attempts
    for text in (summary_text, document, attempts):
        assert AUTH_TOKEN not in text and PASSWORD not in text
