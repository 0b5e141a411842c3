"""Per-call documents are optional: ``call_documents=False`` writes the tables only, counted the
same; and an export through Airflow redacts each call once. Real Airflow, real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_revox._internal.core import redact as redact_module
from airflow_provider_revox._internal.export import clean, tables, warehouse
from airflow_provider_revox.export import read_loads
from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator
from tests.integration.operators.test_results_and_export import (
    GOOD_OUTPUT,
    PLANTED,
    export_dag,
    finished,
    task_state,
    xcoms,
)
from tests.unit.export.test_staging import only_load

ALL_TABLES = ["transcripts", "structured_output", "calls", "attempts"]
SEARCH = "POST /call/search"


def requests(simulator: Any) -> dict[str, int]:
    counts = simulator.stats()["by_endpoint"]
    return {name: int(count) for name, count in counts.items() if "_simulator" not in name}


@pytest.mark.airflow
def test_an_export_without_call_documents_writes_the_tables_only_and_counts_its_calls(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    ids = [finished(simulator, GOOD_OUTPUT) for _ in range(3)]
    before = requests(simulator)
    source = export_dag(
        "revox_no_documents",
        call_ids=ids,
        destination=str(tmp_path / "out"),
        tables=ALL_TABLES,
        call_documents=False,
    )
    dag_run = run_dag(source, "revox_no_documents")
    assert task_state(dag_run, "export") == "success"
    after = requests(simulator)
    # The same one search of three ids as with documents: no request per call.
    assert {
        name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)
    } == {SEARCH: 1}
    folder = only_load(tmp_path / "out")
    assert not (folder / "calls").exists()
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert sorted(entry["path"] for entry in manifest["files"]) == sorted(f"{n}.jsonl" for n in ALL_TABLES)
    assert manifest["calls"] == 3
    rows = [json.loads(line) for line in (folder / "calls.jsonl").read_text().splitlines()]
    assert sorted(row["call_id"] for row in rows) == sorted(ids)
    assert {row["document_file"] for row in rows} == {None}
    summary = xcoms(dag_run, "export")["return_value"]
    assert summary["calls"] == 3 and summary["files"] == 4
    assert summary["rows"]["calls"] == 3 and summary["rows"]["structured_output"] == 3
    (entry,) = read_loads(ObjectStoragePath(str(tmp_path / "out")))
    assert entry["calls"] == 3 and entry["files"] == 4


@pytest.mark.airflow
def test_an_export_redacts_each_call_once_and_every_table_holds_no_planted_credential(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [finished(simulator, GOOD_OUTPUT) for _ in range(4)]
    walks: list[str] = []
    real = redact_module.redact

    def counted(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, dict) and value.get("id") in ids:
            walks.append(value["id"])
        elif isinstance(value, dict | list):
            walks.append("part of a call")
        return real(value, *args, **kwargs)

    for module in (clean, tables, warehouse):
        monkeypatch.setattr(module, "redact", counted)
    source = export_dag("revox_one_pass", call_ids=ids, destination=str(tmp_path / "out"), tables=ALL_TABLES)
    dag_run = run_dag(source, "revox_one_pass")
    assert task_state(dag_run, "export") == "success"
    assert sorted(walks) == sorted(ids)  # each call's document once, and nothing else
    folder = only_load(tmp_path / "out")
    written = "".join(path.read_text() for path in folder.rglob("*") if path.is_file())
    assert len(list((folder / "calls").iterdir())) == 4
    for name, value in PLANTED.items():
        assert value not in written, f"planted {name} leaked"


def test_call_documents_must_be_true_or_false(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="call_documents must be True or False"):
        RevoxCallsToStorageOperator(
            task_id="x", call_ids=["a"], destination=str(tmp_path), call_documents="no"
        )
