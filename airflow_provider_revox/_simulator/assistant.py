"""The assistant an order may carry, and the timestamps it may be given, as the simulated API reads them.

The API accepts what its spec describes and is lenient about the rest: extra fields are kept,
enum-like fields are free text, unreadable timestamps are absent. The simulator keeps its own
reading of these shapes rather than the provider's models, so that the provider is tested against
an API, not against itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any

import pendulum
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, field_validator

#: Bounds the API keeps values within: later timestamps are unreadable; delays, durations and
#: attempt counts are capped.
LATEST_TIMESTAMP = datetime(2200, 1, 1, tzinfo=timezone.utc)
MAX_RETRY_DELAY_SECONDS = 30 * 86400.0
MAX_CALL_DURATION_SECONDS = 86400.0
MAX_RETRY_ATTEMPTS = 50


def _epoch(value: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


def _read_time(value: Any) -> datetime | None:
    if value is None or value == {} or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, int | float):
        # Epoch milliseconds are 13 digits; seconds are 10.
        return _epoch(value / 1000 if abs(value) > 1e11 else value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        stamp = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
    except ValueError:
        pass
    else:
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=timezone.utc)
        try:
            return stamp.astimezone(timezone.utc)
        except OverflowError:
            return None
    try:
        parsed = pendulum.parse(text, tz="UTC")
    except (ValueError, pendulum.parsing.exceptions.ParserError):
        return None
    return _epoch(parsed.timestamp()) if isinstance(parsed, datetime) else None


def _to_time(value: Any) -> datetime | None:
    stamp = _read_time(value)
    return stamp if stamp is None or stamp < LATEST_TIMESTAMP else None


Timestamp = Annotated[datetime | None, BeforeValidator(_to_time)]
TIMESTAMP: TypeAdapter[datetime | None] = TypeAdapter(Timestamp)


def _capped(cap: float) -> Callable[[Any], Any]:
    def read(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value
        return None if math.isnan(value) else min(value, cap)

    return read


def _to_str(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else str(value)


def _none_to_list(value: Any) -> Any:
    return [] if value is None else value


Text = Annotated[str | None, BeforeValidator(_to_str)]
RetryDelay = Annotated[float | None, BeforeValidator(_capped(MAX_RETRY_DELAY_SECONDS))]
CallDuration = Annotated[float | None, BeforeValidator(_capped(MAX_CALL_DURATION_SECONDS))]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow")


class CallingWindowShape(_Shape):
    """One calling window (times are text)."""

    calling_window_start_time: Text = None
    calling_window_end_time: Text = None
    retry_delay_seconds: RetryDelay = None


class RetryConfigShape(_Shape):
    """A retry config in any of the three shapes the API has used."""

    calling_windows: Annotated[list[CallingWindowShape], BeforeValidator(_none_to_list)] = Field(
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
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, int | float) and not isinstance(value, bool) and value > MAX_RETRY_ATTEMPTS:
            return MAX_RETRY_ATTEMPTS
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class OutputField(_Shape):
    """One field of an assistant's ``structured_output_config``."""

    name: str
    type: Text = "string"
    required: bool = False
    description: Text = None
    enum_options: list[str] | None = None


class AssistantShape(_Shape):
    """The fields of an assistant the simulated API checks and uses."""

    id: Text = None
    name: Text = None
    call_retry_config: RetryConfigShape | None = None
    structured_output_config: Annotated[list[OutputField], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )
    max_call_duration_secs: CallDuration = None
    llm_model: dict[str, Any] | None = None
    created_at: Timestamp = None
    updated_at: Timestamp = None
