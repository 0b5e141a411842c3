"""Fetch many call orders with few requests: one ``POST /call/search`` per batch of ids.

A triggerer runs up to a thousand triggers in one event loop. Polled one ``GET /call/{id}``
each, every poll pays a whole HTTP exchange in Python (about 1-2 ms of CPU); one search returns
up to :data:`MAX_BATCH` orders for little more. :class:`CallPoller` gathers the polls that
fall due within :data:`GATHER_SECONDS` of each other into one search.

Nothing depends on the search being there: an order the search does not return is fetched
with ``GET /call/{id}`` (which also gives the precise error for an unknown id), and an API that
refuses the search (400, 404, 405, 410, 422, 501) or keeps answering it uselessly is polled with
GETs from then on. The connection extra ``batch_polls: false`` turns batching off.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from airflow_provider_revox._internal.client import responses
from airflow_provider_revox._internal.client.requests import validate_call_id
from airflow_provider_revox._internal.client.servertime import ServerClock
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox.exceptions import (
    RevoxApiError,
    RevoxAuthError,
    RevoxError,
    RevoxNotFoundError,
    RevoxResponseError,
)

#: How long a poll waits for others to share its request. Small against any poll interval.
GATHER_SECONDS = 0.2
#: Most orders asked for in one search.
MAX_BATCH = 100
#: Orders of a page digested between two hand-backs of the event loop.
SETTLE_SLICE = 20
#: Most ``GET /call/{id}`` in flight when the search did not return some orders.
FALLBACK_CONCURRENCY = 8
#: Answers that mean this API has no call search usable with our request: no point asking again.
NO_SEARCH_STATUSES = frozenset({400, 404, 405, 410, 422, 501})
#: Searches in a row that were of no use (unreadable, or missing orders GET found) before giving up.
USELESS_SEARCHES_LIMIT = 3

log = logging.getLogger(__name__)

#: What fetching one order gave: the order, or the error a GET of it would have raised.
Outcome = Call | RevoxError


class CallPoller:
    """Fetch call orders for many waits on one connection, batching them into searches.

    Args:
        hook: the hook whose client, retries, rate limit and server clock every request uses.
        gather_seconds: how long :meth:`get_call` waits for other polls to join its request
            (default :data:`GATHER_SECONDS`).
        max_batch: most orders per search (default :data:`MAX_BATCH`).
    """

    def __init__(
        self, hook: RevoxHook, *, gather_seconds: float | None = None, max_batch: int | None = None
    ) -> None:
        gather_seconds = GATHER_SECONDS if gather_seconds is None else gather_seconds
        max_batch = MAX_BATCH if max_batch is None else max_batch
        if not gather_seconds >= 0:
            raise ValueError(f"gather_seconds must be 0 or more, not {gather_seconds!r}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a whole number of at least 1, not {max_batch!r}")
        self.hook = hook
        self.gather_seconds = gather_seconds
        self.max_batch = max_batch
        #: None until the connection is read; False once searching is off for good.
        self._search: bool | None = None
        self._useless_searches = 0
        self._waiting: dict[str, list[asyncio.Future[Call]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._batches: set[asyncio.Task[None]] = set()
        #: Requests sent, by kind: for logs, tests and benchmarks.
        self.searches = 0
        self.gets = 0

    def __repr__(self) -> str:
        return f"CallPoller(hook={self.hook!r}, searching={self._search})"

    @property
    def clock(self) -> ServerClock:
        """The API's clock, as the responses report it."""
        return self.hook.server_clock

    @property
    def searching(self) -> bool | None:
        """True while orders are fetched by search, False once GETs are used for good."""
        return self._search

    async def _searching(self) -> bool:
        if self._search is None:
            settings = await self.hook.aconnection_settings()
            self._search = settings.batch_polls
        return self._search

    # -- one order, gathered with others ------------------------------------------------------

    async def get_call(self, call_id: str) -> Call:
        """Fetch one order, in one request with the other polls due at about the same moment.

        Raises what :meth:`RevoxHook.aget_call` raises for the order.
        """
        call_id = validate_call_id(call_id)
        if not await self._searching():
            self.gets += 1
            return await self.hook.aget_call(call_id)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Call] = loop.create_future()
        self._waiting.setdefault(call_id, []).append(future)
        if len(self._waiting) >= self.max_batch:
            self._send_waiting()
        elif self._timer is None:
            self._timer = loop.call_later(self.gather_seconds, self._send_waiting)
        return await future

    def _send_waiting(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._waiting = self._waiting, {}
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _deliver(self, batch: dict[str, list[asyncio.Future[Call]]]) -> None:
        def settle(call_id: str, outcome: Outcome) -> None:
            for future in batch[call_id]:
                if future.done():  # its poll was cancelled meanwhile
                    continue
                if isinstance(outcome, Call):
                    future.set_result(outcome)
                else:
                    future.set_exception(outcome)

        try:
            await self.get_calls(list(batch), concurrency=FALLBACK_CONCURRENCY, on_outcome=settle)
        except BaseException as error:
            # Whatever stopped the batch stops every poll still waiting on it; none is left hanging.
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        if isinstance(error, asyncio.CancelledError):
                            future.cancel()
                        else:
                            future.set_exception(error)
            if not isinstance(error, Exception):
                raise

    # -- many orders at once ----------------------------------------------------------------

    async def get_calls(
        self,
        call_ids: Sequence[str],
        *,
        concurrency: int = 1,
        on_outcome: Callable[[str, Outcome], None] | None = None,
    ) -> dict[str, Outcome]:
        """Fetch every order of ``call_ids`` now, :attr:`max_batch` per search.

        Args:
            call_ids: the orders; repeats are fetched once.
            concurrency: most requests (searches, or GETs once searching is off) in flight.
            on_outcome: called with each order's outcome as soon as it arrives; the outcomes
                are then not kept, so a campaign's orders never sit in memory all at once.

        Returns:
            For each id, the order, or the error fetching it alone would raise (unknown id,
            rejected key, API still failing after retries); empty when ``on_outcome`` is
            given. Never raises for one order.
        """
        ids = list(dict.fromkeys(call_ids))
        run = _Round(asyncio.Semaphore(max(1, concurrency)), sink=on_outcome)
        chunks = [ids[i : i + self.max_batch] for i in range(0, len(ids), self.max_batch)]
        await asyncio.gather(*(self._fetch_chunk(chunk, run) for chunk in chunks))
        return run.outcomes

    async def _fetch_chunk(self, ids: list[str], run: _Round) -> None:
        found: dict[str, Call] | None = None
        # From reading the page to dropping it, no collection (see responses.collector_paused)
        # and no other page read (see responses.digest_turn).
        with responses.collector_held(), responses.turn_held():
            async with run.gate:
                if run.rejected is not None:
                    # Every other request would be refused the same way: don't send them.
                    run.put_all(ids, run.rejected)
                    return
                try:
                    if await self._searching():
                        found = await self._search_chunk(ids)
                except RevoxError as error:
                    # A rejected key, or an API still failing after retries: a GET would fare the same.
                    run.put_all(ids, error)
                    return
            missing = [call_id for call_id in ids if found is None or call_id not in found]
            found_none = found == {}
            handed = bool(found)
            if found:
                # Each order leaves the page as it is handed over, and the loop is handed back
                # every SETTLE_SLICE orders: digesting a whole page at once held the triggerer's
                # loop for tens of milliseconds on a busy machine.
                for index, call_id in enumerate(list(found)):
                    run.put(call_id, found.pop(call_id))
                    if index % SETTLE_SLICE == SETTLE_SLICE - 1:
                        await asyncio.sleep(0)
                found = None
        if handed:
            # Hand the loop back between batches: other triggers wait while a page is handled.
            await asyncio.sleep(0)
        if not missing:
            return
        fetched = await asyncio.gather(*(self._get_one(call_id, run) for call_id in missing))
        if found_none and any(fetched):
            self._useless(f"it returned none of {len(ids)} orders that GET /call/{{id}} found")

    async def _search_chunk(self, ids: list[str]) -> dict[str, Call] | None:
        """The orders the search returned, by id; None when it could not be used this time."""
        self.searches += 1
        try:
            page = await self.hook.asearch_calls(ids)
        except (RevoxNotFoundError, RevoxApiError) as error:
            if error.status_code not in NO_SEARCH_STATUSES:
                raise
            self._stop_searching(f"the API answered HTTP {error.status_code} to POST /call/search")
            return None
        except RevoxResponseError as error:
            self._useless(f"its answer was not a page of call orders ({error})")
            return None
        wanted = set(ids)
        found = {call.id: call for call in page.calls if call.id in wanted}
        if found:
            self._useless_searches = 0
        return found

    async def _get_one(self, call_id: str, run: _Round) -> bool:
        """GET one order into ``run``; True when the API had it."""
        async with run.gate:
            if run.rejected is not None:
                run.put(call_id, run.rejected)
                return False
            self.gets += 1
            try:
                run.put(call_id, await self.hook.aget_call(call_id))
            except RevoxError as error:
                run.put(call_id, error)
                return False
            return True

    def _useless(self, why: str) -> None:
        self._useless_searches += 1
        if self._useless_searches >= USELESS_SEARCHES_LIMIT:
            self._stop_searching(
                f"{USELESS_SEARCHES_LIMIT} searches in a row were of no use; the last: {why}"
            )

    def _stop_searching(self, why: str) -> None:
        if self._search is not False:
            log.warning(
                "Revox connection %r: polling each call order with GET from now on, since %s",
                self.hook.revox_conn_id,
                why,
            )
        self._search = False

    async def aclose(self) -> None:
        """Stop gathering, cancel batches in flight and close the hook's clients."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, {}
        for futures in waiting.values():
            for future in futures:
                future.cancel()
        for task in list(self._batches):
            task.cancel()
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        await self.hook.aclose()


@dataclass
class _Round:
    """One :meth:`CallPoller.get_calls`: its outcomes, its bound on requests, a rejected key."""

    gate: asyncio.Semaphore
    sink: Callable[[str, Outcome], None] | None = None
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    rejected: RevoxAuthError | None = None

    def put(self, call_id: str, outcome: Outcome) -> None:
        if isinstance(outcome, RevoxAuthError):
            self.rejected = outcome
        if self.sink is not None:
            self.sink(call_id, outcome)
        else:
            self.outcomes[call_id] = outcome

    def put_all(self, call_ids: list[str], outcome: Outcome) -> None:
        for call_id in call_ids:
            self.put(call_id, outcome)


@dataclass
class _Share:
    poller: CallPoller
    users: int = 0


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Share]] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def shared_poller(revox_conn_id: str) -> AsyncIterator[CallPoller]:
    """The :class:`CallPoller` every wait on ``revox_conn_id`` in this event loop shares.

    It holds one HTTP client for as long as any wait uses it, and closes it when the last one
    leaves (a trigger that ends, fails or is cancelled).
    """
    loop = asyncio.get_running_loop()
    per_loop = _shared.setdefault(loop, {})
    share = per_loop.get(revox_conn_id)
    if share is None:
        share = per_loop[revox_conn_id] = _Share(CallPoller(RevoxHook(revox_conn_id=revox_conn_id)))
    share.users += 1
    try:
        yield share.poller
    finally:
        share.users -= 1
        if share.users == 0:
            if per_loop.get(revox_conn_id) is share:
                del per_loop[revox_conn_id]
            await share.poller.aclose()
