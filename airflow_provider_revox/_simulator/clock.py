"""Clocks for the simulator: real time, scaled real time, or a manual virtual clock.

Every clock returns timezone-aware UTC datetimes. The engine only ever asks a
clock for ``now()``, so a test can drive days of calling windows in
microseconds with :class:`VirtualClock`, and the CLI can compress a day into
seconds with :class:`ScaledClock`.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable

#: Monday 3 March 2025, 08:00 UTC: a weekday morning before most calling windows open.
DEFAULT_VIRTUAL_START = datetime(2025, 3, 3, 8, 0, tzinfo=timezone.utc)
#: When a fast clock starts its day: as the default 10:00-18:00 window of Central European numbers
#: opens (10:00 or 11:00 in Paris), leaving room for the seconds of real time a test takes to place
#: its order (hours of fast time) and for three attempts two hours apart before the window closes.
CALLING_HOURS_START_HOUR_UTC = 9


@runtime_checkable
class Clock(Protocol):
    """Anything that tells the simulator what time it is."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware UTC."""
        ...


def calling_hours_start(moment: datetime) -> datetime:
    """The first weekday 09:00 UTC at or after ``moment``: where a fast clock starts.

    A scaled clock started at night or on a weekend makes every order wait for the next calling
    window (hours of simulated time); started here, a European number dials at once.

    Raises:
        ValueError: when ``moment`` has no timezone.
    """
    start = as_utc(moment)
    day = start.replace(hour=CALLING_HOURS_START_HOUR_UTC, minute=0, second=0, microsecond=0)
    if day < start:
        day += timedelta(days=1)
    while day.weekday() >= 5:  # Saturday, Sunday
        day += timedelta(days=1)
    return day


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; a naive datetime is rejected because its zone is ambiguous.

    Raises:
        ValueError: when ``moment`` has no timezone.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime {moment.isoformat()} has no timezone; pass an aware datetime")
    return moment.astimezone(timezone.utc)


class VirtualClock:
    """A clock that only moves when told to; safe to read from the server thread.

    Args:
        start: the initial time (aware); defaults to 2025-03-03 08:00 UTC (a Monday).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = as_utc(start) if start is not None else DEFAULT_VIRTUAL_START
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """Return the current virtual time."""
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by ``seconds`` and return the new time.

        Raises:
            ValueError: when ``seconds`` is negative (time never runs backwards).
        """
        if seconds < 0:
            raise ValueError(f"cannot advance a clock by a negative amount ({seconds} s)")
        with self._lock:
            self._now = self._now + timedelta(seconds=seconds)
            return self._now

    def set(self, moment: datetime) -> datetime:
        """Jump to ``moment`` (aware, not earlier than now) and return it.

        Raises:
            ValueError: when ``moment`` is naive or earlier than the current time.
        """
        target = as_utc(moment)
        with self._lock:
            if target < self._now:
                raise ValueError(
                    f"cannot set the clock back from {self._now.isoformat()} to {target.isoformat()}"
                )
            self._now = target
            return self._now

    def __repr__(self) -> str:
        return f"VirtualClock({self._now.isoformat()})"


class ScaledClock:
    """Real time multiplied by ``speed`` from a starting point.

    At ``speed=3600`` one real second is one simulated hour, so an order with
    three attempts two hours apart resolves in a few seconds.

    Args:
        speed: simulated seconds per real second (> 0).
        start: simulated time at creation; defaults to the real current time.
    """

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed must be a positive number, not {speed!r}")
        self.speed = float(speed)
        self._start = as_utc(start) if start is not None else datetime.now(timezone.utc)
        self._origin = time.monotonic()

    def now(self) -> datetime:
        """Return the simulated current time."""
        return self._start + timedelta(seconds=(time.monotonic() - self._origin) * self.speed)

    def __repr__(self) -> str:
        return f"ScaledClock(speed={self.speed:g})"


class FirstReadClock(ScaledClock):
    """A :class:`ScaledClock` that stands at ``start`` until it is first read, then runs.

    A test's simulator starts before the test has done anything (Airflow alone can take tens of
    seconds of real time to start a DAG run: hours at 600x). Started on first read, usually the
    first request, the clock is still at ``start`` when the first order is placed.
    """

    def __init__(self, speed: float, start: datetime) -> None:
        super().__init__(speed, start)
        self._started = False
        self._start_lock = threading.Lock()

    def now(self) -> datetime:
        """Return the simulated current time; the first call starts the clock."""
        if not self._started:
            with self._start_lock:
                if not self._started:
                    self._origin = time.monotonic()
                    self._started = True
                    return self._start
        return super().now()

    def __repr__(self) -> str:
        return f"FirstReadClock(speed={self.speed:g})"


class RealClock(ScaledClock):
    """The wall clock, in UTC."""

    def __init__(self) -> None:
        super().__init__(speed=1.0)
