"""The decisions one poll round of a wait makes, shared by every sensor mode and every trigger.

How long to sleep, when to give up, how to back off while the API fails and what to log about
it, and how a batch wait digests the orders a round fetched. Pure where it can be (the clock's
``now`` is passed in); :func:`poll_due` does the fetching, through the poller it is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.core.redact import redact_text
from airflow_provider_revox._internal.waiting import schedule
from airflow_provider_revox._internal.waiting.batch import Fleet
from airflow_provider_revox.exceptions import RevoxError, is_transient

#: Never poll faster than this, whatever the schedule says (a fast simulator's clock included).
MIN_SLEEP_SECONDS = 1.0
#: Longest pause between polls while the API keeps failing: the backoff doubles up to here.
MAX_ERROR_BACKOFF_SECONDS = 600.0
#: How long a wait that has never read its order keeps trying, from the task's first start.
UNREAD_GRACE = schedule.DEADLINE_MARGIN

# What can go wrong computing one order's schedule from values the API sent: bounded in the
# model, but one order's odd value must still never end the other orders' wait.
SCHEDULE_ERRORS = (ValueError, OverflowError, OSError)


class Clock(Protocol):
    """The part of the server's clock the sleep maths needs."""

    speed: float

    def real_seconds(self, server_seconds: float) -> float:
        """Real seconds for ``server_seconds`` of the server's clock to pass."""


class Log(Protocol):
    """The logger methods a round uses."""

    def warning(self, msg: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Log a warning."""

    def info(self, msg: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Log at info."""


def sleep_seconds(
    clock: Clock,
    now: datetime,
    wake: datetime,
    *,
    limit: datetime | None = None,
    real_left: float | None = None,
    min_sleep: float | None = None,
) -> float:
    """Real seconds to sleep until ``wake`` on the server's clock, within the wait's limits.

    The one sleep every mode uses.

    Args:
        clock: the view of the server's clock.
        now: the server's current time.
        wake: when the next poll is due (server time).
        limit: a deadline on the server's clock, or None.
        real_left: real seconds left before a real-time limit (explicit timeout,
            ``execution_timeout``), or None.
        min_sleep: the shortest sleep (default :data:`MIN_SLEEP_SECONDS`, read at each call).
    """
    floor = MIN_SLEEP_SECONDS if min_sleep is None else min_sleep
    if limit is not None:
        wake = min(wake, limit)
    sleep = clock.real_seconds((wake - now).total_seconds())
    if real_left is not None:
        sleep = min(sleep, real_left)
    return max(sleep, floor)


def error_backoff(poke_interval: float, failures: int) -> float:
    """Seconds before polling again after ``failures`` transient failures in a row.

    Doubles from ``poke_interval`` up to :data:`MAX_ERROR_BACKOFF_SECONDS` (never below
    ``poke_interval``), so an outage costs a few requests rather than one per interval.
    """
    if failures <= 1:
        return poke_interval
    grown = poke_interval * 2.0 ** min(failures - 1, 30)
    return max(poke_interval, min(grown, MAX_ERROR_BACKOFF_SECONDS))


class FailureStreak:
    """Transient failures in a row of one wait: one warning when it starts, one line when it ends."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def failed(self) -> bool:
        """Count a failure; True for the first of a streak (the one worth a warning)."""
        self.count += 1
        return self.count == 1

    def recovered(self) -> bool:
        """End the streak; True when there was one (the recovery worth a line)."""
        had = self.count > 0
        self.count = 0
        return had


def warn_unknown_status(log: Log, call_id: str, status: str, warned: set[str]) -> None:
    """Warn once per status value the API spec does not document: the wait goes on regardless."""
    if statuses.is_known(status) or status in warned:
        return
    warned.add(status)
    log.warning(
        "Call %s has status %r, which this provider does not know; treating it as not finished",
        call_id,
        status,
    )


def call_limit(call: Call, now: datetime) -> datetime | None:
    """The derived deadline of one order plus the margin, or None when its values defeat the maths."""
    try:
        return schedule.deadline(call, now) + schedule.DEADLINE_MARGIN
    except SCHEDULE_ERRORS:
        return None


def next_check(call: Call, now: datetime, poke_interval: float) -> datetime:
    """When to fetch the order again; ``poke_interval`` away when its values defeat the schedule."""
    return check_and_limit(call, now, poke_interval)[0]


def check_and_limit(call: Call, now: datetime, poke_interval: float) -> tuple[datetime, datetime | None]:
    """:func:`next_check` and :func:`call_limit` together, walking the order's deadline once."""
    wake, limit, _ = explained_check(call, now, poke_interval)
    return wake, limit


def explained_check(call: Call, now: datetime, poke_interval: float) -> tuple[datetime, datetime | None, str]:
    """:func:`check_and_limit`, and why the next check is then, for the task log."""
    unreadable = "the order's times cannot be scheduled: checked every poke_interval"
    try:
        ends = schedule.deadline(call, now)
    except SCHEDULE_ERRORS:
        return now + timedelta(seconds=poke_interval), None, unreadable
    try:
        wake, why = schedule.next_poll(call, now, poke_interval, known_deadline=ends)
    except SCHEDULE_ERRORS:
        wake, why = now + timedelta(seconds=poke_interval), unreadable
    return wake, ends + schedule.DEADLINE_MARGIN, why


def clock_note(speed: float) -> str:
    """How to read the times a wait logs: said only when they are a simulator's, not real time."""
    if speed == 1:
        return ""
    if speed == 0:
        return " (times are the simulator's manual clock)"
    return f" (times are the simulator's clock, running {speed:g}x real time)"


def utc_text(moment: datetime) -> str:
    """A time as the task log shows it: UTC, to the second."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def server_time_of(clock: Clock, server_now: datetime, real_then: datetime, real_now: datetime) -> datetime:
    """The server's time at the real moment ``real_then`` (a fast simulator's clock runs ahead)."""
    elapsed = max((real_now - real_then).total_seconds(), 0.0)
    return server_now - timedelta(seconds=elapsed * clock.speed)


def unread_limit(started: datetime) -> datetime:
    """When a wait that has never read its order gives up: :data:`UNREAD_GRACE` after it started."""
    return started + UNREAD_GRACE


def fleet_limit(fleet: Fleet, fallback: datetime | None, *, fixed: bool) -> datetime | None:
    """When a batch wait gives up: a fixed limit, else the latest deadline of a pending order.

    ``fallback`` stands in for the derived deadline while no pending order has answered.
    """
    if fixed:
        return fallback
    latest = fleet.latest_deadline()
    return fallback if latest is None else datetime.fromtimestamp(latest, timezone.utc)


def real_left(limit: datetime | None, now: datetime, clock: Clock) -> float | None:
    """Real seconds until ``limit`` on the server's clock; None when unknown (a manual clock)."""
    if limit is None or clock.speed <= 0:
        return None
    return max((limit - now).total_seconds() / clock.speed, 0.0)


class BatchRound:
    """What a batch wait keeps between rounds besides its :class:`Fleet`: warnings and the streak.

    Args:
        fleet: the wait's per-order state.
        poke_interval: seconds between polls while an order can change at any moment.
        log: where the round warns (failures, undocumented statuses).
        secrets: the connection's credentials, masked in every message.
    """

    def __init__(self, fleet: Fleet, *, poke_interval: float, log: Log, secrets: Iterable[str] = ()) -> None:
        self.fleet = fleet
        self.poke_interval = poke_interval
        self.log = log
        self.secrets = tuple(secrets)
        self.warned: set[str] = set()
        self.streak = FailureStreak()
        self.errors: list[str] = []
        self._transient: dict[str, int] = {}

    def settle(self, call_id: str, outcome: Call | BaseException, now: datetime) -> None:
        """Digest one order's outcome: record its status, due time and deadline, or its failure."""
        fleet = self.fleet
        if isinstance(outcome, BaseException):
            if is_transient(outcome):
                text = redact_text(str(outcome), self.secrets)
                self._transient[text] = self._transient.get(text, 0) + 1
                delay = error_backoff(self.poke_interval, self.streak.count + 1)
                fleet.retry_at(call_id, (now + timedelta(seconds=delay)).timestamp())
            else:
                # The hook's messages name the connection, never its key.
                self.errors.append(redact_text(f"call {call_id}: {outcome}", self.secrets))
                fleet.retry_at(call_id, -math.inf)
            return
        if statuses.verdict(outcome.status, fleet.fail_on) != statuses.WAITING:
            fleet.record(call_id, outcome.status, due=now.timestamp())
            return
        warn_unknown_status(self.log, call_id, outcome.status, self.warned)
        wake, limit = check_and_limit(outcome, now, self.poke_interval)
        fleet.record(
            call_id,
            outcome.status,
            due=wake.timestamp(),
            deadline=limit.timestamp() if limit is not None else None,
        )

    def close(self) -> list[str]:
        """End the round: log the failure streak's start or end once; return the final errors."""
        transient, self._transient = self._transient, {}
        if transient:
            if self.streak.failed():
                for message, count in transient.items():
                    # One line per distinct failure: a failed search fails a hundred orders alike.
                    self.log.warning(
                        "%d call order(s): %s; will look again, waiting longer each time", count, message
                    )
        elif self.streak.recovered():
            self.log.info("Revox answers again; polling on the orders' own schedules")
        errors, self.errors = self.errors, []
        return errors


class Poller(Protocol):
    """What :func:`poll_due` needs from :class:`~airflow_provider_revox._internal.hooks.poller.CallPoller`."""

    @property
    def clock(self) -> Any:
        """The server's clock."""

    async def get_calls(self, call_ids: Any, *, concurrency: int = 1, on_outcome: Any = None) -> Any:
        """Fetch the orders, handing each outcome to ``on_outcome``."""


async def poll_due(poller: Poller, state: BatchRound, *, max_concurrency: int) -> list[str]:
    """Fetch every order of the wait that is due, in searches of up to a hundred orders.

    Each fetched order is reduced at once to its status, next due time and deadline
    (:meth:`BatchRound.settle`) and dropped. One poll round of both the batch trigger and the
    batch sensor's poke, so the two modes cannot drift apart.

    Returns:
        One message per order that cannot be fetched at all (unknown id, rejected key).
    """
    clock = poller.clock
    fleet = state.fleet
    due = fleet.pop_due(clock.now().timestamp())
    if not due and clock.speed == 0:
        # A manual clock (a simulator under test) reads the same until a response says it moved,
        # so with nothing due the wait would never learn the time: fetch the earliest order.
        due = fleet.pop_next()
    if not due:
        return []

    def settle(call_id: str, outcome: Call | RevoxError | ValueError) -> None:
        state.settle(call_id, outcome, clock.now())

    # Each order is reduced as it arrives, so a campaign's orders are never all held at once.
    await poller.get_calls(due, concurrency=max_concurrency, on_outcome=settle)
    return state.close()
