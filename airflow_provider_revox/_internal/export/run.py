"""One export: fetch every call order, stage every file, publish them together.

The storage operator is a thin Airflow adapter over :func:`export_calls`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from airflow.sdk import ObjectStoragePath

from airflow_provider_revox._internal.export.clean import recordings_of, redacted_call
from airflow_provider_revox._internal.export.fetch import (
    FetchedCall,
    Sleep,
    download_recording,
    fetch_call,
    fetch_in_order,
)
from airflow_provider_revox._internal.export.loads import Load, LoadStaging
from airflow_provider_revox._internal.export.names import document_path
from airflow_provider_revox._internal.export.search import calls_by_ids
from airflow_provider_revox._internal.export.staging import Staging
from airflow_provider_revox._internal.export.tables import (
    TRANSCRIPT_SCHEMA,
    Schema,
    StructuredOutputTable,
    call_document,
    structured_output_record,
    transcript_rows,
)
from airflow_provider_revox._internal.export.warehouse import (
    ATTEMPTS_SCHEMA,
    CALLS_SCHEMA,
    attempt_rows,
    call_row,
)
from airflow_provider_revox._internal.export.writers import RowWriter, open_row_writer
from airflow_provider_revox._internal.hooks.revox import RevoxHook

#: Calls between two progress lines of a long export.
PROGRESS_EVERY = 1000

log = logging.getLogger(__name__)

#: The tables an export writes by default, each as ``<name>.<file format>``.
TABLES = ("transcripts", "structured_output")
#: Every table an export can write: the defaults and the warehouse-ready ``calls`` and ``attempts``.
ALL_TABLES = ("transcripts", "structured_output", "calls", "attempts")


def check_tables(tables: Sequence[str]) -> tuple[str, ...]:
    """Return ``tables`` in :data:`ALL_TABLES` order; a name it does not know is a ValueError."""
    if isinstance(tables, str) or not isinstance(tables, Sequence | set | frozenset):
        raise ValueError(f"tables must be a list of table names, not {tables!r}")
    unknown = sorted(str(name) for name in tables if name not in ALL_TABLES)
    if unknown or not tables:
        raise ValueError(f"tables must name some of {', '.join(ALL_TABLES)}; not {unknown or 'nothing'}")
    return tuple(name for name in ALL_TABLES if name in tables)


@dataclass(frozen=True)
class ExportOptions:
    """How to export.

    Attributes:
        file_format: ``jsonl``, ``json`` or ``parquet``.
        transcript_source: ``"best"``, ``"live"`` or ``"post_call"``.
        include_recordings: also download each attempt's recording.
        max_concurrency: calls fetched (and recordings downloaded) at the same time.
        sleep: how to pause between fetch rounds (tests pass a no-op).
        tables: the tables to write, some of :data:`ALL_TABLES`.
        ids_by_search: read a list of ids with searches of 100 ids (False: one GET per call).
        call_documents: also write each call's redacted document as ``calls/<call id>.json``.
    """

    file_format: str = "jsonl"
    transcript_source: str = "best"
    include_recordings: bool = False
    max_concurrency: int = 8
    sleep: Sleep = time.sleep
    tables: tuple[str, ...] = TABLES
    ids_by_search: bool = True
    call_documents: bool = True


@dataclass(frozen=True)
class _Ready:
    """A fetched call, with the recordings downloaded for it (attempt id to path)."""

    fetched: FetchedCall
    recordings: dict[str, str]


def _fetched(
    hook: RevoxHook, calls: Sequence[str] | Iterable[FetchedCall], options: ExportOptions
) -> Iterator[FetchedCall]:
    if isinstance(calls, Sequence) and all(isinstance(item, str) for item in calls):
        ids = [str(item) for item in calls]
        if options.ids_by_search:
            return calls_by_ids(hook, ids, options.sleep)

        def get(call_id: str) -> FetchedCall:
            return FetchedCall(call_id, fetch_call(hook, call_id, sleep=options.sleep))

        return fetch_in_order(ids, get, options.max_concurrency)
    return iter(calls)  # type: ignore[arg-type]


class Stager(Protocol):
    """Where a run writes its files before they are published: a local path per relative path."""

    def stage(self, relative: str) -> Path:
        """A local path to write ``relative`` to."""


@dataclass(frozen=True)
class Staged:
    """What :func:`stage_tables` wrote: calls, rows per table, and each table's file and columns."""

    calls: int
    rows: dict[str, int]
    names: dict[str, str]
    schemas: dict[str, Schema]


def _progress(count: int, rows: dict[str, int], seconds: float) -> None:
    rate = count / seconds if seconds > 0 else float("inf")
    log.info(
        "%d call(s) fetched so far (%.0f calls/s); rows: %s",
        count,
        rate,
        ", ".join(f"{name} {number}" for name, number in rows.items()),
    )


def stage_tables(
    hook: RevoxHook,
    calls: Sequence[str] | Iterable[FetchedCall],
    staging: Stager,
    options: ExportOptions,
    *,
    documents: bool = True,
) -> Staged:
    """Fetch every call and write its rows (and, with ``documents`` and ``options.call_documents``,
    its JSON document) to ``staging``.

    Tables are written as ``<name>.<options.file_format>``; rows follow the order of ``calls``.
    Without ``options.call_documents``, the ``calls`` table's ``document_file`` is empty.
    """
    documents = documents and options.call_documents
    secrets = hook.known_secrets()
    hook.get_conn()  # one pooled client, created before the worker threads share it
    ext = options.file_format
    table = StructuredOutputTable()
    names = {name: f"{name}.{ext}" for name in options.tables}
    rows = dict.fromkeys(options.tables, 0)
    count = 0
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8") as spool,
        contextlib.ExitStack() as writers,
    ):

        def download(fetched: FetchedCall) -> _Ready:
            recordings = {}
            for attempt in reversed(fetched.call.attempts_newest_first()):
                if attempt.recording_url:
                    recordings[attempt.id] = download_recording(hook, fetched.call_id, attempt, staging.stage)
            return _Ready(fetched, recordings)

        def open_table(name: str, schema: Schema) -> RowWriter | None:
            if name not in names:
                return None
            writer = open_row_writer(staging.stage(names[name]), ext, schema)
            writers.callback(writer.close)
            return writer

        transcripts = open_table("transcripts", TRANSCRIPT_SCHEMA)
        calls_table = open_table("calls", CALLS_SCHEMA)
        attempts = open_table("attempts", ATTEMPTS_SCHEMA)
        source = _fetched(hook, calls, options)
        if options.include_recordings:
            ready: Iterator[_Ready] = fetch_in_order(source, download, options.max_concurrency)
        else:
            ready = (_Ready(fetched, {}) for fetched in source)
        started = time.monotonic()
        with closing(ready):  # type: ignore[type-var]
            for item in ready:
                call, count = item.fetched.call, count + 1
                # One redaction pass per call; every file below is built from its result.
                clean = redacted_call(call, secrets)
                done = clean is not None
                built = clean if clean is not None else call
                recordings = recordings_of(call, clean, item.recordings) if clean else item.recordings
                if documents:
                    document = call_document(built, secrets, redacted=done)
                    staging.stage(document_path(item.fetched.call_id)).write_bytes(document)
                if transcripts is not None:
                    for row in transcript_rows(built, options.transcript_source, secrets, redacted=done):
                        transcripts.write(row)
                        rows["transcripts"] += 1
                if calls_table is not None:
                    row = call_row(built, secrets, redacted=done)
                    if not options.call_documents:
                        row["document_file"] = None
                    calls_table.write(row)
                    rows["calls"] += 1
                if attempts is not None:
                    for row in attempt_rows(built, recordings, secrets, redacted=done):
                        attempts.write(row)
                        rows["attempts"] += 1
                if "structured_output" in names:
                    # Columns are the union of every call's fields, known only at the end:
                    # records wait on local disk, so memory does not grow with the calls.
                    table.add_fields(built.structured_output_config)
                    record = structured_output_record(built, secrets, redacted=done)
                    spool.write(json.dumps(record, ensure_ascii=False) + "\n")
                if count % PROGRESS_EVERY == 0:
                    _progress(count, rows, time.monotonic() - started)
        writers.close()
        if "structured_output" in names:
            spool.seek(0)
            writer = open_row_writer(staging.stage(names["structured_output"]), ext, table.schema)
            try:
                for line in spool:
                    writer.write(table.row(json.loads(line)))
            finally:
                writer.close()
            rows["structured_output"] = count
    log.info(
        "Fetched %d call(s) in %.1f s; rows: %s",
        count,
        time.monotonic() - started,
        ", ".join(f"{name} {rows[name]}" for name in names) or "no table",
    )
    schemas = {
        "transcripts": TRANSCRIPT_SCHEMA,
        "structured_output": table.schema,
        "calls": CALLS_SCHEMA,
        "attempts": ATTEMPTS_SCHEMA,
    }
    return Staged(count, rows, names, {name: schemas[name] for name in names})


def export_calls(
    hook: RevoxHook,
    calls: Sequence[str] | Iterable[FetchedCall],
    destination: ObjectStoragePath,
    options: ExportOptions,
    load: Load | None = None,
    watermark: Callable[[], tuple[str, Any]] | None = None,
) -> dict[str, Any]:
    """Export ``calls`` (ids, or calls already fetched) under ``destination``; return the manifest.

    ``watermark`` gives ``(key, state)`` once every call was read: the load publishes it in its
    manifest, so the mark is committed with the rows it covers.

    The returned manifest also maps each table's file to its columns under ``schemas``.

    With ``load``, the export is one load under the fixed base ``destination`` (see
    :mod:`~airflow_provider_revox._internal.export.loads`): a load of no calls publishes
    nothing and returns a manifest without files and with ``load`` None. Without it, the files
    replace whatever set ``destination`` held.

    Rows follow the order of ``calls``, so a rerun writes the same files. Nothing is published
    unless every call was fetched (see :mod:`~airflow_provider_revox._internal.export.staging`).
    """
    with Staging(destination) if load is None else LoadStaging(destination, load) as staging:
        staged = stage_tables(hook, calls, staging, options)
        if load is not None and staged.calls == 0:
            return {"version": 1, "files": [], "load": None, "schemas": {}}
        for name, relative in staged.names.items():
            staging.set_rows(relative, staged.rows[name])
        if not options.call_documents:
            staging.calls = staged.calls  # no documents to count them by
        if watermark is not None and isinstance(staging, LoadStaging):
            key, state = watermark()
            staging.watermarks = {key: state}
        # The columns are not published in the manifest; the operator reports them as lineage.
        schemas = {relative: staged.schemas[name] for name, relative in staged.names.items()}
        return {**staging.commit(), "schemas": schemas}
