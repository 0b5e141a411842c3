"""RevoxCallsSensor's result stays small in XCom for a large batch, and the export reads the ids.

Through a real Airflow (``dag.test()``) against the simulator at 600x real time: 1,500 orders
with ``max_ids_in_xcom=100`` in poke, reschedule and deferrable mode; the XCom is read back from
the metadata database, the ids file is checked id by id, and a downstream export writes exactly
those calls. The error paths (no ``ids_path``, a missing or damaged file) fail with a named error
before any request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException

from airflow_provider_revox._internal.export.ids_file import (
    MAX_FAILED_IN_XCOM,
    encode_ids_file,
    ids_from_files,
)
from airflow_provider_revox._internal.waiting.batch import Fleet, settled_from_codes
from airflow_provider_revox._internal.waiting.ids import normalize_call_ids
from airflow_provider_revox.exceptions import RevoxConfigError, RevoxIdsFileError
from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator
from airflow_provider_revox.sensors.revox import RevoxCallsSensor
from airflow_provider_revox.testing import SimulatorHandle
from airflow_provider_revox.triggers.revox import RevoxCallsTrigger
from tests.integration.sensors.test_batch import (  # noqa: F401  (fixtures)
    DEAD_NUMBER,
    HUMAN,
    MODES,
    held,
    trigger_runs,
)
from tests.support.xcom import stored_xcom
from tests.unit.export.test_staging import only_load

ORDERS = 1500
FAILED = 125  # every twelfth
LIMIT = 100

DAG = """
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator
from airflow_provider_revox.sensors.revox import RevoxCallsSensor

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    wait = RevoxCallsSensor(
        task_id="wait", call_ids={call_ids!r}, ids_path={ids_path!r}, max_ids_in_xcom={limit},
        min_completed_ratio=0.9, **{kwargs}
    )
    if {export!r}:
        wait >> RevoxCallsToStorageOperator(
            task_id="export", call_ids=wait.output, destination={destination!r}, tables=["calls"]
        )

build()
"""

RUN_MODES = {**MODES, "reschedule": {"mode": "reschedule", "poke_interval": 15}}


def place_batch(sim: SimulatorHandle, prefix: str, hold: Callable[[str], str]) -> tuple[list[str], list[str]]:
    """1,500 orders, every twelfth failing; the first is held so a deferrable wait really defers."""
    completed: list[str] = []
    failed: list[str] = []
    for i in range(ORDERS):
        call_id = f"{prefix}-{i:04d}"
        if i % 12 == 5:
            sim.place_scripted(call_id, DEAD_NUMBER, final_status="errored")
            failed.append(call_id)
        else:
            sim.place_scripted(call_id, HUMAN)
            completed.append(call_id)
        if i == 0:
            hold(call_id)
    return completed, failed


@pytest.mark.airflow
@pytest.mark.parametrize("mode", sorted(RUN_MODES))
def test_a_large_batch_keeps_its_ids_in_a_file_and_the_export_reads_them(
    mode: str,
    fast_simulator: SimulatorHandle,
    run_dag: Callable[..., Any],
    airflow_db: Path,
    trigger_runs: list[RevoxCallsTrigger],  # noqa: F811
    held: Callable[[str], str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[dict[str, Any]] = []
    original = RevoxCallsTrigger._event

    def recording(self: RevoxCallsTrigger, *args: Any) -> Any:
        event = original(self, *args)
        events.append(event.payload)
        return event

    monkeypatch.setattr(RevoxCallsTrigger, "_event", recording)
    completed, failed = place_batch(fast_simulator, f"big-{mode}", held)
    ids = sorted([*completed, *failed])
    ids_file = tmp_path / "ids" / "run.json"
    ids_file.parent.mkdir()
    ids_file.write_text("an earlier run's file, replaced whole")
    export = mode == "deferrable"  # the export reads the file the same way whatever the mode
    dag_id = f"calls_xcom_{mode}"
    source = DAG.format(
        dag_id=dag_id,
        call_ids=ids,
        ids_path=f"file://{ids_file}",
        limit=LIMIT,
        kwargs=RUN_MODES[mode],
        export=export,
        destination=str(tmp_path / "export"),
    )

    dag_run = run_dag(source, dag_id)

    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == ({"wait": "success", "export": "success"} if export else {"wait": "success"})
    assert len(trigger_runs) == (1 if mode == "deferrable" else 0)
    # The XCom as stored: counts, the first hundred failed ids and the file, nothing per order.
    stored = stored_xcom(dag_id, "wait")
    assert len(stored) < 5000, len(stored)
    value = json.loads(stored)
    failed_sorted = [call_id for call_id in ids if call_id in set(failed)]
    assert value == {
        "total": ORDERS,
        "counts": {"completed": ORDERS - FAILED, "errored": FAILED},
        "completed_ratio": (ORDERS - FAILED) / ORDERS,
        "completed_count": ORDERS - FAILED,
        "failed_count": FAILED,
        "failed": failed_sorted[:MAX_FAILED_IN_XCOM],
        "ids_uri": f"file://{ids_file}",
        "ids_sha256": hashlib.sha256(ids_file.read_bytes()).hexdigest(),
    }
    # The file: every id exactly once, in the input's order, and nothing but ids and counts.
    written = json.loads(ids_file.read_bytes())
    assert set(written) == {"format", "total", "counts", "completed", "failed"}
    assert written["completed"] == [call_id for call_id in ids if call_id in set(completed)]
    assert written["failed"] == failed_sorted
    assert sorted(written["completed"] + written["failed"]) == ids
    assert fast_simulator.api_key not in ids_file.read_text()
    assert [path.name for path in ids_file.parent.iterdir()] == ["run.json"]  # no staging left
    if mode == "deferrable":
        # The trigger's event carries one character per order, not the lists.
        (event,) = events
        assert event["status"] == "success" and len(json.dumps(event)) < 2 * ORDERS
        assert "completed" not in event["result"] and "failed" not in event["result"]
    if export:
        summary = json.loads(stored_xcom(dag_id, "export"))
        assert summary["calls"] == ORDERS
        documents = sorted(path.stem for path in (only_load(tmp_path / "export") / "calls").iterdir())
        assert documents == ids


@pytest.mark.airflow
def test_without_ids_path_a_large_batch_is_refused_before_any_request(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    ids = [fast_simulator.place_scripted(f"nopath-{i}", HUMAN) for i in range(LIMIT + 1)]
    # Literal ids: refused when the DAG is parsed.
    with pytest.raises(
        RevoxConfigError, match=r"101 call orders are more than max_ids_in_xcom=100 and no ids_path"
    ):
        RevoxCallsSensor(task_id="wait", call_ids=ids, max_ids_in_xcom=LIMIT)
    # Ids from an upstream task: refused when the task starts, before any request.
    source = f"""
import pendulum
from airflow.sdk import dag, task
from airflow_provider_revox.sensors.revox import RevoxCallsSensor

@dag(dag_id="calls_xcom_nopath", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"))
def build():
    @task
    def placed():
        return {ids!r}

    RevoxCallsSensor(task_id="wait", call_ids=placed(), max_ids_in_xcom={LIMIT}, deferrable=True)

build()
"""
    fast_simulator.reset_stats()
    dag_run = run_dag(source, "calls_xcom_nopath")
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"placed": "success", "wait": "failed"}
    assert fast_simulator.stats()["by_endpoint"] == {}
    # None keeps every id in XCom, as before the limit existed.
    RevoxCallsSensor(task_id="wait", call_ids=ids, max_ids_in_xcom=None)


def small_result(tmp_path: Path, data: bytes, **changes: Any) -> dict[str, Any]:
    path = tmp_path / "ids.json"
    path.write_bytes(data)
    reference = {
        "total": 3,
        "counts": {"completed": 2, "errored": 1},
        "completed_ratio": 2 / 3,
        "completed_count": 2,
        "failed_count": 1,
        "failed": ["c-3"],
        "ids_uri": f"file://{path}",
        "ids_sha256": hashlib.sha256(data).hexdigest(),
    }
    return {**reference, **changes}


GOOD = encode_ids_file(
    {"total": 3, "counts": {"completed": 2, "errored": 1}, "completed": ["c-1", "c-2"], "failed": ["c-3"]}
)


@pytest.mark.parametrize(
    ("data", "changes", "problem"),
    [
        (GOOD, {"ids_uri": "file:///nowhere/revox/ids.json"}, "does not exist"),
        (GOOD, {"ids_sha256": "0" * 64}, "does not match the sensor's result"),
        (GOOD.replace(b"c-1", b"c-9"), {"ids_sha256": hashlib.sha256(GOOD).hexdigest()}, "does not match"),
        (b"{not json", {}, "is not JSON"),
        (b'{"completed": [], "failed": []}', {}, "is not a revox-call-ids/1 file"),
        (GOOD.replace(b'"failed":["c-3"]', b'"failed":"c-3"'), {}, "has no list of failed ids"),
        (GOOD, {"completed_count": 3}, "lists other counts"),
        (GOOD, {"ids_uri": 7}, "is not a URI"),
    ],
)
def test_the_export_refuses_a_missing_or_damaged_ids_file_before_any_request(
    revox_conn: SimulatorHandle, tmp_path: Path, data: bytes, changes: dict[str, Any], problem: str
) -> None:
    operator = RevoxCallsToStorageOperator(
        task_id="export", call_ids=small_result(tmp_path, data, **changes), destination=str(tmp_path / "out")
    )
    with pytest.raises(RevoxIdsFileError, match=problem):
        operator.execute({})  # type: ignore[arg-type]
    assert revox_conn.stats()["by_endpoint"] == {}
    assert not (tmp_path / "out").exists()


def test_the_export_reads_a_good_file_and_a_list_of_results(tmp_path: Path) -> None:
    result = small_result(tmp_path, GOOD)
    assert normalize_call_ids(ids_from_files([result, "c-4"])) == ["c-1", "c-2", "c-3", "c-4"]
    # Anything else reading a small result as ids would lose all but its first failed ids.
    with pytest.raises(RevoxConfigError, match="keeps its ids in the file"):
        normalize_call_ids(result)


def compact_event(ids: list[str], settled: dict[str, list[str]]) -> dict[str, Any]:
    return {"status": "success", "result": Fleet(ids, settled=settled).compact_result(), "message": "ok"}


def test_a_compact_event_is_read_back_to_the_same_lists() -> None:
    ids = ["c-1", "c-2", "c-3"]
    event = compact_event(ids, {"completed": ["c-1", "c-3"], "errored": ["c-2"]})
    assert event["result"]["codes"] == "010" and event["result"]["statuses"] == ["completed", "errored"]
    assert settled_from_codes(ids, event["result"]) == {"completed": ["c-1", "c-3"], "errored": ["c-2"]}
    sensor = RevoxCallsSensor(task_id="wait", call_ids=ids, min_completed_ratio=0.6)
    assert sensor.execute_complete({}, event) == {  # type: ignore[arg-type]
        "total": 3,
        "counts": {"completed": 2, "errored": 1},
        "completed": ["c-1", "c-3"],
        "failed": ["c-2"],
        "completed_ratio": 2 / 3,
    }


@pytest.mark.parametrize(
    "result",
    [
        {"statuses": ["completed"], "codes": "00"},  # another number of orders
        {"statuses": ["completed"], "codes": "001"},  # a code with no status
        {"statuses": ["completed"], "codes": "00-"},  # one still pending: not a success
        {"statuses": ["completed", "errored"], "codes": "011"},  # the ratio is not met
        {"statuses": "completed", "codes": "000"},
        {"statuses": ["completed"], "codes": 0},
    ],
)
def test_a_compact_event_that_does_not_check_out_fails_the_task(result: dict[str, Any]) -> None:
    sensor = RevoxCallsSensor(task_id="wait", call_ids=["c-1", "c-2", "c-3"], min_completed_ratio=0.6)
    with pytest.raises(AirflowException, match=r"^RevoxCallsTrigger sent a malformed success event"):
        sensor.execute_complete({}, {"status": "success", "result": result})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"max_ids_in_xcom": -1}, "max_ids_in_xcom must be a whole number"),
        ({"max_ids_in_xcom": 1.5}, "max_ids_in_xcom must be a whole number"),
        ({"max_ids_in_xcom": True}, "max_ids_in_xcom must be a whole number"),
        ({"max_ids_in_xcom": 0, "ids_path": "relative/ids.json"}, "must be absolute"),
        ({"max_ids_in_xcom": 0, "ids_path": "nowhere://bucket/ids.json"}, "not a usable URI"),
        ({"max_ids_in_xcom": 0, "ids_path": 7}, "must be a file URI or an ObjectStoragePath"),
    ],
)
def test_bad_result_settings_are_named(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(RevoxConfigError, match=problem):
        RevoxCallsSensor(task_id="wait", call_ids=["c-1"], **kwargs)._ids_target()
