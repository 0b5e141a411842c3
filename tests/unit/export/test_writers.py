"""Row writers: JSON Lines, JSON and typed Parquet."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_revox._internal.export.tables import Column
from airflow_provider_revox._internal.export.writers import (
    PARQUET_INSTALL_HINT,
    check_file_format,
    open_row_writer,
)

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


@pytest.mark.parametrize(
    ("file_format", "package", "extra"), [("parquet", "pyarrow", "parquet"), ("delta", "deltalake", "delta")]
)
def test_a_format_whose_extra_is_missing_is_refused_when_the_dag_is_parsed(
    file_format: str, package: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator

    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ValueError) as raised:
        RevoxCallsToStorageOperator(
            task_id="export", call_ids=["c1"], destination="file:///tmp/x", file_format=file_format
        )
    assert str(raised.value) == (
        f"export: file_format={file_format!r} needs {package}: pip install 'airflow-provider-revox[{extra}]'"
    )
    # Installed, the same literal is accepted.
    monkeypatch.delitem(sys.modules, package)
    RevoxCallsToStorageOperator(
        task_id="export", call_ids=["c1"], destination="file:///tmp/x", file_format=file_format
    )
