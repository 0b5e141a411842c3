"""Table tests of the poll schedule and the deadline, with exact datetimes.

2026 DST changes: Europe/Paris springs forward on Sunday 29 March and falls
back on Sunday 25 October; America/New_York on Sunday 8 March and Sunday
1 November. Default windows are 10:00-18:00 Monday to Friday; the default
attempt bound is 2 min ring + 30 min call, post-processing grace 30 min.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.core.retry_policy import RetryPolicy, Window
from airflow_provider_revox._internal.waiting.schedule import (
    DEFAULT_MAX_SLEEP,
    PAUSED_POLL_INTERVAL,
    POST_PROCESSING_GRACE,
    attempt_bound,
    deadline,
    next_dial_at,
    next_poll,
    next_poll_at,
    planned_dial_at,
)

PARIS = "+33612345678"
NEW_YORK = "+12125550100"
TOKYO = "+81312345678"
SYDNEY = "+61291234567"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)


def make_call(**fields: Any) -> Call:
    payload: dict[str, Any] = {"id": "call-1", "status": "scheduled", "to_phone_number": PARIS}
    payload.update(fields)
    return Call.model_validate(payload)


def attempt(
    started: str, ended: str | None = None, status: str = "completed", result: str | None = "voicemail"
) -> dict[str, Any]:
    return {
        "id": f"att-{started}",
        "status": status,
        "result": result,
        "started_at": started,
        "ended_at": ended,
    }


FLAT = {
    "calling_window_start_time": "09:00",
    "calling_window_end_time": "17:00",
    "retry_delay_seconds": 1800,
    "max_retry_attempts": 2,
    "timezone": "Asia/Tokyo",
}
WINDOWS = {
    "calling_windows": [
        {"calling_window_start_time": "9am", "calling_window_end_time": "12pm", "retry_delay_seconds": 3600},
        {"calling_window_start_time": "2pm", "calling_window_end_time": "6pm"},
    ],
    "max_retry_attempts": 3,
}
DAYS_TWICE = {
    "calling_windows": [{"calling_window_start_time": "10:00", "calling_window_end_time": "18:00"}],
    "retry_delay_seconds": 3600,
    "max_retry_attempts": 3,
    "allowed_days": ["saturday", "sunday"],
    "call_twice_in_a_row": True,
}
SUNDAY_NIGHT = {
    "calling_windows": [{"calling_window_start_time": "02:30", "calling_window_end_time": "05:00"}],
    "allowed_days": ["sunday"],
}


# --------------------------------------------------------------------------- next_dial_at

NEXT_DIAL_CASES = [
    # (config, phone, earliest, expected)
    pytest.param(
        None, PARIS, utc(2026, 3, 27, 17, 30), utc(2026, 3, 30, 8, 0), id="paris-fri-evening-to-mon-cest"
    ),
    pytest.param(
        None, PARIS, utc(2026, 10, 23, 16, 30), utc(2026, 10, 26, 9, 0), id="paris-fri-evening-to-mon-cet"
    ),
    pytest.param(
        None, NEW_YORK, utc(2026, 3, 6, 23, 30), utc(2026, 3, 9, 14, 0), id="ny-fri-evening-to-mon-edt"
    ),
    pytest.param(
        None, NEW_YORK, utc(2026, 10, 30, 22, 30), utc(2026, 11, 2, 15, 0), id="ny-fri-evening-to-mon-est"
    ),
    pytest.param(None, TOKYO, utc(2026, 3, 27, 9, 30), utc(2026, 3, 30, 1, 0), id="tokyo-fri-evening-to-mon"),
    pytest.param(None, SYDNEY, utc(2026, 4, 1, 0, 0), utc(2026, 4, 1, 0, 0), id="sydney-inside-window"),
    pytest.param(None, PARIS, utc(2026, 6, 10, 6, 0), utc(2026, 6, 10, 8, 0), id="paris-before-window"),
    pytest.param(None, PARIS, utc(2026, 6, 10, 15, 59), utc(2026, 6, 10, 15, 59), id="paris-last-minute"),
    pytest.param(
        None, PARIS, utc(2026, 6, 10, 16, 0), utc(2026, 6, 11, 8, 0), id="paris-window-end-exclusive"
    ),
    pytest.param(
        {"timezone": "America/New_York"},
        PARIS,
        utc(2026, 6, 10, 9, 0),
        utc(2026, 6, 10, 14, 0),
        id="explicit-tz",
    ),
    pytest.param(FLAT, PARIS, utc(2026, 6, 10, 8, 0), utc(2026, 6, 11, 0, 0), id="flat-shape-tokyo"),
    pytest.param(
        WINDOWS, PARIS, utc(2026, 6, 10, 10, 30), utc(2026, 6, 10, 12, 0), id="12h-gap-between-windows"
    ),
    pytest.param(WINDOWS, PARIS, utc(2026, 6, 10, 15, 30), utc(2026, 6, 10, 15, 30), id="12h-6pm-open"),
    pytest.param(WINDOWS, PARIS, utc(2026, 6, 10, 16, 0), utc(2026, 6, 11, 7, 0), id="12h-6pm-closed"),
    pytest.param(DAYS_TWICE, PARIS, utc(2026, 6, 10, 12, 0), utc(2026, 6, 13, 8, 0), id="weekend-only-days"),
    # 02:30 does not exist on spring-forward Sunday: the window opens when the clock jumps to 03:00.
    pytest.param(
        SUNDAY_NIGHT, PARIS, utc(2026, 3, 28, 12, 0), utc(2026, 3, 29, 1, 0), id="paris-start-in-dst-gap"
    ),
    pytest.param(
        SUNDAY_NIGHT, NEW_YORK, utc(2026, 3, 7, 12, 0), utc(2026, 3, 8, 7, 0), id="ny-start-in-dst-gap"
    ),
    pytest.param(
        SUNDAY_NIGHT,
        PARIS,
        utc(2026, 10, 24, 12, 0),
        utc(2026, 10, 25, 0, 30),
        id="paris-repeated-hour-first-occurrence",
    ),
    pytest.param(
        SUNDAY_NIGHT, NEW_YORK, utc(2026, 10, 31, 12, 0), utc(2026, 11, 1, 7, 30), id="ny-fall-back"
    ),
    pytest.param(
        {
            "calling_windows": [{"calling_window_start_time": "1:30am", "calling_window_end_time": "4am"}],
            "allowed_days": ["sun"],
        },
        NEW_YORK,
        utc(2026, 10, 31, 12, 0),
        utc(2026, 11, 1, 5, 30),
        id="ny-repeated-hour-first-occurrence",
    ),
    pytest.param(
        {
            "calling_windows": [{"calling_window_start_time": "02:10", "calling_window_end_time": "02:50"}],
            "allowed_days": ["sunday"],
        },
        PARIS,
        utc(2026, 3, 28, 12, 0),
        utc(2026, 4, 5, 0, 10),
        id="window-swallowed-by-dst-gap-waits-a-week",
    ),
]


@pytest.mark.parametrize(("config", "phone", "earliest", "expected"), NEXT_DIAL_CASES)
def test_next_dial_at(
    config: dict[str, Any] | None, phone: str, earliest: datetime, expected: datetime
) -> None:
    call = make_call(call_retry_config=config, to_phone_number=phone)
    policy = call.retry_policy
    assert next_dial_at(policy, policy.zone_for(phone), earliest) == expected


def test_next_dial_at_accepts_any_aware_timezone_and_returns_utc() -> None:
    earliest = datetime(2026, 6, 10, 8, 0, tzinfo=ZoneInfo("Europe/Paris"))  # 06:00 UTC
    result = next_dial_at(RetryPolicy(), ZoneInfo("Europe/Paris"), earliest)
    assert result == utc(2026, 6, 10, 8, 0)
    assert result.tzinfo == timezone.utc


def test_next_dial_at_rejects_naive() -> None:
    with pytest.raises(ValueError, match="earliest must be a timezone-aware"):
        next_dial_at(RetryPolicy(), ZoneInfo("UTC"), datetime(2026, 6, 10, 8, 0))


ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "Europe/London"]


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1)),
    zone_name=st.sampled_from(ZONES),
    days=st.frozensets(st.integers(0, 6), min_size=1),
    start_hour=st.integers(0, 22),
    length=st.integers(1, 8),
)
def test_next_dial_at_lands_in_a_window_on_an_allowed_day(
    moment: datetime, zone_name: str, days: frozenset[int], start_hour: int, length: int
) -> None:
    zone = ZoneInfo(zone_name)
    end = time(min(start_hour + length, 23), 59 if start_hour + length >= 24 else 0)
    policy = RetryPolicy(windows=(Window(start=time(start_hour), end=end),), allowed_days=days)
    earliest = moment.replace(tzinfo=timezone.utc)
    result = next_dial_at(policy, zone, earliest)
    local = result.astimezone(zone)
    assert result >= earliest
    assert local.weekday() in days
    assert policy.windows[0].contains(local.time().replace(tzinfo=None))
    # Nothing earlier qualifies: one minute before is before ``earliest`` or outside the window.
    before = (result - timedelta(minutes=1)).astimezone(zone)
    assert result == earliest or before.weekday() not in days or not policy.windows[0].contains(before.time())


# --------------------------------------------------------------------------- deadline

BOUND_5MIN = {"max_call_duration_secs": 300}  # 2 min ring + 5 min call = 7 min per attempt

DEADLINE_CASES = [
    # (fields, now, expected)
    pytest.param(
        {"created_at": "2026-03-27T17:30:00Z"},
        utc(2026, 3, 27, 17, 30),
        # Mon 30 Mar (CEST) dials 08:00, 10:32, 13:04 UTC; +32 min; +30 min grace.
        utc(2026, 3, 30, 14, 6),
        id="paris-weekend-and-spring-forward-defaults",
    ),
    pytest.param(
        {"to_phone_number": NEW_YORK},
        utc(2026, 10, 30, 22, 30),
        # Mon 2 Nov (EST) dials 15:00, 17:32, 20:04 UTC.
        utc(2026, 11, 2, 21, 6),
        id="ny-weekend-and-fall-back-defaults",
    ),
    pytest.param(
        {"to_phone_number": NEW_YORK},
        utc(2026, 3, 6, 23, 30),
        # Mon 9 Mar (EDT) dials 14:00, 16:32, 19:04 UTC.
        utc(2026, 3, 9, 20, 6),
        id="ny-spring-forward",
    ),
    pytest.param(
        {"scheduled_at": "2026-06-16T15:00:00Z", "assistant": BOUND_5MIN},
        utc(2026, 6, 15, 9, 0),
        # Tue 15:00 ends 15:07; +2h = 19:07 CEST is closed -> Wed 08:00 UTC, ends 08:07; 10:07 -> 10:14.
        utc(2026, 6, 17, 10, 44),
        id="scheduled-at-future-rolls-to-next-day",
    ),
    pytest.param(
        {"call_retry_config": FLAT, "to_phone_number": PARIS},
        utc(2026, 6, 12, 7, 0),
        # Fri 16:00 JST dial (07:00 UTC) ends 07:32; +30 min = 17:02 JST closed -> Mon 09:00 JST = 00:00 UTC.
        utc(2026, 6, 15, 1, 2),
        id="flat-shape-explicit-tokyo-two-attempts",
    ),
    pytest.param(
        {"call_retry_config": WINDOWS, "assistant": BOUND_5MIN},
        utc(2026, 6, 10, 9, 0),
        # 11:00 CEST dial ends 11:07; +1h 12:07 -> 14:00 CEST (12:00 UTC) ends 12:07; 13:07 -> 13:14.
        utc(2026, 6, 10, 13, 44),
        id="two-windows-12h-format",
    ),
    pytest.param(
        {"call_retry_config": DAYS_TWICE, "assistant": BOUND_5MIN},
        utc(2026, 6, 13, 8, 0),
        # Sat 08:00 UTC ends 08:07; attempt 2 at once ends 08:14; +1h 09:14 ends 09:21.
        utc(2026, 6, 13, 9, 51),
        id="allowed-days-call-twice",
    ),
    pytest.param(
        {
            "call_retry_config": DAYS_TWICE,
            "assistant": BOUND_5MIN,
            "status": "calling",
            "calls_count": 1,
            "call_attempts": [attempt("2026-06-13T15:50:00Z", status="ongoing", result=None)],
        },
        utc(2026, 6, 13, 15, 55),
        # Live attempt 1 ends 15:57 (17:57 CEST); attempt 2 at once ends 16:04; +1h 19:04 CEST is closed
        # -> Sun 08:00 UTC, ends 08:07.
        utc(2026, 6, 14, 8, 37),
        id="live-attempt-call-twice-then-next-day",
    ),
    pytest.param(
        {
            "assistant": BOUND_5MIN,
            "status": "scheduled",
            "calls_count": 1,
            "call_attempts": [attempt("2026-06-10T08:00:00Z", "2026-06-10T08:01:00Z")],
        },
        utc(2026, 6, 10, 8, 30),
        # No next_call_at: 08:01 + 2h = 10:01 ends 10:08; 12:08 ends 12:15.
        utc(2026, 6, 10, 12, 45),
        id="between-attempts-from-last-end",
    ),
    pytest.param(
        {
            "assistant": BOUND_5MIN,
            "status": "scheduled",
            "calls_count": 1,
            "next_call_at": "2026-06-10T11:00:00Z",
            "call_attempts": [attempt("2026-06-10T08:00:00Z", "2026-06-10T08:01:00Z")],
        },
        utc(2026, 6, 10, 8, 30),
        # next_call_at wins: 11:00 ends 11:07; 13:07 ends 13:14.
        utc(2026, 6, 10, 13, 44),
        id="between-attempts-next-call-at",
    ),
    pytest.param(
        {
            "assistant": BOUND_5MIN,
            "status": "calling",
            "calls_count": 2,
            "last_call_attempt": attempt("2026-06-10T10:01:00Z", status="ongoing", result="human"),
        },
        utc(2026, 6, 10, 10, 3),
        utc(2026, 6, 10, 10, 38),
        id="live-attempt-with-a-person-is-the-last",
    ),
    pytest.param(
        {
            "status": "post_processing",
            "calls_count": 2,
            "call_attempts": [attempt("2026-06-10T10:01:00Z", "2026-06-10T10:04:00Z", result="human")],
        },
        utc(2026, 6, 10, 10, 5),
        utc(2026, 6, 10, 10, 34),
        id="post-processing",
    ),
    pytest.param(
        {
            "status": "scheduled",
            "calls_count": 3,
            "call_attempts": [attempt("2026-06-10T12:10:00Z", "2026-06-10T12:11:00Z")],
        },
        utc(2026, 6, 10, 12, 20),
        utc(2026, 6, 10, 12, 41),
        id="attempts-exhausted",
    ),
    pytest.param(
        {
            "status": "paused",
            "calls_count": 2,
            "call_attempts": [attempt("2026-06-10T08:00:00Z", "2026-06-10T08:01:00Z")],
        },
        utc(2026, 6, 12, 15, 50),
        # As if resumed now (Fri 17:50 CEST): dial now, ends 16:22 UTC.
        utc(2026, 6, 12, 16, 52),
        id="paused-as-if-resumed-now",
    ),
    pytest.param(
        {"status": "mystery_status", "assistant": {"max_call_duration_secs": 0}},
        utc(2026, 6, 10, 8, 0),
        # Unknown status walks the policy; a zero duration means "not set": dials 08:00, 10:32, 13:04.
        utc(2026, 6, 10, 14, 6),
        id="unknown-status-default-duration",
    ),
]


@pytest.mark.parametrize(("fields", "now", "expected"), DEADLINE_CASES)
def test_deadline(fields: dict[str, Any], now: datetime, expected: datetime) -> None:
    assert deadline(make_call(**fields), now) == expected


@pytest.mark.parametrize("status", ["completed", "cancelled", "errored"])
def test_deadline_of_terminal_order_is_when_it_ended(status: str) -> None:
    call = make_call(status=status, call_attempts=[attempt("2026-06-10T08:00:00Z", "2026-06-10T08:04:00Z")])
    assert deadline(call, utc(2026, 6, 10, 9, 0)) == utc(2026, 6, 10, 8, 4)
    assert deadline(make_call(status=status), utc(2026, 6, 10, 9, 0)) == utc(2026, 6, 10, 9, 0)


def test_deadline_timezone_from_number_vs_explicit() -> None:
    now = utc(2026, 6, 10, 0, 0)  # Wednesday
    by_number = {
        PARIS: utc(2026, 6, 10, 14, 6),
        NEW_YORK: utc(2026, 6, 10, 20, 6),
        TOKYO: utc(2026, 6, 10, 7, 6),
    }
    for phone, expected in by_number.items():
        assert deadline(make_call(to_phone_number=phone), now) == expected, phone
    explicit = make_call(to_phone_number=TOKYO, call_retry_config={"timezone": "America/New_York"})
    assert deadline(explicit, now) == by_number[NEW_YORK]


def test_assistant_config_applies_and_order_config_wins() -> None:
    assistant = {"call_retry_config": {"max_retry_attempts": 1}, "max_call_duration_secs": 600}
    now = utc(2026, 6, 10, 8, 0)
    assert (
        deadline(make_call(assistant=assistant), now) == now + timedelta(minutes=12) + POST_PROCESSING_GRACE
    )
    own = make_call(
        assistant=assistant, call_retry_config={"max_retry_attempts": 2, "retry_delay_seconds": 0}
    )
    assert deadline(own, now) == now + timedelta(minutes=24) + POST_PROCESSING_GRACE


def test_attempt_bound() -> None:
    assert attempt_bound(make_call()) == timedelta(minutes=32)
    assert attempt_bound(make_call(assistant={"max_call_duration_secs": 60})) == timedelta(minutes=3)


# --------------------------------------------------------------------------- next_poll_at

NOW = utc(2026, 6, 10, 9, 0)  # Wednesday 11:00 CEST, window open

POLL_CASES = [
    # (fields, now, poke_interval, expected)
    pytest.param({"status": "calling"}, NOW, 15, NOW + timedelta(seconds=15), id="calling"),
    pytest.param(
        {
            "status": "scheduled",
            "calls_count": 1,
            "call_attempts": [attempt("2026-06-10T08:59:00Z", status="ringing")],
        },
        NOW,
        15,
        NOW + timedelta(seconds=15),
        id="live-attempt-under-another-status",
    ),
    pytest.param({"status": "queued_for_calling"}, NOW, 15, NOW + timedelta(seconds=15), id="queued"),
    pytest.param(
        {
            "status": "post_processing",
            "call_attempts": [attempt("2026-06-10T08:50:00Z", "2026-06-10T08:58:00Z")],
        },
        NOW,
        15,
        NOW + timedelta(seconds=15),
        id="post-processing",
    ),
    pytest.param({"status": "brand_new_status"}, NOW, 15, NOW + timedelta(seconds=15), id="unknown-status"),
    pytest.param({"status": ""}, NOW, 30, NOW + timedelta(seconds=30), id="missing-status"),
    pytest.param({"status": "paused"}, NOW, 15, NOW + PAUSED_POLL_INTERVAL, id="paused"),
    pytest.param({"status": "paused"}, NOW, 900, NOW + timedelta(minutes=15), id="paused-slow-poke"),
    pytest.param(
        {"scheduled_at": "2026-06-10T10:30:00Z"}, NOW, 15, utc(2026, 6, 10, 10, 30), id="scheduled-at-future"
    ),
    pytest.param(
        {"scheduled_at": "2026-06-10T08:00:00Z"}, NOW, 15, NOW + timedelta(seconds=15), id="due-now"
    ),
    pytest.param(
        {"created_at": "2026-06-12T16:30:00Z"},
        utc(2026, 6, 12, 16, 30),
        15,
        utc(2026, 6, 12, 16, 30) + DEFAULT_MAX_SLEEP,
        id="weekend-capped-by-max-sleep",
    ),
    pytest.param(
        {
            "status": "scheduled",
            "calls_count": 1,
            "call_attempts": [attempt("2026-06-10T08:00:00Z", "2026-06-10T08:02:00Z")],
        },
        NOW,
        15,
        utc(2026, 6, 10, 10, 2),
        id="retry-delay-from-last-end",
    ),
    pytest.param(
        {
            "status": "scheduled",
            "calls_count": 1,
            "next_call_at": "2026-06-10T09:40:00Z",
            "call_attempts": [attempt("2026-06-10T08:00:00Z", "2026-06-10T08:02:00Z")],
        },
        NOW,
        15,
        utc(2026, 6, 10, 9, 40),
        id="next-call-at-honoured",
    ),
    pytest.param(
        {
            "status": "scheduled",
            "calls_count": 1,
            "next_call_at": "2026-06-10T08:55:00Z",
            "call_attempts": [attempt("2026-06-10T08:00:00Z", "2026-06-10T08:02:00Z")],
        },
        NOW,
        15,
        NOW + timedelta(seconds=15),
        id="next-call-at-overdue",
    ),
    pytest.param(
        {
            "status": "scheduled",
            "calls_count": 1,
            "next_call_at": "2026-06-10T08:00:00Z",
            "call_attempts": [attempt("2026-06-10T08:00:00Z", "2026-06-10T08:02:00Z")],
        },
        NOW,
        15,
        utc(2026, 6, 10, 10, 2),
        id="next-call-at-stale",
    ),
    pytest.param(
        {
            "call_retry_config": DAYS_TWICE,
            "status": "scheduled",
            "calls_count": 1,
            "call_attempts": [attempt("2026-06-13T08:00:00Z", "2026-06-13T08:01:00Z", result="voicemail")],
        },
        utc(2026, 6, 13, 8, 1, 30),
        15,
        utc(2026, 6, 13, 8, 1, 45),
        id="call-twice-in-a-row-dials-at-once",
    ),
    pytest.param(
        {
            "status": "scheduled",
            "calls_count": 3,
            "call_attempts": [attempt("2026-06-10T08:50:00Z", "2026-06-10T08:52:00Z")],
        },
        NOW,
        15,
        NOW + timedelta(seconds=15),
        id="attempts-exhausted",
    ),
    pytest.param(
        {
            "status": "post_processing",
            "call_attempts": [attempt("2026-06-10T08:00:00Z", "2026-06-10T08:30:10Z")],
        },
        NOW,
        15,
        utc(2026, 6, 10, 9, 0, 10),
        id="post-processing-capped-at-deadline",
    ),
    pytest.param(
        {
            "status": "post_processing",
            "call_attempts": [attempt("2026-06-10T06:00:00Z", "2026-06-10T06:10:00Z")],
        },
        NOW,
        15,
        NOW + timedelta(seconds=15),
        id="overdue-keeps-poking",
    ),
]


@pytest.mark.parametrize(("fields", "now", "poke", "expected"), POLL_CASES)
def test_next_poll_at(fields: dict[str, Any], now: datetime, poke: float, expected: datetime) -> None:
    assert next_poll_at(make_call(**fields), now, poke) == expected


@pytest.mark.parametrize("status", ["completed", "cancelled", "errored"])
def test_next_poll_at_terminal_is_now(status: str) -> None:
    assert next_poll_at(make_call(status=status), NOW, 15) == NOW


def test_next_poll_at_long_sleep_reaches_the_monday_window() -> None:
    friday = utc(2026, 3, 27, 17, 30)  # 18:30 CET, the Sunday after springs forward
    call = make_call(created_at="2026-03-27T17:30:00Z")
    assert next_poll_at(call, friday, 15, max_sleep=timedelta(days=7)) == utc(2026, 3, 30, 8, 0)
    assert planned_dial_at(call, friday) == utc(2026, 3, 30, 8, 0)


def test_next_poll_at_is_never_after_the_deadline() -> None:
    call = make_call(
        status="scheduled",
        calls_count=2,
        assistant={"max_call_duration_secs": 60},
        call_attempts=[attempt("2026-06-10T08:00:00Z", "2026-06-10T08:01:00Z")],
    )
    assert deadline(call, NOW) == utc(2026, 6, 10, 10, 34)
    assert next_poll_at(call, NOW, 15, max_sleep=timedelta(days=1)) == utc(2026, 6, 10, 10, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"poke_interval": 0}, "poke_interval must be a positive"),
        ({"poke_interval": -5}, "poke_interval must be a positive"),
        ({"poke_interval": 15, "max_sleep": timedelta(0)}, "max_sleep must be positive"),
        ({"poke_interval": 15, "now": datetime(2026, 6, 10, 9, 0)}, "now must be a timezone-aware"),
    ],
)
def test_next_poll_at_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"now": NOW, **kwargs}
    with pytest.raises(ValueError, match=message):
        next_poll_at(make_call(), **arguments)


def test_deadline_rejects_naive_now() -> None:
    with pytest.raises(ValueError, match="now must be a timezone-aware"):
        deadline(make_call(), datetime(2026, 6, 10, 9, 0))


# --------------------------------------------------------------------------- against the simulator


def test_simulated_orders_are_seen_within_one_poke_and_never_outlive_the_deadline() -> None:
    """Follow real simulated orders over DST weeks: no oversleeping, no premature deadline."""
    import random

    from airflow_provider_revox.testing import SimulatorEngine, VirtualClock

    start = utc(2026, 3, 2)  # Monday; New York and Paris change clocks in the following weeks
    clock = VirtualClock(start)
    engine = SimulatorEngine(seed=11, clock=clock)
    rng = random.Random(11)
    phones = [PARIS, NEW_YORK, TOKYO, SYDNEY]
    created = sorted(start + timedelta(minutes=rng.randrange(28 * 24 * 60)) for _ in range(60))
    ids = []
    for index, moment in enumerate(created):
        clock.set(moment)
        ids.append(engine.place_call(phone_number=phones[index % 4], assistant_id="asst_poll")["id"])

    poke, polls, fixed_polls = 15.0, 0, 0.0
    for call_id, moment in zip(ids, created, strict=True):
        ends = engine.terminal_at(call_id)
        assert ends is not None
        fixed_polls += (ends - moment).total_seconds() / 60
        while True:
            polls += 1
            call = Call.from_response(engine.get_call(call_id, at=moment))
            if call.is_terminal:
                assert timedelta(0) <= moment - ends <= timedelta(seconds=poke), call_id
                break
            assert ends <= deadline(call, moment), (call_id, call.status, moment)
            following = next_poll_at(call, moment, poke)
            assert moment < following <= max(moment + timedelta(seconds=poke), ends), (call_id, call.status)
            moment = following
    assert polls < fixed_polls / 10


# --------------------------------------------------------------------------- why the next poll


def test_the_reason_of_a_sleep_names_what_the_time_comes_from() -> None:
    friday = utc(2026, 3, 27, 17, 30)  # 18:30 in Paris: the window is closed until Monday
    waiting = make_call(created_at="2026-03-27T17:30:00Z")
    assert next_poll(waiting, friday, 15, max_sleep=timedelta(days=7)) == (
        utc(2026, 3, 30, 8, 0),
        "the next attempt can be dialled at 2026-03-30 08:00:00 UTC (calling window and retry delay)",
    )
    assert next_poll(waiting, friday, 15) == (
        friday + timedelta(hours=6),
        "the next attempt can be dialled at 2026-03-30 08:00:00 UTC (calling window and retry delay); "
        "sleeping at most 6:00:00 at a time",
    )
    assert next_poll(make_call(status="paused"), NOW, 15)[1] == (
        "the order is paused: a person may resume it at any time"
    )
    assert next_poll(make_call(status="post_processing"), NOW, 15) == (
        NOW + timedelta(seconds=15),
        "the analysis of the call is running",
    )
    assert next_poll(make_call(status="completed"), NOW, 15) == (NOW, "the order has ended")


def test_the_reason_and_the_time_are_one_decision() -> None:
    # next_poll_at is next_poll's time, whatever the case.
    for fields in (
        {"created_at": "2026-03-27T17:30:00Z"},
        {"status": "paused"},
        {"status": "calling", "call_attempts": [attempt("2026-06-10T08:00:00Z", None)]},
        {"status": "errored"},
    ):
        call = make_call(**fields)
        for now in (NOW, utc(2026, 3, 27, 17, 30)):
            assert next_poll(call, now, 15)[0] == next_poll_at(call, now, 15)
