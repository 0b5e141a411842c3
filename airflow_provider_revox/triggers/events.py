"""``RevoxCallEventTrigger``: an event trigger for an ``AssetWatcher`` that fires when orders end.

One poll reads ``POST /call/search`` for terminal orders sorted by ``updated_at`` descending,
down to where the previous poll began: one request when nothing changed (and then the next poll
waits longer), a page more per hundred orders that ended. Watchers of one connection and filter
set share that poll (``shared_stream_key``); each keeps its own cursor (see
:mod:`~airflow_provider_revox.waiting.cursor`) in the asset state store of its Asset, so a
triggerer restart neither loses nor repeats an event. A new watcher starts from the moment of
its first poll.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import aclosing
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_revox import compat, statuses
from airflow_provider_revox.client.requests import search_args
from airflow_provider_revox.export.incremental import NEWEST_CHANGE_FIRST, terminal_moment
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.models import Call, Timestamp
from airflow_provider_revox.waiting.cursor import Watermark, chunks, poll_delay, takes

#: The asset state store key of a watcher's cursor.
CURSOR_KEY = "revox_call_events_cursor"
PAGE_SIZE = 100
#: Filters a watcher may set (besides ``statuses``, which only narrows the terminal ones).
EVENT_FILTERS = ("campaign_ids", "assistant_ids", "outcomes", "results", "directions", "to_phone_number")


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
    """

    def __init__(self, hook: RevoxHook, filters: dict[str, Any]) -> None:
        """Start with no mark: the first poll reads one page."""
        self.hook = hook
        self.filters = filters
        self.mark: datetime | None = None
        self.requests = 0
        self.polled = False

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

    The event's payload is small: ``{"calls": [{"id", "status"}...], "count", "ended_at"}``, never
    a transcript or a credential. Use it in an ``AssetWatcher``; a DAG scheduled on the Asset reads
    the ids from ``triggering_asset_events``.

    Args:
        revox_conn_id: the ``revox`` connection.
        campaign_ids: only orders of these campaigns.
        assistant_ids: only orders of these assistants.
        statuses: only these terminal statuses (default: completed, cancelled, errored).
        outcomes: only these outcomes.
        results: only these last-attempt results.
        directions: only these directions.
        to_phone_number: only orders to this number.
        poll_interval: seconds between polls while orders end.
        max_poll_interval: the longest wait between polls when nothing changes.
        batch_size: the most orders named by one event.
    """

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
            f"{type(self).__module__}.{type(self).__qualname__}",
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
        """Poll forever; yield each raw batch of orders that changed (see :class:`CallPoll`)."""
        trigger = cls(**kwargs)
        hook = RevoxHook(trigger.revox_conn_id)
        try:
            poller = CallPoll(hook, trigger.filters)
            empty = 0
            while True:
                batch = await poller.poll()
                if batch is not None:
                    yield batch
                empty = 0 if batch is not None and batch["calls"] else empty + 1
                await asyncio.sleep(poll_delay(empty, trigger.poll_interval, trigger.max_poll_interval))
        finally:
            await hook.aclose()

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
        async for batch in shared_stream:
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
                        "calls": [{"id": call["id"], "status": call["status"]} for call, _ in part],
                        "count": len(part),
                        "ended_at": part[-1][1].isoformat(),
                    }
                )
                try:
                    yield event
                finally:
                    # Handed to the triggerer: the cursor moves past it even when the triggerer
                    # stops right after (the generator is closed at this yield), so no repeat.
                    cursor = cursor.advance((call["id"], ended) for call, ended in part)
                    await self._save(cursor)

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


__all__ = ["CURSOR_KEY", "CallPoll", "RevoxCallEventTrigger"]
