"""Injected API faults: by rate, or scripted per call id.

A SPEC string gives rates: ``429=0.05,503=0.02,drop=0.01,drop_after_commit=0.1,slow=0.05:2.0,
truncate=0.01,unknown_status=0.01,extra_fields=0.1,repeat_page=0.1``. ``drop`` closes the
connection before the request is served; ``drop_after_commit`` serves it (a ``POST`` is
stored) and then closes the connection without the answer, the case that makes a client
place the same order twice.
``429=RATE:SECONDS`` sets the ``Retry-After`` value and ``slow=RATE:SECONDS`` the delay. A
script is a list of tokens consumed by the successive API requests about one call
(``["429", "503", "ok"]``); once it is used up the rates apply again.

Faults of one request: at most one of the *replacing* kinds (an error status, a dropped
connection, a truncated body), plus any of the *modifying* kinds (a delay, an unknown
status value, unknown extra fields, a search that answers page 0 whatever page it was asked
for: ``repeat_page``). Decisions are deterministic for a seed: they depend on the seed, the
request's target and how many requests that target has had, not on how requests from different
clients interleave.

Two faults of the search's data rather than of one request:

* :meth:`Faults.shift_pages` holds orders out of every search until a search asks for a page
  after the first: they then appear wherever the sort puts them, as orders that end (sorted by
  ``updated_at``) or are placed (sorted by ``created_at``) between two page reads do;
* :meth:`Faults.lag_search` makes the next searches answer as an index that has not caught up
  with the orders yet: they list none (an order placed a moment ago is not found by its key);
* :meth:`Faults.far_future` makes chosen orders report :data:`FAR_FUTURE_TIME` as their
  ``ended_at`` and ``updated_at`` everywhere (``GET /call/{id}`` and searches); a search sorted
  by ``updated_at`` or ``ended_at`` lists them first (descending) or last (ascending).
"""

from __future__ import annotations

import json
import random
import threading
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from airflow_provider_revox._simulator.quota import AccountLimit

#: Serve the request (a POST is stored), then close the connection without the answer.
DROP_AFTER_COMMIT = "drop_after_commit"
REPLACING = ("429", "500", "502", "503", "504", "drop", DROP_AFTER_COMMIT, "truncate")
#: The search answers page 0 whatever ``page`` asks (an API that ignores it now and then).
REPEAT_PAGE = "repeat_page"
MODIFYING = ("slow", "unknown_status", "extra_fields", REPEAT_PAGE)
KINDS = (*REPLACING, *MODIFYING)

DEFAULT_RETRY_AFTER = 1.0
DEFAULT_SLOW_SECONDS = 2.0

#: The status value an ``unknown_status`` fault reports: one no spec has documented.
UNKNOWN_STATUS_VALUE = "awaiting_carrier_review"
#: What an order chosen by :meth:`Faults.far_future` reports as its ``ended_at`` and ``updated_at``.
FAR_FUTURE_TIME = "2199-01-01T00:00:00.000Z"


class _EveryOrder(frozenset):  # type: ignore[type-arg]
    """The orders a lagging search hides: all of them."""

    def __contains__(self, item: object) -> bool:
        return True


@dataclass(frozen=True)
class Fault:
    """The faults chosen for one request.

    Attributes:
        replace: an error status code as text (``"429"``), ``"drop"``, ``"drop_after_commit"``,
            ``"truncate"`` or None.
        delay: seconds to wait before answering.
        unknown_status: report a status value nobody has documented.
        extra_fields: add fields the models do not know.
        retry_after: the ``Retry-After`` seconds sent with a 429.
        repeat_page: a call search answers page 0, whatever page it asks for.
    """

    replace: str | None = None
    delay: float = 0.0
    unknown_status: bool = False
    extra_fields: bool = False
    retry_after: float = DEFAULT_RETRY_AFTER
    repeat_page: bool = False

    @property
    def is_noop(self) -> bool:
        """True when the request is served normally."""
        return not (
            self.replace or self.delay or self.unknown_status or self.extra_fields or self.repeat_page
        )


NO_FAULT = Fault()


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, not {text!r}") from None
    if value < 0:
        raise ValueError(f"{what} must not be negative, not {text!r}")
    return value


def parse_token(token: str) -> Fault:
    """Turn one script token into a fault: ``ok``, ``429``, ``429:5``, ``503``, ``drop``,
    ``slow``, ``slow:0.5``, ``truncate``, ``unknown_status``, ``extra_fields``, ``repeat_page``; join several
    with ``+`` (``slow:1+unknown_status``).

    Raises:
        ValueError: for an unknown token, naming it.
    """
    fault = Fault()
    for part in str(token).strip().lower().split("+"):
        name, _, arg = part.strip().partition(":")
        if name in ("ok", ""):
            continue
        if name not in KINDS:
            raise ValueError(f"unknown fault {name!r} in {token!r}; expected ok or one of {', '.join(KINDS)}")
        if name == "slow":
            fault = replace(fault, delay=_number(arg, "slow seconds") if arg else DEFAULT_SLOW_SECONDS)
        elif name == "unknown_status":
            fault = replace(fault, unknown_status=True)
        elif name == "extra_fields":
            fault = replace(fault, extra_fields=True)
        elif name == REPEAT_PAGE:
            fault = replace(fault, repeat_page=True)
        else:
            retry_after = _number(arg, "Retry-After seconds") if arg and name == "429" else fault.retry_after
            fault = replace(fault, replace=name, retry_after=retry_after)
    return fault


@dataclass(frozen=True)
class FaultRates:
    """Per-request probabilities of each fault kind, from a SPEC string.

    Attributes:
        rates: kind -> probability in [0, 1].
        slow_seconds: delay of a ``slow`` fault.
        retry_after: ``Retry-After`` seconds of a 429.
    """

    rates: tuple[tuple[str, float], ...] = ()
    slow_seconds: float = DEFAULT_SLOW_SECONDS
    retry_after: float = DEFAULT_RETRY_AFTER

    @classmethod
    def parse(cls, spec: str | None) -> FaultRates:
        """Parse ``kind=rate[:seconds],...``.

        Raises:
            ValueError: unknown kind, a rate outside [0, 1], or replacing rates summing above 1.
        """
        if not spec or not spec.strip():
            return cls()
        rates: dict[str, float] = {}
        slow, retry_after = DEFAULT_SLOW_SECONDS, DEFAULT_RETRY_AFTER
        for item in spec.split(","):
            if not item.strip():
                continue
            name, sep, value = item.strip().partition("=")
            name = name.strip().lower()
            if not sep:
                raise ValueError(f"fault {item.strip()!r} needs a rate: write {name}=0.05")
            if name not in KINDS:
                raise ValueError(f"unknown fault {name!r}; expected one of {', '.join(KINDS)}")
            rate_text, _, arg = value.partition(":")
            rate = _number(rate_text.strip(), f"rate of {name}")
            if rate > 1:
                raise ValueError(f"rate of {name} must be between 0 and 1, not {rate_text.strip()}")
            if name == "slow" and arg:
                slow = _number(arg, "slow seconds")
            elif name == "429" and arg:
                retry_after = _number(arg, "Retry-After seconds")
            elif arg:
                raise ValueError(f"fault {name} takes no ':seconds' argument")
            rates[name] = rate
        total = sum(rate for name, rate in rates.items() if name in REPLACING)
        if total > 1:
            raise ValueError(f"rates of {', '.join(REPLACING)} add up to {total:g}, more than 1")
        return cls(rates=tuple(rates.items()), slow_seconds=slow, retry_after=retry_after)

    def choose(self, rng: random.Random) -> Fault:
        """Draw the faults of one request."""
        if not self.rates:
            return NO_FAULT
        draw = rng.random()
        replace = None
        for name, rate in self.rates:
            if name in REPLACING:
                if draw < rate:
                    replace = name
                    break
                draw -= rate
        rates = dict(self.rates)
        return Fault(
            replace=replace,
            delay=self.slow_seconds if rng.random() < rates.get("slow", 0.0) else 0.0,
            unknown_status=rng.random() < rates.get("unknown_status", 0.0),
            extra_fields=rng.random() < rates.get("extra_fields", 0.0),
            retry_after=self.retry_after,
            repeat_page=rng.random() < rates.get(REPEAT_PAGE, 0.0),
        )


class Faults:
    """The fault plan of a running simulator: rates for every API request, scripts per call, and
    the account's request limit.

    Args:
        spec: a SPEC string (see the module docstring) or None for no random faults.
        seed: makes the random draws reproducible.
        rate_limit_per_second: requests per second the whole account may send, from every client
            together (None: no limit). Beyond it a request is answered 429 with a ``Retry-After``
            of the seconds until the next one would be admitted (a bucket holding one second of
            requests), before any other fault applies.
    """

    def __init__(
        self, spec: str | None = None, *, seed: int = 0, rate_limit_per_second: float | None = None
    ) -> None:
        self.seed = seed
        self.rates = FaultRates.parse(spec)
        self.account = AccountLimit(rate_limit_per_second) if rate_limit_per_second else None
        self._scripts: dict[str, deque[Fault]] = {}
        self._counts: defaultdict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self._future: frozenset[str] = frozenset()
        self._lagging = 0
        #: How far call searches lag the orders, on the simulator's clock (:meth:`lag_index`).
        self.index_lag = timedelta(0)

    def over_account_limit(self) -> float | None:
        """Count one API request against the account's limit: None when admitted, else the
        ``Retry-After`` seconds of its 429."""
        return None if self.account is None else self.account.admit()

    def set_rates(self, spec: str | None) -> None:
        """Replace the rates with a new SPEC string."""
        self.rates = FaultRates.parse(spec)

    def script(self, call_id: str, tokens: Iterable[str]) -> None:
        """Script the next API requests about ``call_id``, one token each (``["429", "ok"]``).

        ``call_id`` may also name an endpoint about no single call, such as ``"POST /call/search"``,
        a campaign id, or, for ``POST /call``, the recipient's number (``"+33612345678"``, checked
        before ``"POST /call"``); ``POST /campaigns`` and ``POST /campaigns/{id}/launch-calls`` are
        scripted by their endpoint name too (a campaign's own script comes first).

        Raises:
            ValueError: for an unknown token.
        """
        faults = deque(parse_token(token) for token in tokens)
        with self._lock:
            self._scripts[call_id] = faults

    def pending(self, call_id: str) -> int:
        """Scripted faults not yet consumed for ``call_id``."""
        with self._lock:
            return len(self._scripts.get(call_id, ()))

    def clear(self) -> None:
        """Drop every script, every rate, held orders and far-future orders."""
        with self._lock:
            self._scripts.clear()
            self._counts.clear()
            self._held.clear()
            self._future = frozenset()
            self._lagging = 0
        self.rates = FaultRates()

    def shift_pages(self, call_ids: Iterable[str]) -> None:
        """Hide these orders from every call search until one asks for a page after the first.

        Then they appear where the search's sort puts them: a reader of page 0 then page 1 sees
        the results move under it, as when orders end or are placed between its two reads.
        """
        with self._lock:
            self._held.update(call_ids)

    def lag_index(self, seconds: float) -> None:
        """Make call searches lag the orders by ``seconds`` of the simulator's clock (0: no lag).

        An order placed less than that before a search is not listed by it (nor counted in
        ``total_count``), though ``GET /call/{id}`` already knows it: a search index catching up.
        """
        with self._lock:
            self.index_lag = timedelta(seconds=seconds)

    def lag_search(self, searches: int) -> None:
        """Make the next ``searches`` call searches list no order, as an index lagging the orders does."""
        with self._lock:
            self._lagging = searches

    def hidden(self, page: Any) -> frozenset[str]:
        """The orders a search for ``page`` must not list (releasing them once a later page is read)."""
        if not self._held and not self._lagging:
            return frozenset()
        with self._lock:
            if self._lagging:
                self._lagging -= 1
                return _EveryOrder()
            if isinstance(page, int) and not isinstance(page, bool) and page > 0:
                self._held.clear()
            return frozenset(self._held)

    def far_future(self, call_ids: Iterable[str]) -> None:
        """Make these orders report ``2199-01-01T00:00:00.000Z`` as ``ended_at`` and ``updated_at``."""
        with self._lock:
            self._future = self._future | frozenset(call_ids)

    @property
    def far_future_ids(self) -> frozenset[str]:
        """The orders chosen by :meth:`far_future`."""
        return self._future

    def future_times(self, body: bytes, *, calls: bool = False) -> bytes:
        """A 200 body (``{"call": ...}``, or ``{"calls": [...]}`` when ``calls``) with the far-future
        orders' times replaced; the body as it is when none of them is in it."""
        chosen = self._future
        if not chosen or not any(call_id.encode() in body for call_id in chosen):
            return body
        payload = json.loads(body)
        found = payload.get("calls", []) if calls else [payload.get("call")]
        for call in found:
            if isinstance(call, dict) and call.get("id") in chosen:
                call["updated_at"] = FAR_FUTURE_TIME
                if call.get("ended_at") is not None:
                    call["ended_at"] = FAR_FUTURE_TIME
        return json.dumps(payload, separators=(",", ":")).encode()

    def next_fault(self, target: str, call_id: str | None = None, *, also: Iterable[str] = ()) -> Fault:
        """The faults of the next request to ``target`` (e.g. ``GET /call/{id}``) about ``call_id``.

        The first non-empty script of ``call_id``, then of each key in ``also`` (a recipient's
        number, an endpoint name), then of ``target`` when there is no ``call_id``, applies.
        """
        if not self._scripts and not self.rates.rates:
            return NO_FAULT  # the hot path of a fault-free run: no lock, no key list
        keys = [call_id] if call_id is not None else []
        keys += [*also, *(() if call_id is not None else (target,))]
        with self._lock:
            for key in keys:
                script = self._scripts.get(key)
                if script:
                    return script.popleft()
            if not self.rates.rates:
                return NO_FAULT
            self._counts[target] += 1
            count = self._counts[target]
        return self.rates.choose(random.Random(f"{self.seed}/{target}/{count}"))

    def __repr__(self) -> str:
        rates = ",".join(f"{name}={rate:g}" for name, rate in self.rates.rates) or "none"
        return f"Faults({rates}, scripted={len(self._scripts)})"


def apply_body_faults(body: bytes, fault: Fault, *, calls: bool = False) -> bytes:
    """A 200 body with the fault's body changes: a ``{"call": ...}`` body, or ``{"calls": [...]}``
    when ``calls``, gets an unknown status or extra fields; a truncated body is cut in half."""
    if fault is NO_FAULT:
        return body
    if fault.unknown_status or fault.extra_fields:
        payload = json.loads(body)
        if "call" in payload or calls:
            if fault.extra_fields:
                payload["request_id"] = "req_simulated"
            for call in payload["calls"] if calls else [payload["call"]]:
                _modify_call(call, fault)
            body = json.dumps(payload, separators=(",", ":")).encode()
    if fault.replace == "truncate":
        body = body[: max(1, len(body) // 2)]
    return body


def _modify_call(call: dict[str, Any], fault: Fault) -> None:
    if fault.unknown_status:
        call["status"] = UNKNOWN_STATUS_VALUE
    if fault.extra_fields:
        call["sentiment"] = {"label": "neutral", "score": 0.51}
        call["x_billing"] = {"units": 3, "currency": "EUR"}
        for attempt in call.get("call_attempts") or []:
            attempt["carrier"] = {"name": "sim-telecom", "sip_code": 200}
        if call.get("last_call_attempt"):
            call["last_call_attempt"]["carrier"] = {"name": "sim-telecom", "sip_code": 200}
