"""RevoxCallEventTrigger through Airflow's own SharedStreamManager in ack mode: a watcher's cursor
moves only once the triggerer confirms its events are stored, so a triggerer killed between
handing an event over and storing it names those orders again after its restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from airflow_provider_revox._internal.triggers.call_events import CURSOR_KEY
from tests.integration.operators.test_results_and_export import GOOD_OUTPUT, finished, place
from tests.unit.triggers.test_call_events import Store, named, next_event, until_saved, watcher

shared_stream = pytest.importorskip("airflow.triggers.shared_stream", reason="ack mode needs Airflow 3.3")


class Triggerer:
    """The part of Airflow's trigger runner that matters here: one manager, events bound as taken."""

    def __init__(self) -> None:
        self.manager = shared_stream.SharedStreamManager()
        self.seqs: list[int] = []

    def watch(self, trigger: Any, trigger_id: int = 1) -> AsyncIterator[dict[str, Any]]:
        key = trigger.shared_stream_key()
        events = trigger.filter_shared_stream(
            self.manager.subscribe(trigger_id=trigger_id, trigger=trigger, key=key)
        )

        async def taken() -> AsyncIterator[dict[str, Any]]:
            async for event in events:
                seq = self.manager.bind_pending_event(trigger_id=trigger_id, key=key)
                assert seq is not None  # the stream runs in ack mode
                self.seqs.append(seq)
                yield event

        return taken()

    def stored(self) -> None:
        """The supervisor stored every event taken so far (its next sync)."""
        self.manager.confirm_persisted(self.seqs)
        self.seqs = []

    async def kill(self) -> None:
        await self.manager.stop_all()


def test_a_cursor_moves_only_once_its_events_are_stored(revox_simulator: Any) -> None:
    sim = revox_simulator
    store = Store()

    async def scenario() -> None:
        finished(sim, GOOD_OUTPUT)  # ended before the watcher existed: not an event
        triggerer = Triggerer()
        events = triggerer.watch(watcher(store))
        pending = asyncio.ensure_future(next_event(events))
        await until_saved(store, 1)  # the first poll set the cursor: from now on
        start = dict(store.accessor.values[CURSOR_KEY])
        first = place(sim, GOOD_OUTPUT)
        sim.finish(first)
        one = await pending
        assert named(one) == [{"id": first, "status": "completed"}]
        await asyncio.sleep(0.2)  # polls go on; nothing is stored yet
        assert store.accessor.values[CURSOR_KEY] == start
        await triggerer.kill()  # killed before the supervisor stored the event

        restarted = Triggerer()
        events = restarted.watch(watcher(store))
        again = await next_event(events)
        assert again["calls"] == one["calls"]  # named again, not lost
        writes = store.accessor.writes
        restarted.stored()
        pending = asyncio.ensure_future(next_event(events))  # the runner reads on
        await until_saved(store, writes + 1)  # the stream says the event is stored: the cursor moves
        assert store.accessor.values[CURSOR_KEY]["ended_at"] == again["ended_at"]

        second = place(sim, GOOD_OUTPUT)
        sim.finish(second)
        two = await pending
        assert named(two) == [{"id": second, "status": "completed"}]  # the first is not repeated
        await restarted.kill()

    asyncio.run(scenario())
