"""The storage export through a real Airflow (``dag.test()``): what readers, XCom and logs see."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_revox.export import read_loads
from tests.integration.operators.test_results_and_export import (
    GOOD_OUTPUT,
    dag_source,
    export_dag,
    place,
    task_logs,
    task_state,
    xcoms,
)
from tests.unit.export.test_staging import (
    FailingMemoryFileSystem,
    failing_store,
    load_folders,
    local_tree,
    only_load,
    reader_view,
)

__all__ = ["failing_store", "task_logs"]  # fixtures shared with the other export tests

pytestmark = pytest.mark.airflow


def export_source(dag_id: str, ids: Any, destination: str, **options: Any) -> str:
    return export_dag(dag_id, call_ids=ids, destination=destination, **options)


def stored(store: FailingMemoryFileSystem) -> dict[str, bytes]:
    """Every object of the in-memory store, as a folder-listing reader finds them."""
    return {path: store.cat_file(path) for path in sorted(store.store)}


def test_an_upload_failing_midway_fails_the_task_and_leaves_every_earlier_load_as_it_was(
    revox_conn: Any, run_dag: Callable[..., Any], failing_store: FailingMemoryFileSystem
) -> None:
    sim = revox_conn
    first, second = place(sim, GOOD_OUTPUT), place(sim, {"confirmed": False})
    sim.finish(first, second)
    destination = "memory://bucket/campaign"
    base = ObjectStoragePath(destination)
    ok = run_dag(export_source("revox_publish", [first, second], destination), "revox_publish")
    assert task_state(ok, "export") == "success"
    (earlier,) = read_loads(base)
    before = reader_view(base / earlier["folder"])
    assert before is not None
    assert sorted(before) == sorted(
        ["transcripts.jsonl", "structured_output.jsonl", f"calls/{first}.json", f"calls/{second}.json"]
    )
    objects = stored(failing_store)

    FailingMemoryFileSystem.puts = 0
    FailingMemoryFileSystem.fail_on = 3
    failed = run_dag(export_source("revox_publish", [second, first], destination), "revox_publish")
    assert task_state(failed, "export") == "failed"
    assert FailingMemoryFileSystem.puts == 3
    # The two objects it had put are taken back: a reader listing the folders finds what was there.
    assert stored(failing_store) == objects
    assert read_loads(base) == [earlier]

    FailingMemoryFileSystem.fail_on = None
    again = run_dag(export_source("revox_publish", [second, first], destination), "revox_publish")
    assert task_state(again, "export") == "success"
    kept, added = read_loads(base)
    assert kept == earlier and reader_view(base / earlier["folder"]) == before
    after = reader_view(base / added["folder"])
    assert after is not None
    rows = [json.loads(line)["call_id"] for line in after["structured_output.jsonl"].splitlines()]
    assert rows == [second, first]
    assert added["run_id"] == again.run_id and added["calls"] == 2


def test_a_rerun_of_the_same_dag_run_with_fewer_ids_replaces_its_own_load_only(
    revox_conn: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    sim = revox_conn
    ids = [place(sim, GOOD_OUTPUT), place(sim, {"confirmed": False}), place(sim, GOOD_OUTPUT)]
    sim.finish(*ids)
    destination = str(tmp_path / "out")
    other = run_dag(export_source("revox_fewer_other", ids[1:], destination), "revox_fewer_other")
    assert task_state(other, "export") == "success"
    (other_load,) = load_folders(tmp_path / "out")
    other_files = local_tree(other_load)
    at = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    source = export_source("revox_fewer", ids, destination, include_recordings=True)
    first = run_dag(source, "revox_fewer", logical_date=at)
    assert task_state(first, "export") == "success"
    _, own = load_folders(tmp_path / "out")
    assert sorted(p.name for p in (own / "calls").iterdir()) == sorted(f"{c}.json" for c in ids)
    assert sorted(p.name for p in (own / "recordings").iterdir()) == sorted(ids)

    rerun = run_dag(export_source("revox_fewer", ids[:1], destination), "revox_fewer", logical_date=at)
    assert task_state(rerun, "export") == "success"
    assert rerun.run_id == first.run_id  # the same DAG run, run again
    assert load_folders(tmp_path / "out") == [other_load, own]  # replaced in place, listed once
    view = reader_view(ObjectStoragePath(str(own)))
    assert view is not None
    assert sorted(view) == sorted(["transcripts.jsonl", "structured_output.jsonl", f"calls/{ids[0]}.json"])
    assert sorted(local_tree(own)) == sorted([*view, "_manifest.json", "_SUCCESS"])
    assert local_tree(other_load) == other_files  # another DAG's load is never touched
    assert not (tmp_path / "out" / ".revox-staging").exists()


def test_the_export_returns_a_small_result_and_takes_ids_from_a_batch_sensor_s_result(
    revox_conn: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    sim = revox_conn
    ids = [place(sim, GOOD_OUTPUT) for _ in range(12)]
    sim.finish(*ids)
    destination = f"file://{tmp_path}/out"
    source = dag_source(
        "revox_small_result",
        f"""
        from airflow.sdk import task

        @task
        def settled():
            # The shape RevoxCallsSensor returns.
            return {{"total": 12, "counts": {{"completed": 10, "failed": 2}}, "completed": {ids[:10]!r},
                    "failed": {ids[10:]!r}, "completed_ratio": 0.833}}

        RevoxCallsToStorageOperator(task_id="export", call_ids=settled(), destination={destination!r})
        """,
    )
    # The turns the scenario produced, counted on the simulator's raw answers: per attempt, the
    # post-call transcript when there is one, else the live one.
    turns = sum(
        len(attempt["post_call_transcript"] or attempt["transcript"])
        for call_id in ids
        for attempt in sim.get_call(call_id)["call_attempts"]
    )
    dag_run = run_dag(source, "revox_small_result")
    assert task_state(dag_run, "export") == "success"
    result = xcoms(dag_run, "export")["return_value"]
    load = result["load"]
    assert load.startswith("load=manual__") and load == only_load(tmp_path / "out").name
    assert result == {
        "destination": destination,
        "load": load,
        "calls": 12,
        "files": 14,
        "recordings": 0,
        "rows": {"transcripts": turns, "structured_output": 12},
        "tables": {
            "transcripts": f"{destination}/{load}/transcripts.jsonl",
            "structured_output": f"{destination}/{load}/structured_output.jsonl",
        },
        "manifest": f"{destination}/{load}/_manifest.json",
        "loads": f"{destination}/_loads.jsonl",
    }
    assert turns > 12  # every order reached a person: a conversation, not one turn each
    assert not any(call_id in str(result) for call_id in ids)  # nothing per call in XCom
    view = reader_view(ObjectStoragePath(f"{destination}/{load}"))
    assert view is not None
    assert [json.loads(line)["call_id"] for line in view["structured_output.jsonl"].splitlines()] == ids
    assert len(view["transcripts.jsonl"].splitlines()) == turns


class FixedApi(ThreadingHTTPServer):
    """A loopback API: ``GET /api/call/<any id>`` answers one fixed order, anything else 404."""

    def __init__(self, order: dict[str, Any]) -> None:
        body = json.dumps(order).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path.startswith("/api/call/")
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if found else 2))
                self.end_headers()
                self.wfile.write(body if found else b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"

    def connection_json(self, api_key: str) -> str:
        return json.dumps(
            {"conn_type": "revox", "host": self.base_url, "password": api_key, "extra": {"max_retries": 0}}
        )

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def test_a_recording_that_cannot_be_downloaded_fails_the_export_naming_it(
    revox_conn: Any,
    run_dag: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    task_logs: Callable[[], str],
) -> None:
    sim = revox_conn
    call_id = place(sim, GOOD_OUTPUT)
    sim.finish(call_id)
    order = sim.get_call(call_id)
    gone = "/gone/rec.wav?sig=presigned-secret-0001"
    for attempt in order["call_attempts"]:
        attempt["recording_url"] = gone if attempt["recording_url"] else None
    api = FixedApi(order)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", api.connection_json(sim.api_key))
        source = export_source("revox_recording_gone", [call_id], str(tmp_path), include_recordings=True)
        task_logs()
        dag_run = run_dag(source, "revox_recording_gone")
    finally:
        api.close()
    assert task_state(dag_run, "export") == "failed"
    log_text = task_logs()
    assert f"Revox call {call_id!r}: recording of attempt " in log_text
    assert "/gone/rec.wav?sig=***) could not be downloaded" in log_text
    assert "presigned-secret-0001" not in log_text
    assert reader_view(ObjectStoragePath(str(tmp_path))) is None
    assert not any(tmp_path.rglob("*.json"))


def test_export_never_writes_another_order_under_the_id_asked_for(
    revox_conn: Any, run_dag: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = revox_conn
    other = place(sim, GOOD_OUTPUT)
    sim.finish(other)
    api = FixedApi(sim.get_call(other))  # whatever id is asked for
    try:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", api.connection_json(sim.api_key))
        asked = "call_A"
        dag_run = run_dag(export_source("revox_wrong_order", [asked], str(tmp_path)), "revox_wrong_order")
    finally:
        api.close()
    written = tmp_path / "calls" / f"{asked}.json"
    assert not written.exists() or json.loads(written.read_text())["id"] == asked
    assert task_state(dag_run, "export") == "failed"
    assert reader_view(ObjectStoragePath(str(tmp_path))) is None
