"""The event trigger's pace (waiting/pace.py), on values: when the next poll comes, when a probe
of the open orders is made, and what a probe page says about when the next order can end.

Monday 30 November 2026; Paris is UTC+1, so the default calling window 10:00-18:00 Paris is
09:00-17:00 UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_revox._internal.waiting.cursor import poll_delay
from airflow_provider_revox._internal.waiting.pace import (
    EARLIEST_SCHEDULED_FIRST,
    FIRST_PATIENCE,
    OPEN_STATUSES,
    Pace,
    open_until,
    probe_filters,
)
from airflow_provider_revox.hooks.revox import Call

INTERVAL, LONGEST = 60.0, 1800.0


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=timezone.utc)


def order(call_id: str, status: str = "scheduled", **fields: Any) -> Call:
    return Call.model_validate({"id": call_id, "status": status, "to_phone_number": "+33612345678", **fields})


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


NOW = utc(30, 1)


def missed_at_nine() -> Call:
    """An order whose first dial, 09:00 to 09:30 UTC, reached a voicemail."""
    attempt = {
        "id": "t1",
        "status": "completed",
        "result": "voicemail",
        "started_at": "2026-11-30T09:00:00Z",
        "ended_at": "2026-11-30T09:30:00Z",
    }
    return order("r", scheduled_at="2026-11-30T09:00:00Z", calls_count=1, call_attempts=[attempt])


def test_the_probe_searches_the_open_orders_of_the_watchers_filters_without_the_end_filters() -> None:
    watcher = {
        "campaign_ids": ["c-1"],
        "statuses": ["completed"],
        "outcomes": ["interested"],
        "results": ["human"],
        "to_phone_number": "+33612345678",
    }
    assert probe_filters(watcher) == {
        "campaign_ids": ["c-1"],
        "to_phone_number": "+33612345678",
        "statuses": list(OPEN_STATUSES),
    }
    assert OPEN_STATUSES == (
        "calling",
        "initializing",
        "not_launched",
        "paused",
        "post_processing",
        "queued_for_calling",
        "scheduled",
    )
    assert EARLIEST_SCHEDULED_FIRST == {"sort_by": "scheduled_at", "sort_direction": "asc"}


def test_no_open_order_means_nothing_can_end() -> None:
    assert open_until([], NOW, INTERVAL, more=False) is None


def test_an_order_waiting_for_its_dial_can_end_only_after_it_in_its_calling_window() -> None:
    morning = order("a", scheduled_at="2026-11-30T08:00:00Z")  # 09:00 Paris, before the window
    assert open_until([morning], NOW, INTERVAL, more=False) == utc(30, 9)
    evening = order("b", scheduled_at="2026-11-30T20:00:00Z")  # after the window: Tuesday 10:00 Paris
    assert open_until([evening], NOW, INTERVAL, more=False) == utc(30, 9) + timedelta(days=1)
    assert open_until([morning, evening], NOW, INTERVAL, more=False) == utc(30, 9)
    saturday = order("s", scheduled_at="2026-12-05T08:00:00Z")  # weekend: Monday 10:00 Paris
    assert open_until([saturday], NOW, INTERVAL, more=False) == utc(30, 9) + timedelta(days=7)
    planned = order("c", scheduled_at="2026-11-30T08:00:00Z", next_call_at="2026-11-30T13:15:00Z")
    assert open_until([planned], NOW, INTERVAL, more=False) == utc(30, 13, 15)


def test_a_retry_waits_for_its_delay() -> None:
    now = utc(30, 9, 45)
    retry = missed_at_nine()
    assert open_until([retry], now, INTERVAL, more=False) == utc(30, 11, 30)  # default delay 2 h


def test_an_order_in_flight_can_end_at_any_moment() -> None:
    calling = order("live", status="calling", scheduled_at="2026-11-30T00:30:00Z")
    waiting = order("later", scheduled_at="2026-11-30T08:00:00Z")
    assert open_until([waiting, calling], NOW, INTERVAL, more=False) == NOW
    for status in ("queued_for_calling", "post_processing"):
        assert open_until([order("x", status=status)], NOW, INTERVAL, more=False) == NOW
    soon = order("soon", scheduled_at="2026-11-30T09:00:30Z")
    assert open_until([soon], utc(30, 9), INTERVAL, more=False) == utc(30, 9)  # due within one interval


def test_a_full_page_bounds_the_orders_after_it_by_its_last_scheduled_at() -> None:
    now = utc(30, 9, 45)
    retry = missed_at_nine()
    later = order("s", scheduled_at="2026-11-30T10:00:00Z", next_call_at="2026-11-30T12:00:00Z")
    assert open_until([retry, later], now, INTERVAL, more=False) == utc(30, 11, 30)
    # An order past the page may be scheduled at 10:00 and dialled then.
    assert open_until([retry, later], now, INTERVAL, more=True) == utc(30, 10)
    # Not sorted as asked (an API that ignored the sort): nothing can be concluded.
    assert open_until([later, retry], now, INTERVAL, more=True) == now
    assert open_until([order("n", next_call_at="2026-11-30T12:00:00Z")], now, INTERVAL, more=True) == now


def test_polls_that_find_orders_come_every_interval() -> None:
    state, wake = Pace().after_poll(True, NOW, INTERVAL, LONGEST)
    assert wake == NOW + timedelta(seconds=INTERVAL) and state == Pace()
    busy = Pace(empty=5, known=True, until=NOW, busy=True, patience=8, waited=3)
    assert busy.after_poll(True, NOW, INTERVAL, LONGEST) == (Pace(), NOW + timedelta(seconds=INTERVAL))


def test_an_empty_poll_probes_then_sleeps_until_one_interval_after_the_next_dial_within_the_cap() -> None:
    state, wake = Pace().after_poll(False, NOW, INTERVAL, LONGEST)
    assert wake is None and state.empty == 1  # probe first
    dawn = utc(30, 9)
    state, wake = state.after_probe(dawn, NOW, INTERVAL, LONGEST)
    assert seconds(wake, NOW) == LONGEST and state.known and not state.busy
    # Waking at the cap, still quiet: another capped sleep, no probe.
    wakes = []
    now = wake
    while True:
        state, next_wake = state.after_poll(False, now, INTERVAL, LONGEST)
        assert next_wake is not None
        wakes.append(next_wake)
        if next_wake > dawn:
            break
        now = next_wake
    assert wakes[-1] == dawn + timedelta(seconds=INTERVAL)
    assert len(wakes) == 16  # 02:00 ... 09:00 at the cap, then 09:01: one poll each, no probe
    # Past the foreseen dial and nothing ended: look again.
    state, wake = state.after_poll(False, wakes[-1], INTERVAL, LONGEST)
    assert wake is None
    # Nothing open at all: the longest sleep.
    _, wake = state.after_probe(None, wakes[-1], INTERVAL, LONGEST)
    assert seconds(wake, wakes[-1]) == LONGEST
    # A dial sooner than the cap: one interval after it.
    _, wake = Pace().after_probe(NOW + timedelta(seconds=600), NOW, INTERVAL, LONGEST)
    assert seconds(wake, NOW) == 660


def test_while_an_order_is_in_flight_polls_keep_the_interval_and_probes_grow_apart() -> None:
    state, now, probes = Pace(), NOW, []
    for number in range(1, 32):
        state, wake = state.after_poll(False, now, INTERVAL, LONGEST)
        if wake is None:
            probes.append(number)
            state, wake = state.after_probe(now, now, INTERVAL, LONGEST)  # still in flight
        assert seconds(wake, now) == INTERVAL
        now = wake
    assert probes == [1, 1 + FIRST_PATIENCE, 1 + 2 + 4, 1 + 2 + 4 + 8, 1 + 2 + 4 + 8 + 16]


def test_an_api_that_refuses_the_probe_gets_the_blind_backoff_for_good() -> None:
    state, wake = Pace().after_poll(False, NOW, INTERVAL, LONGEST)
    assert wake is None
    state, wake = state.without_probe(True, NOW, INTERVAL, LONGEST)
    delays = [seconds(wake, NOW)]
    for _ in range(5):
        state, wake = state.after_poll(False, NOW, INTERVAL, LONGEST)
        assert wake is not None
        delays.append(seconds(wake, NOW))
    assert delays == [poll_delay(n, INTERVAL, LONGEST) for n in range(1, 7)]
    assert delays == [120, 240, 480, 960, 1800, 1800]
    state, wake = state.after_poll(True, NOW, INTERVAL, LONGEST)
    assert state.blind and state.empty == 0 and seconds(wake, NOW) == INTERVAL


def test_a_probe_that_failed_for_a_while_is_tried_again_at_the_next_empty_poll() -> None:
    state, _ = Pace().after_poll(False, NOW, INTERVAL, LONGEST)
    state, wake = state.without_probe(False, NOW, INTERVAL, LONGEST)
    assert not state.blind and seconds(wake, NOW) == 120
    state, wake = state.after_poll(False, wake, INTERVAL, LONGEST)
    assert wake is None
