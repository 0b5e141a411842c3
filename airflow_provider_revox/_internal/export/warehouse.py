"""Warehouse-ready tables: ``calls`` (one row per order) and ``attempts`` (one row per attempt).

Fixed schemas: every column has one type whatever a batch holds, so a Parquet file of a run
where no order had metadata loads into the same table as one where all had. Every text a person
or the API could have filled in is redacted like the rest of an export. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from airflow_provider_revox._internal.core.call import Call, CallAttempt
from airflow_provider_revox._internal.core.redact import redact, redact_text
from airflow_provider_revox._internal.export.names import document_path
from airflow_provider_revox._internal.export.tables import (
    DATETIME,
    INTEGER,
    NUMBER,
    STRING,
    STRING_MAP,
    Column,
    Schema,
    finite,
)

CALLS_SCHEMA: Schema = (
    Column("call_id", STRING),
    Column("campaign_id", STRING),
    Column("assistant_id", STRING),
    Column("to_phone_number", STRING),
    Column("status", STRING),
    Column("outcome", STRING),
    Column("outcome_summary", STRING),
    Column("created_at", DATETIME),
    Column("ended_at", DATETIME),
    Column("last_attempt_ended_at", DATETIME),
    Column("calls_count", INTEGER),
    Column("metadata", STRING_MAP),
    Column("prompt_variables", STRING_MAP),
    Column("document_file", STRING),
)

ATTEMPTS_SCHEMA: Schema = (
    Column("call_id", STRING),
    Column("attempt_id", STRING),
    Column("status", STRING),
    Column("result", STRING),
    Column("dial_error", STRING),
    Column("end_reason", STRING),
    Column("started_at", DATETIME),
    Column("answered_at", DATETIME),
    Column("ended_at", DATETIME),
    Column("duration_s", NUMBER),
    Column("recording_file", STRING),
)


def _text(value: Any, secrets: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    return redact_text(str(value), secrets)


def _same(value: Any, secrets: tuple[str, ...]) -> str | None:
    return None if value is None else str(value)


def string_map(value: Any, secrets: tuple[str, ...], *, redacted: bool = False) -> dict[str, str] | None:
    """A redacted map of text to text: a non-text value is kept as its JSON text.

    None (or anything but an object) stays None, so the column keeps its type either way. With
    ``redacted``, the values were redacted already (their JSON text is not scanned again); keys
    are always scanned, as a document's redaction masks only known secrets in keys.
    """
    if not isinstance(value, Mapping):
        return None
    # By key (``password``, ``token``...) at any depth.
    cleaned = dict(value) if redacted else redact(dict(value), secrets)
    out: dict[str, str] = {}
    for key, item in cleaned.items():
        if isinstance(item, str):
            text = item
        else:
            text = json.dumps(finite(item), sort_keys=True, ensure_ascii=False, default=str)
        out[redact_text(str(key), secrets)] = text if redacted else redact_text(text, secrets)
    return out


def _campaign_id(raw: Mapping[str, Any]) -> str | None:
    campaign = raw.get("campaign")
    if isinstance(campaign, Mapping) and campaign.get("id") is not None:
        return str(campaign["id"])
    found = raw.get("campaign_id")
    return None if found is None else str(found)


def call_row(call: Call, secrets: Iterable[str] = (), *, redacted: bool = False) -> dict[str, Any]:
    """The ``calls`` row of ``call``, matching :data:`CALLS_SCHEMA`.

    With ``redacted``, ``call`` was built from its redacted document: its texts are not
    redacted again.
    """
    hidden = tuple(secrets)
    raw = call.raw
    text = _same if redacted else _text
    assistant = call.assistant.id if call.assistant is not None else None
    return {
        "call_id": call.id,
        "campaign_id": _campaign_id(raw),
        "assistant_id": assistant if assistant is not None else text(raw.get("assistant_id"), ()),
        "to_phone_number": text(call.to_phone_number, hidden),
        "status": call.status or None,
        "outcome": text(call.outcome, hidden),
        "outcome_summary": text(call.outcome_summary, hidden),
        "created_at": call.created_at,
        "ended_at": call.ended_at,
        "last_attempt_ended_at": call.last_attempt_ended_at,
        "calls_count": call.calls_count,
        "metadata": string_map(call.metadata, hidden, redacted=redacted),
        "prompt_variables": string_map(raw.get("prompt_variables"), hidden, redacted=redacted),
        "document_file": document_path(call.id),
    }


def _duration(attempt: CallAttempt) -> float | None:
    extra = attempt.model_extra or {}
    given = extra.get("duration_secs")
    if isinstance(given, int | float) and not isinstance(given, bool):
        return float(finite(float(given))) if finite(float(given)) is not None else None
    if attempt.answered_at and attempt.ended_at:
        return round((attempt.ended_at - attempt.answered_at).total_seconds(), 3)
    return None


def attempt_rows(
    call: Call,
    recordings: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    *,
    redacted: bool = False,
) -> Iterator[dict[str, Any]]:
    """One ``attempts`` row per attempt of ``call``, oldest first, matching :data:`ATTEMPTS_SCHEMA`.

    Args:
        call: the order.
        recordings: attempt id to the recording's path inside the export, for those downloaded.
        secrets: texts to redact.
        redacted: ``call`` was built from its redacted document: nothing is redacted again.
    """
    hidden = tuple(secrets)
    text = _same if redacted else _text
    files = recordings or {}
    for attempt in reversed(call.attempts_newest_first()):
        yield {
            "call_id": call.id,
            "attempt_id": attempt.id,
            "status": attempt.status,
            "result": attempt.result,
            "dial_error": text(attempt.dial_error, hidden),
            "end_reason": text(attempt.end_reason, hidden),
            "started_at": attempt.started_at,
            "answered_at": attempt.answered_at,
            "ended_at": attempt.ended_at,
            "duration_s": _duration(attempt),
            "recording_file": files.get(attempt.id),
        }
