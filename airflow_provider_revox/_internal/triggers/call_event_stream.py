"""The call-event poll as an acknowledged shared stream (Airflow 3.3's ack mode).

A watcher's cursor must not move past an event before Airflow has stored it: the triggerer hands
an event to its supervisor, which stores it about a second later, and a triggerer killed in
between would otherwise come back with a cursor past an event that never reached the database.
In ack mode Airflow calls :meth:`CallEventStream.advance` once every watcher of the stream has
moved past a batch *and* the events it made from it are stored; the stream then tells the
watchers (a small ``{"stored_through": n}`` item in the same stream), and each saves the cursor
it had after batch ``n``. A triggerer killed before that resumes from the previous cursor and
names those orders again: delivery is at least once, never lost; a repeat needs a kill in the
milliseconds between the store and the cursor's save.

Used only by :meth:`RevoxCallEventTrigger.create_shared_stream_producer`, which only an Airflow
with ack mode calls. On Airflow 3.2 the module still imports (every module of the package does),
but its stream refuses to be made.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_revox._internal.core import compat
from airflow_provider_revox._internal.waiting.cursor import SEQ, STORED

if TYPE_CHECKING or compat.has_acknowledged_streams():
    from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer
else:  # Airflow 3.2: no such module; the class below is defined but never made there
    SharedStreamProducer = object


class BatchPoll(Protocol):
    """The poll loop a stream runs: :meth:`RevoxCallEventTrigger.poll_batches`.

    Described by shape rather than imported: the trigger imports this module to make its stream.
    """

    def poll_batches(
        self, kwargs: dict[str, Any], wakeup: asyncio.Event | None = None
    ) -> AsyncIterator[dict[str, Any] | None]:
        """Each raw batch of orders that changed; None each time ``wakeup`` is set."""
        ...


class CallEventStream(SharedStreamProducer):
    """The shared poll of one connection and filter set, numbering its batches for acknowledgement.

    Args:
        trigger_class: the trigger class whose poll loop runs here.
        kwargs: the serialized kwargs of the first watcher (configuration only).
    """

    def __init__(self, trigger_class: BatchPoll, kwargs: dict[str, Any]) -> None:
        """Nothing is opened until :meth:`open_stream`.

        Raises:
            RuntimeError: on an Airflow without acknowledged shared streams (3.2).
        """
        if not compat.has_acknowledged_streams():
            raise RuntimeError(compat.needs_airflow_3_3("An acknowledged shared stream"))
        self.trigger_class = trigger_class
        self.kwargs = kwargs
        self.sent = 0
        self.stored_through = 0
        self.wakeup = asyncio.Event()

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        """Yield ``(batch, number)`` for each poll's batch and ``(stored, None)`` after an advance."""
        async for batch in self.trigger_class.poll_batches(self.kwargs, self.wakeup):
            if batch is None:
                yield {STORED: self.stored_through}, None
                continue
            self.sent += 1
            yield {**batch, SEQ: self.sent}, self.sent

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        """Every watcher moved past these batches and its events are stored: tell the watchers.

        A watcher that failed (Airflow's acknowledgement timeout) is restarted by Airflow from its
        own saved cursor, so the others need not wait for it.
        """
        numbers = [item.broker_payload for item in batch if item.broker_payload is not None]
        if numbers:
            self.stored_through = max(self.stored_through, *numbers)
            self.wakeup.set()
