"""Call ids that are not safe file names are exported under a reversible encoded name, never
refused and never written outside the destination; through a real Airflow and real HTTP against
the simulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_revox._internal.export.names import call_id_of, document_name
from tests.integration.operators.test_results_and_export import export_dag, task_state, xcoms
from tests.unit.export.test_staging import only_load

UNSAFE_IDS = [
    "tenant/alpha/call-1",
    "../../escape",
    "..",
    "bell\x07and\ttab",
    "x" * 300,
    "~looks-encoded",
]


def test_unsafe_ids_get_reversible_names_and_safe_ones_keep_theirs() -> None:
    assert document_name("call_8f2a-01.B") == "call_8f2a-01.B"
    names = {call_id: document_name(call_id) for call_id in UNSAFE_IDS}
    assert len(set(names.values())) == len(UNSAFE_IDS)  # no two ids share a file
    for call_id, name in names.items():
        assert name != call_id and "/" not in name and not name.startswith(".")
        assert len(name.encode()) <= 200 and name.isprintable()
        # Reversible from the name alone, but for an id too long to encode (its row names it).
        assert call_id_of(name) == (None if len(call_id) == 300 else call_id)
    assert call_id_of("call_8f2a-01.B") == "call_8f2a-01.B"


@pytest.mark.airflow
def test_an_export_by_search_writes_ids_that_are_not_file_names_inside_the_destination(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    plain = simulator.place_scripted("plain-1", [{"result": "human", "duration": 40}])
    for call_id in UNSAFE_IDS:
        simulator.place_scripted(call_id, [{"result": "human", "duration": 40}])
    simulator.finish()
    destination = tmp_path / "out"
    source = export_dag(
        "revox_unsafe_ids",
        search={"assistant_ids": ["asst_test"]},
        destination=str(destination),
        tables=["transcripts", "structured_output", "calls", "attempts"],
        include_recordings=True,
    )
    dag_run = run_dag(source, "revox_unsafe_ids")
    assert task_state(dag_run, "export") == "success"
    assert xcoms(dag_run, "export")["return_value"]["calls"] == len(UNSAFE_IDS) + 1

    # Nothing outside the destination: tmp_path holds only it (and Airflow's own nothing).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    written = [p for p in destination.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(destination.resolve()) for p in written)

    folder = only_load(destination)
    calls = {json.loads(line)["call_id"]: json.loads(line) for line in (folder / "calls.jsonl").open()}
    assert set(calls) == {plain, *UNSAFE_IDS}
    for call_id, row in calls.items():
        # The calls table names each order's document; the document holds the original id.
        assert row["document_file"] == f"calls/{document_name(call_id)}.json"
        document = json.loads((folder / row["document_file"]).read_text())
        assert document["id"] == call_id
    assert calls[plain]["document_file"] == "calls/plain-1.json"
    manifest = json.loads((folder / "_manifest.json").read_text())
    listed = {entry["path"] for entry in manifest["files"]}
    assert {row["document_file"] for row in calls.values()} <= listed
    recordings = [json.loads(line) for line in (folder / "attempts.jsonl").open()]
    for row in recordings:
        assert row["recording_file"].startswith(f"recordings/{document_name(row['call_id'])}/")
        assert (folder / row["recording_file"]).is_file()
