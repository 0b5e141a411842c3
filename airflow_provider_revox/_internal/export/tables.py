"""Rows and typed schemas for exporting call orders: transcripts and structured output.

Everything here is pure: it turns :class:`~airflow_provider_revox._internal.core.call.Call` objects into
redacted, JSON-safe-or-typed rows. Writing those rows to storage is the job of
:mod:`airflow_provider_revox._internal.export.writers`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import TypeAdapter

from airflow_provider_revox._internal.core.call import (
    Call,
    CallAttempt,
    StructuredOutputField,
    Timestamp,
    TranscriptTurn,
)
from airflow_provider_revox._internal.core.redact import redact, redact_text

#: Logical column types; writers map them to JSON values or Arrow types.
STRING = "string"
INTEGER = "integer"
NUMBER = "number"
BOOLEAN = "boolean"
DATE = "date"
DATETIME = "datetime"
STRING_LIST = "string_list"
#: A map of text to text (``metadata``, ``prompt_variables``): a JSON object, or a Parquet map.
STRING_MAP = "string_map"
COLUMN_TYPES = frozenset({STRING, INTEGER, NUMBER, BOOLEAN, DATE, DATETIME, STRING_LIST, STRING_MAP})

TRANSCRIPT_SOURCES = ("best", "live", "post_call")


@dataclass(frozen=True)
class Column:
    """One column of an exported table.

    Attributes:
        name: column name.
        type: one of :data:`COLUMN_TYPES`.
    """

    name: str
    type: str

    def __post_init__(self) -> None:
        if self.type not in COLUMN_TYPES:
            raise ValueError(f"column {self.name!r}: unknown type {self.type!r}")


Schema = tuple[Column, ...]

TRANSCRIPT_SCHEMA: Schema = (
    Column("call_id", STRING),
    Column("attempt_id", STRING),
    Column("attempt_started_at", DATETIME),
    Column("turn_index", INTEGER),
    Column("role", STRING),
    Column("content", STRING),
    Column("tool_name", STRING),
    Column("tool_arguments", STRING),
    Column("tool_is_error", BOOLEAN),
)

STRUCTURED_OUTPUT_BASE: Schema = (
    Column("call_id", STRING),
    Column("status", STRING),
    Column("outcome", STRING),
    Column("ended_at", DATETIME),
)
VALIDATION_ERRORS = Column("validation_errors", STRING_LIST)

# structured_output_config types as the API names them, and the few spellings seen besides.
_FIELD_TYPES = {
    "string": STRING,
    "text": STRING,
    "enum": STRING,
    "number": NUMBER,
    "integer": NUMBER,
    "int": NUMBER,
    "float": NUMBER,
    "boolean": BOOLEAN,
    "bool": BOOLEAN,
    "date": DATE,
    "datetime": DATETIME,
    "timestamp": DATETIME,
}

_TIMESTAMP: TypeAdapter[datetime | None] = TypeAdapter(Timestamp)


def check_transcript_source(source: str) -> str:
    """Return ``source`` when it is ``"best"``, ``"live"`` or ``"post_call"``; raise ValueError otherwise."""
    if source not in TRANSCRIPT_SOURCES:
        raise ValueError(f"transcript_source must be one of {', '.join(TRANSCRIPT_SOURCES)}, not {source!r}")
    return source


def finite(value: Any) -> Any:
    """A copy of ``value`` with NaN and infinite numbers replaced by None, at any depth.

    The API's JSON may carry ``NaN`` or ``Infinity``, which strict JSON parsers reject: an
    export writes ``null`` instead (and lists the lost value in ``validation_errors``).
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def _tool_arguments_text(arguments: Any) -> str | None:
    """Tool arguments as JSON text (already-text arguments are kept as they are)."""
    if arguments is None or isinstance(arguments, str):
        return arguments
    return json.dumps(
        finite(arguments), sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )


def _turn(attempt: CallAttempt, index: int, turn: TranscriptTurn) -> dict[str, Any]:
    return {
        "attempt_id": attempt.id,
        "turn_index": index,
        "role": turn.role,
        "content": turn.content,
        "tool_name": turn.tool_name,
        "tool_arguments": turn.tool_arguments,
        "tool_is_error": turn.tool_is_error,
    }


def transcript_turns(call: Call, source: str = "best", secrets: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The call's transcript as redacted, JSON-safe turns, oldest attempt first.

    Each turn has ``attempt_id``, ``turn_index``, ``role``, ``content``, ``tool_name``,
    ``tool_arguments`` (as sent: a mapping, a list or text) and ``tool_is_error``.

    Args:
        call: the call order.
        source: ``"best"`` (post-call transcript when present, else the live one), ``"live"`` or
            ``"post_call"``.
        secrets: literal values to mask wherever they appear (such as the connection's API key).
    """
    turns = [_turn(attempt, index, turn) for attempt, index, turn in call.iter_turns(source)]
    redacted: list[dict[str, Any]] = redact(turns, secrets)
    return redacted


def transcript_rows(
    call: Call, source: str = "best", secrets: Iterable[str] = (), *, redacted: bool = False
) -> Iterator[dict[str, Any]]:
    """Yield one redacted row per transcript turn, matching :data:`TRANSCRIPT_SCHEMA`.

    Args:
        call: the call order.
        source: see :func:`transcript_turns`.
        secrets: literal values to mask wherever they appear.
        redacted: ``call`` was built from its redacted document (see
            :func:`~airflow_provider_revox._internal.export.clean.redacted_call`): nothing is
            redacted again.
    """
    secret_list = tuple(secrets)
    for attempt, index, turn in call.iter_turns(source):
        row: dict[str, Any] = _turn(attempt, index, turn)
        if not redacted:
            row = redact(row, secret_list)
        yield {
            "call_id": call.id,
            "attempt_id": row["attempt_id"],
            "attempt_started_at": attempt.started_at,
            "turn_index": index,
            "role": row["role"],
            "content": row["content"],
            "tool_name": row["tool_name"],
            "tool_arguments": _tool_arguments_text(row["tool_arguments"]),
            "tool_is_error": row["tool_is_error"],
        }


def field_column_type(field: StructuredOutputField) -> str:
    """The column type of a structured-output field; a type nobody has seen yet is kept as text."""
    return _FIELD_TYPES.get((field.type or "string").strip().lower(), STRING)


def _describe(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def coerce(value: Any, column_type: str, field_type: str | None = None) -> tuple[Any, str | None]:
    """Convert one structured-output value to its column type.

    Returns ``(typed value, None)`` when it matches, or ``(None, reason)`` when it does not: a value
    of the wrong type is never guessed at (``"42"`` is not a number).

    Args:
        value: the value as the API sent it (not None).
        column_type: one of :data:`COLUMN_TYPES` except ``integer`` and ``string_list``.
        field_type: the field's declared type, used in the reason; defaults to ``column_type``.
    """
    expected = field_type or column_type
    wrong = f"expected {expected}, got {type(value).__name__} {_describe(value)}"
    if column_type == STRING:
        if isinstance(value, str):
            return value, None
        if expected not in _FIELD_TYPES:
            # Unknown declared type: keep the value as JSON text rather than lose it.
            return _tool_arguments_text(value), None
        return None, wrong
    if column_type == NUMBER:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value), None
        return None, wrong
    if column_type == BOOLEAN:
        return (value, None) if isinstance(value, bool) else (None, wrong)
    if column_type == DATE:
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip()), None
            except ValueError:
                pass
        return None, wrong
    if column_type == DATETIME:
        parsed = _TIMESTAMP.validate_python(value) if isinstance(value, str) else None
        return (parsed, None) if parsed is not None else (None, wrong)
    raise ValueError(f"cannot coerce to column type {column_type!r}")


def validate_structured_output(
    output: Mapping[str, Any], fields: Sequence[StructuredOutputField]
) -> tuple[dict[str, Any], list[str]]:
    """Check a call's ``structured_output`` against its assistant's ``structured_output_config``.

    Returns the typed values of the configured fields (None where missing or not matching) and
    the list of problems: a missing required field, a value of the wrong type, a value outside
    ``enum_options``, a field the config does not name.

    Args:
        output: the call's structured output (already redacted).
        fields: the assistant's structured-output fields.
    """
    values: dict[str, Any] = {}
    errors: list[str] = []
    for field in fields:
        value = output.get(field.name)
        if value is None:
            values[field.name] = None
            if field.required:
                errors.append(f"{field.name}: missing required field")
            continue
        declared = (field.type or "string").strip().lower()
        typed, problem = coerce(value, field_column_type(field), declared)
        if problem is None and declared == "enum" and field.enum_options and typed not in field.enum_options:
            typed, problem = None, f"{field.name}: {_describe(value)} is not one of {field.enum_options}"
        elif problem is not None:
            problem = f"{field.name}: {problem}"
        values[field.name] = typed
        if problem is not None:
            errors.append(problem)
    named = {field.name for field in fields}
    errors.extend(f"{key}: not in structured_output_config" for key in output if key not in named)
    return values, errors


#: Distinct ``structured_output_config`` values a table keeps read (beyond, each is read per row).
_MAX_CONFIGS = 256


class StructuredOutputTable:
    """The ``structured_output`` table: fixed columns, one typed column per configured field.

    Columns are the union of the fields of every assistant seen, in order of first appearance; a
    field defined twice with different types takes its first definition. A field named like a
    fixed column gets the ``output_`` prefix.
    """

    def __init__(self) -> None:
        """Start with no fields."""
        self._fields: dict[str, Column] = {}
        # A campaign repeats a few assistants' configs: each is read into fields once.
        self._configs: dict[str, list[StructuredOutputField]] = {}

    def add_fields(self, fields: Iterable[StructuredOutputField]) -> None:
        """Add an assistant's fields to the union (already known names are kept as first defined)."""
        for field in fields:
            if field.name not in self._fields:
                self._fields[field.name] = Column(self._column_name(field.name), field_column_type(field))

    def _column_name(self, name: str) -> str:
        taken = {c.name for c in STRUCTURED_OUTPUT_BASE} | {VALIDATION_ERRORS.name}
        taken |= {c.name for c in self._fields.values()}
        while name in taken:
            name = f"output_{name}"
        return name

    def _config(self, given: list[Any]) -> list[StructuredOutputField]:
        key = json.dumps(given, sort_keys=True, default=str)
        fields = self._configs.get(key)
        if fields is None:
            fields = [StructuredOutputField.model_validate(f) for f in given]
            if len(self._configs) < _MAX_CONFIGS:
                self._configs[key] = fields
        return fields

    @property
    def schema(self) -> Schema:
        """The table's columns, fixed ones first and ``validation_errors`` last."""
        return (*STRUCTURED_OUTPUT_BASE, *self._fields.values(), VALIDATION_ERRORS)

    def row(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Build a typed row from a record made by :func:`structured_output_record`.

        Raises:
            KeyError: when one of the record's fields was never added with :meth:`add_fields`.
        """
        fields = self._config(record["fields"])
        output: Mapping[str, Any] = record["output"]
        own_values, errors = validate_structured_output(output, fields)
        own_columns = {f.name: field_column_type(f) for f in fields}
        row: dict[str, Any] = {
            "call_id": record["call_id"],
            "status": record["status"],
            "outcome": record["outcome"],
            "ended_at": _TIMESTAMP.validate_python(record["ended_at"]),
        }
        for name, column in self._fields.items():
            if name not in own_columns or own_columns[name] == column.type:
                row[column.name] = own_values.get(name)
                continue
            # The same field name with another type on another assistant: fit it to this column.
            value = output.get(name)
            typed, problem = (None, None) if value is None else coerce(value, column.type)
            if problem is not None:
                errors.append(f"{name}: {problem} (column type of the first assistant defining it)")
            row[column.name] = typed
        row[VALIDATION_ERRORS.name] = errors
        return row


def structured_output_record(
    call: Call, secrets: Iterable[str] = (), *, redacted: bool = False
) -> dict[str, Any]:
    """A JSON-safe, redacted record of what the ``structured_output`` row of ``call`` needs.

    The record keeps the call's own field definitions, so rows can be built once the union of
    every exported call's fields is known (see :class:`StructuredOutputTable`). With
    ``redacted``, ``call`` was built from its redacted document and is not redacted again.
    """
    ended_at = call.ended_at
    outcome = call.outcome
    if outcome and not redacted:
        outcome = redact_text(outcome, tuple(secrets))
    output = call.result_structured_output
    return {
        "call_id": call.id,
        "status": call.status,
        "outcome": outcome,
        "ended_at": ended_at.isoformat() if ended_at else None,
        "output": output if redacted else redact(output, secrets),
        "fields": [f.model_dump(mode="json") for f in call.structured_output_config],
    }


def call_document(call: Call, secrets: Iterable[str] = (), *, redacted: bool = False) -> bytes:
    """The whole call as the API returned it, redacted, as stable JSON bytes (keys sorted, one line).

    One line rather than indented: Python's C encoder only writes compact JSON. A NaN or
    infinity is written ``null``, found by the strict dump failing rather than by walking every
    call. With ``redacted``, ``call`` was built from its redacted document: it is written as is.
    """
    raw = call.raw if redacted else redact(call.raw, secrets)
    options: dict[str, Any] = {"sort_keys": True, "ensure_ascii": False, "default": str, "allow_nan": False}
    try:
        text = json.dumps(raw, separators=(",", ":"), **options)
    except ValueError:
        text = json.dumps(finite(raw), separators=(",", ":"), **options)
    return (text + "\n").encode()
