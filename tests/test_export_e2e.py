"""The storage export through a real Airflow (``dag.test()``): what readers, XCom and logs see."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from tests.test_operators import GOOD_OUTPUT, dag_source, finish, place, task_state
from tests.test_staging import FailingMemoryFileSystem, failing_store, reader_view

__all__ = ["failing_store"]  # a fixture shared with the staging tests

pytestmark = pytest.mark.airflow


def export_source(dag_id: str, ids: Any, destination: str, **options: Any) -> str:
    extra = "".join(f", {name}={value!r}" for name, value in options.items())
    return dag_source(
        dag_id,
        f"""
        RevoxCallsToStorageOperator(
            task_id="export", call_ids={ids!r}, destination={destination!r}, sleep=lambda seconds: None{extra}
        )
        """,
    )


def test_an_upload_failing_midway_fails_the_task_and_readers_keep_waiting(
    revox_conn: Any, run_dag: Callable[..., Any], failing_store: FailingMemoryFileSystem
) -> None:
    sim = revox_conn
    first, second = place(sim, GOOD_OUTPUT), place(sim, {"confirmed": False})
    finish(sim, first, second)
    destination = "memory://bucket/campaign"
    ok = run_dag(export_source("revox_publish", [first, second], destination), "revox_publish")
    assert task_state(ok, "export") == "success"
    before = reader_view(ObjectStoragePath(destination))
    assert before is not None
    assert sorted(before) == sorted(
        ["transcripts.jsonl", "structured_output.jsonl", f"calls/{first}.json", f"calls/{second}.json"]
    )

    FailingMemoryFileSystem.puts = 0
    FailingMemoryFileSystem.fail_on = 3
    rerun = run_dag(export_source("revox_publish", [second, first], destination), "revox_publish")
    assert task_state(rerun, "export") == "failed"
    assert FailingMemoryFileSystem.puts == 3
    # Two new files went in beside the old ones; a reader waiting for _SUCCESS never takes them.
    transcripts = failing_store.cat_file("/bucket/campaign/transcripts.jsonl")
    assert transcripts != before["transcripts.jsonl"]
    assert reader_view(ObjectStoragePath(destination)) is None

    FailingMemoryFileSystem.fail_on = None
    again = run_dag(export_source("revox_publish", [second, first], destination), "revox_publish")
    assert task_state(again, "export") == "success"
    after = reader_view(ObjectStoragePath(destination))
    assert after is not None and after["transcripts.jsonl"] == transcripts


def test_a_rerun_with_fewer_ids_publishes_exactly_what_its_manifest_lists(
    revox_conn: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    sim = revox_conn
    ids = [place(sim, GOOD_OUTPUT), place(sim, {"confirmed": False}), place(sim, GOOD_OUTPUT)]
    finish(sim, *ids)
    destination = str(tmp_path / "out")
    first = run_dag(export_source("revox_fewer", ids, destination, include_recordings=True), "revox_fewer")
    assert task_state(first, "export") == "success"
    assert sorted(p.name for p in (tmp_path / "out" / "calls").iterdir()) == sorted(f"{c}.json" for c in ids)
    assert sorted(p.name for p in (tmp_path / "out" / "recordings").iterdir()) == sorted(ids)

    rerun = run_dag(export_source("revox_fewer", ids[:1], destination), "revox_fewer")
    assert task_state(rerun, "export") == "success"
    view = reader_view(ObjectStoragePath(destination))
    assert view is not None
    assert sorted(view) == sorted(["transcripts.jsonl", "structured_output.jsonl", f"calls/{ids[0]}.json"])
    on_disk = sorted(
        str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()
    )
    assert on_disk == sorted([*view, "_manifest.json", "_SUCCESS"])
