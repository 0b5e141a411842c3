"""Export rows and the typed structured_output table, built from calls made of plain dicts."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from typing import Any

import pytest

from airflow_provider_revox._internal.core.call import Call, StructuredOutputField
from airflow_provider_revox._internal.core.redact import MASK
from airflow_provider_revox._internal.export.tables import (
    TRANSCRIPT_SCHEMA,
    Column,
    StructuredOutputTable,
    call_document,
    check_transcript_source,
    coerce,
    structured_output_record,
    transcript_rows,
    transcript_turns,
    validate_structured_output,
)
from airflow_provider_revox._internal.export.writers import open_row_writer

FIELDS = [
    {"name": "budget", "type": "number", "required": True},
    {"name": "interested", "type": "boolean"},
    {"name": "plan", "type": "enum", "enum_options": ["basic", "pro"]},
    {"name": "callback_on", "type": "date"},
    {"name": "callback_at", "type": "datetime"},
    {"name": "notes", "type": "string"},
]


def make_call(
    call_id: str = "call-1",
    *,
    fields: list[dict[str, Any]] | None = None,
    output: dict[str, Any] | None = None,
    status: str = "completed",
    attempts: list[dict[str, Any]] | None = None,
) -> Call:
    """A completed call with two attempts, newest first as the API lists them."""
    if attempts is None:
        attempts = [
            {
                "id": "att-2",
                "status": "completed",
                "started_at": "2024-05-02T10:00:00Z",
                "ended_at": "2024-05-02T10:03:00Z",
                "transcript": [{"role": "assistant", "content": "live hello"}],
                "post_call_transcript": [
                    {"role": "assistant", "content": "Hello, Bearer abcdefghijkl"},
                    {
                        "role": "tool",
                        "tool_name": "book",
                        "tool_arguments": {"day": "friday", "token": "tok-123456"},
                        "tool_is_error": False,
                    },
                ],
            },
            {
                "id": "att-1",
                "status": "completed",
                "started_at": "2024-05-01T09:00:00Z",
                "transcript": [{"role": "user", "content": "who is this?"}],
            },
        ]
    return Call.from_response(
        {
            "call": {
                "id": call_id,
                "status": status,
                "outcome": "interested",
                "assistant": {"id": "a1", "structured_output_config": FIELDS if fields is None else fields},
                "call_attempts": attempts,
                "structured_output": output,
                "llm_model": {"type": "custom", "api_key": "sk-live-planted"},
            }
        }
    )


def test_transcript_rows_take_post_call_transcript_oldest_attempt_first_and_redact() -> None:
    rows = list(transcript_rows(make_call(), secrets=("abcdefghijkl",)))
    assert [(r["attempt_id"], r["turn_index"], r["role"]) for r in rows] == [
        ("att-1", 0, "user"),
        ("att-2", 0, "assistant"),
        ("att-2", 1, "tool"),
    ]
    assert [c.name for c in TRANSCRIPT_SCHEMA] == list(rows[0])
    assert rows[0]["attempt_started_at"] == datetime(2024, 5, 1, 9, tzinfo=timezone.utc)
    assert rows[1]["content"] == f"Hello, Bearer {MASK}"
    assert json.loads(rows[2]["tool_arguments"]) == {"day": "friday", "token": MASK}
    assert rows[2]["tool_is_error"] is False
    assert all(r["call_id"] == "call-1" for r in rows)


def test_transcript_source_live_ignores_post_call() -> None:
    rows = list(transcript_rows(make_call(), source="live"))
    assert [r["content"] for r in rows] == ["who is this?", "live hello"]


def test_transcript_turns_keep_tool_arguments_as_sent_but_redacted() -> None:
    turns = transcript_turns(make_call())
    assert turns[2] == {
        "attempt_id": "att-2",
        "turn_index": 1,
        "role": "tool",
        "content": None,
        "tool_name": "book",
        "tool_arguments": {"day": "friday", "token": MASK},
        "tool_is_error": False,
    }


def test_text_tool_arguments_stay_text() -> None:
    attempts = [{"id": "a", "transcript": [{"role": "tool", "tool_arguments": '{"x": 1}'}]}]
    (row,) = transcript_rows(make_call(attempts=attempts))
    assert row["tool_arguments"] == '{"x": 1}'


def test_bad_transcript_source_is_named() -> None:
    with pytest.raises(ValueError, match="'newest'"):
        check_transcript_source("newest")
    assert check_transcript_source("post_call") == "post_call"


@pytest.mark.parametrize(
    ("value", "column_type", "expected"),
    [
        ("x", "string", "x"),
        (3, "number", 3.0),
        (2.5, "number", 2.5),
        (True, "boolean", True),
        ("2024-05-03", "date", date(2024, 5, 3)),
        ("2024-05-03T10:00:00+02:00", "datetime", datetime(2024, 5, 3, 8, tzinfo=timezone.utc)),
    ],
)
def test_coerce_accepts_values_of_the_right_type(value: Any, column_type: str, expected: Any) -> None:
    assert coerce(value, column_type) == (expected, None)


@pytest.mark.parametrize(
    ("value", "column_type"),
    [
        (3, "string"),
        ("42", "number"),
        (True, "number"),
        ("yes", "boolean"),
        (1, "boolean"),
        ("next friday", "date"),
        ("soon", "datetime"),
        (1714723200, "datetime"),
    ],
)
def test_coerce_rejects_values_of_the_wrong_type(value: Any, column_type: str) -> None:
    typed, problem = coerce(value, column_type)
    assert typed is None
    assert problem is not None and problem.startswith(f"expected {column_type}, got {type(value).__name__}")


def test_validation_lists_every_problem_and_nulls_the_bad_values() -> None:
    fields = [StructuredOutputField.model_validate(f) for f in FIELDS]
    values, errors = validate_structured_output(
        {"interested": "yes", "plan": "enterprise", "callback_on": "2024-06-01", "extra": 1}, fields
    )
    assert values == {
        "budget": None,
        "interested": None,
        "plan": None,
        "callback_on": date(2024, 6, 1),
        "callback_at": None,
        "notes": None,
    }
    assert errors == [
        "budget: missing required field",
        'interested: expected boolean, got str "yes"',
        "plan: \"enterprise\" is not one of ['basic', 'pro']",
        "extra: not in structured_output_config",
    ]


def test_unknown_field_type_keeps_the_value_as_text() -> None:
    fields = [StructuredOutputField(name="tags", type="array")]
    values, errors = validate_structured_output({"tags": ["a", "b"]}, fields)
    assert values == {"tags": '["a","b"]'}
    assert errors == []


def test_structured_output_table_unions_fields_in_first_seen_order() -> None:
    table = StructuredOutputTable()
    first = make_call("c1", fields=[FIELDS[0], FIELDS[1]], output={"budget": 10, "interested": True})
    second = make_call(
        "c2",
        fields=[{"name": "interested", "type": "string"}, {"name": "status", "type": "string"}],
        output={"interested": "very", "status": "hot"},
    )
    for call in (first, second):
        table.add_fields(call.structured_output_config)
    assert table.schema == (
        Column("call_id", "string"),
        Column("status", "string"),
        Column("outcome", "string"),
        Column("ended_at", "datetime"),
        Column("budget", "number"),
        Column("interested", "boolean"),
        Column("output_status", "string"),
        Column("validation_errors", "string_list"),
    )
    row1 = table.row(structured_output_record(first))
    assert row1 == {
        "call_id": "c1",
        "status": "completed",
        "outcome": "interested",
        "ended_at": datetime(2024, 5, 2, 10, 3, tzinfo=timezone.utc),
        "budget": 10.0,
        "interested": True,
        "output_status": None,
        "validation_errors": [],
    }
    row2 = table.row(json.loads(json.dumps(structured_output_record(second))))
    assert row2["status"] == "completed"
    assert row2["output_status"] == "hot"
    assert row2["budget"] is None
    # "very" is a valid string for its own assistant but does not fit the boolean column.
    assert row2["interested"] is None
    assert row2["validation_errors"] == [
        'interested: expected boolean, got str "very" (column type of the first assistant defining it)'
    ]


def test_structured_output_falls_back_to_the_newest_attempt_and_is_redacted() -> None:
    attempts = [
        {"id": "new", "structured_output": {"budget": 5, "password": "hunter22"}},
        {"id": "old", "structured_output": {"budget": 1}},
    ]
    record = structured_output_record(make_call(attempts=attempts))
    assert record["output"] == {"budget": 5, "password": MASK}
    assert record["ended_at"] is None  # no attempt end time, no updated_at


def test_call_document_is_redacted_and_stable() -> None:
    call = make_call(output={"budget": 1})
    document = call_document(call, secrets=("abcdefghijkl",))
    assert document == call_document(call, secrets=("abcdefghijkl",))
    parsed = json.loads(document)
    assert parsed["llm_model"]["api_key"] == MASK
    assert b"sk-live-planted" not in document
    assert b"tok-123456" not in document
    assert b"abcdefghijkl" not in document
    assert parsed["call_attempts"][0]["id"] == "att-2"


def test_column_rejects_an_unknown_type() -> None:
    with pytest.raises(ValueError, match="'money'"):
        Column("budget", "money")


def strict_json(text: str | bytes) -> Any:
    """Parse as a strict JSON parser would: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_are_written_as_null_and_their_absence_is_listed(tmp_path: Any) -> None:
    attempts = [
        {
            "id": "a",
            "ended_at": "2024-05-02T10:03:00Z",
            "transcript": [{"role": "tool", "tool_arguments": {"score": float("inf"), "n": [float("nan")]}}],
        }
    ]
    call = make_call(
        fields=[FIELDS[0], {"name": "ratio", "type": "number"}],
        output={"budget": float("nan"), "ratio": float("-inf")},
        attempts=attempts,
    )
    document = strict_json(call_document(call))
    assert document["structured_output"] == {"budget": None, "ratio": None}
    assert document["call_attempts"][0]["transcript"][0]["tool_arguments"] == {"score": None, "n": [None]}

    table = StructuredOutputTable()
    table.add_fields(call.structured_output_config)
    # The export spools records as JSON lines in between, as the operator does.
    record = json.loads(json.dumps(structured_output_record(call)))
    for file_format in ("jsonl", "json"):
        path = tmp_path / f"t.{file_format}"
        for schema, rows in (
            (TRANSCRIPT_SCHEMA, list(transcript_rows(call))),
            (table.schema, [table.row(record)]),
        ):
            writer = open_row_writer(path, file_format, schema)
            for row in rows:
                writer.write(row)
            writer.close()
            text = path.read_text()
            parsed = (
                strict_json(text)
                if file_format == "json"
                else [strict_json(line) for line in text.splitlines()]
            )
            if schema is TRANSCRIPT_SCHEMA:
                assert strict_json(parsed[0]["tool_arguments"]) == {"n": [None], "score": None}
            else:
                assert parsed[0]["budget"] is None and parsed[0]["ratio"] is None
                assert parsed[0]["validation_errors"] == [
                    "budget: expected number, got float NaN",
                    "ratio: expected number, got float -Infinity",
                ]
