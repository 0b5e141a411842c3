"""The API's clock as seen from here, so waits line up with the server's idea of time.

Revox itself answers in real time and this clock simply reads the local one. The embedded
simulator can run faster than real time (``--speed 600``) or on a manual clock; it reports its
clock in two response headers, and sensors and triggers then schedule on that clock, so a DAG
developed offline against a fast simulator waits seconds instead of hours.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from airflow_provider_revox._internal.core.call import parse_iso

#: ISO 8601 time of the server's clock when it answered (sent by the simulator only).
SERVER_TIME_HEADER = "x-revox-simulator-time"
#: Server seconds per real second: 1 for real time, 600 for ``--speed 600``, 0 for a manual clock.
SERVER_SPEED_HEADER = "x-revox-simulator-speed"

# A manual clock only moves when a test moves it: look again soon rather than never.
_FROZEN_CLOCK_POLL_SECONDS = 1.0
#: Fastest clock believed (the simulator's own limit is far below).
MAX_SPEED = 1e6
#: Server times outside this range are not believed: a waiting task would time out at once or never.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)
# Longest stretch of server time extrapolated from one observation, so ``now`` cannot overflow.
_MAX_EXTRAPOLATION = timedelta(days=3650)


class ServerClock:
    """Tracks the server's clock from the last response that reported it; else the local clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server_time: datetime | None = None
        self._observed_at = 0.0
        self.speed = 1.0

    def observe(self, headers: Mapping[str, str]) -> None:
        """Record the server's clock from a response's headers, when it reports a sane one.

        Any server can send these headers: a speed that is not a finite number from 0 (a manual
        clock) to :data:`MAX_SPEED`, or a time without a zone or outside 2000-2200, is ignored.
        """
        stamp = headers.get(SERVER_TIME_HEADER)
        if not stamp:
            return
        try:
            server_time = parse_iso(stamp[:64])
            speed = float(headers.get(SERVER_SPEED_HEADER, "1")[:64])
        except (ValueError, OverflowError):
            return
        if not (0 <= speed <= MAX_SPEED) or server_time.tzinfo is None:  # also refuses nan
            return
        try:
            if not EARLIEST <= server_time <= LATEST:
                return
        except (OverflowError, ValueError):
            return
        with self._lock:
            self._server_time = server_time.astimezone(timezone.utc)
            self._observed_at = time.monotonic()
            self.speed = speed

    def now(self) -> datetime:
        """The server's current time (the local clock until a response reported another)."""
        with self._lock:
            if self._server_time is None:
                return datetime.now(timezone.utc)
            elapsed = (time.monotonic() - self._observed_at) * self.speed
            return self._server_time + min(timedelta(seconds=elapsed), _MAX_EXTRAPOLATION)

    def real_seconds(self, server_seconds: float) -> float:
        """How long to really sleep for ``server_seconds`` of the server's clock to pass."""
        if server_seconds <= 0:
            return 0.0
        if self.speed == 0:
            return min(server_seconds, _FROZEN_CLOCK_POLL_SECONDS)
        return server_seconds / self.speed
