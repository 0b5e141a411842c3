"""Waits end, and one odd order never sinks the rest: deadlines that stop receding, the API's
own plan honoured, and absurd values bounded when the model reads them."""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_revox._internal.core import call as models
from airflow_provider_revox._internal.waiting import rounds, schedule
from airflow_provider_revox._internal.waiting.batch import Fleet
from airflow_provider_revox._internal.waiting.schedule import (
    DEADLINE_MARGIN,
    attempt_bound,
    deadline,
    next_poll_at,
    planned_dial_at,
)
from airflow_provider_revox.hooks.revox import Call

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=timezone.utc)  # a Wednesday
ALWAYS_OPEN = {
    "calling_windows": [{"calling_window_start_time": "00:00", "calling_window_end_time": "23:59"}],
    "allowed_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    "retry_delay_seconds": 3600,
    "max_retry_attempts": 3,
}


def order(**fields: Any) -> Call:
    payload: dict[str, Any] = {"id": "c-1", "status": "scheduled", "to_phone_number": "+33612345678"}
    payload.update(fields)
    return Call.from_response(json.loads(json.dumps(payload)))


# -- orders that never progress are timed out ---------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "scheduled", "scheduled_at": (NOW - timedelta(days=300)).isoformat()},
        {"status": "scheduled", "next_call_at": (NOW - timedelta(days=300)).isoformat()},
        {"status": "not_launched", "created_at": (NOW - timedelta(days=300)).isoformat()},
        {"status": "initializing", "created_at": (NOW - timedelta(days=2)).isoformat()},
    ],
    ids=["scheduled_at", "next_call_at", "not_launched", "initializing"],
)
def test_an_order_whose_first_dial_is_long_overdue_has_a_fixed_past_deadline(fields: dict[str, Any]) -> None:
    stuck = order(call_retry_config=ALWAYS_OPEN, **fields)
    today = deadline(stuck, NOW)
    # Anchored where the first dial fell due: looking again later does not push it back.
    assert today == deadline(stuck, NOW + timedelta(days=30))
    assert today + DEADLINE_MARGIN < NOW
    # A batch wait takes the same deadline for the order, so RevoxCallsSensor times out too.
    state = rounds.BatchRound(Fleet(["c-1"]), poke_interval=30, log=logging.getLogger("test"))
    state.fleet.pop_due(math.inf)
    state.settle("c-1", stuck, NOW)
    latest = state.fleet.latest_deadline()
    assert latest is not None and latest == (today + DEADLINE_MARGIN).timestamp()


def test_an_order_dialled_on_time_keeps_its_full_plan() -> None:
    fresh = order(call_retry_config=ALWAYS_OPEN, scheduled_at=(NOW - timedelta(minutes=1)).isoformat())
    # Three attempts an hour apart after a dial that is due now: nothing was cut short.
    assert deadline(fresh, NOW) >= NOW + 2 * timedelta(hours=1) + 3 * attempt_bound(fresh)


# -- the API's own plan wins --------------------------------------------------------------------


def test_a_planned_dial_keeps_the_order_alive_past_the_derived_attempts() -> None:
    # max_retry_attempts: 2 but three dials made, and the API still plans another one.
    dial = NOW + timedelta(hours=5)
    ended = (NOW - timedelta(hours=1)).isoformat()
    call = order(
        calls_count=3,
        call_retry_config={**ALWAYS_OPEN, "max_retry_attempts": 2},
        next_call_at=dial.isoformat(),
        last_call_attempt={"id": "a3", "status": "completed", "result": "voicemail", "ended_at": ended},
    )
    assert planned_dial_at(call, NOW) == dial
    assert deadline(call, NOW) >= dial + attempt_bound(call)
    assert next_poll_at(call, NOW, 30) <= dial


# -- absurd values are bounded when read --------------------------------------------------------

FAR = "9999-12-31T23:00:00+00:00"
ABSURD = {
    "scheduled_at_9999": {"scheduled_at": FAR, "created_at": NOW.isoformat()},
    "next_call_at_9999": {"next_call_at": FAR},
    "retry_delay_1e12": {"call_retry_config": {**ALWAYS_OPEN, "retry_delay_seconds": 1e12}},
    "retry_delay_inf": {"call_retry_config": {**ALWAYS_OPEN, "retry_delay_seconds": math.inf}},
    "duration_1e12": {"assistant": {"max_call_duration_secs": 1e12}},
    "duration_inf": {"assistant": {"max_call_duration_secs": math.inf}},
    "timezone_300": {"call_retry_config": {**ALWAYS_OPEN, "timezone": "Europe/" + "x" * 293}},
    "attempts_200000": {"call_retry_config": {**ALWAYS_OPEN, "max_retry_attempts": 200_000}},
}


@pytest.mark.parametrize("fields", ABSURD.values(), ids=list(ABSURD))
def test_out_of_range_values_give_a_bounded_schedule(
    fields: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    call = order(
        calls_count=1,
        last_call_attempt={"id": "a1", "status": "completed", "ended_at": NOW.isoformat()},
        **fields,
    )
    # No walk over unbounded attempts: the work is counted, not timed.
    dials: list[int] = []
    real_next_dial_at = schedule.next_dial_at

    def counted(*args: Any, **kwargs: Any) -> datetime:
        dials.append(1)
        return real_next_dial_at(*args, **kwargs)

    monkeypatch.setattr(schedule, "next_dial_at", counted)
    limit = deadline(call, NOW)
    wake = next_poll_at(call, NOW, 30)
    assert len(dials) <= 2 * (models.MAX_RETRY_ATTEMPTS + 1)
    assert NOW <= wake <= limit < datetime(2300, 1, 1, tzinfo=timezone.utc)


def test_the_model_caps_what_the_schedule_multiplies() -> None:
    call = order(
        scheduled_at=FAR,
        next_call_at=FAR,
        call_retry_config={
            "retry_delay_seconds": math.inf,
            "max_retry_attempts": 200_000,
            "timezone": "x" * 300,
        },
        assistant={"max_call_duration_secs": math.nan},
    )
    assert call.scheduled_at is None and call.next_call_at is None
    policy = call.retry_policy
    assert policy.retry_delay_seconds == models.MAX_RETRY_DELAY_SECONDS
    assert policy.max_retry_attempts == models.MAX_RETRY_ATTEMPTS
    assert policy.timezone is None
    assert call.assistant is not None and call.assistant.max_call_duration_secs is None


def test_one_absurd_order_is_that_orders_problem_only() -> None:
    ids = ["odd", "fine"]
    state = rounds.BatchRound(Fleet(ids), poke_interval=30, log=logging.getLogger("test"))
    state.fleet.pop_due(math.inf)
    odd = order(id="odd", **ABSURD["retry_delay_inf"], **ABSURD["next_call_at_9999"])
    state.settle("odd", odd, NOW)
    state.settle("fine", order(id="fine", status="completed"), NOW)
    assert state.close() == []
    assert state.fleet.counts() == {"scheduled": 1, "completed": 1}
    assert state.fleet.pending_ids() == ["odd"]
    assert state.fleet.next_due() is not None
