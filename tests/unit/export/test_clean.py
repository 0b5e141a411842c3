"""One redaction pass per exported call: every table built from it holds no credential, and the
rows are those the row-by-row redaction wrote."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_revox._internal.core import redact as redact_module
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.export import clean as clean_module
from airflow_provider_revox._internal.export.clean import recordings_of, redacted_call
from airflow_provider_revox._internal.export.tables import (
    StructuredOutputTable,
    call_document,
    structured_output_record,
    transcript_rows,
)
from airflow_provider_revox._internal.export.warehouse import attempt_rows, call_row

API_KEY = "conn-api-key-0000-aaaa"
SECRETS = {
    "metadata": "meta-password-1111",
    "prompt": "prompt-token-2222",
    "content": "content-bearer-3333",
    "tool": "tool-api-key-4444",
    "output": "output-otp-5555",
    "end_reason": "end-reason-token-6666",
    "dial_error": "dial-userinfo-7777",
    "summary": "summary-session-8888",
    "outcome": "outcome-key-9999",
    "phone": "phone-pin-1010",
}


def hostile_call() -> dict[str, Any]:
    """A call whose every exported text holds a credential, in each shape redaction knows."""
    turn = {"role": "user", "content": f"my card is fine, Authorization: Bearer {SECRETS['content']}"}
    tool = {
        "role": "tool",
        "content": f"called with {API_KEY}",
        "tool_name": "crm",
        "tool_arguments": {"api_key": SECRETS["tool"], "name": "Ann"},
        "tool_is_error": False,
    }
    return {
        "id": "call-hostile-1",
        "status": "completed",
        "to_phone_number": f"+33612345678 pin={SECRETS['phone']}",
        "outcome": f"interested key={SECRETS['outcome']}",
        "outcome_summary": f"see https://crm.example/x?session={SECRETS['summary']}",
        "metadata": {"crm": {"password": SECRETS["metadata"]}, "note": "plain"},
        "prompt_variables": {"access_token": SECRETS["prompt"], "first_name": "Ann"},
        "created_at": "2026-03-02T09:00:00Z",
        "updated_at": "2026-03-02T09:05:00Z",
        "ended_at": "2026-03-02T09:05:00Z",
        "calls_count": 2,
        "assistant": {
            "id": "asst_x",
            "llm_model": {"type": "custom", "api_key": "llm-key-1212"},
            "structured_output_config": [
                {"name": "confirmed", "type": "boolean", "required": True},
                {"name": "otp", "type": "string"},
            ],
        },
        "structured_output": {"confirmed": True, "otp": SECRETS["output"]},
        "call_attempts": [  # newest first, as the API lists them
            {
                "id": "att-2",
                "status": "completed",
                "result": "human",
                "end_reason": f"Authorization token {SECRETS['end_reason']}",
                "started_at": "2026-03-02T09:04:00Z",
                "answered_at": "2026-03-02T09:04:05Z",
                "ended_at": "2026-03-02T09:05:00Z",
                "transcript": [turn, tool],
            },
            {
                "id": "att-1",
                "status": "error",
                "dial_error": f"failed at sip://user:{SECRETS['dial_error']}@pbx.example",
                "started_at": "2026-03-02T09:00:00Z",
                "ended_at": "2026-03-02T09:00:30Z",
            },
        ],
    }


def every_table(call: Call, *, redacted: bool) -> dict[str, Any]:
    table = StructuredOutputTable()
    table.add_fields(call.structured_output_config)
    record = structured_output_record(call, (API_KEY,), redacted=redacted)
    return {
        "document": call_document(call, (API_KEY,), redacted=redacted).decode(),
        "transcripts": list(transcript_rows(call, "best", (API_KEY,), redacted=redacted)),
        "calls": call_row(call, (API_KEY,), redacted=redacted),
        "attempts": list(
            attempt_rows(call, {"att-2": "recordings/x/att-2.wav"}, (API_KEY,), redacted=redacted)
        ),
        "structured_output": table.row(json.loads(json.dumps(record))),
    }


def leaked(value: Any) -> list[str]:
    text = json.dumps(value, default=str)
    return [name for name, secret in {**SECRETS, "api_key": API_KEY}.items() if secret in text]


def test_every_table_built_from_the_one_pass_holds_no_credential() -> None:
    call = Call.from_response(hostile_call())
    assert leaked(hostile_call())  # the input does hold them
    clean = redacted_call(call, (API_KEY,))
    assert clean is not None
    tables = every_table(clean, redacted=True)
    for name, rows in tables.items():
        assert leaked(rows) == [], f"{name} leaked"
    # The rows still carry the data that is not a credential.
    assert tables["calls"]["call_id"] == "call-hostile-1"
    assert tables["calls"]["metadata"]["note"] == "plain"
    assert tables["calls"]["prompt_variables"]["first_name"] == "Ann"
    assert [row["attempt_id"] for row in tables["attempts"]] == ["att-1", "att-2"]
    assert tables["attempts"][1]["recording_file"] == "recordings/x/att-2.wav"
    assert [row["role"] for row in tables["transcripts"]] == ["user", "tool"]
    assert json.loads(tables["transcripts"][1]["tool_arguments"])["name"] == "Ann"
    assert tables["structured_output"]["confirmed"] is True


def test_the_one_pass_writes_the_rows_the_row_by_row_redaction_wrote() -> None:
    call = Call.from_response(hostile_call())
    clean = redacted_call(call, (API_KEY,))
    assert clean is not None
    assert every_table(clean, redacted=True) == every_table(call, redacted=False)


def test_an_export_redacts_each_call_once(monkeypatch: pytest.MonkeyPatch) -> None:
    walks: list[int] = []
    real = redact_module.redact

    def counted(value: Any, *args: Any, **kwargs: Any) -> Any:
        walks.append(1)
        return real(value, *args, **kwargs)

    monkeypatch.setattr(clean_module, "redact", counted)
    call = Call.from_response(hostile_call())
    clean = redacted_call(call, (API_KEY,))
    assert clean is not None
    every_table(clean, redacted=True)
    assert len(walks) == 1


def test_a_document_that_no_longer_reads_as_a_call_gives_none_for_row_by_row_redaction() -> None:
    call = Call.from_response(hostile_call())
    call._raw = {**hostile_call(), "call_attempts": "not a list"}
    assert redacted_call(call, (API_KEY,)) is None


def test_recordings_follow_the_attempts_of_the_clean_call() -> None:
    call = Call.from_response(hostile_call())
    clean = redacted_call(call, (API_KEY,))
    assert clean is not None
    assert recordings_of(call, clean, {"att-2": "r.wav"}) == {"att-2": "r.wav"}
    assert recordings_of(call, clean, {}) == {}
