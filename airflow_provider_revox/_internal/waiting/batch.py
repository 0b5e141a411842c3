"""Bookkeeping for a wait on many call orders: which are due, which are settled, and the verdict.

A campaign waits on thousands of orders whose next possible change ranges from seconds to
days away. :class:`Fleet` keeps one entry per pending order in a heap of due times, so a poll
round touches only the orders that are due instead of sweeping over every id. Per order it
keeps the last status (interned) and, while pending, its due time and deadline: never the
order itself, so ten thousand orders cost a few megabytes.

Everything here is pure (no I/O, no clock): times are POSIX seconds on the caller's clock.
The sensor and the trigger feed it what they fetched and read the verdict back.
"""

from __future__ import annotations

import heapq
import math
import sys
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_revox._internal.core import statuses

#: Ids listed in a failure or timeout message; the rest are counted.
MAX_LISTED_IDS = 20
#: The characters that stand for a settled status in :meth:`Fleet.compact_result`, by its
#: place in the status table; settled statuses are documented ones, far fewer than these.
_CODES = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: The character of an order not settled yet.
_PENDING = "-"


def list_ids(ids: Sequence[str], limit: int = MAX_LISTED_IDS) -> str:
    """The first ``limit`` ids, comma-separated, with how many more were left out."""
    shown = ", ".join(ids[:limit])
    extra = len(ids) - limit
    return f"{shown} (and {extra} more)" if extra > 0 else shown


def validate_ratio(value: Any) -> float:
    """Check ``min_completed_ratio``: a number from 0 to 1.

    Raises:
        ValueError: naming the value when it is not a number in [0, 1].
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"min_completed_ratio must be a number from 0 to 1, not {value!r}")
    return float(value)


def validate_concurrency(value: Any) -> int:
    """Check ``max_concurrency``: a whole number of at least 1.

    Raises:
        ValueError: naming the value when it is not a positive integer.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_concurrency must be a whole number of at least 1, not {value!r}")
    return value


class Fleet:
    """Per-order state of one wait on many call orders, with a heap of due times.

    Every pending order has exactly one heap entry: :meth:`pop_due` takes the due ones out,
    and :meth:`record` or :meth:`retry_at` puts each back unless the order is settled. An
    order is settled once :func:`~airflow_provider_revox._internal.core.statuses.verdict` is no longer
    ``waiting``: a terminal status, or one in ``fail_on`` (such an order is *failed*: it
    counts against the completed ratio but does not end the wait by itself).

    Args:
        call_ids: the orders, distinct, in the order results should list them.
        fail_on: statuses that make an order failed.
        min_completed_ratio: share of ``completed`` orders the wait needs to succeed.
        settled: orders already known settled, as ``{status: [ids]}`` (a trigger's kwargs).
        first_due: when the pending orders are first due (default: at once).

    Raises:
        ValueError: on an empty or repeated id list, or a settled id that is not in it.
    """

    __slots__ = (
        "_completed",
        "_counts",
        "_deadline",
        "_heap",
        "_latest",
        "_settled",
        "_status",
        "call_ids",
        "fail_on",
        "min_completed_ratio",
    )

    def __init__(
        self,
        call_ids: Sequence[str],
        *,
        fail_on: Collection[str] = statuses.DEFAULT_FAIL_ON,
        min_completed_ratio: float = 1.0,
        settled: Mapping[str, Iterable[str]] | None = None,
        first_due: float = -math.inf,
    ) -> None:
        self.call_ids = tuple(call_ids)
        if not self.call_ids:
            raise ValueError("call_ids is empty: give at least one call order to wait for")
        self.fail_on = frozenset(fail_on)
        self.min_completed_ratio = validate_ratio(min_completed_ratio)
        self._status: dict[str, str | None] = dict.fromkeys(self.call_ids)
        if len(self._status) != len(self.call_ids):
            raise ValueError("call_ids has repeated ids; de-duplicate them first")
        for status, ids in (settled or {}).items():
            for call_id in ids:
                if call_id not in self._status:
                    raise ValueError(f"settled call {call_id!r} is not one of call_ids")
                self._status[call_id] = sys.intern(status)
        self._deadline: dict[str, float] = {}
        # The latest deadline, kept as a max-heap with stale entries skipped when read, and the
        # counts by status kept as orders change: a round's work follows the orders it fetched,
        # not the orders the wait holds.
        self._latest: list[tuple[float, str]] = []
        self._counts: Counter[str] = Counter(status or "unfetched" for status in self._status.values())
        self._heap = [(first_due, call_id) for call_id in self.call_ids if not self.is_settled(call_id)]
        heapq.heapify(self._heap)
        self._settled = self.total - len(self._heap)
        self._completed = sum(1 for status in self._status.values() if status == statuses.COMPLETED)

    # -- scheduling -------------------------------------------------------------------------

    def is_settled(self, call_id: str) -> bool:
        """True when the order's last status ends its part of the wait."""
        return statuses.verdict(self._status[call_id], self.fail_on) != statuses.WAITING

    def pop_due(self, now: float) -> list[str]:
        """Take every order due at or before ``now`` out of the heap, earliest first."""
        due = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[1])
        return due

    def pop_next(self) -> list[str]:
        """Take the earliest pending order out of the heap, due or not (none when nothing is pending)."""
        return [heapq.heappop(self._heap)[1]] if self._heap else []

    def record(self, call_id: str, status: str, *, due: float, deadline: float | None = None) -> bool:
        """Store a fetched status; a pending order goes back in the heap at ``due``.

        Only for an order taken out by :meth:`pop_due`: a settled order is never fetched again.

        Args:
            call_id: the order fetched.
            status: its status as the API reported it.
            due: when to fetch it again if it is still pending.
            deadline: when waiting for it stops making sense, if it is still pending.

        Returns:
            True when the order is now settled.
        """
        self._counts[self._status[call_id] or "unfetched"] -= 1
        interned = self._status[call_id] = sys.intern(status)
        self._counts[interned] += 1
        if self.is_settled(call_id):
            self._deadline.pop(call_id, None)
            self._settled += 1
            self._completed += status == statuses.COMPLETED
            return True
        if deadline is not None and self._deadline.get(call_id) != deadline:
            self._deadline[call_id] = deadline
            heapq.heappush(self._latest, (-deadline, call_id))
            if len(self._latest) > 2 * len(self._deadline) + 64:
                # Deadlines move as orders progress: drop the stale entries now and then.
                self._latest = [(-value, key) for key, value in self._deadline.items()]
                heapq.heapify(self._latest)
        heapq.heappush(self._heap, (due, call_id))
        return False

    def retry_at(self, call_id: str, due: float) -> None:
        """Put an order whose fetch failed back in the heap, its state unchanged."""
        heapq.heappush(self._heap, (due, call_id))

    def next_due(self) -> float | None:
        """When the earliest pending order is due, or None when nothing is pending."""
        return self._heap[0][0] if self._heap else None

    def latest_deadline(self) -> float | None:
        """The latest deadline among pending orders that have answered, or None."""
        latest, deadlines = self._latest, self._deadline
        while latest and deadlines.get(latest[0][1]) != -latest[0][0]:
            heapq.heappop(latest)  # the order settled or got another deadline since
        return -latest[0][0] if latest else None

    # -- verdict ----------------------------------------------------------------------------

    @property
    def total(self) -> int:
        """How many orders the wait covers."""
        return len(self.call_ids)

    @property
    def pending(self) -> int:
        """How many orders are not settled yet."""
        return self.total - self._settled

    @property
    def needed(self) -> int:
        """How many orders must complete for the wait to succeed."""
        # The tolerance keeps 0.3 * 10 from needing 4 through float rounding.
        return math.ceil(self.min_completed_ratio * self.total - 1e-9)

    def _ids_where(self, keep: Any) -> list[str]:
        return [call_id for call_id, status in self._status.items() if keep(call_id, status)]

    def completed_ids(self) -> list[str]:
        """Orders that completed, in input order."""
        return self._ids_where(lambda _, status: status == statuses.COMPLETED)

    def failed_ids(self) -> list[str]:
        """Orders in a ``fail_on`` status, in input order."""
        return self._ids_where(lambda _, status: status in self.fail_on)

    def pending_ids(self) -> list[str]:
        """Orders not settled yet, in input order."""
        return self._ids_where(lambda call_id, _: not self.is_settled(call_id))

    def counts(self) -> dict[str, int]:
        """How many orders are in each status; ``unfetched`` for those that never answered."""
        return {status: count for status, count in self._counts.items() if count}

    def verdict(self) -> str:
        """``failed`` once the ratio can no longer be met, ``success`` when all settled, else ``waiting``."""
        pending = self.pending
        if self._completed + pending < self.needed:
            return statuses.FAILED
        return statuses.SUCCESS if pending == 0 else statuses.WAITING

    def result(self) -> dict[str, Any]:
        """The small, JSON-safe outcome: counts by status and the completed and failed ids."""
        completed = self.completed_ids()
        return {
            "total": self.total,
            "counts": self.counts(),
            "completed": completed,
            "failed": self.failed_ids(),
            "completed_ratio": len(completed) / self.total,
        }

    def compact_result(self) -> dict[str, Any]:
        """The outcome without id lists, for a trigger's event: about one byte per order.

        ``codes`` holds one character per order in input order, standing for its status in
        ``statuses`` (``-`` while pending); :func:`settled_from_codes` turns it back into ids
        given the same ``call_ids``. Ten thousand ids as lists would weigh some 250 kB.
        """
        table: dict[str, str] = {}
        codes = []
        for call_id, status in self._status.items():
            if status is None or not self.is_settled(call_id):
                codes.append(_PENDING)
                continue
            code = table.get(status)
            if code is None:
                code = table[status] = _CODES[len(table)]
            codes.append(code)
        return {
            "total": self.total,
            "counts": self.counts(),
            "completed_ratio": self._completed / self.total,
            "statuses": list(table),
            "codes": "".join(codes),
        }

    def settled_by_status(self) -> dict[str, list[str]]:
        """Settled orders as ``{status: [ids]}``, the compact form a trigger's kwargs carry."""
        grouped: dict[str, list[str]] = {}
        for call_id, status in self._status.items():
            if status is not None and self.is_settled(call_id):
                grouped.setdefault(status, []).append(call_id)
        return grouped

    def describe_unreachable(self) -> str:
        """Why the wait failed early: how many failed, which, and how many could still complete."""
        failed = self.failed_ids()
        reachable = self._completed + self.pending
        message = (
            f"{len(failed)} of {self.total} call orders failed "
            f"(statuses {dict(sorted(self.counts().items()))}); at most {reachable} of {self.total} "
            f"can complete but min_completed_ratio={self.min_completed_ratio:g} needs {self.needed}"
        )
        if failed:
            message += f"; failed: {list_ids(failed)}"
        return message

    def describe_pending(self) -> str:
        """How many orders are still pending, and the first ones."""
        pending = self.pending_ids()
        return f"{len(pending)} of {self.total} call orders still pending: {list_ids(pending)}"

    def __repr__(self) -> str:
        return f"Fleet(total={self.total}, settled={self._settled}, needed={self.needed})"


def settled_from_codes(call_ids: Sequence[str], compact: Any) -> dict[str, list[str]]:
    """The settled orders of a :meth:`Fleet.compact_result` as ``{status: [ids]}``.

    Args:
        call_ids: the orders, in the order the fleet had them.
        compact: the compact result (``statuses`` and ``codes``).

    Raises:
        ValueError: when ``compact`` is not a compact result of exactly these orders.
    """
    table = compact.get("statuses") if isinstance(compact, Mapping) else None
    codes = compact.get("codes") if isinstance(compact, Mapping) else None
    if (
        not isinstance(table, list)
        or not all(isinstance(status, str) for status in table)
        or len(table) > len(_CODES)
        or not isinstance(codes, str)
    ):
        raise ValueError("not a compact result: it needs a 'statuses' list and a 'codes' string")
    if len(codes) != len(call_ids):
        raise ValueError(f"the compact result covers {len(codes)} orders, not {len(call_ids)}")
    lookup = dict(zip(_CODES, table, strict=False))
    grouped: dict[str, list[str]] = {}
    for call_id, code in zip(call_ids, codes, strict=True):
        if code == _PENDING:
            continue
        status = lookup.get(code)
        if status is None:
            raise ValueError(f"the compact result has an unknown status code {code!r}")
        grouped.setdefault(status, []).append(call_id)
    return grouped
