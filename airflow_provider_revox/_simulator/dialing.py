"""When the simulated API dials: its own reading of ``call_retry_config`` and a plain walk of time.

This module is the simulator's oracle of the dial schedule. It shares no code with the
provider's scheduling (``waiting/`` and ``models.RetryPolicy``), so tests that compare the two
check the provider against something it did not write. It is deliberately simple: the next
dial is the first real instant, at or after the earliest allowed one, whose local wall-clock
time in the recipient's timezone lies inside a calling window on an allowed day. Time is walked
minute by minute; stretches that cannot hold a window opening are jumped, less a margin wider
than any daylight-saving shift, so no opening is ever skipped.

The config comes in three shapes (flat; ``calling_windows``; ``calling_windows`` plus
``allowed_days`` and ``call_twice_in_a_row``). Window times are ``HH:mm`` or ``H:mma``
(``'17:00'``, ``'6pm'``). The timezone is ``timezone`` when set, else the one of the phone
number's country, else UTC. Defaults: 10:00-18:00, Monday to Friday, 7200 s, 3 attempts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_timezones

DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_WINDOW = ("10:00", "18:00")
DEFAULT_DAYS = list(DAY_NAMES[:5])
DEFAULT_RETRY_DELAY_SECONDS = 7200
DEFAULT_ATTEMPTS = 3
MINUTES_PER_DAY = 24 * 60
#: Wider than any clock change (one hour in most zones, two at Antarctica/Troll): a jump this much
#: short of the next opening, in wall-clock minutes, can never land past it.
SHIFT_MARGIN_MINUTES = 180
#: How far ahead a dial is looked for; every allowed weekday comes round within a week.
HORIZON = timedelta(days=15)

_UTC = timezone.utc
_MINUTE = timedelta(minutes=1)
_TIME = re.compile(r"^\s*(\d{1,2})(?::(\d{2}))?\s*(am|pm)?\s*$", re.IGNORECASE)


class InvalidRules(ValueError):
    """A ``call_retry_config`` the API would refuse; the message names the field."""


@dataclass(frozen=True)
class DialRules:
    """One order's retry config, read.

    Attributes:
        windows: ``(start, end)`` in minutes after local midnight; a window holds ``start <= t < end``.
        days: allowed weekdays, Monday = 0.
        retry_delay_seconds: pause after a missed attempt before the next may be dialled.
        max_attempts: dials the order may make.
        call_twice_in_a_row: attempt 2 follows attempt 1 at once (still inside a window).
        timezone: the explicit IANA timezone, if the config gives one.
    """

    windows: tuple[tuple[int, int], ...]
    days: frozenset[int]
    retry_delay_seconds: float
    max_attempts: int
    call_twice_in_a_row: bool
    timezone: str | None

    def as_config(self, given: dict[str, Any] | None) -> dict[str, Any]:
        """The config as the current spec writes it (every field present), keeping any other given key."""
        return {
            **(given or {}),
            "calling_windows": [
                {
                    "calling_window_start_time": _clock_text(start),
                    "calling_window_end_time": _clock_text(end),
                    "retry_delay_seconds": int(self.retry_delay_seconds),
                }
                for start, end in self.windows
            ],
            "allowed_days": [DAY_NAMES[day] for day in sorted(self.days)],
            "call_twice_in_a_row": self.call_twice_in_a_row,
            "max_retry_attempts": self.max_attempts,
            "timezone": self.timezone,
        }


def clock_minutes(text: Any, field: str) -> int:
    """Minutes after midnight of ``'17:00'``, ``'9:30'``, ``'6pm'``, ``'6:30 PM'``; ``'24:00'`` is 1440.

    Raises:
        InvalidRules: not such a time.
    """
    match = _TIME.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidRules(f"{field} {text!r} is not a time such as '17:00' or '6pm'")
    hour, minute, half = int(match.group(1)), int(match.group(2) or 0), (match.group(3) or "").lower()
    if half:
        if not 1 <= hour <= 12:
            raise InvalidRules(f"{field} {text!r}: a 12-hour time runs from 1 to 12")
        hour = hour % 12 + (12 if half == "pm" else 0)
    elif match.group(2) is None:
        raise InvalidRules(f"{field} {text!r} is not a time such as '17:00' or '6pm'")
    if minute > 59 or hour * 60 + minute > MINUTES_PER_DAY:
        raise InvalidRules(f"{field} {text!r} is not a time of day")
    return hour * 60 + minute


def _clock_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _number(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InvalidRules(f"{field} must be a number of seconds, 0 or more, not {value!r}")
    return float(value)


def dial_rules(config: dict[str, Any] | None) -> DialRules:
    """Read a ``call_retry_config`` of any shape; absent parts take the documented defaults.

    Raises:
        InvalidRules: a field the API would refuse (bad time, empty window, unknown day or
            timezone, attempts not a positive integer).
    """
    config = config or {}
    raw = config.get("calling_windows")
    if raw is not None and not isinstance(raw, list):
        raise InvalidRules("call_retry_config.calling_windows must be a list")
    if not raw and ("calling_window_start_time" in config or "calling_window_end_time" in config):
        raw = [config]  # the flat shape of the older docs
    windows, delays = [], []
    for index, window in enumerate(raw or [{}]):
        where = f"call_retry_config.calling_windows[{index}]"
        if not isinstance(window, dict):
            raise InvalidRules(f"{where} must be an object")
        start_text = window.get("calling_window_start_time") or DEFAULT_WINDOW[0]
        end_text = window.get("calling_window_end_time") or DEFAULT_WINDOW[1]
        start = clock_minutes(start_text, f"{where}.calling_window_start_time")
        end = clock_minutes(end_text, f"{where}.calling_window_end_time")
        if start >= end:
            raise InvalidRules(f"{where} ends before it starts")
        windows.append((start, end))
        delay = _number(window.get("retry_delay_seconds"), f"{where}.retry_delay_seconds")
        if delay is not None:
            delays.append(delay)
    top_delay = _number(config.get("retry_delay_seconds"), "call_retry_config.retry_delay_seconds")
    delay = delays[0] if delays else top_delay if top_delay is not None else DEFAULT_RETRY_DELAY_SECONDS
    attempts = config.get("max_retry_attempts", DEFAULT_ATTEMPTS)
    if attempts is None:
        attempts = DEFAULT_ATTEMPTS
    if isinstance(attempts, float) and attempts.is_integer():
        attempts = int(attempts)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts <= 0:
        raise InvalidRules("call_retry_config.max_retry_attempts must be a positive integer")
    return DialRules(
        windows=tuple(sorted(windows)),
        days=_days(config.get("allowed_days")),
        retry_delay_seconds=delay,
        max_attempts=attempts,
        call_twice_in_a_row=bool(config.get("call_twice_in_a_row")),
        timezone=_zone_name(config.get("timezone")),
    )


def _days(names: Any) -> frozenset[int]:
    if not names:
        names = DEFAULT_DAYS
    if not isinstance(names, list):
        raise InvalidRules("call_retry_config.allowed_days must be a list of weekday names")
    days = set()
    for name in names:
        text = str(name).strip().lower()
        if text not in DAY_NAMES:
            raise InvalidRules(f"call_retry_config.allowed_days: {name!r} is not a weekday name")
        days.add(DAY_NAMES.index(text))
    return frozenset(days)


def _zone_name(name: Any) -> str | None:
    if name is None or name == "":
        return None
    try:
        ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRules(f"call_retry_config.timezone {name!r} is not an IANA timezone") from None
    return str(name)


def recipient_zone(rules: DialRules, phone_number: str) -> ZoneInfo:
    """The explicit timezone, else the first one of the number's country, else UTC."""
    if rules.timezone:
        return ZoneInfo(rules.timezone)
    try:
        number = phonenumbers.parse(phone_number, None)
    except phonenumbers.NumberParseException:
        return ZoneInfo("UTC")
    for name in number_timezones.time_zones_for_number(number):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def is_open(rules: DialRules, local: datetime) -> bool:
    """True when the local wall-clock moment is inside a window on an allowed day."""
    if local.weekday() not in rules.days:
        return False
    minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    return any(start <= minute < end for start, end in rules.windows)


def _minutes_to_next_opening(rules: DialRules, local: datetime) -> int:
    """Wall-clock minutes from ``local`` to the next window start today, or to midnight."""
    minute = local.hour * 60 + local.minute
    if local.weekday() in rules.days:
        later = [start for start, _ in rules.windows if start > minute]
        if later:
            return min(later) - minute
    return MINUTES_PER_DAY - minute


def next_dial(rules: DialRules, zone: ZoneInfo, earliest: datetime) -> datetime:
    """The first instant at or after ``earliest`` whose local time lies in a window on an allowed day.

    Raises:
        ValueError: ``earliest`` has no timezone, or no such instant within :data:`HORIZON`.
    """
    if earliest.tzinfo is None:
        raise ValueError("earliest must be timezone-aware")
    moment = earliest.astimezone(_UTC)
    if is_open(rules, moment.astimezone(zone)):
        return moment
    # Window edges are whole local minutes, and zone offsets are whole minutes: only a whole
    # UTC minute can be the first open instant after a closed one.
    moment = moment.replace(second=0, microsecond=0) + _MINUTE
    limit = moment + HORIZON
    while moment < limit:
        local = moment.astimezone(zone)
        if is_open(rules, local):
            return moment
        moment += _MINUTE * max(1, _minutes_to_next_opening(rules, local) - SHIFT_MARGIN_MINUTES)
    raise ValueError(f"no calling window within {HORIZON.days} days of {earliest.isoformat()}")
