"""Streaming row writers (JSON Lines, JSON, Parquet) and atomic publication to object storage.

Files are first written to a staging area, then published together once everything
succeeded, so a failed export never leaves a half-written file over a good one:

* on a local file system the staging files sit in ``<destination>/.revox-staging/<run>/`` (the
  same file system as their targets) and are renamed into place (``os.replace`` is atomic on
  POSIX); what a killed run left there is swept away by the next export to that destination;
* on object stores (s3://, gs://, ...) they are staged on local disk and uploaded with one
  ``put_file`` each: an object only becomes visible once its upload completes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from types import ModuleType, TracebackType
from typing import IO, TYPE_CHECKING, Any, Protocol

from airflow_provider_revox.export.tables import (
    BOOLEAN,
    DATE,
    DATETIME,
    INTEGER,
    NUMBER,
    STRING,
    STRING_LIST,
    Schema,
)

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

FILE_FORMATS = ("jsonl", "json", "parquet")
#: Where a local export stages its files, under the destination, until it publishes them.
STAGING_DIR = ".revox-staging"
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
    return json.dumps({c.name: row.get(c.name) for c in schema}, ensure_ascii=False, default=_json_default)


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
        self._pending = 0
        self._writer = parquet.ParquetWriter(str(path), self._arrow_schema)

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row; a full batch is written out as a row group."""
        for name, values in self._columns.items():
            values.append(row.get(name))
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


def storage_uri(path: ObjectStoragePath) -> str:
    """The plain URI of ``path`` (``file:///...``, ``s3://bucket/key``), without its connection id."""
    protocol = path.protocol or "file"
    text = path.path
    if protocol == "file":
        return f"file://{text if text.startswith('/') else '/' + text}"
    return f"{protocol}://{text.lstrip('/')}"


def _is_local(destination: ObjectStoragePath) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return not destination.protocol or isinstance(destination.fs, LocalFileSystem)


class Staging:
    """Files staged for a destination and published all together, or not at all.

    Use as a context manager: leaving it with an exception discards everything staged.
    Staging a file is thread-safe, so downloads can run in worker threads.
    """

    def __init__(self, destination: ObjectStoragePath) -> None:
        """Stage files for ``destination`` (a directory-like path)."""
        self.destination = destination
        self._local = _is_local(destination)
        self._token = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._staged: dict[str, Path] = {}
        self._count = 0
        self._tmpdir: Path | None
        if self._local:
            # One directory per run under the destination: renames stay on one file system, and
            # a run killed before publishing leaves nothing next to the published files.
            root = Path(destination.path, STAGING_DIR)
            if root.is_dir():
                shutil.rmtree(root, ignore_errors=True)  # leftovers of killed runs
            self._tmpdir = root / self._token
            self._tmpdir.mkdir(parents=True)
        else:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="revox-export-"))

    def stage(self, relative: str) -> Path:
        """Return a local path to write ``relative`` (such as ``calls/abc.json``) to before publishing.

        Staging the same relative path again replaces the earlier file.
        """
        parts = Path(relative).parts
        if not parts or Path(relative).is_absolute() or ".." in parts:
            raise ValueError(f"not a relative file path inside the destination: {relative!r}")
        with self._lock:
            self._count += 1
            assert self._tmpdir is not None, "staging used after commit or discard"
            local = self._tmpdir / f"{self._count}-{parts[-1]}"
            previous = self._staged.pop(relative, None)
            self._staged[relative] = local
        if previous is not None:
            previous.unlink(missing_ok=True)
        return local

    def commit(self) -> list[ObjectStoragePath]:
        """Publish every staged file, in staging order; return their destination paths."""
        published = []
        for relative, local in list(self._staged.items()):
            target = self.destination.joinpath(*Path(relative).parts)
            if self._local:
                final = Path(target.path)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(local, final)
            else:
                fs = target.fs
                fs.makedirs(fs._parent(target.path), exist_ok=True)
                fs.put_file(str(local), target.path)
            published.append(target)
            del self._staged[relative]
        self._cleanup()
        return published

    def discard(self) -> None:
        """Delete every staged file; nothing at the destination changes."""
        for local in self._staged.values():
            local.unlink(missing_ok=True)
        self._staged.clear()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            if self._local:
                with contextlib.suppress(OSError):  # not empty: another run is staging there
                    self._tmpdir.parent.rmdir()
            self._tmpdir = None

    def __enter__(self) -> Staging:
        """Return the staging area."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Discard whatever is still staged (everything, after an error)."""
        self.discard()


__all__ = [
    "DEFAULT_BATCH_ROWS",
    "FILE_FORMATS",
    "PARQUET_INSTALL_HINT",
    "JsonArrayWriter",
    "JsonLinesWriter",
    "ParquetRowWriter",
    "RowWriter",
    "Staging",
    "arrow_schema",
    "check_file_format",
    "import_pyarrow",
    "open_row_writer",
    "storage_uri",
]
