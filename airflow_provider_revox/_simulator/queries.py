"""The call search of :class:`~.engine.SimulatorEngine` (``POST /call/search``), as a mixin."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_revox._simulator.errors import InvalidSearch
from airflow_provider_revox._simulator.search import CallSearch, matches, sort_key, valid_search
from airflow_provider_revox._simulator.timeline import OrderPlan

# The envelope get_call_json wraps every call in: a search response splices the inner objects.
_CALL_PREFIX = b'{"call":'
_CALL_SUFFIX = b"}"


class CallQueries:
    """Searches over the engine's orders; the engine provides the attributes declared here."""

    refuse_sort: bool
    _plans: dict[str, OrderPlan]
    _rank: dict[str, int]
    _lock: threading.RLock

    def _moment(self, at: datetime | None) -> datetime:
        raise NotImplementedError

    def _rendered(self, plan: OrderPlan, phase: int) -> dict[str, Any]:
        raise NotImplementedError

    def get_call_json(self, call_id: str, at: datetime | None = None) -> bytes:
        """The ``{"call": ...}`` body of an order (the engine's)."""
        raise NotImplementedError

    def search_calls(
        self,
        *,
        call_ids: Any = None,
        statuses: Any = (),
        assistant_ids: Any = (),
        directions: Any = (),
        outcomes: Any = (),
        results: Any = (),
        campaign_ids: Any = (),
        assignee_ids: Any = (),
        from_phone_numbers: Any = (),
        to_phone_number: Any = None,
        query: Any = None,
        sort_by: Any = None,
        sort_direction: Any = None,
        page: Any = 0,
        page_size: Any = 100,
        at: datetime | None = None,
        hidden: frozenset[str] = frozenset(),
        far_future: frozenset[str] = frozenset(),
        index_lag: timedelta = timedelta(0),
    ) -> CallSearch:
        """Find orders as the API's ``POST /call/search`` does, every order read at one moment.

        An empty (or None) filter does not filter. Orders placed after ``at`` do not exist yet.
        Orders have no assignee, so a non-empty ``assignee_ids`` matches nothing; every order is
        ``outbound``. With :attr:`refuse_sort`, a ``sort_by`` or ``sort_direction`` is refused.
        Read the page with :meth:`search_json` (or :meth:`get_call` at the search's ``at``).

        Args:
            call_ids: only these ids; unknown ids are skipped, never an error.
            statuses: order statuses at ``at`` (documented values only).
            assistant_ids: the order's assistant id.
            directions: ``inbound`` and/or ``outbound``.
            outcomes: the order's ``outcome``; ``"none"`` matches a null outcome.
            results: the last attempt's ``result``; ``"none"`` matches a null result or no attempt.
            campaign_ids: the order's campaign id.
            assignee_ids: the order's assignee id.
            from_phone_numbers: the number the order is dialled from.
            to_phone_number: a part of the recipient's number.
            query: a part of the order id or of the recipient's number, case-insensitive.
            sort_by: ``created_at`` (default), ``updated_at``, ``ended_at``, ``scheduled_at`` or ``id``.
            sort_direction: ``desc`` (default, most recent first) or ``asc``.
            page: 0-based page number.
            page_size: calls per page, 1 to 1000.
            at: the moment to read at (default: the clock's now).
            hidden: ids no page lists and ``total_count`` does not count (a fault of the search).
            far_future: ids that report a time in 2199 (a fault): sorted by ``updated_at`` or
                ``ended_at``, they come first descending and last ascending, as that time would.
            index_lag: how far the search index lags the orders (a fault): an order placed less
                than this before ``at`` is not listed yet, though ``GET /call/{id}`` knows it.

        Raises:
            SimulatorError: a field has the wrong type or an unknown value (also a ``ValueError``);
                the message names it.
        """
        if self.refuse_sort and (sort_by is not None or sort_direction is not None):
            raise InvalidSearch("sort_by: sorting is not supported")
        search = valid_search(
            call_ids=call_ids,
            statuses=statuses,
            assistant_ids=assistant_ids,
            directions=directions,
            outcomes=outcomes,
            results=results,
            campaign_ids=campaign_ids,
            assignee_ids=assignee_ids,
            from_phone_numbers=from_phone_numbers,
            to_phone_number=to_phone_number,
            query=query,
            sort_by=sort_by,
            sort_direction=sort_direction,
            page=page,
            page_size=page_size,
        )
        moment = self._moment(at)
        with self._lock:
            if search.call_ids is None:
                candidates = list(self._plans.values())
            else:
                # Direct lookups: a batch of ids must not cost a scan of every order.
                candidates = [plan for i in search.call_ids if (plan := self._plans.get(i)) is not None]
        indexed_until = moment - index_lag
        matched = [
            plan
            for plan in candidates
            if plan.spec.call_id not in hidden
            and plan.spec.created_at <= indexed_until
            and matches(plan, moment, search, self._rendered)
        ]
        matched.sort(key=lambda plan: sort_key(plan, search, self._rank, moment), reverse=search.descending)
        if far_future and search.sort_by in ("updated_at", "ended_at"):
            # Stable: the far-future orders move to the newest end, the others keep their order.
            matched.sort(key=lambda plan: (plan.spec.call_id in far_future) != search.descending)
        start = search.page * search.page_size
        page_ids = tuple(plan.spec.call_id for plan in matched[start : start + search.page_size])
        return CallSearch(call_ids=page_ids, total_count=len(matched), at=moment)

    def search_json(self, search: CallSearch) -> bytes:
        """The ``POST /call/search`` response body of ``search`` as UTF-8 JSON.

        Each call is byte-for-byte the object ``GET /call/{id}`` returns at the search's ``at``,
        taken from the per-phase JSON cache rather than serialised again.
        """
        parts = []
        for call_id in search.call_ids:
            body = self.get_call_json(call_id, search.at)
            parts.append(body[len(_CALL_PREFIX) : -len(_CALL_SUFFIX)])
        return (
            b'{"calls":[' + b",".join(parts) + b'],"total_count":' + str(search.total_count).encode() + b"}"
        )
