"""The simulator's webhooks: when an order ends, POST it to its ``webhook_url``, as a real sender would.

The URL is the order's own ``webhook_url``, else its assistant's (as placed, or as set by
``PATCH /assistants/{id}``), else the sender's default. Deliveries run off the request path, in
a daemon thread (:meth:`WebhookSender.start`) or stepped by hand on a manual clock
(:meth:`WebhookSender.step`); every delay is on the simulator's clock. The faults real senders
have, each a rate or a bound (:class:`WebhookFaults`): a delivery dropped (never sent), sent
twice, delayed (a random delay up to ``delay`` seconds, so deliveries arrive out of order), held
back (``reorder``: an extra delay of up to ten times ``delay``), and retried on a non-2xx answer
or a transport error with doubling waits, up to ``retries`` times.

The body: ``{"type": "call.completed", "call": {"id", "status", "ended_at"}}``.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import httpx

#: Real seconds between two steps of the background thread.
TICK = 0.02
#: Simulated time between two datings of every open order (an end that moved earlier is seen then).
RESCAN = timedelta(seconds=60)


@dataclass(frozen=True)
class WebhookFaults:
    """Fault rates and bounds of the webhook sender (SPEC: ``"drop=0.05,duplicate=0.05,delay=2"``)."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    reorder: float = 0.0
    retries: int = 3
    retry_wait: float = 5.0

    @classmethod
    def parse(cls, spec: str | None) -> WebhookFaults:
        """Read a SPEC string; ValueError names an unknown name or a bad value."""
        if not spec:
            return cls()
        known = {field.name: field.type for field in fields(cls)}
        values: dict[str, Any] = {}
        for part in spec.split(","):
            name, _, raw = part.strip().partition("=")
            if name not in known:
                raise ValueError(f"unknown webhook fault {name!r}; known: {', '.join(known)}")
            try:
                value = int(raw) if name == "retries" else float(raw)
            except ValueError:
                raise ValueError(f"webhook fault {name!r} needs a number, not {raw!r}") from None
            if value < 0 or (name in ("drop", "duplicate", "reorder") and value > 1):
                raise ValueError(f"webhook fault {name!r} is out of range: {raw!r}")
            values[name] = value
        return cls(**values)


@dataclass(order=True)
class _Delivery:
    due: datetime
    seq: int
    call_id: str
    url: str
    body: dict[str, Any]
    attempt: int = 0


class WebhookSender:
    """Send a webhook for each order that ends; count what happened (:attr:`counts`).

    Args:
        engine: the simulator's engine (its orders and its clock).
        faults: the fault plan (a :class:`WebhookFaults` or a SPEC string).
        url: where orders with no ``webhook_url`` of their own (or their assistant's) are announced;
            None: those are not announced.
        seed: makes the draws reproducible.
        post: sends one delivery and returns the HTTP status (tests and benchmarks may replace it).
    """

    def __init__(
        self,
        engine: Any,
        faults: WebhookFaults | str | None = None,
        *,
        url: str | None = None,
        seed: int = 0,
        post: Callable[[str, dict[str, Any]], int] | None = None,
    ) -> None:
        self.engine = engine
        self.faults = faults if isinstance(faults, WebhookFaults) else WebhookFaults.parse(faults)
        self.url = url
        self._random = random.Random(seed)
        self._client: httpx.Client | None = None
        self._post = post or self._http_post
        self._placed = 0
        # Open orders by planned end (rechecked when due), and the ones with no planned end.
        self._ends: list[tuple[datetime, str]] = []
        self._undated: set[str] = set()
        self._rescan_at: datetime | None = None
        self._queue: list[_Delivery] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: ended, dropped, duplicated, sent (attempts), delivered (2xx), retried, gave_up.
        self.counts: dict[str, int] = dict.fromkeys(
            ("ended", "dropped", "duplicated", "sent", "delivered", "retried", "gave_up"), 0
        )
        #: The order ids whose webhooks were all dropped or gave up (none delivered).
        self.lost: set[str] = set()
        self._delivered: set[str] = set()

    def _http_post(self, url: str, body: dict[str, Any]) -> int:
        if self._client is None:
            self._client = httpx.Client(timeout=5.0)
        return self._client.post(url, json=body).status_code

    def _url_of(self, call: dict[str, Any]) -> str | None:
        assistant = call.get("assistant") if isinstance(call.get("assistant"), dict) else {}
        assistant = assistant or {}
        found = (
            call.get("webhook_url")
            or assistant.get("webhook_url")
            or self.engine.assistant_webhooks.get(str(assistant.get("id")))
            or self.url
        )
        return str(found) if found else None

    def _push(self, delivery: _Delivery) -> None:
        self._seq += 1
        delivery.seq = self._seq
        heapq.heappush(self._queue, delivery)

    def _delay(self) -> timedelta:
        seconds = self._random.uniform(0, self.faults.delay)
        if self._random.random() < self.faults.reorder:
            seconds += self._random.uniform(0, 10 * max(self.faults.delay, 1.0))
        return timedelta(seconds=seconds)

    def _announce(self, call_id: str, ended: datetime) -> None:
        call = self.engine.get_call(call_id)
        url = self._url_of(call)
        if url is None:
            return
        self.counts["ended"] += 1
        if self._random.random() < self.faults.drop:
            self.counts["dropped"] += 1
            self.lost.add(call_id)
            return
        body = {"type": "call.completed", "call": {k: call.get(k) for k in ("id", "status", "ended_at")}}
        copies = 1
        if self._random.random() < self.faults.duplicate:
            self.counts["duplicated"] += 1
            copies = 2
        for _ in range(copies):
            self._push(_Delivery(ended + self._delay(), 0, call_id, url, body))

    def _track(self, call_id: str) -> None:
        end = self.engine.terminal_at(call_id)
        if end is None:
            self._undated.add(call_id)
        else:
            heapq.heappush(self._ends, (end, call_id))

    def _rescan(self, now: datetime) -> None:
        # A planned end may move earlier (a cancel): every order still open is dated again.
        open_ids = {call_id for _, call_id in self._ends} | self._undated
        self._ends, self._undated = [], set()
        for call_id in open_ids:
            self._track(call_id)
        self._rescan_at = now + RESCAN

    def step(self) -> int:
        """Announce the orders that ended and send the deliveries due now; returns how many were sent."""
        with self._lock:
            now = self.engine.clock.now()
            placed = self.engine.call_ids()
            for call_id in placed[self._placed :]:
                self._track(call_id)
            self._placed = len(placed)
            if self._rescan_at is None or now >= self._rescan_at:
                self._rescan(now)
            for call_id in list(self._undated):
                if self.engine.terminal_at(call_id) is not None:
                    self._undated.discard(call_id)
                    self._track(call_id)
            while self._ends and self._ends[0][0] <= now:
                _, call_id = heapq.heappop(self._ends)
                ended = self.engine.terminal_at(call_id)
                if ended is None:
                    self._undated.add(call_id)
                elif ended > now:
                    heapq.heappush(self._ends, (ended, call_id))
                else:
                    self._announce(call_id, ended)
            due: list[_Delivery] = []
            while self._queue and self._queue[0].due <= now:
                due.append(heapq.heappop(self._queue))
        for delivery in due:
            self._send(delivery)
        return len(due)

    def _send(self, delivery: _Delivery) -> None:
        self.counts["sent"] += 1
        try:
            status = self._post(delivery.url, delivery.body)
        except httpx.HTTPError:
            status = 0
        if 200 <= status < 300:
            self.counts["delivered"] += 1
            self._delivered.add(delivery.call_id)
            self.lost.discard(delivery.call_id)
            return
        with self._lock:
            if delivery.attempt < self.faults.retries:
                self.counts["retried"] += 1
                wait = timedelta(seconds=self.faults.retry_wait * 2**delivery.attempt)
                self._push(
                    _Delivery(
                        self.engine.clock.now() + wait,
                        0,
                        delivery.call_id,
                        delivery.url,
                        delivery.body,
                        delivery.attempt + 1,
                    )
                )
            else:
                self.counts["gave_up"] += 1
                if delivery.call_id not in self._delivered:
                    self.lost.add(delivery.call_id)

    def next_due(self) -> datetime | None:
        """When the next queued delivery is due; None when none is queued."""
        with self._lock:
            return self._queue[0].due if self._queue else None

    def start(self) -> WebhookSender:
        """Send from a daemon thread, every :data:`TICK` real seconds, until :meth:`stop`."""

        def run() -> None:
            while not self._stop.is_set():
                self.step()
                time.sleep(TICK)

        self._thread = threading.Thread(target=run, name="revox-simulator-webhooks", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (deliveries still queued are not sent) and close the HTTP client."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._client is not None:
            self._client.close()
