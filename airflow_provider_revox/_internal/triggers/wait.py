"""What the call triggers share: the real-time stop (an explicit timeout or ``execution_timeout``),
the sleep between polls and the cut of an in-flight request at the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

import anyio
from airflow.triggers.base import BaseTrigger

from airflow_provider_revox._internal.core.call import parse_iso
from airflow_provider_revox._internal.triggers.ending import end_kwargs
from airflow_provider_revox._internal.waiting import rounds

T = TypeVar("T")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def within(seconds: float | None, awaitable: Awaitable[T]) -> tuple[bool, T | None]:
    """``(True, result)`` when ``awaitable`` finished within ``seconds`` (None: no bound), else
    ``(False, None)``, the awaitable cancelled.

    Not ``asyncio.wait_for``: before Python 3.12 it swallows a cancellation that comes as the
    awaited work finishes, so a trigger the triggerer stopped went on polling to its end.
    """
    with anyio.move_on_after(seconds):
        return True, await awaitable
    return False, None


def parse_time(value: str | None) -> datetime | None:
    """``value`` (ISO 8601) as a datetime; None for None or ""."""
    return parse_iso(value) if value else None


class WaitTrigger(BaseTrigger):
    """What both triggers share: the real-time stop (explicit timeout or ``execution_timeout``),
    the sleep and the cut of an in-flight request at the deadline."""

    #: Awaited to sleep between polls; tests hand in a faster one.
    pause: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)
    #: Shortest sleep, in seconds; None means the provider's minimum (1 s).
    min_sleep: float | None = None
    #: The real time (UTC) the real-time stop is checked against; tests hand in their own clock.
    utcnow: Callable[[], datetime] = staticmethod(_utcnow)

    def __init__(self, *shared: Any) -> None:
        # The kwargs both triggers take, in their order: see the subclasses' docstrings.
        revox_conn_id, poke_interval, fail_on_statuses, deadline_at, deadline_fixed, stop_at = shared
        super().__init__()  # type: ignore[no-untyped-call]
        self.revox_conn_id = revox_conn_id
        self.poke_interval = float(poke_interval)
        self.fail_on_statuses = list(fail_on_statuses)
        self.deadline_at = deadline_at
        self.deadline_fixed = deadline_fixed
        self.stop_at = stop_at
        self.end_task = False
        self.soft_fail = False

    def _ending(self, end_task: bool, soft_fail: bool) -> None:
        self.end_task = bool(end_task)
        self.soft_fail = bool(soft_fail)

    def _start_limit(self, limit: datetime | None, clock: Any) -> datetime | None:
        """The limit while nothing answered: a wait started in the triggerer has no deadline yet."""
        if limit is None and not self.deadline_fixed:
            return rounds.unread_limit(clock.now())
        return limit

    def _serialized(self, classpath: str, **own: Any) -> tuple[str, dict[str, Any]]:
        """``classpath`` and JSON-only kwargs (the trigger's whole state): ``own`` plus the shared ones."""
        return (
            classpath,
            {
                **own,
                "revox_conn_id": self.revox_conn_id,
                "poke_interval": self.poke_interval,
                "fail_on_statuses": list(self.fail_on_statuses),
                "deadline_at": self.deadline_at,
                "deadline_fixed": self.deadline_fixed,
                "stop_at": self.stop_at,
                **end_kwargs(self.end_task, self.soft_fail),
            },
        )

    def _real_stop(self) -> datetime | None:
        """The earliest real-time limit: a fixed deadline or the stop from ``execution_timeout``."""
        limits = [parse_time(self.stop_at)]
        if self.deadline_fixed:
            limits.append(parse_time(self.deadline_at))
        known = [limit for limit in limits if limit is not None]
        return min(known) if known else None

    def _budget(self, limit: datetime | None, now: datetime, clock: Any) -> float | None:
        """Real seconds the next request may take before a limit passes (None: no bound)."""
        lefts = [rounds.real_left(limit, now, clock) if not self.deadline_fixed else None]
        stop = self._real_stop()
        if stop is not None:
            lefts.append(max((stop - self.utcnow()).total_seconds(), 0.0))
        known = [left for left in lefts if left is not None]
        return min(known) if known else None

    def _sleep_for(self, clock: Any, now: datetime, wake: datetime, limit: datetime | None) -> float:
        """Real seconds until the next poll, never past a limit."""
        return rounds.sleep_seconds(
            clock,
            now,
            wake,
            limit=None if self.deadline_fixed else limit,
            real_left=self._budget(limit, now, clock),
            min_sleep=self.min_sleep,
        )

    def _passed(self, limit: datetime | None, now: datetime) -> datetime | None:
        """The limit that has passed (real stop first, then the derived deadline), or None."""
        stop = self._real_stop()
        if stop is not None and self.utcnow() >= stop:
            return stop
        if not self.deadline_fixed and limit is not None and now >= limit:
            return limit
        return None
