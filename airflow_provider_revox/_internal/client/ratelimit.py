"""A client-side request rate shared by every hook and trigger of one connection in a process.

Set the connection extra ``max_requests_per_second`` (absent or 0: unlimited, the default) and
every request the hooks of that connection send in this process, from threads or from any
event loop, first takes a token from one shared bucket. A triggerer running a thousand
triggers of a 10,000-call campaign therefore stays under the rate as a whole.

The bucket listens to the API: a 429 halves its rate (down to a floor) and, when the answer
says how long to wait (``Retry-After``), holds every caller until then, not only the one that
was refused. Each success then adds back a twentieth of the configured rate (additive
increase, multiplicative decrease, as TCP does).

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
from collections.abc import Callable

#: A 429 multiplies the current rate by this.
DECREASE_FACTOR = 0.5
#: The rate never drops below this fraction of the configured one.
MIN_RATE_FRACTION = 1 / 16
#: Each success gives back this fraction of the configured rate.
RECOVERY_FRACTION = 1 / 20
#: Longest pause a single 429 can impose on every caller, in seconds.
MAX_PAUSE_SECONDS = 60.0


class TokenBucket:
    """A token bucket with AIMD feedback, safe across threads and event loops.

    Args:
        rate: tokens (requests) per second; must be positive.
        burst: how many tokens the bucket holds; default the rate rounded up, at least 1.
        clock: monotonic seconds; replaceable in tests.
    """

    def __init__(
        self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._max_rate = 0.0
        self._burst = 1.0
        self._configure(rate, burst)
        self._rate = self._max_rate
        self._tokens = self._burst
        self._updated = clock()
        self._paused_until = -math.inf

    def _configure(self, rate: float, burst: float | None) -> None:
        if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of requests per second, not {rate!r}")
        if burst is None:
            burst = max(1.0, float(math.ceil(rate)))
        if not (isinstance(burst, int | float) and math.isfinite(burst) and burst >= 1):
            raise ValueError(f"burst must be a number of requests, at least 1, not {burst!r}")
        self._max_rate = float(rate)
        self._burst = float(burst)

    @property
    def max_rate(self) -> float:
        """The configured rate, in requests per second."""
        return self._max_rate

    @property
    def rate(self) -> float:
        """The current rate: the configured one, or less after recent 429s."""
        with self._lock:
            return self._rate

    @property
    def burst(self) -> float:
        """How many requests may go out back to back after a quiet spell."""
        return self._burst

    def reconfigure(self, rate: float, burst: float | None = None) -> None:
        """Change the configured rate (an edited connection), keeping the tokens earned so far."""
        with self._lock:
            self._refill(self._clock())
            self._configure(rate, burst)
            self._rate = min(self._rate, self._max_rate)
            self._tokens = min(self._tokens, self._burst)

    def _refill(self, now: float) -> None:
        # No tokens are earned during a pause: it ends with an empty bucket, not a burst.
        earned_from = max(self._updated, self._paused_until)
        if now > earned_from:
            self._tokens = min(self._burst, self._tokens + (now - earned_from) * self._rate)
        self._updated = max(self._updated, now)

    def reserve(self) -> float:
        """Take one token now and return how many seconds to wait before using it.

        The token is owed even when the caller waits: later callers queue behind it.
        """
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._tokens -= 1.0
            start = max(now, self._paused_until)
            owed = -self._tokens / self._rate if self._tokens < 0 else 0.0
            return start - now + owed

    def pause_left(self) -> float:
        """Seconds until a pause imposed by a 429 ends (0 when there is none)."""
        with self._lock:
            return max(0.0, self._paused_until - self._clock())

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Block the calling thread until a request may go out; return the seconds waited."""
        waited = 0.0
        wait = self.reserve()
        while wait > 0:
            sleep(wait)
            waited += wait
            # A 429 seen by another caller while this one slept holds it too.
            wait = self.pause_left()
        return waited

    async def aacquire(self) -> float:
        """Wait on the running event loop until a request may go out; return the seconds waited."""
        waited = 0.0
        wait = self.reserve()
        while wait > 0:
            await asyncio.sleep(wait)
            waited += wait
            wait = self.pause_left()
        return waited

    def on_throttled(self, retry_after: float | None = None) -> None:
        """Record a 429: halve the rate (not below the floor), drop the burst, pause until Retry-After."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._rate = max(self._max_rate * MIN_RATE_FRACTION, self._rate * DECREASE_FACTOR)
            self._tokens = min(self._tokens, 0.0)
            if retry_after is not None and retry_after > 0:
                self._paused_until = max(self._paused_until, now + min(retry_after, MAX_PAUSE_SECONDS))

    def on_success(self) -> None:
        """Record an answer that was not a 429: win back part of the configured rate."""
        with self._lock:
            if self._rate < self._max_rate:
                self._refill(self._clock())
                self._rate = min(self._max_rate, self._rate + self._max_rate * RECOVERY_FRACTION)

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}, max_rate={self._max_rate:g}, burst={self._burst:g})"


_registry: dict[tuple[str, str], TokenBucket] = {}
_registry_lock = threading.Lock()


def bucket_for(conn_id: str, base_url: str, rate: float) -> TokenBucket | None:
    """The process-wide bucket of a connection, or None when ``rate`` is 0 (unlimited).

    The first caller creates the bucket; later ones share it. A different ``rate`` for the same
    connection (the connection was edited) reconfigures the shared bucket.
    """
    if rate <= 0:
        return None
    key = (conn_id, base_url.rstrip("/"))
    with _registry_lock:
        bucket = _registry.get(key)
        if bucket is None:
            bucket = _registry[key] = TokenBucket(rate)
            return bucket
    if bucket.max_rate != rate:
        bucket.reconfigure(rate)
    return bucket


def reset_buckets() -> None:
    """Forget every shared bucket (for tests that reuse a connection id with a fresh API)."""
    with _registry_lock:
        _registry.clear()
