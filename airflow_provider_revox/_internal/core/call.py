"""Typed, tolerant models of a Revox call order.

The API has drifted from its reference page and keeps drifting, so the models
follow three rules:

* enums are plain strings: a status nobody has seen yet never raises;
* null, ``{}`` placeholders and empty strings in timestamps become ``None``;
* every field the models do not name is kept (``extra="allow"``), so
  ``model_dump(mode="json")`` gives back what the API sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from functools import cached_property
from typing import Annotated, Any

import pendulum
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator

from airflow_provider_revox._internal.core import statuses

# The retry policy used to live here: its names stay importable from this module.
from airflow_provider_revox._internal.core.retry_policy import (
    RetryPolicy,
)

#: Bounds on values the API sends, so one absurd order cannot overflow or stall the schedule:
#: timestamps after this are unreadable; delays, durations and attempt counts are capped.
LATEST_TIMESTAMP = datetime(2200, 1, 1, tzinfo=timezone.utc)
MAX_RETRY_DELAY_SECONDS = 30 * 86400.0
MAX_CALL_DURATION_SECONDS = 86400.0
MAX_RETRY_ATTEMPTS = 50


def parse_iso(text: str) -> datetime:
    """``datetime.fromisoformat``, also for a trailing ``Z`` on Python 3.10 (3.11 reads it itself).

    Raises:
        ValueError: the text is not an ISO 8601 timestamp.
    """
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def _to_datetime(value: Any) -> datetime | None:
    """Read an API timestamp: ISO 8601 text or epoch seconds; placeholders become None.

    A time past :data:`LATEST_TIMESTAMP` is as unreadable as garbled text: None.
    """
    stamp = _parse_datetime(value)
    return stamp if stamp is None or stamp < LATEST_TIMESTAMP else None


def _parse_datetime(value: Any) -> datetime | None:
    if value is None or value == {} or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, int | float):
        # Epoch milliseconds are 13 digits today; seconds are 10.
        return _from_epoch(value, 1000 if abs(value) > 1e11 else 1)
    if isinstance(value, str):
        text = value.strip()
        try:
            # The common case, and a tenth of pendulum's cost: pollers parse thousands a minute.
            stamp = parse_iso(text)
        except ValueError:
            pass
        else:
            if stamp.tzinfo is None:
                return stamp.replace(tzinfo=timezone.utc)
            try:
                return stamp.astimezone(timezone.utc)
            except OverflowError:  # year 9999 with an offset that moves it past the end
                return None
        try:
            parsed = pendulum.parse(text, tz="UTC")
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            return None
        if isinstance(parsed, datetime):
            return _from_epoch(parsed.timestamp())
    return None


def _from_epoch(value: float, per_second: int = 1) -> datetime | None:
    """UTC time of ``value / per_second`` epoch seconds; None when no datetime can hold it.

    Unreadable numbers (NaN, epoch microseconds, years past 9999 once in UTC) are treated like
    unreadable text: one odd timestamp must not make the whole call unreadable.
    """
    try:
        return datetime.fromtimestamp(value / per_second, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


Timestamp = Annotated[datetime | None, BeforeValidator(_to_datetime)]


def _capped(cap: float) -> Callable[[Any], Any]:
    """A reader for a number the schedule multiplies: NaN is unreadable, infinity and more is ``cap``."""

    def read(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value
        if math.isnan(value):
            return None
        return min(value, cap)

    return read


#: Seconds between two attempts, at most :data:`MAX_RETRY_DELAY_SECONDS`.
RetryDelay = Annotated[float | None, BeforeValidator(_capped(MAX_RETRY_DELAY_SECONDS))]
#: Longest conversation, at most :data:`MAX_CALL_DURATION_SECONDS`.
CallDuration = Annotated[float | None, BeforeValidator(_capped(MAX_CALL_DURATION_SECONDS))]


def _none_to_list(value: Any) -> Any:
    return [] if value is None else value


def _none_to_dict(value: Any) -> Any:
    return {} if value is None else value


def _to_str(value: Any) -> Any:
    """Keep enum-like fields as text, whatever the API sends."""
    if value is None or isinstance(value, str):
        return value
    return str(value)


Text = Annotated[str | None, BeforeValidator(_to_str)]


class RevoxModel(BaseModel):
    """Base of every Revox model: tolerant of extra fields, which are kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, arbitrary_types_allowed=True)


class TranscriptTurn(RevoxModel):
    """One turn of a call transcript."""

    role: Text = None
    content: Text = None
    tool_name: Text = None
    # Any JSON value: usually an object, sometimes text or an array, rarely a bare number.
    tool_arguments: Any = None
    tool_is_error: bool | None = None
    tool_output: Any = None


Turns = Annotated[list[TranscriptTurn], BeforeValidator(_none_to_list)]


class CallAttempt(RevoxModel):
    """A single dial of the recipient's number."""

    id: str
    status: Text = None
    result: Text = None
    dial_error: Text = None
    end_reason: Text = None
    ended_by: Text = None
    phone_number: Text = None
    recording_url: Text = None
    started_at: Timestamp = None
    answered_at: Timestamp = None
    ended_at: Timestamp = None
    transcript: Turns = Field(default_factory=list)
    post_call_transcript: list[TranscriptTurn] | None = None
    structured_output: dict[str, Any] | None = None

    @property
    def is_live(self) -> bool:
        """True while the attempt is queued, ringing or ongoing."""
        return self.status in statuses.ATTEMPT_LIVE

    @property
    def reached_human(self) -> bool:
        """True when a person answered this attempt."""
        return self.result == statuses.RESULT_HUMAN


class CallingWindow(RevoxModel):
    """A calling window as the API sends it (times are kept as text)."""

    calling_window_start_time: Text = None
    calling_window_end_time: Text = None
    retry_delay_seconds: RetryDelay = None


class CallRetryConfig(RevoxModel):
    """Retry configuration in any of the three shapes the API has used.

    1. flat: window times and delay at the top level (older docs);
    2. ``calling_windows`` list (reference page);
    3. shape 2 plus ``allowed_days`` and ``call_twice_in_a_row`` (current spec).
    """

    calling_windows: Annotated[list[CallingWindow], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )
    calling_window_start_time: Text = None
    calling_window_end_time: Text = None
    retry_delay_seconds: RetryDelay = None
    max_retry_attempts: int | None = None
    timezone: Text = None
    allowed_days: list[str] | None = None
    call_twice_in_a_row: bool | None = None

    @field_validator("max_retry_attempts", mode="before")
    @classmethod
    def _whole_attempts(cls, value: Any) -> Any:
        # Capped: the deadline walks every attempt still to come.
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, int | float) and not isinstance(value, bool) and value > MAX_RETRY_ATTEMPTS:
            return MAX_RETRY_ATTEMPTS
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class StructuredOutputField(RevoxModel):
    """One field the analysis of a call extracts into ``structured_output``."""

    name: str
    type: Text = "string"
    required: bool = False
    description: Text = None
    enum_options: list[str] | None = None


class Assistant(RevoxModel):
    """The AI agent that places the calls."""

    id: Text = None
    name: Text = None
    call_retry_config: CallRetryConfig | None = None
    structured_output_config: Annotated[list[StructuredOutputField], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )
    max_call_duration_secs: CallDuration = None
    llm_model: dict[str, Any] | None = None
    created_at: Timestamp = None
    updated_at: Timestamp = None


class Call(RevoxModel):
    """A call order: one request to reach a person, over one or more attempts."""

    id: str
    status: Annotated[str, BeforeValidator(lambda v: "" if v is None else str(v))] = ""
    calls_count: int = 0
    call_attempts: Annotated[list[CallAttempt], BeforeValidator(_none_to_list)] = Field(default_factory=list)
    last_call_attempt: CallAttempt | None = None
    call_retry_config: CallRetryConfig | None = None
    assistant: Assistant | None = None
    to_phone_number: Text = None
    from_phone_number: Text = None
    direction: Text = None
    outcome: Text = None
    outcome_summary: Text = None
    metadata: Annotated[dict[str, Any], BeforeValidator(_none_to_dict)] = Field(default_factory=dict)
    structured_output: dict[str, Any] | None = None
    llm_model: dict[str, Any] | None = None
    created_at: Timestamp = None
    scheduled_at: Timestamp = None
    updated_at: Timestamp = None
    next_call_at: Timestamp = None

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("calls_count", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        if value is None:
            return 0
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @classmethod
    def from_response(cls, payload: Any) -> Call:
        """Build a call from a ``GET /call/{id}`` body, with or without its ``{"call": ...}`` envelope."""
        if isinstance(payload, dict) and isinstance(payload.get("call"), dict):
            payload = payload["call"]
        call = cls.model_validate(payload)
        call._raw = payload
        return call

    @property
    def raw(self) -> dict[str, Any]:
        """The call exactly as the API returned it (not redacted: redact before it leaves)."""
        return self._raw or self.model_dump(mode="json")

    @property
    def is_terminal(self) -> bool:
        """True only for ``completed``, ``cancelled`` and ``errored``."""
        return statuses.is_terminal(self.status)

    @property
    def is_known_status(self) -> bool:
        """False for a status value the current API spec does not document."""
        return statuses.is_known(self.status)

    @property
    def last_attempt(self) -> CallAttempt | None:
        """The most recent attempt, or None before the first dial."""
        if self.last_call_attempt is not None:
            return self.last_call_attempt
        return self.call_attempts[0] if self.call_attempts else None

    @property
    def attempts_made(self) -> int:
        """Attempts made so far, from ``calls_count`` or the attempts listed."""
        return max(self.calls_count, len(self.call_attempts))

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        """The effective retry policy: the order's own config wins over its assistant's."""
        config = self.call_retry_config
        if config is None and self.assistant is not None:
            config = self.assistant.call_retry_config
        return RetryPolicy.from_config(config)

    @property
    def ended_at(self) -> datetime | None:
        """When the order reached its terminal status; None while it has not.

        The one definition of an order's end, used by every export table, the sensors'
        summaries and the call events. The API's own order-level ``ended_at`` when it sends a
        readable one: it is the moment the status became terminal, after any post-processing
        that follows the last attempt. Else the last attempt's end, else ``updated_at`` (the
        last change of an order that is terminal is the one that made it so).
        """
        if not self.is_terminal:
            return None
        given = (self.model_extra or {}).get("ended_at")
        stamp = _to_datetime(given) if given is not None else None
        return stamp or self.last_attempt_ended_at or self.updated_at

    @property
    def last_attempt_ended_at(self) -> datetime | None:
        """When the most recent attempt ended (None before it ends); not the order's end."""
        last = self.last_attempt
        return last.ended_at if last else None

    @property
    def result_structured_output(self) -> dict[str, Any]:
        """The order's ``structured_output``: its own, else the newest attempt's."""
        if self.structured_output:
            return self.structured_output
        for attempt in self.attempts_newest_first():
            if attempt.structured_output:
                return attempt.structured_output
        return {}

    @property
    def structured_output_config(self) -> list[StructuredOutputField]:
        """The assistant's structured-output fields, or an empty list."""
        return self.assistant.structured_output_config if self.assistant else []

    def attempts_newest_first(self) -> list[CallAttempt]:
        """Every known attempt, most recent first, without duplicates."""
        attempts = list(self.call_attempts)
        last = self.last_call_attempt
        if last is not None and all(a.id != last.id for a in attempts):
            attempts.insert(0, last)
        return attempts

    def iter_turns(self, source: str = "best") -> Iterator[tuple[CallAttempt, int, TranscriptTurn]]:
        """Yield ``(attempt, turn_index, turn)`` in call order, oldest attempt first.

        Args:
            source: ``"best"`` takes each attempt's ``post_call_transcript`` when present, else its
                live ``transcript``; ``"live"`` and ``"post_call"`` take only that one.
        """
        if source not in ("best", "live", "post_call"):
            raise ValueError(f"transcript source must be 'best', 'live' or 'post_call', not {source!r}")
        for attempt in reversed(self.attempts_newest_first()):
            if source == "live":
                turns = attempt.transcript
            elif source == "post_call":
                turns = attempt.post_call_transcript or []
            else:
                turns = attempt.post_call_transcript or attempt.transcript
            for index, turn in enumerate(turns):
                yield attempt, index, turn
