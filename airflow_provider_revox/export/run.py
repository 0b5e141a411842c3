"""One export: fetch every call order, stage every file, publish them together.

The storage operator is a thin Airflow adapter over :func:`export_calls`.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_revox.export.fetch import (
    FetchedCall,
    Sleep,
    download_recording,
    fetch_call,
    fetch_in_order,
)
from airflow_provider_revox.export.staging import Staging
from airflow_provider_revox.export.tables import (
    TRANSCRIPT_SCHEMA,
    StructuredOutputTable,
    call_document,
    structured_output_record,
    transcript_rows,
)
from airflow_provider_revox.export.writers import open_row_writer
from airflow_provider_revox.hooks.revox import RevoxHook

#: The tables of an export, each written as ``<name>.<file format>``.
TABLES = ("transcripts", "structured_output")


@dataclass(frozen=True)
class ExportOptions:
    """How to export.

    Attributes:
        file_format: ``jsonl``, ``json`` or ``parquet``.
        transcript_source: ``"best"``, ``"live"`` or ``"post_call"``.
        include_recordings: also download each attempt's recording.
        max_concurrency: calls fetched (and recordings downloaded) at the same time.
        sleep: how to pause between fetch rounds (tests pass a no-op).
    """

    file_format: str = "jsonl"
    transcript_source: str = "best"
    include_recordings: bool = False
    max_concurrency: int = 8
    sleep: Sleep = time.sleep


def export_calls(
    hook: RevoxHook, call_ids: Sequence[str], destination: ObjectStoragePath, options: ExportOptions
) -> dict[str, Any]:
    """Export ``call_ids`` under ``destination``; return the manifest of the published set.

    The returned manifest also maps each table's file to its columns under ``schemas``.

    Rows follow the order of ``call_ids``, so a rerun writes the same files. Nothing is
    published unless every call was fetched (see :mod:`~airflow_provider_revox.export.staging`).
    """
    secrets = hook.known_secrets()
    hook.get_conn()  # one pooled client, created before the worker threads share it
    ext = options.file_format
    table = StructuredOutputTable()
    tables = [f"{name}.{ext}" for name in TABLES]
    transcript_count = 0
    with (
        Staging(destination) as staging,
        tempfile.TemporaryFile("w+", encoding="utf-8") as spool,
    ):

        def fetch(call_id: str) -> FetchedCall:
            call = fetch_call(hook, call_id, sleep=options.sleep)
            if options.include_recordings:
                for attempt in reversed(call.attempts_newest_first()):
                    if attempt.recording_url:
                        download_recording(hook, call_id, attempt, staging.stage)
            return FetchedCall(call_id, call)

        transcripts = open_row_writer(staging.stage(tables[0]), ext, TRANSCRIPT_SCHEMA)
        try:
            with closing(fetch_in_order(call_ids, fetch, options.max_concurrency)) as fetched_calls:
                for fetched in fetched_calls:
                    relative = f"calls/{fetched.call_id}.json"
                    staging.stage(relative).write_bytes(call_document(fetched.call, secrets))
                    for row in transcript_rows(fetched.call, options.transcript_source, secrets):
                        transcripts.write(row)
                        transcript_count += 1
                    # Columns are the union of every call's fields, known only at the end:
                    # records wait on local disk, so memory does not grow with the calls.
                    table.add_fields(fetched.call.structured_output_config)
                    record = structured_output_record(fetched.call, secrets)
                    spool.write(json.dumps(record, ensure_ascii=False) + "\n")
        finally:
            transcripts.close()
        spool.seek(0)
        writer = open_row_writer(staging.stage(tables[1]), ext, table.schema)
        try:
            for line in spool:
                writer.write(table.row(json.loads(line)))
        finally:
            writer.close()
        staging.set_rows(tables[0], transcript_count)
        staging.set_rows(tables[1], len(call_ids))
        # The columns are not published in the manifest; the operator reports them as lineage.
        return {**staging.commit(), "schemas": {tables[0]: TRANSCRIPT_SCHEMA, tables[1]: table.schema}}


__all__ = ["TABLES", "ExportOptions", "export_calls"]
