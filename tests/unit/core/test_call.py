"""The call models against every payload shape the API has been seen to send."""

from __future__ import annotations

import json
from datetime import datetime, time, timezone
from typing import Any

import pytest

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.core.call import Call, CallRetryConfig
from airflow_provider_revox._internal.core.retry_policy import (
    DEFAULT_ALLOWED_DAYS,
    RetryPolicy,
    Window,
    parse_window_time,
)
from tests.support.paths import FIXTURES

FIXTURES = FIXTURES


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)  # type: ignore[misc]


# -- the reference page's example, verbatim ---------------------------------------------------


def test_reference_example_parses_verbatim() -> None:
    payload = load("reference_example.json")
    call = Call.from_response(payload)

    assert call.id == "id"
    assert call.status == "initializing"
    assert not call.is_terminal
    assert call.calls_count == 0
    assert call.direction == "inbound"
    assert call.metadata == {"foo": "string"}
    assert call.last_attempt is not None and call.last_attempt.id == "id"
    attempt = call.call_attempts[0]
    assert (attempt.status, attempt.result, attempt.dial_error) == ("queued", "IVR", "number_non_attributed")
    assert attempt.transcript[0].role == "user"
    assert attempt.transcript[0].tool_arguments == {"foo": "bar"}
    assert attempt.structured_output == {"foo": "bar"}
    assert call.result_structured_output == {"foo": "bar"}
    assert call.assistant is not None
    assert call.assistant.structured_output_config[0].enum_options == ["string"]


def test_reference_example_placeholders_become_none() -> None:
    call = Call.from_response(load("reference_example.json"))
    attempt = call.call_attempts[0]

    assert call.created_at is None and call.scheduled_at is None
    assert attempt.started_at is None and attempt.answered_at is None and attempt.ended_at is None
    assert call.assistant is not None and call.assistant.created_at is None


def test_reference_example_retry_config_keeps_readable_parts_and_defaults_the_rest() -> None:
    policy = Call.from_response(load("reference_example.json")).retry_policy

    # Window times are the literal words "calling_window_start_time": unreadable, so defaults.
    assert policy.windows == (Window(start=time(10, 0), end=time(18, 0)),)
    assert policy.retry_delay_seconds == 1
    assert policy.max_retry_attempts == 1
    # "timezone" is not an IANA zone.
    assert policy.timezone is None
    assert policy.allowed_days == DEFAULT_ALLOWED_DAYS


def test_reference_example_keeps_fields_the_models_do_not_name() -> None:
    payload = load("reference_example.json")
    dumped = Call.from_response(payload).model_dump(mode="json")

    assert dumped["campaign"] == {"id": "id", "name": "name"}
    assert dumped["is_cancelled"] is True
    assert dumped["first_sentence_delay_ms"] == -9007199254740991
    assert dumped["assistant"]["faq_items"] == payload["call"]["assistant"]["faq_items"]
    assert dumped["assistant"]["voice"] == {"id": "x", "provider": "cartesia", "speed": 0.6}
    assert dumped["call_attempts"][0]["ended_by"] == "agent"


def test_raw_is_the_payload_without_envelope() -> None:
    payload = load("reference_example.json")
    assert Call.from_response(payload).raw == payload["call"]


# -- the current spec's shape ------------------------------------------------------------------


def test_current_spec_shape() -> None:
    call = Call.from_response(load("current_spec_call.json"))

    assert call.status == statuses.POST_PROCESSING
    assert call.is_known_status and not call.is_terminal
    assert call.outcome == "interested"
    assert call.outcome_summary == "Wants a demo next week."
    assert call.updated_at == datetime(2025, 3, 3, 9, 12, 40, 123000, tzinfo=timezone.utc)
    assert call.updated_at.tzinfo is not None
    assert call.scheduled_at is None
    newest = call.call_attempts[0]
    assert newest.reached_human
    assert newest.answered_at == utc(2025, 3, 3, 10, 10, 7)
    roles = [turn.role for turn in newest.transcript]
    assert roles == ["assistant", "human_agent", "tool"]
    assert newest.transcript[2].tool_output == {"rows": 1}
    assert newest.transcript[2].tool_arguments == '{"q": 1}'
    assert newest.post_call_transcript is not None
    assert newest.post_call_transcript[1].content == "Yes, I am interested."
    # Null transcript and post_call_transcript on the older attempt.
    assert call.call_attempts[1].transcript == []
    assert call.call_attempts[1].post_call_transcript is None
    assert call.result_structured_output == {"interest": "yes"}
    assert call.attempts_made == 2
    assert [f.name for f in call.structured_output_config] == ["interest", "callback_at"]


def test_current_spec_best_transcript_prefers_post_call() -> None:
    call = Call.from_response(load("current_spec_call.json"))
    turns = [(attempt.id, index, turn.content) for attempt, index, turn in call.iter_turns()]
    assert turns == [
        ("att_2", 0, "Hello, this is Revox calling."),
        ("att_2", 1, "Yes, I am interested."),
    ]
    live = [turn.role for _, _, turn in call.iter_turns("live")]
    assert live == ["assistant", "human_agent", "tool"]


def test_current_spec_retry_config_normalises() -> None:
    policy = Call.from_response(load("current_spec_call.json")).retry_policy

    assert policy.windows == (
        Window(start=time(9, 30), end=time(12, 0)),
        Window(start=time(14, 0), end=time(18, 0)),
    )
    assert policy.allowed_days == frozenset({0, 2, 5})
    assert policy.retry_delay_seconds == 1800
    assert policy.max_retry_attempts == 4
    assert policy.call_twice_in_a_row is True
    assert policy.timezone == "Europe/Paris"
    assert policy.zone_for("+14155550100").key == "Europe/Paris"


def test_current_spec_keeps_unseen_fields() -> None:
    dumped = Call.from_response(load("current_spec_call.json")).model_dump(mode="json")

    assert dumped["prompt_variables"] == {"first_name": "Ada"}
    assert dumped["speech_events"] == [{"type": "interruption", "at_ms": 5120}]
    assert dumped["contact"] == {"id": "ct_1", "name": "Ada Lovelace"}
    assert dumped["assignee"] is None
    assert dumped["call_attempts"][0]["sms_log"] == []
    assert dumped["assistant"]["custom_tools"] == []
    assert dumped["call_retry_config"]["allowed_days"] == ["monday", "wednesday", "saturday"]


# -- the older flat retry-config shape, with nulls where the page says required ----------------


def test_flat_shape_and_nulls() -> None:
    call = Call.from_response(load("flat_retry_config_call.json"))

    assert call.id == "call_flat_1"
    assert call.calls_count == 0
    assert call.call_attempts == []
    assert call.last_attempt is None
    assert call.metadata == {}
    assert call.from_phone_number is None
    assert call.created_at is None
    assert call.next_call_at == datetime.fromtimestamp(1741000000, tz=timezone.utc)
    assert call.assistant is not None and call.assistant.structured_output_config == []
    dumped = call.model_dump(mode="json")
    assert dumped["assistant"]["first_sentence"] is None
    assert dumped["assistant"]["voicemail_message"] is None


def test_flat_retry_config_normalises_and_order_wins_over_assistant() -> None:
    policy = Call.from_response(load("flat_retry_config_call.json")).retry_policy

    assert policy.windows == (Window(start=time(9, 0), end=time(17, 0)),)
    assert policy.retry_delay_seconds == 3600
    assert policy.max_retry_attempts == 2
    assert policy.timezone == "America/New_York"
    assert policy.allowed_days == DEFAULT_ALLOWED_DAYS
    assert policy.call_twice_in_a_row is False


def test_three_shapes_normalise_to_the_same_policy() -> None:
    flat = {
        "calling_window_start_time": "9:30am",
        "calling_window_end_time": "6pm",
        "retry_delay_seconds": 600,
        "max_retry_attempts": 5,
        "timezone": "Asia/Tokyo",
    }
    windows = {
        "calling_windows": [
            {
                "calling_window_start_time": "09:30",
                "calling_window_end_time": "18:00",
                "retry_delay_seconds": 600,
            }
        ],
        "max_retry_attempts": 5,
        "timezone": "Asia/Tokyo",
    }
    current = {
        **windows,
        "allowed_days": ["Mon", "tue", "WEDNESDAY", "thu", "fri"],
        "call_twice_in_a_row": False,
    }

    policies = {RetryPolicy.from_config(CallRetryConfig.model_validate(c)) for c in (flat, windows, current)}

    assert policies == {
        RetryPolicy(
            windows=(Window(start=time(9, 30), end=time(18, 0)),),
            retry_delay_seconds=600,
            max_retry_attempts=5,
            timezone="Asia/Tokyo",
        )
    }


@pytest.mark.parametrize("config", [None, {}, {"calling_windows": None, "max_retry_attempts": None}])
def test_absent_retry_config_takes_documented_defaults(config: dict[str, Any] | None) -> None:
    payload: dict[str, Any] = {"id": "c1", "status": "scheduled", "call_retry_config": config}
    policy = Call.from_response(payload).retry_policy

    assert policy.windows == (Window(start=time(10, 0), end=time(18, 0)),)
    assert policy.retry_delay_seconds == 7200
    assert policy.max_retry_attempts == 3
    assert policy.allowed_days == frozenset({0, 1, 2, 3, 4})
    assert policy.call_twice_in_a_row is False
    assert policy.timezone is None


def test_zone_from_phone_number_when_config_has_none() -> None:
    policy = RetryPolicy()
    assert policy.zone_for("+33612345678").key == "Europe/Paris"
    assert policy.zone_for("not a number").key == "UTC"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6pm", time(18, 0)),
        ("9:30am", time(9, 30)),
        ("6:30 PM", time(18, 30)),
        ("12am", time(0, 0)),
        ("12pm", time(12, 0)),
        ("17:00", time(17, 0)),
        ("9:05", time(9, 5)),
        ("24:00", time(23, 59, 59)),
        ("13pm", None),
        ("25:00", None),
        ("noon", None),
        ("", None),
        (None, None),
    ],
)
def test_window_times(text: str | None, expected: time | None) -> None:
    assert parse_window_time(text) == expected


# -- statuses ----------------------------------------------------------------------------------


def test_unknown_status_is_kept_and_not_terminal() -> None:
    call = Call.from_response({"id": "c1", "status": "awaiting_regulator"})

    assert call.status == "awaiting_regulator"
    assert not call.is_terminal
    assert not call.is_known_status


def test_null_and_non_text_status_never_raise() -> None:
    assert Call.from_response({"id": "c1", "status": None}).status == ""
    assert Call.from_response({"id": "c1", "status": 7}).status == "7"


@pytest.mark.parametrize("status", sorted(statuses.KNOWN))
def test_only_three_statuses_are_terminal(status: str) -> None:
    call = Call.from_response({"id": "c1", "status": status})
    assert call.is_terminal is (status in {"completed", "cancelled", "errored"})


def test_unknown_enum_values_inside_attempts_are_kept() -> None:
    payload = {
        "id": "c1",
        "status": "calling",
        "call_attempts": [
            {
                "id": "a1",
                "status": "transferring",
                "result": "fax",
                "dial_error": "sip_607",
                "transcript": [{"role": "supervisor", "content": "hi"}],
            }
        ],
    }
    attempt = Call.from_response(payload).call_attempts[0]
    assert (attempt.status, attempt.result, attempt.dial_error) == ("transferring", "fax", "sip_607")
    assert attempt.transcript[0].role == "supervisor"
    assert not attempt.is_live


# -- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-03T10:00:00Z", utc(2025, 3, 3, 10, 0, 0)),
        ("2025-03-03T12:00:00+02:00", utc(2025, 3, 3, 10, 0, 0)),
        ("2025-03-03T10:00:00", utc(2025, 3, 3, 10, 0, 0)),
        (1741000000, datetime.fromtimestamp(1741000000, tz=timezone.utc)),
        (1741000000000, datetime.fromtimestamp(1741000000, tz=timezone.utc)),
        ({}, None),
        (None, None),
        ("", None),
        ("not a date", None),
    ],
)
def test_timestamps_are_aware_or_none(value: Any, expected: datetime | None) -> None:
    call = Call.from_response({"id": "c1", "created_at": value})
    assert call.created_at == expected
    if expected is not None:
        assert call.created_at is not None and call.created_at.utcoffset() is not None


def test_a_call_needs_an_id() -> None:
    with pytest.raises(ValueError, match="id"):
        Call.from_response({"status": "calling"})
