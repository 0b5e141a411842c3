"""Concurrency lanes: where a campaign's attempts fit so that at most N are live at once."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from datetime import datetime, timedelta


class Lanes:
    """``count`` lanes, each a sorted run of busy ``[start, end)`` intervals that never overlap.

    An attempt takes one lane from its dial time to its end, so at any moment at most ``count``
    attempts are live. Reservations may come in any time order (a retry hours later, then the
    next contact's first dial).
    """

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"a campaign needs at least one lane, not {count}")
        self._starts: list[list[datetime]] = [[] for _ in range(count)]
        self._ends: list[list[datetime]] = [[] for _ in range(count)]

    def __len__(self) -> int:
        return len(self._starts)

    def reserve(self, due: datetime, length: timedelta, align: Callable[[datetime], datetime]) -> datetime:
        """Take the earliest start at or after ``due`` that a lane has free for ``length``.

        ``align`` moves a candidate start to an allowed one (a calling window); a candidate is
        taken only when it is already allowed, so the result is both free and allowed.
        """
        moment = due
        while True:
            fits = [self._fit(lane, moment, length) for lane in range(len(self))]
            lane = min(range(len(fits)), key=lambda index: fits[index][0])
            start, position = fits[lane]
            allowed = align(start)
            if allowed == start:
                self._starts[lane].insert(position, start)
                self._ends[lane].insert(position, start + length)
                return start
            moment = allowed

    def _fit(self, lane: int, moment: datetime, length: timedelta) -> tuple[datetime, int]:
        starts, ends = self._starts[lane], self._ends[lane]
        # Intervals are disjoint and sorted, so their ends are sorted too.
        index = bisect_right(ends, moment)
        start = moment
        while index < len(starts):
            if starts[index] >= start + length:
                break
            start = max(start, ends[index])
            index += 1
        return start, index

    def live_at(self, moment: datetime) -> int:
        """How many reserved intervals hold ``moment``."""
        return sum(
            1
            for starts, ends in zip(self._starts, self._ends, strict=True)
            for start, end in zip(starts, ends, strict=True)
            if start <= moment < end
        )
