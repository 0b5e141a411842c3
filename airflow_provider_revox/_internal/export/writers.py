"""Streaming row writers: JSON Lines, a JSON array, and typed Parquet.

They write local files (the staging area of :mod:`airflow_provider_revox._internal.export.staging`);
publishing them is not their job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Protocol

from airflow_provider_revox._internal.export.tables import (
    BOOLEAN,
    DATE,
    DATETIME,
    INTEGER,
    NUMBER,
    STRING,
    STRING_LIST,
    STRING_MAP,
    Schema,
    finite,
)

#: The file formats an export writes: JSON Lines, one JSON array per table, Parquet (the
#: ``[parquet]`` extra).
FILE_FORMATS = ("jsonl", "json", "parquet")
PARQUET_INSTALL_HINT = "pip install 'airflow-provider-revox[parquet]'"
DEFAULT_BATCH_ROWS = 1024


def check_file_format(file_format: str) -> str:
    """Return ``file_format`` when it is ``jsonl``, ``json`` or ``parquet``; raise ValueError otherwise."""
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {', '.join(FILE_FORMATS)}, not {file_format!r}")
    return file_format


def import_pyarrow() -> tuple[ModuleType, ModuleType]:
    """Import ``pyarrow`` and ``pyarrow.parquet``, the optional ``[parquet]`` extra.

    Raises:
        ImportError: naming the command that installs the extra.
    """
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise ImportError(
            f"Parquet export needs pyarrow, which is not installed: {PARQUET_INSTALL_HINT}"
        ) from exc
    return pyarrow, pyarrow.parquet


class RowWriter(Protocol):
    """Writes rows of one schema to one file."""

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row."""

    def close(self) -> None:
        """Flush and close the file."""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _json_row(row: Mapping[str, Any], schema: Schema) -> str:
    values = finite({c.name: row.get(c.name) for c in schema})  # strict JSON: no NaN or Infinity
    return json.dumps(values, ensure_ascii=False, default=_json_default, allow_nan=False)


class JsonLinesWriter:
    """One JSON object per line, columns in schema order."""

    def __init__(self, path: Path, schema: Schema) -> None:
        """Open ``path`` for writing rows of ``schema``."""
        self._schema = schema
        self._file: IO[str] = path.open("w", encoding="utf-8", newline="\n")

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row."""
        self._file.write(_json_row(row, self._schema) + "\n")

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()


class JsonArrayWriter:
    """A JSON array of objects, written element by element."""

    def __init__(self, path: Path, schema: Schema) -> None:
        """Open ``path`` for writing rows of ``schema``."""
        self._schema = schema
        self._file: IO[str] = path.open("w", encoding="utf-8", newline="\n")
        self._file.write("[")
        self._first = True

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row."""
        self._file.write(("\n" if self._first else ",\n") + _json_row(row, self._schema))
        self._first = False

    def close(self) -> None:
        """Close the array, then the file."""
        self._file.write("]\n" if self._first else "\n]\n")
        self._file.close()


def arrow_schema(schema: Schema) -> Any:
    """The Arrow schema of ``schema``: timestamp[us, UTC], date32, float64, int64, bool, string."""
    pa, _ = import_pyarrow()
    types = {
        STRING: pa.string(),
        INTEGER: pa.int64(),
        NUMBER: pa.float64(),
        BOOLEAN: pa.bool_(),
        DATE: pa.date32(),
        DATETIME: pa.timestamp("us", tz="UTC"),
        STRING_LIST: pa.list_(pa.string()),
        STRING_MAP: pa.map_(pa.string(), pa.string()),
    }
    return pa.schema([pa.field(c.name, types[c.type]) for c in schema])


class ParquetRowWriter:
    """Parquet with a typed schema, written one row group per ``batch_rows`` rows."""

    def __init__(self, path: Path, schema: Schema, batch_rows: int = DEFAULT_BATCH_ROWS) -> None:
        """Open ``path`` for writing rows of ``schema``.

        Raises:
            ImportError: when pyarrow (the ``[parquet]`` extra) is not installed.
        """
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
        self._pa, parquet = import_pyarrow()
        self._schema = schema
        self._arrow_schema = arrow_schema(schema)
        self._batch_rows = batch_rows
        self._columns: dict[str, list[Any]] = {c.name: [] for c in schema}
        self._maps = frozenset(c.name for c in schema if c.type == STRING_MAP)
        self._pending = 0
        self._writer = parquet.ParquetWriter(str(path), self._arrow_schema)

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row; a full batch is written out as a row group."""
        for name, values in self._columns.items():
            value = row.get(name)
            # Arrow takes a map column's values as (key, value) pairs.
            values.append(list(value.items()) if name in self._maps and value is not None else value)
        self._pending += 1
        if self._pending >= self._batch_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = self._pa.Table.from_pydict(self._columns, schema=self._arrow_schema)
        self._writer.write_table(table)
        self._columns = {c.name: [] for c in self._schema}
        self._pending = 0

    def close(self) -> None:
        """Write the last row group and the footer."""
        self._flush()
        self._writer.close()


def open_row_writer(
    path: Path, file_format: str, schema: Schema, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> RowWriter:
    """Open a writer of ``file_format`` (``jsonl``, ``json`` or ``parquet``) at a local ``path``."""
    check_file_format(file_format)
    if file_format == "parquet":
        return ParquetRowWriter(path, schema, batch_rows)
    if file_format == "json":
        return JsonArrayWriter(path, schema)
    return JsonLinesWriter(path, schema)
