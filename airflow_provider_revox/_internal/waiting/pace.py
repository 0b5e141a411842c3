"""When the call event trigger polls next: promptly while orders end, asleep while none can.

The trigger's poll reads the terminal orders changed since the previous poll. While polls find
some, the next one comes ``interval`` later. After a poll that finds nothing, the trigger looks
once at the orders still open (a *probe*: one page of the non-terminal orders matching its
filters, sorted by ``scheduled_at`` ascending) and learns from their own schedules, as the
sensors do (:func:`~airflow_provider_revox._internal.waiting.schedule.next_poll_at`: planned dial, calling
window and allowed day in the recipient's timezone, retry delay, attempt bound), the earliest
moment one of them can end:

* one can end at any moment (an attempt live, post-processing, a dial due): poll every
  ``interval``, probing again after 2, then 4, 8... such polls in a row that find nothing (a
  long call, or an order that was cancelled);
* the soonest can only end after a dial at ``D``: sleep until ``D + interval``, but at most
  ``max_interval`` at a time; an empty poll past ``D`` probes again (the dial may have moved);
* none is open: sleep ``max_interval``.

An order placed after the probe is unknown to it, so no sleep lasts longer than ``max_interval``:
such an order is named at most ``max_interval`` after it ends. An API that refuses the probe
gets the blind pace of :func:`~airflow_provider_revox._internal.waiting.cursor.poll_delay`.

Why one page is enough: an order is never dialled before its ``scheduled_at``, and every order
after a page sorted by ``scheduled_at`` ascending is scheduled no earlier than the page's last
one, so that order's ``scheduled_at`` bounds when any of the others can end.

Pure: no I/O and no clock reads; every datetime is timezone-aware.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.waiting import schedule
from airflow_provider_revox._internal.waiting.cursor import poll_delay

#: The probe's statuses: every documented status an order can still end from.
OPEN_STATUSES = tuple(sorted(statuses.KNOWN - statuses.TERMINAL))
#: The probe's sort: the orders due first come first.
EARLIEST_SCHEDULED_FIRST = {"sort_by": "scheduled_at", "sort_direction": "asc"}
#: Filters about how an order ended: an open order has no final status, outcome or result yet,
#: so the probe leaves them out (it looks at more orders than the watcher, never fewer).
END_FILTERS = ("statuses", "outcomes", "results")
#: Empty polls in a row while an order is in flight before the first new probe; doubles per probe.
FIRST_PATIENCE = 2
#: Longest look ahead at one order's schedule (the sensors cap theirs at a few hours, to notice
#: a cancel; here ``max_interval`` caps every sleep instead).
LOOK_AHEAD = timedelta(days=366)

# What reading one order's schedule can raise on odd values (see rounds.SCHEDULE_ERRORS).
_SCHEDULE_ERRORS = (ValueError, OverflowError, OSError)


def probe_filters(filters: Mapping[str, Any]) -> dict[str, Any]:
    """The probe's search filters: the watcher's, without :data:`END_FILTERS`, on open statuses."""
    chosen = {name: value for name, value in filters.items() if name not in END_FILTERS}
    chosen["statuses"] = list(OPEN_STATUSES)
    return chosen


def open_until(calls: Sequence[Call], now: datetime, interval: float, more: bool) -> datetime | None:
    """Until when none of the open orders a probe saw can end.

    Args:
        calls: the probe's page, sorted by ``scheduled_at`` ascending.
        now: the server's time of the probe.
        interval: seconds between polls while orders end.
        more: whether the search matched more orders than the page holds.

    Returns:
        None when no order is open; ``now`` when one can end at any moment (or the page is not
        sorted as asked, so nothing can be concluded); else the soonest planned dial.
    """
    if not calls:
        return None
    soon = now + timedelta(seconds=interval)
    until = now + LOOK_AHEAD
    for call in calls:
        try:
            wake = schedule.next_poll_at(call, now, interval, LOOK_AHEAD)
        except _SCHEDULE_ERRORS:
            wake = now  # an order whose schedule cannot be read may end at any moment
        moment = now if wake <= soon else wake
        until = min(until, moment)
    if more:
        stamps = [call.scheduled_at for call in calls if call.scheduled_at is not None]
        if len(stamps) < len(calls) or stamps != sorted(stamps):
            return now
        until = min(until, max(stamps[-1], now))
    return until


@dataclass(frozen=True)
class Pace:
    """What the poll loop knows between polls; each method returns the next state and wake time.

    Attributes:
        empty: polls in a row that found nothing.
        known: a probe answered since the last poll that found something.
        until: that probe's answer (:func:`open_until`): None when no order was open.
        busy: that probe saw an order that can end at any moment.
        patience: empty polls allowed while busy before the next probe.
        waited: such polls made since the last probe.
        blind: the API refused a probe: back off with :func:`poll_delay` from then on.
    """

    empty: int = 0
    known: bool = False
    until: datetime | None = None
    busy: bool = False
    patience: int = FIRST_PATIENCE
    waited: int = 0
    blind: bool = False

    def after_poll(
        self, found: bool, now: datetime, interval: float, max_interval: float
    ) -> tuple[Pace, datetime | None]:
        """After a poll at ``now``: the new state and the next poll's time, or None to probe first.

        Args:
            found: whether the poll found orders that ended.
            now: the server's time.
            interval: seconds between polls while orders end.
            max_interval: the longest sleep.
        """
        if found:
            return Pace(blind=self.blind), now + timedelta(seconds=interval)
        state = replace(self, empty=self.empty + 1)
        if state.blind:
            return state, now + timedelta(seconds=poll_delay(state.empty, interval, max_interval))
        if not state.known:
            return state, None
        if not state.busy:
            if state.until is None or state.until + timedelta(seconds=interval) > now:
                return state, state._wake(now, interval, max_interval)
            return state, None  # past the dial the probe foresaw, and still nothing: look again
        state = replace(state, waited=state.waited + 1)
        if state.waited >= state.patience:
            return state, None
        return state, now + timedelta(seconds=interval)

    def after_probe(
        self, until: datetime | None, now: datetime, interval: float, max_interval: float
    ) -> tuple[Pace, datetime]:
        """After a probe answered ``until`` (:func:`open_until`): the new state and the next poll's time."""
        busy = until is not None and until <= now
        patience = self.patience * 2 if busy and self.known and self.busy else FIRST_PATIENCE
        state = replace(self, known=True, until=until, busy=busy, waited=0, patience=patience)
        return state, state._wake(now, interval, max_interval)

    def without_probe(
        self, refused: bool, now: datetime, interval: float, max_interval: float
    ) -> tuple[Pace, datetime]:
        """After a probe failed: blind from now on when the API ``refused`` it, else this time only."""
        state = replace(self, blind=self.blind or refused)
        return state, now + timedelta(seconds=poll_delay(state.empty, interval, max_interval))

    def _wake(self, now: datetime, interval: float, max_interval: float) -> datetime:
        longest = now + timedelta(seconds=max_interval)
        if self.until is None:
            return longest
        if self.until <= now:
            return now + timedelta(seconds=interval)
        # Nothing can end before the dial at ``until``: the first poll that can find an end comes
        # one interval after it.
        return min(self.until + timedelta(seconds=interval), longest)
