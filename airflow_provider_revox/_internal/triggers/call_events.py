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
from airflow_provider_revox._internal.triggers.call_poll import PAGE_SIZE, CallPoll, summary
from airflow_provider_revox._internal.triggers.wait import within
from airflow_provider_revox._internal.waiting import rounds
from airflow_provider_revox._internal.waiting.cursor import (
    NEWEST_CHANGE_FIRST,
    SEQ,
    STORED,
    Watermark,
    believed,
    chunks,
    takes,
    terminal_moment,
)
from airflow_provider_revox._internal.waiting.pages import PageWalk
from airflow_provider_revox.exceptions import RevoxIncompleteReadError

#: The asset state store key of a watcher's cursor.
CURSOR_KEY = "revox_call_events_cursor"
#: Filters a watcher may set (besides ``statuses``, which only narrows the terminal ones).
EVENT_FILTERS = ("campaign_ids", "assistant_ids", "outcomes", "results", "directions", "to_phone_number")

log = logging.getLogger(__name__)


def _stamp(value: Any) -> datetime | None:
    from pydantic import TypeAdapter

    stamp: datetime | None = TypeAdapter(Timestamp).validate_python(value)
    return stamp


def _named(call: dict[str, Any], ended: datetime, latest: datetime | None) -> dict[str, Any]:
    """An event's entry for one order; a time not believed is marked (see ``first_named``)."""
    entry = {"id": call["id"], "status": call["status"], "ended_at": ended.isoformat()}
    if not believed(ended, latest):
        entry["untrusted_time"] = True
    return entry


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

    Its ``filters`` attribute holds the search filters as checked (API names), for the consumer's
    :meth:`RevoxHook.resolve_announced <airflow_provider_revox.hooks.revox.RevoxHook.resolve_announced>`.
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
                try:
                    batch = await poller.poll()
                except RevoxIncompleteReadError as error:
                    # Nothing moves: the next poll reads the same orders again, a pace later.
                    log.warning("%s: %s; polling again later", type(error).__name__, error)
                    batch = None
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
        woken, _ = await within(seconds, wakeup.wait())
        if not woken:
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
            low, latest = _stamp(batch["low"]), _stamp(batch.get("latest"))
            if low is not None and cursor.ended_at is not None and cursor.ended_at < low:
                calls = await self._catch_up(cursor, head, latest) + calls  # the poll began after this cursor
            seen: set[str] = set()
            new = []
            for call, ended in calls:
                if call["id"] not in seen and takes(cursor, head, call["id"], ended, latest):
                    seen.add(call["id"])
                    new.append((call, ended))
            new.sort(key=lambda item: (item[1], item[0]["id"]))
            for part in chunks(new, self.batch_size):
                trusted = [(call["id"], ended) for call, ended in part if believed(ended, latest)]
                untrusted = [call["id"] for call, ended in part if not believed(ended, latest)]
                for call_id in untrusted:
                    self.log.warning(
                        "Revox call %s reports an end later than the API's clock allows (%s): named, "
                        "but the cursor does not move to that time",
                        call_id,
                        batch.get("latest"),
                    )
                after = cursor.advance(trusted, untrusted)
                event = TriggerEvent(  # type: ignore[no-untyped-call]
                    {
                        "calls": [_named(call, ended, latest) for call, ended in part],
                        "count": len(part),
                        "ended_at": after.ended_at.isoformat() if after.ended_at else None,
                    }
                )
                try:
                    yield event
                finally:
                    cursor = after
                    if SEQ not in batch:
                        # Alone, nothing acknowledges an event: the cursor moves once it is
                        # handed over, even when the triggerer stops right after.
                        await self._save(cursor)
            if SEQ in batch and new:
                unstored.append((int(batch[SEQ]), cursor))

    async def _catch_up(
        self, cursor: Watermark, head: datetime | None, latest: datetime | None
    ) -> list[tuple[dict[str, Any], Any]]:
        """The orders that ended between this watcher's cursor and the shared poll's start.

        Raises:
            RevoxIncompleteReadError: the pages could not be proven to reach the cursor (as
                :meth:`CallPoll.poll`); the cursor stays.
        """
        out: list[tuple[dict[str, Any], Any]] = []
        walk = PageWalk(PAGE_SIZE, full=False)

        def owed(call: Call) -> bool:
            return takes(cursor, head, call.id, terminal_moment(call), latest)

        hook = RevoxHook(self.revox_conn_id)
        try:
            while True:
                result = await hook.asearch_calls(
                    page=walk.page, page_size=PAGE_SIZE, **self.filters, **NEWEST_CHANGE_FIRST
                )
                past = any(cursor.is_past(call.updated_at) for call in result.calls)
                for call in walk.take(result.calls, result.total_count, stop=past, owed=owed):
                    if not cursor.is_past(call.updated_at) and owed(call):
                        out.append((summary(call), terminal_moment(call)))
                if walk.pass_done:
                    if walk.proven:
                        return out
                    if not walk.more_passes:
                        raise RevoxIncompleteReadError(
                            f"Revox call event catch-up incomplete: {walk.gap()}", read=len(walk.read)
                        )
                    walk.next_pass()
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
