"""The request rate of one connection in one process, shared by every hook and trigger using it.

Every request the hooks of a connection send in this process, from threads or from any event
loop, first takes a token from one shared bucket. A triggerer running a thousand triggers of a
10,000-call campaign therefore stays under the rate as a whole.

The rate is adaptive (connection extra ``adaptive_rate``, on by default): a 429 cuts it and it
grows back slowly while the API accepts, by the rules of
:mod:`airflow_provider_revox._internal.client.adaptive`. Processes sharing one account (several
workers, triggerers) thereby converge to the account's limit together. ``max_requests_per_second``
stays the ceiling (absent or 0: none, and no pacing at all until a first 429). When the answer
says how long to wait (``Retry-After``), every caller of the bucket is held until then, not only
the one that was refused.

Buckets are keyed by ``(connection id, base URL)``: two connection ids pointing at the same
API get one bucket each. Different connections usually hold different API keys, each with its
own quota, and sharing one bucket would throttle one account for another's load.

Written here rather than taken from a library: ``aiolimiter`` and ``asynciolimiter`` are
asyncio-only, ``pyrate-limiter`` and ``limits`` offer no feedback from a 429, and none lets
blocking threads and coroutines on several event loops wait on the same bucket. The state is
a few floats behind a :class:`threading.Lock`; a caller reserves its slot under the lock and
sleeps outside it (``time.sleep`` in a thread, ``asyncio.sleep`` on a loop), so no asyncio
object is ever bound to one loop.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable

from airflow_provider_revox._internal.client.adaptive import AdaptiveRate, SendMeter

#: Longest pause a single 429 can impose on every caller, in seconds.
MAX_PAUSE_SECONDS = 60.0


class TokenBucket:
    """A token bucket whose rate adapts to 429 answers, safe across threads and event loops.

    Args:
        rate: the ceiling in tokens (requests) per second; positive, ``math.inf`` for none.
        burst: how many tokens the bucket holds; default the rate rounded up, at least 1.
        clock: monotonic seconds; replaceable in tests.
        adaptive: False keeps the rate at the ceiling (a 429's ``Retry-After`` still holds callers).
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        adaptive: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._max_rate = 0.0
        self._burst = 1.0
        self._configure(rate, burst)
        self._adaptive = AdaptiveRate(self._max_rate, adaptive=adaptive)
        self._meter = SendMeter()
        self._tokens = self._current_burst()
        self._updated = clock()
        self._paused_until = -math.inf

    def _configure(self, rate: float, burst: float | None) -> None:
        if not (isinstance(rate, int | float) and not math.isnan(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of requests per second, not {rate!r}")
        if burst is None:
            burst = max(1.0, float(math.ceil(rate))) if math.isfinite(rate) else math.inf
        if not (isinstance(burst, int | float) and not math.isnan(burst) and burst >= 1):
            raise ValueError(f"burst must be a number of requests, at least 1, not {burst!r}")
        self._max_rate = float(rate)
        self._burst = float(burst)

    def _current_burst(self) -> float:
        # Once cut, at most one second of the current rate goes out back to back.
        rate = self._adaptive.rate
        return min(self._burst, max(1.0, float(math.ceil(rate)))) if math.isfinite(rate) else self._burst

    @property
    def max_rate(self) -> float:
        """The ceiling, in requests per second (``math.inf`` for none)."""
        return self._max_rate

    @property
    def adaptive(self) -> bool:
        """Whether 429 answers cut the rate."""
        return self._adaptive.adaptive

    @property
    def rate(self) -> float:
        """The current rate: the ceiling, or less after 429s."""
        with self._lock:
            return self._adaptive.rate

    @property
    def burst(self) -> float:
        """How many requests may go out back to back after a quiet spell, at the ceiling."""
        return self._burst

    def reconfigure(self, rate: float, burst: float | None = None, *, adaptive: bool = True) -> None:
        """Change the ceiling or adaptation (an edited connection), keeping the tokens earned so far."""
        with self._lock:
            self._refill(self._clock())
            self._configure(rate, burst)
            self._adaptive.reconfigure(self._max_rate, adaptive)
            self._tokens = min(self._tokens, self._current_burst())

    def _refill(self, now: float) -> None:
        # No tokens are earned during a pause: it ends with an empty bucket, not a burst.
        earned_from = max(self._updated, self._paused_until)
        if now > earned_from:
            rate = self._adaptive.rate
            earned = (now - earned_from) * rate if math.isfinite(rate) else math.inf
            self._tokens = min(self._current_burst(), self._tokens + earned)
        self._updated = max(self._updated, now)

    def _reserve(self) -> tuple[float, float]:
        with self._lock:
            now = self._clock()
            self._refill(now)
            start = max(now, self._paused_until)
            rate = self._adaptive.rate
            if not math.isfinite(rate):
                return start - now, self._paused_until
            self._tokens -= 1.0
            owed = -self._tokens / rate if self._tokens < 0 else 0.0
            return start - now + owed, self._paused_until

    def reserve(self) -> float:
        """Take one token now and return how many seconds to wait before using it.

        The token is owed even when the caller waits: later callers queue behind it.
        """
        return self._reserve()[0]

    def pause_left(self) -> float:
        """Seconds until a pause imposed by a 429 ends (0 when there is none)."""
        with self._lock:
            return max(0.0, self._paused_until - self._clock())

    def _new_pause(self, seen: float) -> tuple[float, float]:
        # Only a pause imposed after the caller's reservation holds it again: one it already
        # waited out (or was told to, by a sleep that returns at once) does not.
        with self._lock:
            if self._paused_until <= seen:
                return 0.0, seen
            return max(0.0, self._paused_until - self._clock()), self._paused_until

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Block the calling thread until a request may go out; return the seconds waited."""
        waited = 0.0
        wait, seen = self._reserve()
        while wait > 0:
            sleep(wait)
            waited += wait
            # A 429 seen by another caller while this one slept holds it too.
            wait, seen = self._new_pause(seen)
        return waited

    async def aacquire(self, asleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> float:
        """Wait on the running event loop until a request may go out; return the seconds waited."""
        waited = 0.0
        wait, seen = self._reserve()
        while wait > 0:
            await asleep(wait)
            waited += wait
            wait, seen = self._new_pause(seen)
        return waited

    def sent(self) -> float:
        """Record that a request goes out now; return the moment, for :meth:`on_throttled`."""
        with self._lock:
            now = self._clock()
            self._meter.record(now)
            return now

    def on_throttled(self, retry_after: float | None = None, sent_at: float | None = None) -> None:
        """Record a 429: cut the rate (once per overload), drop the burst, pause until Retry-After.

        Args:
            retry_after: the seconds the answer asked to wait, if it said.
            sent_at: when the refused request went out (:meth:`sent`); default now.
        """
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._adaptive.throttled(now, now if sent_at is None else sent_at, self._meter.rate(now))
            self._tokens = min(self._tokens, 0.0)
            if retry_after is not None and retry_after > 0:
                self._paused_until = max(self._paused_until, now + min(retry_after, MAX_PAUSE_SECONDS))

    def on_success(self) -> None:
        """Record an answer that was not a 429: let the rate grow back towards the ceiling."""
        with self._lock:
            if self._adaptive.engaged:
                now = self._clock()
                self._refill(now)
                self._adaptive.accepted(now)

    def __repr__(self) -> str:
        return (
            f"TokenBucket(rate={self.rate:g}, max_rate={self._max_rate:g}, burst={self._burst:g}, "
            f"adaptive={self.adaptive})"
        )


_registry: dict[tuple[str, str], TokenBucket] = {}
_registry_lock = threading.Lock()


def bucket_for(conn_id: str, base_url: str, rate: float, adaptive: bool = True) -> TokenBucket | None:
    """The process-wide bucket of a connection; None when there is no ceiling and no adaptation.

    The first caller creates the bucket; later ones share it. A different ``rate`` or ``adaptive``
    for the same connection (the connection was edited) reconfigures the shared bucket.

    Args:
        conn_id: the connection id.
        base_url: the API base URL of the connection.
        rate: the ceiling (``max_requests_per_second``); 0 for none.
        adaptive: whether 429 answers cut the rate (``adaptive_rate``).
    """
    if rate <= 0 and not adaptive:
        return None
    ceiling = rate if rate > 0 else math.inf
    key = (conn_id, base_url.rstrip("/"))
    with _registry_lock:
        bucket = _registry.get(key)
        if bucket is None:
            bucket = _registry[key] = TokenBucket(ceiling, adaptive=adaptive)
            return bucket
    if bucket.max_rate != ceiling or bucket.adaptive != adaptive:
        bucket.reconfigure(ceiling, adaptive=adaptive)
    return bucket


def reset_buckets() -> None:
    """Forget every shared bucket (for tests that reuse a connection id with a fresh API)."""
    with _registry_lock:
        _registry.clear()
