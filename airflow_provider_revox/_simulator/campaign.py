"""Campaigns of the simulated API: many orders created together, launched, paced, paused.

A campaign's contacts become orders in ``not_launched`` at creation; nothing is dialled until
:meth:`CampaignBook.launch`. A launched order is planned like any other, except that each of
its attempts takes a lane of the campaign's :class:`~.lanes.Lanes`: at most
``max_concurrent_calls`` attempts are live at once, and every dial still falls inside the
order's calling windows. Everything runs on the engine's clock, so a campaign's life is, like
an order's, a pure function of time between two actions.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from airflow_provider_revox._simulator import statuses
from airflow_provider_revox._simulator.dialing import next_dial
from airflow_provider_revox._simulator.errors import Conflict, InvalidOrder, InvalidSearch, UnknownCall
from airflow_provider_revox._simulator.lanes import Lanes
from airflow_provider_revox._simulator.orders import (
    retry_rules,
    valid_map,
    valid_phone,
    valid_time,
)
from airflow_provider_revox._simulator.profile import Profile
from airflow_provider_revox._simulator.render import status_at
from airflow_provider_revox._simulator.search import SEARCH_DIRECTIONS, matches, valid_search
from airflow_provider_revox._simulator.timeline import (
    OrderPlan,
    OrderSpec,
    Slot,
    cancelled_plan,
    initial_plan,
    paused_plan,
    resumed_plan,
)


class Engine(Protocol):
    """What the book uses of its :class:`~.engine.SimulatorEngine` (which imports this module)."""

    seed: int
    profile: Profile

    @property
    def lock(self) -> threading.RLock: ...
    def moment(self, at: datetime | None = None) -> datetime: ...
    def plan(self, call_id: str) -> OrderPlan: ...
    def install(self, plan: OrderPlan) -> None: ...
    def rendered_phase(self, plan: OrderPlan, phase: int) -> dict[str, Any]: ...
    def place(
        self,
        *,
        phone_number: Any,
        assistant_id: Any = None,
        prompt_variables: Any = None,
        call_retry_config: Any = None,
        from_phone_number: Any = None,
        campaign: tuple[str, str] | None = None,
    ) -> str: ...


#: ``max_concurrent_calls`` when a campaign does not set it.
DEFAULT_MAX_CONCURRENT_CALLS = 10
MAX_CONTACTS = 100_000
LAUNCH_MODES = ("ai_first", "speed_dial")
#: Order statuses whose retry loop a pause stops.
LIVE = frozenset({statuses.SCHEDULED, statuses.QUEUED_FOR_CALLING, statuses.CALLING})


class UnknownCampaign(UnknownCall):
    """No campaign has this id."""


@dataclass
class Campaign:
    """A campaign's settings and the orders of its rows (in row order)."""

    id: str
    name: str
    assistant_id: str
    call_retry_config: dict[str, Any] | None
    from_phone_number: str | None
    max_concurrent_calls: int
    created_at: datetime
    call_ids: list[str]
    inputs: list[dict[str, str]]
    changed_at: datetime
    lanes: Lanes
    paused_at: datetime | None = None
    cancelled: bool = False
    scheduled_at: datetime | None = None


class CampaignBook:
    """Every campaign of a :class:`~.engine.SimulatorEngine` (its ``campaigns`` attribute)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._campaigns: dict[str, Campaign] = {}
        #: When set, ``GET /campaigns`` lists only this many campaigns, the newest, as an API that
        #: caps its listing does; a test sets it to see the provider not take a listing as complete.
        self.list_limit: int | None = None
        # A salt per start, as for call ids: a restarted simulator never hands out an old id.
        self._run = secrets.token_hex(8)

    # -- reading ---------------------------------------------------------------------------

    def ids(self) -> list[str]:
        """Campaign ids, oldest first."""
        return list(self._campaigns)

    def campaign(self, campaign_id: str) -> Campaign:
        """The campaign with this id.

        Raises:
            UnknownCampaign: no such campaign.
        """
        found = self._campaigns.get(campaign_id)
        if found is None:
            raise UnknownCampaign(f"no campaign with id {campaign_id!r}")
        return found

    def statuses(self, campaign_id: str, at: datetime | None = None) -> list[str]:
        """The status of each of the campaign's orders at ``at`` (default: now), in row order."""
        moment = self._engine.moment(at)
        engine = self._engine
        return [status_at(engine.plan(call_id), moment) for call_id in self.campaign(campaign_id).call_ids]

    def status(self, campaign_id: str, at: datetime | None = None) -> str:
        """``paused``, ``completed`` (every order terminal) or ``running``."""
        campaign = self.campaign(campaign_id)
        if campaign.paused_at is not None:
            return "paused"
        found = self.statuses(campaign_id, at)
        return "completed" if all(statuses.is_terminal(s) for s in found) else "running"

    def slot_for(self, spec: OrderSpec) -> Slot | None:
        """How a campaign order's attempts find a free lane inside its windows; None for others."""
        if spec.campaign is None:
            return None
        lanes = self.campaign(spec.campaign[0]).lanes

        def slot(due: datetime, length: Any) -> datetime:
            return lanes.reserve(due, length, lambda moment: next_dial(spec.rules, spec.zone, moment))

        return slot

    # -- writing ---------------------------------------------------------------------------

    def create(
        self,
        *,
        name: Any,
        assistant_id: Any,
        contacts: Any,
        call_retry_config: Any = None,
        from_phone_number: Any = None,
        max_concurrent_calls: Any = None,
    ) -> str:
        """Create a campaign: each contact becomes an order in ``not_launched``. Returns its id.

        Every contact is checked before any order exists, so a bad row creates nothing.

        Raises:
            InvalidOrder: a bad field or contact; the message names it (``contacts[3].to_phone_number``).
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidOrder("name is required: a non-empty string")
        if not isinstance(assistant_id, str) or not assistant_id.strip():
            raise InvalidOrder("assistant_id is required: a non-empty string")
        rows = _valid_contacts(contacts)
        retry = retry_rules(call_retry_config)[1] if call_retry_config is not None else None
        line = valid_phone(from_phone_number, "from_phone_number") if from_phone_number is not None else None
        limit = _valid_limit(max_concurrent_calls)
        engine = self._engine
        with engine.lock:
            now = engine.moment()
            index = len(self._campaigns) + 1
            digest = hashlib.sha256(
                f"{engine.seed}/{id(self)}/{index}/{now.isoformat()}".encode()
            ).hexdigest()
            campaign_id = f"cmp_{digest[:24]}"
            call_ids = [
                engine.place(
                    phone_number=number,
                    assistant_id=assistant_id.strip(),
                    prompt_variables=variables,
                    call_retry_config=call_retry_config,
                    from_phone_number=line,
                    campaign=(campaign_id, name.strip()),
                )
                for number, variables in rows
            ]
            self._campaigns[campaign_id] = Campaign(
                id=campaign_id,
                name=name.strip(),
                assistant_id=assistant_id.strip(),
                call_retry_config=retry,
                from_phone_number=line,
                max_concurrent_calls=limit,
                created_at=now,
                call_ids=call_ids,
                inputs=[{"to_phone_number": number, **variables} for number, variables in rows],
                changed_at=now,
                lanes=Lanes(limit),
            )
        return campaign_id

    def launch(
        self, campaign_id: str, *, mode: Any, selection: Any, scheduled_at: Any = None
    ) -> dict[str, Any]:
        """Launch the selected ``not_launched`` orders, as ``POST /campaigns/{id}/launch-calls``.

        ``selection`` is ``{"filters": {statuses, outcomes, results, directions, assignee_ids,
        query}, "rows": {"call_ids": [...], "mode": "only" | "all_except"}}``; both parts are
        optional here, an empty list does not filter.

        Raises:
            InvalidOrder: a bad mode or selection (``speed_dial`` needs a person: not simulated).
            Conflict: the campaign is cancelled or paused.
        """
        if mode not in LAUNCH_MODES:
            raise InvalidOrder(f"mode must be one of {', '.join(LAUNCH_MODES)}, not {mode!r}")
        if mode == "speed_dial":
            raise InvalidOrder("mode speed_dial needs a person at a dialer; the simulator only has ai_first")
        when = valid_time(scheduled_at)
        engine = self._engine
        with engine.lock:
            campaign = self.campaign(campaign_id)
            if campaign.cancelled or campaign.paused_at is not None:
                state = "cancelled" if campaign.cancelled else "paused"
                raise Conflict(f"campaign {campaign_id} is {state} and cannot be launched")
            moment = engine.moment()
            chosen = _selected(engine, campaign, selection, moment)
            skipped = {"active": 0, "attempts_exhausted": 0, "cancelled": 0}
            launched = 0
            for call_id in chosen:
                plan = engine.plan(call_id)
                current = status_at(plan, moment)
                if current == statuses.NOT_LAUNCHED:
                    spec = replace(plan.spec, launched_at=moment, scheduled_at=when or plan.spec.scheduled_at)
                    engine.install(initial_plan(spec, engine.profile, self.slot_for(spec)))
                    launched += 1
                elif current == statuses.CANCELLED:
                    skipped["cancelled"] += 1
                elif statuses.is_terminal(current):
                    skipped["attempts_exhausted"] += 1
                else:
                    skipped["active"] += 1
            campaign.scheduled_at = when or campaign.scheduled_at
            campaign.changed_at = moment
        return {"launched": launched, "skipped": skipped, "session": None}

    def pause(self, campaign_id: str) -> None:
        """Stop dialling: every order in a live status is paused now (a live attempt hung up).

        Raises:
            Conflict: the campaign is paused, cancelled or completed.
        """
        self._act(campaign_id, "pause", LIVE, paused_plan)

    def resume(self, campaign_id: str) -> None:
        """Dial again: every paused order plans its remaining attempts from now, lanes permitting.

        Raises:
            Conflict: the campaign is not paused.
        """

        def resumed(plan: OrderPlan, moment: datetime) -> OrderPlan:
            return resumed_plan(plan, self._engine.profile, moment, self.slot_for(plan.spec))

        self._act(campaign_id, "resume", frozenset({statuses.PAUSED}), resumed)

    def cancel(self, campaign_id: str) -> None:
        """Cancel every order not yet terminal, launched or not.

        Raises:
            Conflict: the campaign is already cancelled or completed.
        """
        open_statuses = statuses.KNOWN - statuses.TERMINAL
        self._act(campaign_id, "cancel", open_statuses, cancelled_plan)

    def _act(self, campaign_id: str, action: str, applies: frozenset[str], change: Any) -> None:
        engine = self._engine
        with engine.lock:
            campaign = self.campaign(campaign_id)
            moment = engine.moment()
            current = self.status(campaign_id, moment)
            refusing = {"resume": ("running", "completed"), "pause": ("paused", "completed")}
            if campaign.cancelled or current in refusing.get(action, ("completed",)):
                state = "cancelled" if campaign.cancelled else current
                raise Conflict(f"campaign {campaign_id} is {state} and cannot {action}")
            if action == "resume":
                # Every live attempt was cut at the pause: the lanes are free from here on.
                campaign.lanes = Lanes(campaign.max_concurrent_calls)
            for call_id in campaign.call_ids:
                plan = engine.plan(call_id)
                if status_at(plan, moment) in applies:
                    engine.install(change(plan, moment))
            campaign.paused_at = moment if action == "pause" else None
            campaign.cancelled = campaign.cancelled or action == "cancel"
            campaign.changed_at = moment


def _valid_contacts(contacts: Any) -> list[tuple[str, dict[str, str]]]:
    if not isinstance(contacts, list) or not contacts:
        raise InvalidOrder("contacts is required: a non-empty list of {to_phone_number, prompt_variables}")
    if len(contacts) > MAX_CONTACTS:
        raise InvalidOrder(f"contacts has {len(contacts)} rows; at most {MAX_CONTACTS} are accepted")
    rows = []
    for index, contact in enumerate(contacts):
        where = f"contacts[{index}]"
        if not isinstance(contact, dict):
            raise InvalidOrder(f"{where} must be an object, not {type(contact).__name__}")
        number = valid_phone(contact.get("to_phone_number"), f"{where}.to_phone_number")
        variables = valid_map(f"{where}.prompt_variables", contact.get("prompt_variables"), strings=True)
        rows.append((number, variables))
    return rows


def _valid_limit(value: Any) -> int:
    if value is None:
        return DEFAULT_MAX_CONCURRENT_CALLS
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 1
    ):
        raise InvalidOrder(f"max_concurrent_calls must be a number of at least 1, not {value!r}")
    return int(value)


def _selected(engine: Engine, campaign: Campaign, selection: Any, moment: datetime) -> list[str]:
    if selection is None:
        selection = {}
    if not isinstance(selection, dict):
        raise InvalidOrder(f"selection must be an object, not {type(selection).__name__}")
    rows = selection.get("rows") or {}
    filters = selection.get("filters") or {}
    if not isinstance(rows, dict) or not isinstance(filters, dict):
        raise InvalidOrder("selection.rows and selection.filters must be objects")
    row_mode = rows.get("mode", "all_except")
    if row_mode not in ("only", "all_except"):
        raise InvalidOrder(f"selection.rows.mode must be only or all_except, not {row_mode!r}")
    named = rows.get("call_ids") or []
    if not isinstance(named, list) or not all(isinstance(i, str) for i in named):
        raise InvalidOrder("selection.rows.call_ids must be a list of strings")
    wanted = set(named)
    chosen = [i for i in campaign.call_ids if (i in wanted) == (row_mode == "only")]
    try:
        search = valid_search(
            call_ids=None,
            statuses=filters.get("statuses", []),
            assistant_ids=[],
            directions=filters.get("directions", list(SEARCH_DIRECTIONS)),
            outcomes=filters.get("outcomes", []),
            results=filters.get("results", []),
            campaign_ids=[],
            assignee_ids=filters.get("assignee_ids", []),
            from_phone_numbers=[],
            to_phone_number=None,
            query=filters.get("query"),
            sort_by=None,
            sort_direction=None,
            page=0,
            page_size=1,
        )
    except InvalidSearch as error:
        raise InvalidOrder(f"selection.filters: {error}") from None
    rendered = engine.rendered_phase
    return [i for i in chosen if matches(engine.plan(i), moment, search, rendered)]
