"""The warehouse-ready ``calls`` and ``attempts`` tables: values, typed schemas stable across runs,
redaction and the manifest, through a real Airflow and real HTTP against the simulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_revox._internal.export.run import ALL_TABLES, check_tables
from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator
from tests.integration.operators.test_export_search import campaign
from tests.integration.operators.test_results_and_export import (
    GOOD_OUTPUT,
    assert_no_planted,
    export_dag,
    finished,
    place,
    task_state,
    xcoms,
)
from tests.unit.export.test_staging import only_load

pq = pytest.importorskip("pyarrow.parquet")


def export_all(dag_id: str, ids: list[str], destination: Path, file_format: str, **options: Any) -> str:
    return export_dag(
        dag_id,
        call_ids=ids,
        destination=str(destination),
        file_format=file_format,
        tables=list(ALL_TABLES),
        **options,
    )


@pytest.mark.airflow
def test_calls_and_attempts_rows_hold_the_join_keys_and_every_attempt(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    campaign_id, ids = campaign(simulator, "Warehouse", 2)
    planted = place(simulator, GOOD_OUTPUT)  # metadata with a password inside, two attempts
    simulator.finish()
    dag_run = run_dag(
        export_all("revox_warehouse", [*ids, planted], tmp_path, "jsonl", include_recordings=True),
        "revox_warehouse",
    )
    assert task_state(dag_run, "export") == "success"
    load = only_load(tmp_path)
    calls = [json.loads(line) for line in (load / "calls.jsonl").read_text().splitlines()]
    assert [row["call_id"] for row in calls] == [*ids, planted]
    first = calls[0]
    assert first["campaign_id"] == campaign_id and first["assistant_id"] == "asst_campaign"
    assert first["prompt_variables"] == {"first_name": "P0"}
    assert first["to_phone_number"] == "+33612300000"
    assert first["status"] in {"completed", "errored", "cancelled"}
    assert first["ended_at"] is not None and first["created_at"] < first["ended_at"]
    assert first["calls_count"] == len(simulator.get_call(ids[0])["call_attempts"])
    mine = calls[2]
    assert mine["campaign_id"] is None and mine["assistant_id"] == "asst_planted"
    assert mine["outcome"] == "interested" and mine["calls_count"] == 2
    assert mine["metadata"] == {"crm": '{"password": "***"}'}  # typed map of text, redacted

    attempts = [json.loads(line) for line in (load / "attempts.jsonl").read_text().splitlines()]
    own = [row for row in attempts if row["call_id"] == planted]
    api = simulator.get_call(planted)["call_attempts"]
    assert [row["attempt_id"] for row in own] == [a["id"] for a in reversed(api)]  # oldest first
    missed, answered = own
    assert missed["answered_at"] is None and missed["duration_s"] is None and missed["recording_file"] is None
    assert answered["result"] == "human" and answered["duration_s"] == pytest.approx(45, abs=1)
    assert answered["recording_file"].startswith(f"recordings/{planted}/{answered['attempt_id']}.")
    assert (load / answered["recording_file"]).is_file()
    assert len(attempts) == sum(row["calls_count"] for row in calls)

    manifest = json.loads((load / "_manifest.json").read_text())
    listed = {entry["path"]: entry.get("rows") for entry in manifest["files"]}
    assert listed["calls.jsonl"] == 3 and listed["attempts.jsonl"] == len(attempts)
    result = xcoms(dag_run, "export")["return_value"]
    assert result["rows"]["calls"] == 3 and result["tables"]["attempts"].endswith("attempts.jsonl")
    everything = "".join(p.read_text() for p in tmp_path.rglob("*.json*"))
    assert_no_planted(everything, simulator.api_key)


@pytest.mark.airflow
def test_parquet_schemas_do_not_change_when_a_batch_lacks_values(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    _, ids = campaign(simulator, "Typed", 1, launch=False)  # never dialled: no attempt, no end, no metadata
    full = finished(simulator, GOOD_OUTPUT)
    sparse = tmp_path / "sparse"
    rich = tmp_path / "rich"
    assert task_state(
        run_dag(export_all("revox_pq_sparse", ids, sparse, "parquet"), "revox_pq_sparse"), "export"
    ) == ("success")
    assert task_state(
        run_dag(export_all("revox_pq_rich", [full], rich, "parquet"), "revox_pq_rich"), "export"
    ) == ("success")
    sparse, rich = only_load(sparse), only_load(rich)
    for table in ("calls", "attempts"):
        assert pq.read_schema(sparse / f"{table}.parquet") == pq.read_schema(rich / f"{table}.parquet")
    schema = pq.read_schema(rich / "calls.parquet")
    pa = pytest.importorskip("pyarrow")
    assert schema.field("metadata").type == pa.map_(pa.string(), pa.string())
    assert str(schema.field("ended_at").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("calls_count").type) == "int64"
    assert str(pq.read_schema(rich / "attempts.parquet").field("duration_s").type) == "double"
    sparse_calls = pq.read_table(sparse / "calls.parquet").to_pylist()
    assert sparse_calls[0]["status"] == "not_launched" and sparse_calls[0]["ended_at"] is None
    assert pq.read_table(sparse / "attempts.parquet").num_rows == 0
    rich_calls = pq.read_table(rich / "calls.parquet").to_pylist()
    assert dict(rich_calls[0]["metadata"]) == {"crm": '{"password": "***"}'}


def test_tables_are_checked_by_name() -> None:
    assert check_tables(["attempts", "transcripts"]) == ("transcripts", "attempts")
    with pytest.raises(ValueError, match="calls_v2"):
        check_tables(["calls_v2"])
    with pytest.raises(ValueError, match="tables must name"):
        RevoxCallsToStorageOperator(task_id="t", call_ids=["a"], destination="/tmp/x", tables=[])


@pytest.mark.airflow
def test_every_table_and_the_summary_give_an_order_the_same_end(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    from airflow_provider_revox._internal.core.call import parse_iso
    from airflow_provider_revox._internal.waiting.outcome import call_summary
    from airflow_provider_revox.hooks.revox import Call

    _, ids = campaign(simulator, "Ends", 12)
    simulator.finish()
    dag_run = run_dag(export_all("revox_one_end", ids, tmp_path, "jsonl"), "revox_one_end")
    folder = only_load(tmp_path)
    assert task_state(dag_run, "export") == "success"

    def by_id(table: str) -> dict[str, dict[str, Any]]:
        lines = (folder / f"{table}.jsonl").read_text().splitlines()
        return {row["call_id"]: row for row in map(json.loads, lines)}

    calls, structured = by_id("calls"), by_id("structured_output")
    attempts = [json.loads(line) for line in (folder / "attempts.jsonl").read_text().splitlines()]
    differ = 0
    for call_id in ids:
        truth = simulator.get_call(call_id)
        document = json.loads((folder / "calls" / f"{call_id}.json").read_text())
        order_end = parse_iso(truth["ended_at"])
        assert document["ended_at"] == truth["ended_at"]
        assert parse_iso(calls[call_id]["ended_at"]) == order_end
        assert parse_iso(structured[call_id]["ended_at"]) == order_end
        summary = call_summary(Call.from_response(truth))
        assert summary["ended_at"] == order_end.isoformat()
        # The last attempt's end has its own name, in the calls table and in the summary.
        last_attempt_end = max(parse_iso(row["ended_at"]) for row in attempts if row["call_id"] == call_id)
        assert parse_iso(calls[call_id]["last_attempt_ended_at"]) == last_attempt_end
        assert summary["last_attempt_ended_at"] == last_attempt_end.isoformat()
        differ += last_attempt_end != order_end
    assert differ > 0  # post-processing after the last attempt: the two facts are not the same
