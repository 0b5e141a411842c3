"""The shared poll of :class:`~airflow_provider_revox._internal.triggers.call_events.RevoxCallEventTrigger`.

Each :meth:`CallPoll.poll` reads ``POST /call/search`` for terminal orders sorted by
``updated_at`` descending, down to where the previous poll began, and proves it got there with
nothing moving under it (see :mod:`~airflow_provider_revox._internal.waiting.pages`): a bounded
number of pages and passes, then :class:`~airflow_provider_revox.exceptions.RevoxIncompleteReadError`.
A time later than the API's clock allows never becomes a poll's head (see
:mod:`~airflow_provider_revox._internal.waiting.cursor`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from airflow_provider_revox._internal.client.servertime import ServerClock
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.waiting.cursor import (
    FUTURE_MARGIN,
    NEWEST_CHANGE_FIRST,
    believed,
    newest_believed,
    terminal_moment,
)
from airflow_provider_revox._internal.waiting.pace import (
    EARLIEST_SCHEDULED_FIRST,
    Pace,
    open_until,
    probe_filters,
)
from airflow_provider_revox._internal.waiting.pages import PageWalk
from airflow_provider_revox.exceptions import RevoxError, RevoxIncompleteReadError, is_transient

PAGE_SIZE = 100
#: Answers of an API that cannot run the probe (its sort or its statuses): polls back off blindly.
PROBE_REFUSED_STATUSES = frozenset({400, 404, 405, 410, 422, 501})

log = logging.getLogger(__name__)


def summary(call: Call) -> dict[str, Any]:
    ended = terminal_moment(call)
    return {
        "id": call.id,
        "status": call.status,
        "ended_at": ended.isoformat() if ended else None,
        "updated_at": call.updated_at.isoformat() if call.updated_at else None,
    }


class CallPoll:
    """The shared poll: each :meth:`poll` returns the terminal orders changed since the last one.

    Args:
        hook: the hook to search with.
        filters: the search filters (``statuses`` included), by their API names.
        interval: seconds between polls while orders end.
        max_interval: the longest sleep between polls.
    """

    def __init__(
        self, hook: RevoxHook, filters: dict[str, Any], *, interval: float = 30.0, max_interval: float = 600.0
    ) -> None:
        """Start with no mark: the first poll reads one page."""
        self.hook = hook
        self.filters = filters
        self.interval = interval
        self.max_interval = max(interval, max_interval)
        self.mark: datetime | None = None
        self.requests = 0
        self.probes = 0
        self.polled = False
        self.pace = Pace()

    @property
    def clock(self) -> ServerClock:
        """The API's clock, as its answers report it: the pace is on the server's time."""
        return self.hook.server_clock

    async def next_poll_at(self, batch: dict[str, Any] | None) -> datetime:
        """When to poll next, after a poll that returned ``batch``; probes the open orders if needed."""
        found = batch is not None and bool(batch["calls"])
        self.pace, wake = self.pace.after_poll(found, self.clock.now(), self.interval, self.max_interval)
        if wake is not None:
            return wake
        try:
            until = await self._probe()
        except RevoxError as error:
            refused = not is_transient(error) and error.status_code in PROBE_REFUSED_STATUSES
            if not refused and not is_transient(error):
                raise
            if refused and not self.pace.blind:
                log.warning(
                    "The Revox API refused the search of open orders (HTTP %s): polls back off "
                    "while nothing ends, up to %.0f s apart",
                    error.status_code,
                    self.max_interval,
                )
            self.pace, wake = self.pace.without_probe(
                refused, self.clock.now(), self.interval, self.max_interval
            )
            return wake
        self.pace, wake = self.pace.after_probe(until, self.clock.now(), self.interval, self.max_interval)
        return wake

    async def _probe(self) -> datetime | None:
        """One page of the open orders, due first first: until when none of them can end."""
        self.requests += 1
        self.probes += 1
        page = await self.hook.asearch_calls(
            page=0, page_size=PAGE_SIZE, **probe_filters(self.filters), **EARLIEST_SCHEDULED_FIRST
        )
        more = len(page.calls) >= PAGE_SIZE or len(page.calls) < page.total_count
        return open_until(page.calls, self.clock.now(), self.interval, more)

    async def poll(self) -> dict[str, Any] | None:
        """One poll: a raw batch ``{"head", "low", "latest", "calls"}``, or None when nothing changed.

        ``calls`` holds every matching order changed after ``low`` (None: since ever), up to
        ``head``, the newest believed change seen; each call is ``{id, status, ended_at,
        updated_at}``. ``latest`` is the latest time believed (the API's clock plus
        :data:`~airflow_provider_revox._internal.waiting.cursor.FUTURE_MARGIN`): a later time never
        becomes ``head``.

        Raises:
            RevoxIncompleteReadError: the pages kept moving, or never reached the previous poll's
                start (an API that ignores ``page``), over every pass allowed; the mark stays.
        """
        mark = self.mark
        walk = PageWalk(PAGE_SIZE, full=False)
        found: list[Call] = []
        head: datetime | None = None
        latest: datetime | None = None
        low = mark

        def owed(call: Call) -> bool:
            ended = terminal_moment(call)
            if head is None:
                return True
            if ended is not None and believed(ended, latest) and ended <= head:
                return True
            return call.updated_at is not None and call.updated_at <= head

        while True:
            number = walk.page
            self.requests += 1
            result = await self.hook.asearch_calls(
                page=number, page_size=PAGE_SIZE, **self.filters, **NEWEST_CHANGE_FIRST
            )
            if latest is None:
                now = self.clock.now()
                latest = now + FUTURE_MARGIN
                head = newest_believed(result.calls, latest, now)
                if mark is not None and (head is None or head <= mark):
                    return None
                if head is None:  # a first poll finding nothing: the watchers start from the beginning
                    self.polled = True
                    return {"head": None, "low": None, "latest": latest.isoformat(), "calls": []}
            past = [_before(call.updated_at, mark) for call in result.calls]
            fresh = walk.take(result.calls, result.total_count, stop=any(past), owed=owed)
            found.extend(call for call in fresh if not _before(call.updated_at, mark))
            if not self.polled:  # a first poll reads one page: the watchers start from now
                if not walk.pass_done and found:
                    low = found[-1].updated_at
                break
            if walk.pass_done:
                if walk.proven:
                    break
                if not walk.more_passes:
                    raise RevoxIncompleteReadError(
                        f"Revox call event poll incomplete: {walk.gap()}", read=len(walk.read)
                    )
                log.warning("Revox search moved while it was polled (%s): reading it again", walk.gap())
                walk.next_pass()
        self.mark, self.polled = head, True
        return {
            "head": head.isoformat() if head else None,
            "low": low.isoformat() if low else None,
            "latest": latest.isoformat(),
            "calls": [summary(call) for call in found],
        }


def _before(updated_at: datetime | None, mark: datetime | None) -> bool:
    return mark is not None and updated_at is not None and updated_at < mark
