"""Reading only the orders that reached a terminal status since a watermark.

The search is sorted by ``updated_at`` descending and read until the first order changed before
the watermark (see :mod:`~airflow_provider_revox._internal.waiting.cursor`). An API that refuses the sort
(400 or 422) is read in full instead, with one warning: the same orders, more requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.export.fetch import Sleep
from airflow_provider_revox._internal.export.search import SEARCH_PAGE_SIZE, calls_by_search, in_rounds
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.waiting.cursor import Watermark, takes
from airflow_provider_revox.exceptions import RevoxError

#: Answers of an API that cannot sort a search.
SORT_REFUSED_STATUSES = frozenset({400, 422})
NEWEST_CHANGE_FIRST = {"sort_by": "updated_at", "sort_direction": "desc"}

log = logging.getLogger(__name__)


def terminal_moment(call: Call) -> datetime | None:
    """When ``call`` reached its terminal status; None while it has not (see :attr:`Call.ended_at`)."""
    return call.ended_at


class NewCalls:
    """The orders matching ``filters`` that became terminal since ``watermark``; iterate once.

    After the iteration, :attr:`watermark` is the watermark that includes every order yielded,
    and :attr:`sorted` says whether the API sorted the search.

    Args:
        hook: the hook to search with.
        filters: the search filters, by their API names.
        watermark: where the last read stopped.
        sleep: how to pause between rounds after transient failures.
        page_size: orders per page.
    """

    def __init__(
        self,
        hook: RevoxHook,
        filters: Mapping[str, Any],
        watermark: Watermark,
        *,
        sleep: Sleep = time.sleep,
        page_size: int = SEARCH_PAGE_SIZE,
    ) -> None:
        """Remember what to read; nothing is sent before the iteration."""
        self._hook = hook
        self._filters = dict(filters)
        self._start = watermark
        self._sleep = sleep
        self._page_size = page_size
        self._taken: list[tuple[str, datetime]] = []
        self.sorted = True

    @property
    def watermark(self) -> Watermark:
        """The watermark once every order yielded so far is handed over."""
        return self._start.advance(self._taken)

    @property
    def taken(self) -> int:
        """Orders yielded so far."""
        return len(self._taken)

    def __iter__(self) -> Iterator[Call]:
        """Yield each new order once, newest change first (the API's order)."""
        for call in self._read():
            ended_at = terminal_moment(call)
            if ended_at is not None:
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
        head = first.calls[0].updated_at if first.calls else None
        sorted_filters = {**self._filters, **NEWEST_CHANGE_FIRST}
        for call in calls_by_search(
            hook, sorted_filters, self._sleep, size, first_page=first, prefetch=False
        ):
            if self._start.is_past(call.updated_at):
                return
            if takes(self._start, head, call.id, terminal_moment(call)):
                yield call

    def _full_scan(self) -> Iterator[Call]:
        # Unsorted: every matching order is read; the head is unknown, so none is held back.
        for call in calls_by_search(self._hook, self._filters, self._sleep, self._page_size):
            if takes(self._start, None, call.id, terminal_moment(call)):
                yield call
