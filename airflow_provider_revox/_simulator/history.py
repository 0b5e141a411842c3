"""The simulated ``GET /calls/phone-history``: the organisation's history, from the orders held.

``{"phone_history": {"<number>": {count, do_not_contact, hot, reached_human, last_called_at,
last_outcome, campaigns: [{id, name}]}}}`` as the vendor's SDK 0.5.0 types it. A number is in
the history once an attempt to it has started (``count`` counts the attempts started),
``reached_human`` once a person answered, ``last_outcome`` once an order to it ended with one.

A number is ``do_not_contact`` when a scenario names it (top-level ``do_not_contact: [...]``),
when :meth:`PhoneBook.mark` marks it, or once an order whose person asked not to be called
again ends (a scenario call's ``asks_not_to_be_called: true``, or
:meth:`PhoneBook.asks_not_to_be_called`): the API publishes no such outcome, so the simulator
takes it from the scenario. ``PhoneBook.background`` adds that many older numbers, as an
organisation that has called many people before; the history then has to be streamed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_revox._simulator.render import iso
from airflow_provider_revox._simulator.replies import Reply
from airflow_provider_revox._simulator.timeline import OrderPlan

if TYPE_CHECKING:
    from starlette.requests import Request

#: When every background number was last called.
BACKGROUND_LAST_CALLED = "2025-01-06T10:00:00.000Z"


class PhoneBook:
    """Do-not-contact marks and the history a :class:`~.engine.SimulatorEngine` serves."""

    def __init__(self) -> None:
        self._marked: set[str] = set()
        self._asking: set[str] = set()
        #: Older numbers the history holds besides the orders' (``+1555`` then 7 digits).
        self.background = 0
        #: ``GET /calls/phone-history`` answers served.
        self.reads = 0

    def mark(self, numbers: Iterable[str]) -> None:
        """Mark these numbers do-not-contact."""
        self._marked.update(numbers)

    def asks_not_to_be_called(self, call_ids: Iterable[str]) -> None:
        """These orders' people ask not to be called again: each number is marked when its order ends."""
        self._asking.update(call_ids)

    def entries(self, plans: Iterable[OrderPlan], moment: datetime) -> dict[str, dict[str, Any]]:
        """Each number's entry at ``moment``, from the orders' plans and the marks."""
        found: dict[str, dict[str, Any]] = {}
        for plan in plans:
            started = [a for a in plan.attempts if a.started_at <= moment]
            ended = plan.final_at is not None and plan.final_at <= moment
            asked = ended and plan.spec.call_id in self._asking
            if not started and not asked:
                continue
            entry = found.setdefault(plan.spec.phone_number, _empty())
            entry["count"] += len(started)
            if any(a.reached_human and a.answered_at is not None and a.answered_at <= moment
                   for a in started):  # fmt: skip
                entry["reached_human"] = True
            last = max((a.started_at for a in started), default=None)
            if last is not None and (entry["_last"] is None or last > entry["_last"]):
                entry["_last"] = last
                if ended and plan.outcome is not None:
                    entry["last_outcome"] = plan.outcome
                    entry["hot"] = entry["hot"] or plan.outcome == "interested"
            campaign = plan.spec.campaign
            if started and campaign is not None and all(c["id"] != campaign[0] for c in entry["campaigns"]):
                entry["campaigns"].append({"id": campaign[0], "name": campaign[1]})
            entry["do_not_contact"] = entry["do_not_contact"] or asked
        for number in self._marked:
            found.setdefault(number, _empty())["do_not_contact"] = True
        for entry in found.values():
            entry["last_called_at"] = iso(entry.pop("_last"))
        return found

    def body(self, plans: Iterable[OrderPlan], moment: datetime) -> bytes:
        """The whole answer, background numbers first."""
        return b"".join(self._pieces(plans, moment))

    def _pieces(self, plans: Iterable[OrderPlan], moment: datetime) -> Iterator[bytes]:
        yield b'{"phone_history":{'
        first = True
        for index in range(self.background):
            entry = {**_empty(), "count": 1, "reached_human": index % 3 == 0}
            entry.pop("_last")
            entry["last_called_at"] = BACKGROUND_LAST_CALLED
            yield (b"" if first else b",") + _member(f"+1555{index:07d}", entry)
            first = False
        for number, entry in self.entries(plans, moment).items():
            yield (b"" if first else b",") + _member(number, entry)
            first = False
        yield b"}}"


def _empty() -> dict[str, Any]:
    return {
        "count": 0,
        "do_not_contact": False,
        "hot": False,
        "reached_human": False,
        "last_called_at": None,
        "last_outcome": None,
        "campaigns": [],
        "_last": None,
    }


def _member(number: str, entry: dict[str, Any]) -> bytes:
    return json.dumps(number).encode() + b":" + json.dumps(entry, separators=(",", ":")).encode()


class _Engine(Protocol):
    """What the route needs of a :class:`~.engine.SimulatorEngine` (which imports this module)."""

    phone_book: PhoneBook

    @property
    def lock(self) -> threading.RLock: ...
    def plans(self) -> list[OrderPlan]: ...
    def moment(self, at: datetime | None = None) -> datetime: ...


def history_routes(engine: _Engine) -> list[tuple[str, str, str, Any]]:
    """``(path, endpoint name, method, handler)`` of ``GET /calls/phone-history``."""

    def history(request: Request, call_id: str | None, body: bytes) -> Reply:
        with engine.lock:
            plans = engine.plans()
        engine.phone_book.reads += 1
        return Reply(200, engine.phone_book.body(plans, engine.moment()))

    return [("/api/calls/phone-history", "GET /calls/phone-history", "GET", history)]
