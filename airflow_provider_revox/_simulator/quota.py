"""The account's request limit: one rate for every client of the simulator, as the API enforces it.

A token bucket of ``rate`` requests per second holding up to one second of them (at least one):
an API request that finds it empty is answered 429 with a ``Retry-After`` of the seconds until
the next token, in milliseconds' precision. Refused requests take no token. Every API request
counts, from whichever client, connection or process; the ``/_simulator`` routes do not.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class AccountLimit:
    """Requests per second the whole account may send.

    Args:
        rate: requests per second; positive.
        clock: monotonic seconds; replaceable in tests.

    Raises:
        ValueError: a rate that is not a positive number.
    """

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
            raise ValueError(f"the account's rate limit must be a positive number per second, not {rate!r}")
        self.rate = float(rate)
        self.burst = max(1.0, self.rate)
        self._clock = clock
        self._tokens = self.burst
        self._updated = clock()
        self._lock = threading.Lock()

    def admit(self) -> float | None:
        """Take a token for one request: None when admitted, else the seconds until the next token."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return None
            return math.ceil((1.0 - self._tokens) / self.rate * 1000) / 1000

    def __repr__(self) -> str:
        return f"AccountLimit({self.rate:g}/s)"
