"""The watermark of "orders that reached a terminal status since last time" (pure: no I/O, no clock).

Used by incremental exports and by the call event trigger, which both read the search in
:data:`NEWEST_CHANGE_FIRST` order and date an order by :func:`terminal_moment`. An order is *new*
when it ended after the watermark, or at the watermark's very instant without being one of the ids
already taken at that instant (orders ending in the same second are neither taken twice nor missed).

Orders are read from a search sorted by ``updated_at`` descending. An order's ``updated_at`` is
never before its ``ended_at``, so the first order changed before the watermark ends the read:
every order after it ended before the watermark too. An order that ends while the pages are read
may move between pages; so only orders that ended at or before the *head* (the newest change
visible on the first page, the moment the read began) are taken, and the others wait for the
next read, where they are new.

A time later than the API's clock allows (beyond its now plus :data:`FUTURE_MARGIN`, the
``latest`` the reader passes in) is not believed: such an order is still taken, once (its id is
kept in :attr:`Watermark.untrusted`), but it never moves a watermark or a head, so one order
claiming it ended in 2199 cannot hide every order that ends after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_revox._internal.core.call import Call, parse_iso

#: Most ids kept at the watermark's instant; more orders ending in one instant is not credible.
MAX_IDS_AT_WATERMARK = 10_000
#: How far past the API's clock a reported time may be and still be believed (clock skew, rounding).
FUTURE_MARGIN = timedelta(minutes=5)
#: Most ids of orders with untrusted times kept; beyond, the greatest are kept (one evicted may be
#: named once more, never lost).
MAX_UNTRUSTED_IDS = 1_000
#: Most ids taken ahead of the watermark (announced by webhooks) kept; beyond, the oldest are
#: dropped (one dropped may be exported once more when the poll names it, never lost).
MAX_AHEAD_IDS = 100_000
#: The search order a read relies on: the first order changed before the watermark ends it.
NEWEST_CHANGE_FIRST = {"sort_by": "updated_at", "sort_direction": "desc"}
#: Raw batch fields of the call events' acknowledged stream: a batch's number, and "stored
#: through number" (a watcher saves the cursor it had after that batch).
SEQ = "seq"
STORED = "stored_through"


def later_mark(first: Watermark, second: Watermark) -> Watermark:
    """The mark further along of two: the later ``ended_at`` (at the same instant, both sets of ids)."""
    if first.ended_at is None:
        return second
    ahead = first.ahead | second.ahead
    if second.ended_at is None or first.ended_at > second.ended_at:
        return Watermark(first.ended_at, first.ids_at, first.untrusted, ahead).passed_ahead()
    if second.ended_at > first.ended_at:
        return Watermark(second.ended_at, second.ids_at, second.untrusted, ahead).passed_ahead()
    return Watermark(
        first.ended_at, first.ids_at | second.ids_at, first.untrusted | second.untrusted, ahead
    ).passed_ahead()


def terminal_moment(call: Call) -> datetime | None:
    """When ``call`` reached its terminal status; None while it has not (see :attr:`Call.ended_at`)."""
    return call.ended_at


@dataclass(frozen=True)
class Watermark:
    """Where the last read stopped.

    Attributes:
        ended_at: the latest terminal moment taken; None before the first read.
        ids_at: the orders taken that ended exactly at ``ended_at``.
        untrusted: the orders taken whose reported end was later than the API's clock allowed.
        ahead: the orders taken ahead of the watermark, as a webhook announced them (id and
            terminal moment), until the watermark passes them (see :func:`first_named`).
    """

    ended_at: datetime | None = None
    ids_at: frozenset[str] = field(default_factory=frozenset)
    untrusted: frozenset[str] = field(default_factory=frozenset)
    ahead: frozenset[tuple[str, datetime]] = field(default_factory=frozenset)

    def to_state(self) -> dict[str, Any]:
        """JSON-safe form, for a state store."""
        state: dict[str, Any] = {
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "ids_at": sorted(self.ids_at),
        }
        if self.untrusted:
            state["untrusted"] = sorted(self.untrusted)
        if self.ahead:
            state["ahead"] = {call_id: moment.isoformat() for call_id, moment in sorted(self.ahead)}
        return state

    @classmethod
    def from_state(cls, value: Any) -> Watermark:
        """Read :meth:`to_state`'s form; None (nothing stored) is the empty watermark.

        Raises:
            ValueError: a stored value of another shape (the store was written by something else).
        """
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise ValueError(f"the stored watermark is not an object: {value!r}")
        stamp, ids = value.get("ended_at"), value.get("ids_at") or []
        untrusted = value.get("untrusted") or []
        if stamp is not None and not isinstance(stamp, str):
            raise ValueError(f"the stored watermark's ended_at is not a time: {stamp!r}")
        for name, listed in (("ids_at", ids), ("untrusted", untrusted)):
            if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
                raise ValueError(f"the stored watermark's {name} is not a list of ids: {listed!r}")
        ahead = value.get("ahead") or {}
        if not isinstance(ahead, Mapping) or not all(isinstance(item, str) for item in ahead.values()):
            raise ValueError(f"the stored watermark's ahead is not a map of ids to times: {ahead!r}")
        return cls(
            _aware(datetime.fromisoformat(stamp)) if stamp else None,
            frozenset(ids),
            frozenset(untrusted),
            frozenset((str(key), _aware(datetime.fromisoformat(moment))) for key, moment in ahead.items()),
        )

    def is_new(self, call_id: str, ended_at: datetime) -> bool:
        """True when an order that ended at ``ended_at`` was not taken yet."""
        if call_id in self.untrusted:
            return False
        ended_at = _aware(ended_at)
        if self.ended_at is None or ended_at > self.ended_at:
            return True
        return ended_at == self.ended_at and call_id not in self.ids_at

    def is_past(self, updated_at: datetime | None) -> bool:
        """True when an order last changed before the watermark: it, and every order after it in
        a read sorted by ``updated_at`` descending, holds nothing new."""
        return self.ended_at is not None and updated_at is not None and _aware(updated_at) < self.ended_at

    def advance(self, taken: Iterable[tuple[str, datetime]], untrusted: Iterable[str] = ()) -> Watermark:
        """The watermark once the orders ``taken`` (id, terminal moment) are handed over, and the
        orders ``untrusted`` (taken, their times not believed: they do not move it)."""
        kept = self.untrusted | frozenset(untrusted)
        if len(kept) > MAX_UNTRUSTED_IDS:
            kept = frozenset(sorted(kept)[-MAX_UNTRUSTED_IDS:])
        latest, ids = self.ended_at, set(self.ids_at)
        for call_id, ended_at in taken:
            ended_at = _aware(ended_at)
            if latest is None or ended_at > latest:
                latest, ids = ended_at, {call_id}
            elif ended_at == latest:
                ids.add(call_id)
        if len(ids) > MAX_IDS_AT_WATERMARK:
            raise ValueError(f"more than {MAX_IDS_AT_WATERMARK} orders ended at {latest}: cannot keep them")
        return Watermark(latest, frozenset(ids), kept, self.ahead).passed_ahead()

    def passed_ahead(self) -> Watermark:
        """This watermark without the orders taken ahead of it that it has now passed."""
        left = frozenset(
            (call_id, moment)
            for call_id, moment in self.ahead
            if call_id not in self.untrusted and self.is_new(call_id, moment)
        )
        if len(left) > MAX_AHEAD_IDS:
            left = frozenset(sorted(left, key=lambda item: (item[1], item[0]))[-MAX_AHEAD_IDS:])
        return self if left == self.ahead else Watermark(self.ended_at, self.ids_at, self.untrusted, left)


def believed(moment: datetime | None, latest: datetime | None) -> bool:
    """Whether a reported time is believed: not later than ``latest`` (the API's now plus
    :data:`FUTURE_MARGIN`); None (no bound known) believes every time."""
    return moment is None or latest is None or _aware(moment) <= latest


def newest_believed(calls: Sequence[Call], latest: datetime, now: datetime) -> datetime | None:
    """The head of a read: the newest believed change on its first page (sorted newest first).

    None for an empty page; ``now`` (the API's clock) when no time on the page is believed.
    """
    if not calls:
        return None
    stamps = [call.updated_at for call in calls if call.updated_at is not None]
    good = [stamp for stamp in stamps if believed(stamp, latest)]
    return max(good) if good else now


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def takes(
    watermark: Watermark,
    head: datetime | None,
    call_id: str,
    ended_at: datetime | None,
    latest: datetime | None = None,
) -> bool:
    """Whether a read whose head is ``head`` takes an order that ended at ``ended_at``.

    Not terminal (no ``ended_at``): no. Already taken: no. Ended after the head (it ended while
    the read ran, so the read may have missed orders that ended before it): no, the next read.
    Ended after ``latest`` (a time not believed, see :func:`believed`): yes unless taken already
    (the caller then hands it to :meth:`Watermark.advance` as ``untrusted``).
    """
    if ended_at is None:
        return False
    if not believed(ended_at, latest):
        return call_id not in watermark.untrusted
    if not watermark.is_new(call_id, ended_at):
        return False
    return head is None or _aware(ended_at) <= _aware(head)


def first_named(mark: Watermark, calls: Iterable[Mapping[str, Any]]) -> tuple[list[str], Watermark]:
    """For a consumer of call events: the orders named for the first time, and its next mark.

    Call events are delivered at least once: a triggerer killed in the instant between storing an
    event and saving its cursor names those orders again. A consumer that keeps ``mark`` (in its
    Asset's state store) and takes only what this returns handles each order once. ``calls`` are
    the events' ``{"id", "status", "ended_at"}`` entries, in event order; an entry without
    ``ended_at`` (an event from before it was added) is always taken. An entry marked
    ``"untrusted_time": true`` (its ``ended_at`` is later than the API's clock allowed) is taken
    once and does not move the mark.

    An entry marked ``"announced": true`` comes from a webhook, in any order, and its
    ``ended_at`` must be the one the API gives (see :meth:`RevoxHook.resolve_announced
    <airflow_provider_revox.hooks.revox.RevoxHook.resolve_announced>`); without one (the API does
    not say the order ended) it is not taken. Taken, it does not move the mark: it is kept in
    ``Watermark.ahead`` until the mark passes it, so the poll naming it later (or a webhook
    sent twice) takes it no more.

    Raises:
        ValueError: an entry whose ``ended_at`` is not an ISO time.
    """
    taken: list[str] = []
    moments: list[tuple[str, datetime]] = []
    untrusted: list[str] = []
    ahead = dict(mark.ahead)
    for call in calls:
        call_id, stamp = str(call["id"]), call.get("ended_at")
        if call.get("announced"):
            if stamp is None:
                continue
            ended_at = _aware(parse_iso(str(stamp)))
            if call_id not in ahead and call_id not in taken and mark.is_new(call_id, ended_at):
                taken.append(call_id)
                ahead[call_id] = ended_at
            continue
        if stamp is None:
            taken.append(call_id)
            continue
        if call.get("untrusted_time"):
            if call_id in ahead:
                untrusted.append(call_id)
            elif call_id not in mark.untrusted and call_id not in taken:
                taken.append(call_id)
                untrusted.append(call_id)
            continue
        ended_at = _aware(parse_iso(str(stamp)))
        if mark.is_new(call_id, ended_at):
            if call_id not in taken and call_id not in ahead:
                taken.append(call_id)
            moments.append((call_id, ended_at))
    kept = Watermark(mark.ended_at, mark.ids_at, mark.untrusted, frozenset(ahead.items()))
    return taken, kept.advance(moments, untrusted)


def poll_delay(empty_polls: int, interval: float, max_interval: float) -> float:
    """Seconds before the next poll: ``interval`` after a poll that found something, doubling
    with each empty poll in a row up to ``max_interval`` (a quiet API costs few requests)."""
    if empty_polls <= 0:
        return interval
    return float(min(max_interval, interval * (2 ** min(empty_polls, 30))))


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` cut into lists of at most ``size``."""
    return [items[start : start + size] for start in range(0, len(items), size)]
