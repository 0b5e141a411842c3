"""The arithmetic of the adaptive request rate: how fast one process may call the API now.

Several processes sharing one Revox account (Celery workers, triggerers) cannot see each other's
requests; each only sees its own answers. Each therefore runs the same rule, as TCP does and as
the adaptive retry mode of the AWS SDKs does: the rate grows slowly while the API accepts, and a
429 cuts it multiplicatively. Processes that send more receive more of the 429s and are cut by
more, so a fleet converges to the account's limit and to fair shares without a coordinator.

* Until the first 429 the rate is the connection's ``max_requests_per_second`` (the ceiling; no
  limit when it is 0).
* A 429 cuts the rate to :data:`DECREASE_FACTOR` of what this process was really sending (the
  lower of its allowed rate and its measured send rate, so a process that was mostly idle is
  not left with a rate it never used), never below :data:`MIN_RATE`. A 429 answering a request
  sent before the last cut does not cut again: it is the same overload, already answered.
* Every accepted answer then moves the rate up a straight line from the cut rate, up to the
  ceiling: in :data:`RECOVERY_SECONDS` it regains :data:`RECOVERED_SHARE` of what the cut took
  plus :data:`ADDITIVE_INCREASE`, and goes on at that slope. The part in proportion to the rate
  lets a process recover as fast from a cut at 500 requests per second as at 5; the part every
  process shares (the same requests per second for all) is what makes unequal shares converge: a
  process left with a small share after a run of 429s climbs back at nearly the pace of a large
  one. The proportional part is kept to half because it preserves whatever inequality a run of
  429s left (a process recovers in proportion to what it had); measured in ``bench/fleet.py``,
  the shared part is what brings ten processes to within a factor of two of each other.

Which process a 429 reaches is chance (the one whose request found the account's bucket empty),
so over a short span the shares differ by luck alone: a process learns its share only from its
own 429s, and at a 429 share of 2 % ten processes on a 50-per-second account each receive about
one every ten seconds. Shares even out over minutes, not seconds.

Nothing here reads a clock or sleeps: every moment is passed in (``now``), so the rules are
tested on invented times. :mod:`airflow_provider_revox._internal.client.ratelimit` holds the
clock, the lock and the waiting.
"""

from __future__ import annotations

import math
from collections import deque

#: A 429 multiplies the rate this process was sending by this.
DECREASE_FACTOR = 0.5
#: Seconds for the rate to regain :data:`RECOVERED_SHARE` of what a cut took, plus :data:`ADDITIVE_INCREASE`.
RECOVERY_SECONDS = 60.0
#: The share of what a cut took that the rate regains in :data:`RECOVERY_SECONDS`.
RECOVERED_SHARE = 0.5
#: Requests per second every process gains per :data:`RECOVERY_SECONDS`, whatever its rate.
ADDITIVE_INCREASE = 12.0
#: The rate is never cut below this many requests per second (unless the ceiling is lower).
MIN_RATE = 0.5
#: Seconds of sends the measured send rate looks back on.
METER_WINDOW = 2.0
#: The measured rate of a process younger than this is taken over this span, not a shorter one.
METER_MIN_SPAN = 0.1


class SendMeter:
    """The rate at which this process has been sending, over the last :data:`METER_WINDOW` seconds."""

    def __init__(self) -> None:
        self._sends: deque[float] = deque()
        self._first: float | None = None

    def record(self, now: float) -> None:
        """Count one request sent at ``now``."""
        if self._first is None:
            self._first = now
        self._sends.append(now)
        self._forget(now)

    def _forget(self, now: float) -> None:
        while self._sends and self._sends[0] <= now - METER_WINDOW:
            self._sends.popleft()

    def rate(self, now: float) -> float | None:
        """Requests per second sent lately; None before the first send."""
        if self._first is None:
            return None
        self._forget(now)
        span = min(METER_WINDOW, max(now - self._first, METER_MIN_SPAN))
        return len(self._sends) / span


class AdaptiveRate:
    """The allowed rate of one process: cut on a 429, grown back while answers are accepted.

    Args:
        ceiling: the connection's ``max_requests_per_second``; ``math.inf`` for no limit.
        adaptive: False keeps the rate at the ceiling whatever the API answers.
    """

    def __init__(self, ceiling: float = math.inf, *, adaptive: bool = True) -> None:
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.rate = ceiling
        #: The rate being sent when the last cut came; None before the first 429.
        self.before_cut: float | None = None
        self.last_cut = -math.inf

    @property
    def engaged(self) -> bool:
        """True once a 429 has cut the rate (and adaptation is on)."""
        return self.before_cut is not None

    def reconfigure(self, ceiling: float, adaptive: bool) -> None:
        """A changed connection: a new ceiling (the rate stays at or below it), adaptation on or off."""
        self.ceiling, self.adaptive = ceiling, adaptive
        if not adaptive:
            self.before_cut, self.last_cut = None, -math.inf
            self.rate = ceiling
        else:
            self.rate = min(self.rate, ceiling)

    def throttled(self, now: float, sent_at: float, measured: float | None) -> bool:
        """A 429 came at ``now`` for a request sent at ``sent_at``; return True when it cut the rate.

        Args:
            now: the moment of the answer.
            sent_at: the moment the refused request was sent.
            measured: this process's send rate lately (:meth:`SendMeter.rate`), None if unknown.
        """
        if not self.adaptive or sent_at < self.last_cut:
            return False
        sending = self.rate if measured is None else min(self.rate, measured)
        if not math.isfinite(sending):
            sending = MIN_RATE  # no limit and no send measured: nothing better to start from
        floor = min(MIN_RATE, self.ceiling)
        self.before_cut = max(sending, floor)
        self.rate = max(floor, sending * DECREASE_FACTOR)
        self.last_cut = now
        return True

    def accepted(self, now: float) -> None:
        """An answer other than a 429 came at ``now``: move the rate up its line, up to the ceiling."""
        if not self.adaptive or self.before_cut is None:
            return
        low = self.before_cut * DECREASE_FACTOR
        slope = (RECOVERED_SHARE * (self.before_cut - low) + ADDITIVE_INCREASE) / RECOVERY_SECONDS
        self.rate = min(self.ceiling, max(self.rate, low + slope * max(0.0, now - self.last_cut)))

    def __repr__(self) -> str:
        return f"AdaptiveRate(rate={self.rate:g}, ceiling={self.ceiling:g}, adaptive={self.adaptive})"
