"""The simulator's lifecycle engine, usable without HTTP.

Build one, place orders, move its clock, read orders::

    engine = SimulatorEngine(seed=1)                 # manual VirtualClock by default
    call = engine.place_call(phone_number="+33612345678", assistant_id="asst_reminder")
    engine.clock.set(engine.terminal_at(call["id"]))
    engine.get_call(call["id"])["status"]            # "completed", "errored", ...

Status conventions (shared with the package's polling code):

* ``scheduled`` while waiting for a future ``scheduled_at``, a calling window, an allowed
  day or a retry delay, with ``next_call_at`` set to the planned dial time;
* ``queued_for_calling`` for a few seconds once a dial is due (waiting for a line);
* ``calling`` only while an attempt is ``queued``, ``ringing`` or ``ongoing``;
* ``post_processing`` after the last attempt until results are ready;
* then ``completed`` (a person, a voicemail or an IVR answered at least once; ``outcome`` and
  ``structured_output`` are null when no person was reached), ``errored`` (every attempt
  failed to dial) or ``cancelled``; ``paused`` between :meth:`SimulatorEngine.pause` and
  :meth:`SimulatorEngine.resume`;
* ``not_launched`` for an order of a campaign (:attr:`SimulatorEngine.campaigns`) until the
  campaign launches it.

Each order's future is computed at placement, so :meth:`SimulatorEngine.get_call` is a pure
function of time, cached per phase: reading an order at any moment costs a bisection and a
dictionary copy. :meth:`SimulatorEngine.search_calls` filters, sorts and pages orders as the
API's ``POST /call/search`` does, all read at one moment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import uuid
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from airflow_provider_revox._simulator import statuses
from airflow_provider_revox._simulator.assistant import AssistantShape
from airflow_provider_revox._simulator.campaign import CampaignBook
from airflow_provider_revox._simulator.clock import Clock, VirtualClock, as_utc
from airflow_provider_revox._simulator.dialing import dial_rules, next_dial, recipient_zone
from airflow_provider_revox._simulator.errors import (
    Conflict,
    InvalidOrder,
    UnknownCall,
)
from airflow_provider_revox._simulator.history import PhoneBook
from airflow_provider_revox._simulator.orders import (
    retry_rules,
    valid_assistant,
    valid_concurrency,
    valid_flag,
    valid_map,
    valid_phone,
    valid_time,
)
from airflow_provider_revox._simulator.profile import Profile
from airflow_provider_revox._simulator.queries import CallQueries
from airflow_provider_revox._simulator.render import render_call, simulated_user, status_at
from airflow_provider_revox._simulator.timeline import (
    AttemptPlan,
    OrderPlan,
    OrderScript,
    OrderSpec,
    cancelled_plan,
    initial_plan,
    paused_plan,
    resumed_plan,
)

#: Where recording links point before a server tells the engine its address.
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8089/api"


class SimulatorEngine(CallQueries):
    """Deterministic Revox order lifecycles driven by a clock.

    Args:
        seed: fixes every random choice (ids, outcomes, durations, content).
        clock: the time source; a manual :class:`VirtualClock` by default.
        profile: outcome and duration distributions; realistic defaults.
        public_url: base URL recording links point at (the server sets its own address).
        refuse_sort: answer 422 to a search that asks for a sort.
        strict_search: answer 422 to a ``POST /call/search`` missing a field the spec marks
            required, instead of taking its default.
        withhold_next_call_at: report ``next_call_at`` as null on every order, as an API that
            does not say when it dials next would: a client then schedules its polls on its own.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        clock: Clock | None = None,
        profile: Profile | None = None,
        public_url: str = DEFAULT_PUBLIC_URL,
        refuse_sort: bool = False,
        strict_search: bool = False,
        withhold_next_call_at: bool = False,
    ) -> None:
        self.seed = seed
        #: Answer a search that asks for a sort with 422, as an API without sorting would.
        self.refuse_sort = refuse_sort
        #: Answer a ``POST /call/search`` missing a field the vendor's spec marks required with 422
        #: (the list filters, ``page``, ``page_size``) instead of taking their defaults.
        self.strict_search = strict_search
        #: Report ``next_call_at`` as null (the client's own window arithmetic decides its polls).
        self.withhold_next_call_at = withhold_next_call_at
        self.clock: Clock = clock if clock is not None else VirtualClock()
        self.profile = profile if profile is not None else Profile()
        self._public_url = public_url.rstrip("/")
        self._signing_key = hashlib.sha256(f"revox-simulator/{seed}/recordings".encode()).digest()
        self._plans: dict[str, OrderPlan] = {}
        # Placement rank of each id: breaks ties between orders created at the same instant.
        self._rank: dict[str, int] = {}
        self._attempt_owner: dict[str, str] = {}
        self._lock = threading.RLock()
        self._placed = 0
        self._run = secrets.token_hex(8)
        self._keys: dict[str, str] = {}
        #: The campaigns: ``engine.campaigns.create(...)``, ``launch``, ``get``, ``pause``...
        self.campaigns = CampaignBook(self)
        #: ``webhook_url`` set on assistants (``PATCH /assistants/{id}``), by assistant id.
        self.assistant_webhooks: dict[str, str] = {}
        #: Do-not-contact marks and the phone history (``GET /calls/phone-history``).
        self.phone_book = PhoneBook()

    # -- reading ---------------------------------------------------------------------------

    def plans(self) -> list[OrderPlan]:
        """Every order's plan, oldest first (hold :meth:`lock` to read them at one instant)."""
        return list(self._plans.values())

    def call_ids(self) -> list[str]:
        """Ids of every order placed, oldest first."""
        return list(self._plans)

    def get_call(self, call_id: str, at: datetime | None = None) -> dict[str, Any]:
        """The call object at ``at`` (default: the clock's now), as ``GET /call/{id}`` shows it.

        The top-level dict is a fresh copy; nested values are shared with the cache, so copy
        them (``copy.deepcopy``) before changing them.

        Raises:
            UnknownCall: no order has this id, or it was placed after ``at``.
        """
        plan, phase = self._phase(call_id, at)
        return dict(self._rendered(plan, phase))

    def get_call_json(self, call_id: str, at: datetime | None = None) -> bytes:
        """The ``{"call": ...}`` response body at ``at``, as UTF-8 JSON (cached per phase)."""
        plan, phase = self._phase(call_id, at)
        body = plan.json_cache.get(phase)
        if body is None:
            body = json.dumps({"call": self.get_call(call_id, at)}, separators=(",", ":")).encode()
            plan.json_cache[phase] = body
        return body

    def status(self, call_id: str, at: datetime | None = None) -> str:
        """The order status at ``at`` (default: now)."""
        plan = self._plan(call_id)
        return status_at(plan, self._moment(at))

    def terminal_at(self, call_id: str) -> datetime | None:
        """When the order reaches (or reached) its terminal status; None while none is planned (paused)."""
        return self._plan(call_id).terminal_at

    def key_of(self, call_id: str) -> str:
        """What seeds an order's random draws and faults: stable across restarts with the same seed."""
        return self._keys.get(call_id, call_id)

    def user(self) -> dict[str, Any]:
        """The account the simulator's API key belongs to, as ``GET /users/me`` shows it."""
        return simulated_user()

    def next_change_at(self, call_id: str, at: datetime | None = None) -> datetime | None:
        """The first moment after ``at`` (default: now) when the order's state changes, or None."""
        plan = self._plan(call_id)
        phase = bisect_right(plan.events, self._moment(at))
        return plan.events[phase] if phase < len(plan.events) else None

    def attempt(self, attempt_id: str) -> tuple[str, AttemptPlan] | None:
        """The owning call id and plan of an attempt, or None for an unknown attempt id."""
        call_id = self._attempt_owner.get(attempt_id)
        if call_id is None:
            return None
        for attempt in self._plans[call_id].attempts:
            if attempt.id == attempt_id:
                return call_id, attempt
        return None

    # -- recordings ------------------------------------------------------------------------

    @property
    def public_url(self) -> str:
        """Base URL of the API that recording links point at."""
        return self._public_url

    def set_public_url(self, url: str) -> None:
        """Point recording links at ``url`` (done by the server once it knows its port)."""
        with self._lock:
            self._public_url = url.rstrip("/")
            for plan in self._plans.values():
                plan.render_cache.clear()
                plan.json_cache.clear()

    def recording_signature(self, attempt_id: str) -> str:
        """The ``sig`` that authorises downloading an attempt's recording."""
        return hmac.new(self._signing_key, attempt_id.encode(), hashlib.sha256).hexdigest()[:32]

    def recording_url(self, attempt_id: str) -> str:
        """The presigned URL of an attempt's recording."""
        sig = self.recording_signature(attempt_id)
        return f"{self._public_url}/_simulator/recordings/{attempt_id}.wav?sig={sig}"

    # -- writing ---------------------------------------------------------------------------

    def place_call(self, **fields: Any) -> dict[str, Any]:
        """Place a call order now and return it as ``POST /call`` does; takes :meth:`place`'s arguments."""
        return self.get_call(self.place(**fields))

    def place(
        self,
        *,
        phone_number: Any,
        assistant: Any = None,
        assistant_id: Any = None,
        scheduled_at: Any = None,
        metadata: Any = None,
        prompt_variables: Any = None,
        call_retry_config: Any = None,
        from_phone_number: Any = None,
        skip_calling_window: Any = False,
        concurrency: Any = None,
        call_id: str | None = None,
        script: OrderScript | None = None,
        campaign: tuple[str, str] | None = None,
    ) -> str:
        """Place a call order now and return its id.

        Args:
            phone_number: the recipient, E.164 (``+33612345678``).
            assistant: a full assistant object, echoed back as given.
            assistant_id: used when ``assistant`` is absent: gives :func:`default_assistant`.
            scheduled_at: do not dial before this moment (ISO 8601 text or aware datetime).
            metadata: free key/value map stored with the order.
            prompt_variables: variables for the assistant's prompt.
            call_retry_config: the order's own retry config; wins over the assistant's.
            from_phone_number: the line to dial from (E.164); the simulated line by default.
            skip_calling_window: dial at any hour and on any day (retry delays still apply).
            concurrency: ``{"key": str}``, kept and shown on the order.
            call_id: a fixed id (scenarios); generated from the seed otherwise.
            script: a scripted lifecycle replacing the random draws.
            campaign: ``(id, name)`` of the campaign: the order stays ``not_launched`` until launched.

        Raises:
            InvalidOrder: bad input; the message names the field and the problem.
        """
        number = valid_phone(phone_number)
        assistant_obj = valid_assistant(assistant, assistant_id)
        when = valid_time(scheduled_at)
        meta = valid_map("metadata", metadata)
        variables = valid_map("prompt_variables", prompt_variables)
        line = valid_phone(from_phone_number, "from_phone_number") if from_phone_number is not None else None
        anytime = valid_flag("skip_calling_window", skip_calling_window)
        concurrency_key = valid_concurrency(concurrency)
        # The order's own retry config wins over its assistant's.
        rules, retry = retry_rules(call_retry_config) if call_retry_config is not None else (None, None)
        if rules is None:
            rules = dial_rules(assistant_obj.get("call_retry_config"))
        if anytime:
            rules = replace(rules, windows=((0, 24 * 60),), days=frozenset(range(7)))
        assistant_model = AssistantShape.model_validate(assistant_obj)
        with self._lock:
            self._placed += 1
            key = call_id or f"order-{self._placed}"
            new_id = call_id or self._new_call_id(self._placed)
            if new_id in self._plans:
                raise InvalidOrder(f"call id {new_id!r} already exists")
            now = as_utc(self.clock.now())
            spec = OrderSpec(
                call_id=new_id,
                key=key,
                seed=self.seed,
                phone_number=number,
                assistant=assistant_obj,
                call_retry_config=retry,
                metadata=meta,
                prompt_variables=variables,
                created_at=now,
                scheduled_at=when,
                rules=rules,
                zone=recipient_zone(rules, number),
                max_call_duration_secs=assistant_model.max_call_duration_secs,
                output_fields=tuple(assistant_model.structured_output_config),
                voicemail_message=assistant_obj.get("voicemail_message"),
                script=script,
                campaign=campaign,
                from_phone_number=line,
                skip_calling_window=anytime,
                concurrency_key=concurrency_key,
            )
            try:
                next_dial(rules, spec.zone, max(now, when or now))
            except ValueError as error:
                raise InvalidOrder(f"call_retry_config: {error}") from None
            self._keys[new_id] = key
            self._install(initial_plan(spec, self.profile))
            return new_id

    def cancel(self, call_id: str, at: datetime | None = None) -> dict[str, Any]:
        """Cancel an order at ``at`` (default: now); a live attempt is hung up at that moment.

        Raises:
            UnknownCall: no such order.
            Conflict: the order is already terminal.
        """
        refuse = statuses.is_terminal
        return self._change(call_id, at, refuse, "is already {} and cannot be cancelled", cancelled_plan)

    def pause(self, call_id: str, at: datetime | None = None) -> dict[str, Any]:
        """Pause an order's retry loop at ``at`` (default: now); a live attempt is hung up.

        Raises:
            UnknownCall: no such order.
            Conflict: the order is paused, post-processing or terminal.
        """
        live = (statuses.SCHEDULED, statuses.QUEUED_FOR_CALLING, statuses.CALLING)
        return self._change(
            call_id, at, lambda now: now not in live, "is {} and cannot be paused", paused_plan
        )

    def resume(self, call_id: str, at: datetime | None = None) -> dict[str, Any]:
        """Resume a paused order at ``at`` (default: now): remaining attempts are planned from then.

        Raises:
            UnknownCall: no such order.
            Conflict: the order is not paused.
        """
        return self._change(
            call_id,
            at,
            lambda now: now != statuses.PAUSED,
            "is {}, not paused",
            lambda plan, moment: resumed_plan(plan, self.profile, moment, self.campaigns.slot_for(plan.spec)),
        )

    def _change(
        self,
        call_id: str,
        at: datetime | None,
        refuse: Callable[[str], bool],
        refusal: str,
        new_plan: Callable[[OrderPlan, datetime], OrderPlan],
    ) -> dict[str, Any]:
        with self._lock:
            plan = self._plan(call_id)
            moment = self._moment(at)
            current = status_at(plan, moment)
            if refuse(current):
                raise Conflict(f"call {call_id} " + refusal.format(current))
            self._install(new_plan(plan, moment))
            return self.get_call(call_id, moment)

    # -- internals (shared with the campaign book) ------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """The lock every change of plans holds."""
        return self._lock

    def plan(self, call_id: str) -> OrderPlan:
        """The current plan of an order.

        Raises:
            UnknownCall: no such order.
        """
        return self._plan(call_id)

    def install(self, plan: OrderPlan) -> None:
        """Make ``plan`` the order's plan (hold :attr:`lock`)."""
        self._install(plan)

    def rendered_phase(self, plan: OrderPlan, phase: int) -> dict[str, Any]:
        """The cached call object of a plan's phase (do not change it)."""
        return self._rendered(plan, phase)

    def moment(self, at: datetime | None = None) -> datetime:
        """``at`` in UTC, or the clock's now."""
        return self._moment(at)

    def _install(self, plan: OrderPlan) -> None:
        self._plans[plan.spec.call_id] = plan
        self._rank.setdefault(plan.spec.call_id, len(self._rank))
        for attempt in plan.attempts:
            self._attempt_owner[attempt.id] = plan.spec.call_id

    def _new_call_id(self, index: int) -> str:
        # The run's random salt keeps a restarted simulator from handing out an id it gave before.
        digest = hashlib.sha256(f"revox-simulator/{self.seed}/{self._run}/call/{index}".encode()).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    def _plan(self, call_id: str) -> OrderPlan:
        plan = self._plans.get(call_id)
        if plan is None:
            raise UnknownCall(f"no call with id {call_id!r}")
        return plan

    def _moment(self, at: datetime | None) -> datetime:
        return self.clock.now() if at is None else as_utc(at)

    def _rendered(self, plan: OrderPlan, phase: int) -> dict[str, Any]:
        cached = plan.render_cache.get(phase)
        if cached is None:
            cached = render_call(plan, plan.events[phase - 1], self.recording_url)
            if self.withhold_next_call_at:
                cached["next_call_at"] = None
            plan.render_cache[phase] = cached
        return cached

    def _phase(self, call_id: str, at: datetime | None) -> tuple[OrderPlan, int]:
        plan = self._plan(call_id)
        phase = bisect_right(plan.events, self._moment(at))
        if phase == 0:
            raise UnknownCall(f"call {call_id!r} did not exist yet at {self._moment(at).isoformat()}")
        return plan, phase

    def __repr__(self) -> str:
        return f"SimulatorEngine(seed={self.seed}, calls={len(self._plans)}, clock={self.clock!r})"
