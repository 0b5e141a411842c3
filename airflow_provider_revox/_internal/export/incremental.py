"""Reading only the orders that reached a terminal status since a watermark.

The search is sorted by ``updated_at`` descending and read until the first order changed before
the watermark (see :mod:`~airflow_provider_revox._internal.waiting.cursor`). An API that refuses the sort
(400 or 422) is read in full instead, with one warning: the same orders, more requests.

The read proves it reached the watermark with nothing moving under it, or reads again from the
head (where an order that moved now is), or fails with
:class:`~airflow_provider_revox.exceptions.RevoxIncompleteReadError` and leaves the watermark
where it was (see :mod:`~airflow_provider_revox._internal.waiting.pages`). A time later than the
API's clock plus :data:`~airflow_provider_revox._internal.waiting.cursor.FUTURE_MARGIN` is not
believed: the order is exported, once, with a warning, and the watermark moves only to the
believed times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from airflow_provider_revox._internal.client.responses import CallPage
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.core.statuses import TERMINAL
from airflow_provider_revox._internal.export.fetch import Sleep
from airflow_provider_revox._internal.export.search import asked_page_size, calls_by_search, in_rounds
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.waiting.cursor import (
    FUTURE_MARGIN,
    NEWEST_CHANGE_FIRST,
    Watermark,
    believed,
    newest_believed,
    takes,
    terminal_moment,
)
from airflow_provider_revox._internal.waiting.pages import PageWalk
from airflow_provider_revox.exceptions import RevoxConfigError, RevoxError, RevoxIncompleteReadError

#: Answers of an API that cannot sort a search.
SORT_REFUSED_STATUSES = frozenset({400, 422})

log = logging.getLogger(__name__)


def terminal_only(filters: Mapping[str, Any]) -> dict[str, Any]:
    """``filters`` narrowed to terminal statuses: only an order that ended is ever taken, so a read
    never pages through orders still waiting or live (on a first run, a whole day of them).

    Raises:
        RevoxConfigError: ``statuses`` names no terminal status (an empty list would not filter).
    """
    narrowed = dict(filters)
    asked = narrowed.get("statuses")
    if asked:
        kept = [status for status in asked if status in TERMINAL]
        if not kept:
            raise RevoxConfigError(
                f"an incremental export takes orders that ended ({', '.join(sorted(TERMINAL))}); "
                f"statuses {list(asked)} names none of them"
            )
        narrowed["statuses"] = kept
    else:
        narrowed["statuses"] = sorted(TERMINAL)
    return narrowed


class NewCalls:
    """The orders matching ``filters`` that became terminal since ``watermark``; iterate once.

    After the iteration, :attr:`watermark` is the watermark that includes every order yielded,
    and :attr:`sorted` says whether the API sorted the search.

    Args:
        hook: the hook to search with.
        filters: the search filters, by their API names.
        watermark: where the last read stopped.
        sleep: how to pause between rounds after transient failures.
        page_size: orders per page to ask for; by default
            :data:`~airflow_provider_revox._internal.export.search.INCREMENTAL_PAGE_SIZE`.
    """

    def __init__(
        self,
        hook: RevoxHook,
        filters: Mapping[str, Any],
        watermark: Watermark,
        *,
        sleep: Sleep = time.sleep,
        page_size: int | None = None,
    ) -> None:
        """Remember what to read; nothing is sent before the iteration.

        Raises:
            RevoxConfigError: ``filters`` name only statuses that are not terminal (nothing sent).
        """
        self._hook = hook
        self._filters = terminal_only(filters)
        self._start = watermark
        self._sleep = sleep
        self._page_size = asked_page_size(page_size, "INCREMENTAL_PAGE_SIZE")
        self._taken: list[tuple[str, datetime]] = []
        self._untrusted: list[str] = []
        self._latest: datetime | None = None
        self.sorted = True

    @property
    def watermark(self) -> Watermark:
        """The watermark once every order yielded so far is handed over."""
        return self._start.advance(self._taken, self._untrusted)

    @property
    def taken(self) -> int:
        """Orders yielded so far."""
        return len(self._taken) + len(self._untrusted)

    def __iter__(self) -> Iterator[Call]:
        """Yield each new order once, newest change first (the API's order).

        Raises:
            RevoxIncompleteReadError: the read could not be proven to reach the watermark; the
                caller publishes nothing and keeps the watermark.
        """
        for call in self._read():
            ended_at = terminal_moment(call)
            if ended_at is not None and not believed(ended_at, self._latest):
                log.warning(
                    "Revox call %s reports it ended at %s, later than the API's clock allows (%s): "
                    "exported, but the watermark does not move to that time",
                    call.id,
                    ended_at.isoformat(),
                    self._latest.isoformat() if self._latest else None,
                )
                self._untrusted.append(call.id)
            elif ended_at is not None:
                self._taken.append((call.id, ended_at))
            yield call

    def _read(self) -> Iterator[Call]:
        hook, size = self._hook, self._page_size
        try:
            first = in_rounds(
                "Revox search sorted by updated_at",
                lambda: hook.search_calls(page=0, page_size=size, **self._filters, **NEWEST_CHANGE_FIRST),
                self._sleep,
                passthrough=SORT_REFUSED_STATUSES,
            )
        except RevoxError as error:
            log.warning(
                "The Revox API refused to sort the search (HTTP %s): reading every matching call instead",
                error.status_code,
            )
            self.sorted = False
            yield from self._full_scan()
            return
        self._latest = latest = hook.server_clock.now() + FUTURE_MARGIN
        head = newest_believed(first.calls, latest, hook.server_clock.now())
        sorted_filters = {**self._filters, **NEWEST_CHANGE_FIRST}
        start = self._start

        def owed(call: Call) -> bool:
            return takes(start, head, call.id, terminal_moment(call), self._latest)

        walk = PageWalk(size, full=False, capped=True)
        page = first
        while True:
            past = [start.is_past(call.updated_at) for call in page.calls]
            fresh = walk.take(page.calls, page.total_count, stop=any(past), owed=owed)
            for call in fresh:
                if not start.is_past(call.updated_at) and owed(call):
                    yield call
            if walk.pass_done:
                if walk.proven:
                    return
                if not walk.more_passes:
                    raise RevoxIncompleteReadError(
                        f"Revox incremental search incomplete: {walk.gap()}; the watermark stays at "
                        f"{start.ended_at.isoformat() if start.ended_at else 'the beginning'}",
                        read=len(walk.read),
                        total=walk.last_total,
                    )
                log.warning("Revox search moved while it was read (%s): reading it again", walk.gap())
                walk.next_pass()
            page = self._page(walk.page, walk.page_size, sorted_filters)
            # The API's clock moved while the pages were read: an order that ended meanwhile is
            # believed (it waits for the next read), not taken as an untrusted future time.
            bound = hook.server_clock.now() + FUTURE_MARGIN
            if self._latest is None or bound > self._latest:
                self._latest = bound

    def _page(self, number: int, size: int, filters: Mapping[str, Any]) -> CallPage:
        return in_rounds(
            f"Revox search page {number}",
            lambda: self._hook.search_calls(page=number, page_size=size, **filters),
            self._sleep,
        )

    def _full_scan(self) -> Iterator[Call]:
        # Unsorted: every matching order is read; the head is unknown, so none is held back.
        self._latest = latest = self._hook.server_clock.now() + FUTURE_MARGIN
        for call in calls_by_search(self._hook, self._filters, self._sleep, self._page_size):
            if takes(self._start, None, call.id, terminal_moment(call), latest):
                yield call
