"""``RevoxCallEventTrigger``: an event trigger for an ``AssetWatcher`` that fires when orders end.

One poll reads ``POST /call/search`` for terminal orders sorted by ``updated_at`` descending,
down to where the previous poll began: one request when nothing changed, a page more per hundred
orders that ended. When a poll finds nothing, one more search over the orders still open tells
when the next one can end, and the poll sleeps until about then (see
:mod:`~airflow_provider_revox._internal.waiting.pace`). Watchers of one connection and filter
set share that poll (``shared_stream_key``); each keeps its own cursor (see
:mod:`~airflow_provider_revox._internal.waiting.cursor`) in the asset state store of its Asset. On Airflow
3.3 the poll runs as an acknowledged stream
(:mod:`~airflow_provider_revox._internal.triggers.call_event_stream`): a
cursor moves only once Airflow has stored the events before it, so a triggerer killed at any
moment loses no order, and names one again only if killed in the instant between the store and
the cursor's save. A new watcher starts from the moment of its first poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import aclosing
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_revox._internal.client.requests import search_args
from airflow_provider_revox._internal.client.servertime import ServerClock
from airflow_provider_revox._internal.core import compat, statuses
from airflow_provider_revox._internal.core.call import Call, Timestamp
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.waiting import rounds
from airflow_provider_revox._internal.waiting.cursor import (
    NEWEST_CHANGE_FIRST,
    SEQ,
    STORED,
    Watermark,
    chunks,
    takes,
    terminal_moment,
)
from airflow_provider_revox._internal.waiting.pace import (
    EARLIEST_SCHEDULED_FIRST,
    Pace,
    open_until,
    probe_filters,
)
from airflow_provider_revox.exceptions import RevoxError, is_transient

#: The asset state store key of a watcher's cursor.
CURSOR_KEY = "revox_call_events_cursor"
PAGE_SIZE = 100
#: Filters a watcher may set (besides ``statuses``, which only narrows the terminal ones).
EVENT_FILTERS = ("campaign_ids", "assistant_ids", "outcomes", "results", "directions", "to_phone_number")
#: Answers of an API that cannot run the probe (its sort or its statuses): polls back off blindly.
PROBE_REFUSED_STATUSES = frozenset({400, 404, 405, 410, 422, 501})

log = logging.getLogger(__name__)


def _stamp(value: Any) -> datetime | None:
    from pydantic import TypeAdapter

    stamp: datetime | None = TypeAdapter(Timestamp).validate_python(value)
    return stamp


def _summary(call: Call) -> dict[str, Any]:
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
        """One poll: a raw batch ``{"head", "low", "calls"}``, or None when nothing changed.

        ``calls`` holds every matching order changed after ``low`` (None: since ever), up to
        ``head``, the newest change seen; each call is ``{id, status, ended_at, updated_at}``.
        """
        found: list[Call] = []
        head: datetime | None = None
        low = self.mark
        page = 0
        while True:
            self.requests += 1
            result = await self.hook.asearch_calls(
                page=page, page_size=PAGE_SIZE, **self.filters, **NEWEST_CHANGE_FIRST
            )
            if page == 0:
                head = result.calls[0].updated_at if result.calls else None
                if self.mark is not None and (head is None or head <= self.mark):
                    return None
                if head is None:  # a first poll finding nothing: the watchers start from the beginning
                    self.polled = True
                    return {"head": None, "low": None, "calls": []}
            stop = False
            for call in result.calls:
                if self.mark is not None and call.updated_at is not None and call.updated_at < self.mark:
                    stop = True
                    break
                found.append(call)
            page += 1
            if stop or len(result.calls) < PAGE_SIZE:
                break
            if not self.polled:  # a first poll reads one page: the watchers start from now
                low = found[-1].updated_at
                break
        self.mark, self.polled = head, True
        return {
            "head": head.isoformat() if head else None,
            "low": low.isoformat() if low else None,
            "calls": [_summary(call) for call in found],
        }


class RevoxCallEventTrigger(BaseEventTrigger):
    """Fire one event per batch of orders (matching the filters) that reached a terminal status.

    The event's payload is small: ``{"calls": [{"id", "status", "ended_at"}...], "count",
    "ended_at"}``, never a transcript or a credential. Use it in an ``AssetWatcher``; a DAG
    scheduled on the Asset reads the ids from ``triggering_asset_events``. Events are delivered at
    least once (on Airflow 3.3, an acknowledged stream): a consumer that must handle
    each order once keeps a mark with :func:`~airflow_provider_revox._internal.waiting.cursor.first_named`.

    Args:
        revox_conn_id: the ``revox`` connection.
        campaign_ids: only orders of these campaigns.
        assistant_ids: only orders of these assistants.
        statuses: only these terminal statuses (default: completed, cancelled, errored).
        outcomes: only these outcomes.
        results: only these last-attempt results.
        directions: only these directions.
        to_phone_number: only orders to this number.
        poll_interval: seconds between polls while orders end (or can end at any moment).
        max_poll_interval: the longest sleep while no order known to the trigger can end; an
            order placed during such a sleep is named at most this long after it ends.
        batch_size: the most orders named by one event.
    """

    #: Shortest real sleep between polls, in seconds (a fast simulator's clock included); None
    #: means the provider's minimum (1 s). Tests hand in less.
    min_sleep: float | None = None

    def __init__(
        self,
        *,
        revox_conn_id: str = RevoxHook.default_conn_name,
        campaign_ids: Sequence[str] | None = None,
        assistant_ids: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
        outcomes: Sequence[str] | None = None,
        results: Sequence[str] | None = None,
        directions: Sequence[str] | None = None,
        to_phone_number: str | None = None,
        poll_interval: float = 30.0,
        max_poll_interval: float = 600.0,
        batch_size: int = 500,
    ) -> None:
        """Check every argument (a bad filter is named before any request)."""
        super().__init__()  # type: ignore[no-untyped-call]
        self.revox_conn_id = revox_conn_id
        chosen = sorted(statuses) if statuses is not None else sorted(_terminal())
        wrong = [status for status in chosen if status not in _terminal()]
        if wrong or not chosen:
            raise ValueError(
                f"statuses must be terminal statuses ({', '.join(sorted(_terminal()))}), not {wrong}"
            )
        self.filters: dict[str, Any] = {
            "campaign_ids": campaign_ids,
            "assistant_ids": assistant_ids,
            "statuses": chosen,
            "outcomes": outcomes,
            "results": results,
            "directions": directions,
            "to_phone_number": to_phone_number,
        }
        self.filters = {name: value for name, value in self.filters.items() if value is not None}
        search_args(None, 0, PAGE_SIZE, self.filters)  # RevoxConfigError naming a bad filter
        self.filters = {
            name: sorted(value) if isinstance(value, list | tuple | set | frozenset) else value
            for name, value in self.filters.items()
        }
        for name, value in (("poll_interval", poll_interval), ("max_poll_interval", max_poll_interval)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number of at least 1, not {batch_size!r}")
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max(poll_interval, max_poll_interval))
        self.batch_size = batch_size

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and kwargs: configuration only, so the trigger's identity is stable."""
        return (
            "airflow_provider_revox.triggers.revox.RevoxCallEventTrigger",
            {
                "revox_conn_id": self.revox_conn_id,
                **self.filters,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "batch_size": self.batch_size,
            },
        )

    def shared_stream_key(self) -> Hashable | None:
        """Watchers of one connection, filter set and pace share one poll."""
        return (
            "revox-call-events",
            self.revox_conn_id,
            json.dumps(self.filters, sort_keys=True),
            self.poll_interval,
            self.max_poll_interval,
        )

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        """Poll forever; yield each raw batch of orders that changed."""
        async for batch in cls.poll_batches(kwargs):
            yield batch

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> Any:
        """Airflow 3.3's acknowledged stream: a cursor moves only once its events are stored.

        Without it, a triggerer killed between handing an event over and storing it would lose
        the event, the cursor having moved past it.
        """
        from airflow_provider_revox._internal.triggers.call_event_stream import CallEventStream

        return CallEventStream(cls, kwargs)

    @classmethod
    async def poll_batches(
        cls, kwargs: dict[str, Any], wakeup: asyncio.Event | None = None
    ) -> AsyncIterator[dict[str, Any] | None]:
        """The poll loop: each raw batch of orders that changed; None each time ``wakeup`` is set."""
        trigger = cls(**kwargs)
        hook = RevoxHook(trigger.revox_conn_id)
        try:
            poller = CallPoll(
                hook, trigger.filters, interval=trigger.poll_interval, max_interval=trigger.max_poll_interval
            )
            while True:
                batch = await poller.poll()
                if batch is not None:
                    yield batch
                wake = await poller.next_poll_at(batch)
                while await cls.pause(poller.clock, wake, wakeup):
                    yield None
        finally:
            await hook.aclose()

    @classmethod
    async def pause(cls, clock: ServerClock, wake: datetime, wakeup: asyncio.Event | None = None) -> bool:
        """Sleep until ``wake`` on the API's clock (at least :attr:`min_sleep` real seconds).

        Returns True when ``wakeup`` cut the sleep short (and clears it): the caller sleeps again.
        """
        seconds = rounds.sleep_seconds(clock, clock.now(), wake, min_sleep=cls.min_sleep)
        if wakeup is None:
            await asyncio.sleep(seconds)
            return False
        try:
            await asyncio.wait_for(wakeup.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        wakeup.clear()
        return True

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Alone (no shared stream): the same poll, for this watcher only."""
        # Closed explicitly, so a stopping triggerer reaches the cursor's save and the hook's close.
        shared = type(self).open_shared_stream(self.serialize()[1])
        async with aclosing(shared), aclosing(self.filter_shared_stream(shared)) as events:  # type: ignore[type-var]
            async for event in events:
                yield event

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """Turn raw batches into this watcher's events, each order once, moving its cursor."""
        stored = await self._load()
        cursor = stored if stored is not None else None
        # Acknowledged stream: cursors waiting for Airflow to store the events before them.
        unstored: list[tuple[int, Watermark]] = []
        async for batch in shared_stream:
            if STORED in batch:
                stored_through = int(batch[STORED])
                ready = [mark for seq, mark in unstored if seq <= stored_through]
                unstored = [(seq, mark) for seq, mark in unstored if seq > stored_through]
                if ready:
                    await self._save(ready[-1])
                continue
            head = _stamp(batch["head"])
            calls = [(call, _stamp(call["ended_at"])) for call in batch["calls"]]
            if cursor is None:  # a new watcher starts from now
                cursor = Watermark().advance((c["id"], e) for c, e in calls if e is not None and e == head)
                cursor = Watermark(head, cursor.ids_at) if head is not None else cursor
                await self._save(cursor)
                continue
            low = _stamp(batch["low"])
            if low is not None and cursor.ended_at is not None and cursor.ended_at < low:
                calls = await self._catch_up(cursor, head) + calls  # the poll began after this cursor
            seen: set[str] = set()
            new = []
            for call, ended in calls:
                if call["id"] not in seen and takes(cursor, head, call["id"], ended):
                    seen.add(call["id"])
                    new.append((call, ended))
            new.sort(key=lambda item: (item[1], item[0]["id"]))
            for part in chunks(new, self.batch_size):
                event = TriggerEvent(  # type: ignore[no-untyped-call]
                    {
                        "calls": [
                            {"id": call["id"], "status": call["status"], "ended_at": ended.isoformat()}
                            for call, ended in part
                        ],
                        "count": len(part),
                        "ended_at": part[-1][1].isoformat(),
                    }
                )
                try:
                    yield event
                finally:
                    cursor = cursor.advance((call["id"], ended) for call, ended in part)
                    if SEQ not in batch:
                        # Alone, nothing acknowledges an event: the cursor moves once it is
                        # handed over, even when the triggerer stops right after.
                        await self._save(cursor)
            if SEQ in batch and new:
                unstored.append((int(batch[SEQ]), cursor))

    async def _catch_up(self, cursor: Watermark, head: datetime | None) -> list[tuple[dict[str, Any], Any]]:
        """The orders that ended between this watcher's cursor and the shared poll's start."""
        out: list[tuple[dict[str, Any], Any]] = []
        hook = RevoxHook(self.revox_conn_id)
        try:
            page = 0
            while True:
                result = await hook.asearch_calls(
                    page=page, page_size=PAGE_SIZE, **self.filters, **NEWEST_CHANGE_FIRST
                )
                for call in result.calls:
                    if cursor.is_past(call.updated_at):
                        return out
                    ended = terminal_moment(call)
                    if takes(cursor, head, call.id, ended):
                        out.append((_summary(call), ended))
                if len(result.calls) < PAGE_SIZE:
                    return out
                page += 1
        finally:
            await hook.aclose()

    def _accessors(self) -> list[Any]:
        store = compat.trigger_asset_state_store(self)
        if store is None:
            return []
        return [*getattr(store, "_by_name", {}).values(), *getattr(store, "_by_uri", {}).values()]

    async def _load(self) -> Watermark | None:
        if not compat.has_asset_state_store():
            self.log.warning(
                "%s; this watcher starts from its first poll each time its triggerer starts, so "
                "orders that end while no triggerer runs get no event",
                compat.needs_airflow_3_3("Keeping the cursor in the asset state store"),
            )
        for accessor in self._accessors():
            value = await accessor.aget(CURSOR_KEY)
            if value is not None:
                return Watermark.from_state(value)
        return None

    async def _save(self, cursor: Watermark) -> None:
        for accessor in self._accessors():  # every Asset watched by this trigger keeps the cursor
            await accessor.aset(CURSOR_KEY, cursor.to_state())


def _terminal() -> frozenset[str]:
    return frozenset(statuses.TERMINAL)
