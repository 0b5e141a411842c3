"""The one retry policy every shape of an order's ``call_retry_config`` normalises to.

Calling windows, allowed days, retry delay and attempts, and the recipient's timezone, read
tolerantly: absent or unreadable parts take the documented defaults. Re-exported by
:mod:`airflow_provider_revox._internal.core.call`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import time
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone
from pydantic import BaseModel, ConfigDict

DEFAULT_WINDOW_START = time(10, 0)
DEFAULT_WINDOW_END = time(18, 0)
DEFAULT_RETRY_DELAY_SECONDS = 7200.0
DEFAULT_MAX_RETRY_ATTEMPTS = 3
DEFAULT_ALLOWED_DAYS: frozenset[int] = frozenset(range(5))  # Monday to Friday
#: Longest timezone name looked up; a longer one is ignored like an unknown one.
MAX_TIMEZONE_LENGTH = 64

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_TIME_24 = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::\d{2})?\s*$")
_TIME_12 = re.compile(r"^\s*(\d{1,2})(?::(\d{2}))?\s*([ap])\.?\s*m\.?\s*$", re.IGNORECASE)


def parse_window_time(value: str | None) -> time | None:
    """Parse ``'17:00'``, ``'9:30'``, ``'6pm'`` or ``'6:30 PM'``; None when it is not a time."""
    if not value:
        return None
    if match := _TIME_24.match(value):
        hour, minute = int(match.group(1)), int(match.group(2))
    elif match := _TIME_12.match(value):
        hour, minute = int(match.group(1)) % 12, int(match.group(2) or 0)
        if not 1 <= int(match.group(1)) <= 12:
            return None
        if match.group(3).lower() == "p":
            hour += 12
    else:
        return None
    if hour == 24 and minute == 0:
        return time(23, 59, 59)
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


class WindowConfig(Protocol):
    """One calling window as an order sends it (``core.call.CallingWindow`` has this shape)."""

    @property
    def calling_window_start_time(self) -> str | None: ...
    @property
    def calling_window_end_time(self) -> str | None: ...
    @property
    def retry_delay_seconds(self) -> float | None: ...


class RetryConfig(WindowConfig, Protocol):
    """An order's ``call_retry_config`` in any shape (``core.call.CallRetryConfig`` has this shape).

    Described by shape rather than imported: the order model builds its policy from this module,
    so this module cannot import the model back.
    """

    @property
    def calling_windows(self) -> Sequence[WindowConfig]: ...
    @property
    def max_retry_attempts(self) -> int | None: ...
    @property
    def allowed_days(self) -> Sequence[str] | None: ...
    @property
    def call_twice_in_a_row(self) -> bool | None: ...
    @property
    def timezone(self) -> str | None: ...


class Window(BaseModel):
    """A normalised daily calling window in the recipient's local time."""

    model_config = ConfigDict(frozen=True)

    start: time = DEFAULT_WINDOW_START
    end: time = DEFAULT_WINDOW_END

    def contains(self, moment: time) -> bool:
        """True when a local wall-clock time lies inside the window."""
        return self.start <= moment < self.end


class RetryPolicy(BaseModel):
    """The one retry policy every shape of ``call_retry_config`` normalises to."""

    model_config = ConfigDict(frozen=True)

    windows: tuple[Window, ...] = (Window(),)
    allowed_days: frozenset[int] = DEFAULT_ALLOWED_DAYS
    retry_delay_seconds: float = DEFAULT_RETRY_DELAY_SECONDS
    max_retry_attempts: int = DEFAULT_MAX_RETRY_ATTEMPTS
    call_twice_in_a_row: bool = False
    timezone: str | None = None

    @classmethod
    def from_config(cls, config: RetryConfig | None) -> RetryPolicy:
        """Normalise any retry-config shape; absent or unreadable parts take the documented defaults."""
        if config is None:
            return cls()
        # A wait reads the policy of every order it polls, and most orders share one config:
        # the policy (immutable) is built once per distinct set of values.
        flat = (config.calling_window_start_time, config.calling_window_end_time, config.retry_delay_seconds)
        return _policy_of(
            (
                tuple(
                    (w.calling_window_start_time, w.calling_window_end_time, w.retry_delay_seconds)
                    for w in config.calling_windows
                ),
                flat,
                config.max_retry_attempts,
                tuple(config.allowed_days) if config.allowed_days is not None else None,
                config.call_twice_in_a_row,
                config.timezone,
            )
        )

    def zone_for(self, phone_number: str | None) -> ZoneInfo:
        """The recipient's timezone: explicit, else from the phone number, else UTC."""
        if self.timezone and (zone := _zone(self.timezone)):
            return zone
        if phone_number and (name := timezone_for_number(phone_number)):
            return ZoneInfo(name)
        return ZoneInfo("UTC")


_Window = tuple[str | None, str | None, float | None]


@lru_cache(maxsize=256)
def _policy_of(
    raw: tuple[tuple[_Window, ...], _Window, int | None, tuple[str, ...] | None, bool | None, str | None],
) -> RetryPolicy:
    """The policy of one set of config values: windows, flat window, attempts, days, twice, zone."""
    configured, flat, attempts, allowed_days, call_twice_in_a_row, zone_name = raw
    raw_windows = list(configured)
    if not raw_windows and any(flat):
        raw_windows = [flat]
    windows = []
    for start_text, end_text, _ in raw_windows:
        start = parse_window_time(start_text) or DEFAULT_WINDOW_START
        end = parse_window_time(end_text) or DEFAULT_WINDOW_END
        if start < end:
            windows.append(Window(start=start, end=end))
    delays = [d for _, _, d in raw_windows if d is not None and d >= 0]
    flat_delay = flat[2]
    if not delays and flat_delay is not None and flat_delay >= 0:
        delays = [flat_delay]
    return RetryPolicy(
        windows=tuple(sorted(windows, key=lambda w: w.start)) or (Window(),),
        allowed_days=_parse_days(allowed_days),
        retry_delay_seconds=delays[0] if delays else DEFAULT_RETRY_DELAY_SECONDS,
        max_retry_attempts=attempts if attempts and attempts > 0 else DEFAULT_MAX_RETRY_ATTEMPTS,
        call_twice_in_a_row=bool(call_twice_in_a_row),
        timezone=zone_name if zone_name and _zone(zone_name) else None,
    )


def _parse_days(days: tuple[str, ...] | None) -> frozenset[int]:
    if not days:
        return DEFAULT_ALLOWED_DAYS
    return _parse_day_names(tuple(str(day) for day in days))


@lru_cache(maxsize=256)
def _parse_day_names(days: tuple[str, ...]) -> frozenset[int]:
    parsed = set()
    for day in days:
        text = str(day).strip().lower()
        for index, name in enumerate(WEEKDAYS):
            if text and name.startswith(text[:3]):
                parsed.add(index)
    return frozenset(parsed) or DEFAULT_ALLOWED_DAYS


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    if len(name) > MAX_TIMEZONE_LENGTH:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


@lru_cache(maxsize=4096)
def timezone_for_number(phone_number: str) -> str | None:
    """IANA timezone of an E.164 number (the first phonenumbers gives), or None."""
    try:
        parsed = phonenumbers.parse(phone_number, None)
    except phonenumbers.NumberParseException:
        return None
    for name in phone_timezone.time_zones_for_number(parsed):
        if _zone(name):
            return str(name)
    return None
