"""Row writers and atomic staging, on local disk and on an in-memory object store."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io.store import attach
from fsspec.implementations.memory import MemoryFileSystem

from airflow_provider_revox.export.staging import Staging, storage_uri
from airflow_provider_revox.export.tables import Column
from airflow_provider_revox.export.writers import PARQUET_INSTALL_HINT, check_file_format, open_row_writer

SCHEMA = (
    Column("id", "string"),
    Column("n", "integer"),
    Column("amount", "number"),
    Column("ok", "boolean"),
    Column("day", "date"),
    Column("at", "datetime"),
    Column("errors", "string_list"),
)
ROWS: list[dict[str, Any]] = [
    {
        "id": f"r{i}",
        "n": i,
        "amount": i / 2,
        "ok": i % 2 == 0,
        "day": date(2024, 5, i + 1),
        "at": datetime(2024, 5, 1, 10, i, 30, 123456, tzinfo=timezone.utc),
        "errors": [f"e{i}"] if i else [],
    }
    for i in range(5)
]
NULL_ROW = {"id": None, "n": None, "amount": None, "ok": None, "day": None, "at": None, "errors": None}


def write(path: Path, file_format: str, rows: list[dict[str, Any]], **kwargs: Any) -> None:
    writer = open_row_writer(path, file_format, SCHEMA, **kwargs)
    for row in rows:
        writer.write(row)
    writer.close()


def test_jsonl_has_one_object_per_row_in_schema_order(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write(path, "jsonl", [{**ROWS[1], "unexpected": 1}, {}])
    lines = path.read_text().splitlines()
    assert lines[0] == (
        '{"id": "r1", "n": 1, "amount": 0.5, "ok": false, "day": "2024-05-02", '
        '"at": "2024-05-01T10:01:30.123456+00:00", "errors": ["e1"]}'
    )
    assert json.loads(lines[1]) == NULL_ROW


def test_json_is_an_array_even_when_empty(tmp_path: Path) -> None:
    write(tmp_path / "empty.json", "json", [])
    assert json.loads((tmp_path / "empty.json").read_text()) == []
    write(tmp_path / "rows.json", "json", ROWS)
    parsed = json.loads((tmp_path / "rows.json").read_text())
    assert [r["id"] for r in parsed] == ["r0", "r1", "r2", "r3", "r4"]
    assert parsed[4]["day"] == "2024-05-05"


def test_parquet_is_typed_and_written_in_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write(path, "parquet", [*ROWS, NULL_ROW], batch_rows=2)
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 3
    table = parquet.read()
    assert table.schema.field("n").type == pa.int64()
    assert table.schema.field("amount").type == pa.float64()
    assert table.schema.field("ok").type == pa.bool_()
    assert table.schema.field("day").type == pa.date32()
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("errors").type == pa.list_(pa.string())
    assert table.to_pylist() == [*ROWS, NULL_ROW]


def test_parquet_bytes_are_the_same_on_a_rerun(tmp_path: Path) -> None:
    write(tmp_path / "a.parquet", "parquet", ROWS)
    write(tmp_path / "b.parquet", "parquet", ROWS)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_missing_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError) as raised:
        open_row_writer(tmp_path / "t.parquet", "parquet", SCHEMA)
    assert PARQUET_INSTALL_HINT in str(raised.value)
    assert "pip install 'airflow-provider-revox[parquet]'" in str(raised.value)


def test_bad_file_format_is_named() -> None:
    with pytest.raises(ValueError, match="'csv'"):
        check_file_format("csv")


def test_local_staging_publishes_with_a_rename_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    destination = ObjectStoragePath(f"file://{tmp_path}/out")
    with Staging(destination) as staging:
        local = staging.stage("calls/c1.json")
        # Staged on the destination's file system, so publishing is a rename.
        assert local.parent.parent == tmp_path / "out" / ".revox-staging"
        local.write_text("new")
        published = staging.commit()
    assert [storage_uri(p) for p in published] == [f"file://{tmp_path}/out/calls/c1.json"]
    assert (tmp_path / "out" / "calls" / "c1.json").read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["calls"]
    assert sorted(p.name for p in (tmp_path / "out" / "calls").iterdir()) == ["c1.json"]


def test_a_killed_runs_staging_is_swept_by_the_next_export(tmp_path: Path) -> None:
    leftover = tmp_path / ".revox-staging" / "0123456789ab" / "7-c9.json"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("half-written by a run that was killed")
    with Staging(ObjectStoragePath(f"file://{tmp_path}")) as staging:
        staging.stage("calls/c1.json").write_text("new")
        staging.commit()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["calls", "calls/c1.json"]


def test_a_failed_export_leaves_the_previous_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "transcripts.jsonl"
    target.write_text("good\n")
    with pytest.raises(RuntimeError), Staging(ObjectStoragePath(str(tmp_path))) as staging:
        staging.stage("transcripts.jsonl").write_text("half")
        raise RuntimeError("fetch failed")
    assert target.read_text() == "good\n"
    assert [p.name for p in tmp_path.iterdir()] == ["transcripts.jsonl"]


def test_restaging_a_path_replaces_the_earlier_file(tmp_path: Path) -> None:
    with Staging(ObjectStoragePath(str(tmp_path))) as staging:
        first = staging.stage("a.json")
        first.write_text("1")
        staging.stage("a.json").write_text("2")
        assert not first.exists()
        staging.commit()
    assert (tmp_path / "a.json").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_staging_refuses_paths_outside_the_destination(tmp_path: Path) -> None:
    with Staging(ObjectStoragePath(str(tmp_path))) as staging:
        for bad in ("../escape.json", "/etc/passwd", ""):
            with pytest.raises(ValueError, match="not a relative file path"):
                staging.stage(bad)


@pytest.fixture
def memory_store() -> MemoryFileSystem:
    fs = MemoryFileSystem()
    attach("memory", fs=fs)
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]
    return fs


def test_object_store_gets_one_put_per_file_only_on_commit(memory_store: MemoryFileSystem) -> None:
    destination = ObjectStoragePath("memory://bucket/export")
    memory_store.pipe_file("/bucket/export/transcripts.jsonl", b"good\n")
    with pytest.raises(RuntimeError), Staging(destination) as staging:
        staging.stage("transcripts.jsonl").write_text("half")
        raise RuntimeError("boom")
    assert memory_store.cat_file("/bucket/export/transcripts.jsonl") == b"good\n"

    with Staging(destination) as staging:
        staged = staging.stage("transcripts.jsonl")
        assert not str(staged).startswith("/bucket")  # staged on local disk, not in the store
        staged.write_text("new\n")
        staging.stage("recordings/c1/a1.wav").write_bytes(b"RIFF")
        published = staging.commit()
        assert not staged.exists()
    assert [storage_uri(p) for p in published] == [
        "memory://bucket/export/transcripts.jsonl",
        "memory://bucket/export/recordings/c1/a1.wav",
    ]
    assert memory_store.cat_file("/bucket/export/transcripts.jsonl") == b"new\n"
    assert memory_store.cat_file("/bucket/export/recordings/c1/a1.wav") == b"RIFF"
