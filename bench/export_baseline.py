"""The plain export the provider is measured against: what a hand-written script would do.

httpx for the search pages, msgspec to decode them, one redaction pass per call (the provider's
own :func:`redact`, so the outputs can be compared byte for byte), rows as dicts and lists, and
pyarrow to write them. It writes what the provider's default export by search writes to Parquet:
``calls/<id>.json`` (the redacted document, one sorted JSON line), ``transcripts.parquet`` and
``structured_output.parquet``, with the same columns and values, for the scenario of
bench/export.py (its field types: boolean, string, enum, number). bench/export.py checks the two
outputs are equal, so this baseline cannot skip work the provider must do.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TIMESTAMP_TYPE = ("us", "UTC")


def _stamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    stamp = datetime.fromisoformat(text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def _attempts_oldest_first(doc: dict[str, Any]) -> list[dict[str, Any]]:
    attempts = list(doc.get("call_attempts") or [])
    last = doc.get("last_call_attempt")
    if isinstance(last, dict) and all(a.get("id") != last.get("id") for a in attempts):
        attempts.insert(0, last)
    return attempts[::-1]


def _ended_at(doc: dict[str, Any], attempts: list[dict[str, Any]]) -> datetime | None:
    if doc.get("status") not in ("completed", "cancelled", "errored"):
        return None
    given = _stamp(doc.get("ended_at"))
    if given is not None:
        return given
    last = attempts[-1] if attempts else None
    return (_stamp(last.get("ended_at")) if last else None) or _stamp(doc.get("updated_at"))


def _typed(value: Any, kind: str, options: list[str] | None) -> tuple[Any, str | None]:
    if kind == "boolean":
        return (value, None) if isinstance(value, bool) else (None, "expected boolean")
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return (float(value), None) if ok else (None, "expected number")
    if not isinstance(value, str):
        return None, f"expected {kind}"
    if kind == "enum" and options and value not in options:
        return None, "not an option"
    return value, None


def export(base_url: str, api_key: str, filters: dict[str, Any], page_size: int, out: Path) -> int:
    """Export every call matching ``filters`` under ``out``; return how many."""
    import httpx
    import msgspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_provider_revox._internal.core.redact import redact

    secrets = (api_key,)
    (out / "calls").mkdir(parents=True)
    transcripts: dict[str, list[Any]] = {
        name: []
        for name in (
            "call_id",
            "attempt_id",
            "attempt_started_at",
            "turn_index",
            "role",
            "content",
            "tool_name",
            "tool_arguments",
            "tool_is_error",
        )
    }
    structured: list[dict[str, Any]] = []
    fields: dict[str, dict[str, Any]] = {}
    body: dict[str, Any] = {
        "assignee_ids": [],
        "assistant_ids": [],
        "campaign_ids": [],
        "directions": [],
        "from_phone_numbers": [],
        "outcomes": [],
        "results": [],
        "statuses": [],
        **filters,
    }
    decoder = msgspec.json.Decoder()
    count = 0
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
    ) as client:
        page = 0
        while True:
            answer = client.post("/call/search", json={**body, "page": page, "page_size": page_size})
            answer.raise_for_status()
            result = decoder.decode(answer.content)
            for raw in result["calls"]:
                doc = redact(raw, secrets)
                count += 1
                text = json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
                (out / "calls" / f"{doc['id']}.json").write_bytes((text + "\n").encode())
                attempts = _attempts_oldest_first(doc)
                for attempt in attempts:
                    turns = attempt.get("post_call_transcript") or attempt.get("transcript") or []
                    started = _stamp(attempt.get("started_at"))
                    for index, turn in enumerate(turns):
                        arguments = turn.get("tool_arguments")
                        if arguments is not None and not isinstance(arguments, str):
                            arguments = json.dumps(arguments, sort_keys=True, separators=(",", ":"))
                        for name, value in (
                            ("call_id", raw["id"]),
                            ("attempt_id", attempt.get("id")),
                            ("attempt_started_at", started),
                            ("turn_index", index),
                            ("role", turn.get("role")),
                            ("content", turn.get("content")),
                            ("tool_name", turn.get("tool_name")),
                            ("tool_arguments", arguments),
                            ("tool_is_error", turn.get("tool_is_error")),
                        ):
                            transcripts[name].append(value)
                config = (doc.get("assistant") or {}).get("structured_output_config") or []
                for field in config:
                    fields.setdefault(field["name"], field)
                output = doc.get("structured_output") or {}
                row: dict[str, Any] = {
                    "call_id": raw["id"],
                    "status": doc.get("status"),
                    "outcome": doc.get("outcome"),
                    "ended_at": _ended_at(doc, attempts),
                }
                errors = []
                for field in config:
                    value = output.get(field["name"])
                    if value is None:
                        row[field["name"]] = None
                        if field.get("required"):
                            errors.append(f"{field['name']}: missing required field")
                        continue
                    typed, problem = _typed(value, field.get("type") or "string", field.get("enum_options"))
                    row[field["name"]] = typed
                    if problem:
                        errors.append(f"{field['name']}: {problem}")
                named = {field["name"] for field in config}
                errors.extend(f"{key}: not in structured_output_config" for key in output if key not in named)
                row["validation_errors"] = errors
                structured.append(row)
            page += 1
            if len(result["calls"]) < page_size or count >= result["total_count"]:
                break
    stamp = pa.timestamp(*TIMESTAMP_TYPE)
    transcript_schema = pa.schema(
        [
            ("call_id", pa.string()),
            ("attempt_id", pa.string()),
            ("attempt_started_at", stamp),
            ("turn_index", pa.int64()),
            ("role", pa.string()),
            ("content", pa.string()),
            ("tool_name", pa.string()),
            ("tool_arguments", pa.string()),
            ("tool_is_error", pa.bool_()),
        ]
    )
    pq.write_table(pa.Table.from_pydict(transcripts, schema=transcript_schema), out / "transcripts.parquet")
    kinds = {"boolean": pa.bool_(), "number": pa.float64()}
    output_schema = pa.schema(
        [
            ("call_id", pa.string()),
            ("status", pa.string()),
            ("outcome", pa.string()),
            ("ended_at", stamp),
            *(
                (name, kinds.get(field.get("type") or "string", pa.string()))
                for name, field in fields.items()
            ),
            ("validation_errors", pa.list_(pa.string())),
        ]
    )
    pq.write_table(pa.Table.from_pylist(structured, schema=output_schema), out / "structured_output.parquet")
    return count
