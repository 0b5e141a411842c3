"""Campaigns as the API shows them: the campaign object, its rows and its statistics."""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_revox._simulator import statuses
from airflow_provider_revox._simulator.campaign import Campaign
from airflow_provider_revox._simulator.orders import default_assistant
from airflow_provider_revox._simulator.render import ORGANIZATION_ID, iso, simulated_user, status_at

if TYPE_CHECKING:
    from airflow_provider_revox._simulator.engine import SimulatorEngine

#: Outcomes the statistics count as hot leads.
HOT_OUTCOMES = ("interested",)
_ROW_BUCKET = {
    statuses.NOT_LAUNCHED: "not_launched",
    statuses.INITIALIZING: "calling",
    statuses.QUEUED_FOR_CALLING: "calling",
    statuses.CALLING: "calling",
    statuses.POST_PROCESSING: "calling",
    statuses.PAUSED: "pending",
    statuses.COMPLETED: "completed",
    statuses.ERRORED: "failed",
    statuses.CANCELLED: "skipped",
}
_OUTCOME_LABELS = {
    "interested": "Interested",
    "not_interested": "Not interested",
    "completed": "Completed",
    "requested_callback_later": "Callback requested",
}


def row_stats(engine: SimulatorEngine, campaign: Campaign, moment: datetime) -> dict[str, int]:
    """Orders per bucket: a scheduled order is ``pending`` before its first dial, ``retry`` after."""
    stats = dict.fromkeys(
        ("calling", "completed", "failed", "not_launched", "pending", "retry", "skipped"), 0
    )
    for call_id in campaign.call_ids:
        plan = engine.plan(call_id)
        status = status_at(plan, moment)
        bucket = _ROW_BUCKET.get(status)
        if bucket is None:
            dialled = any(attempt.started_at <= moment for attempt in plan.attempts)
            bucket = "retry" if dialled else "pending"
        stats[bucket] += 1
    return {**stats, "total": len(campaign.call_ids)}


def funnel_stats(engine: SimulatorEngine, campaign: Campaign, moment: datetime) -> dict[str, int]:
    """Leads in total, orders where a person answered, and orders ending in a hot outcome."""
    human = hot = 0
    for call_id in campaign.call_ids:
        plan = engine.plan(call_id)
        if any(a.reached_human and a.answered_at and a.answered_at <= moment for a in plan.attempts):
            human += 1
        if plan.outcome in HOT_OUTCOMES and status_at(plan, moment) == statuses.COMPLETED:
            hot += 1
    return {"hot": hot, "talked_to_human": human, "total_leads": len(campaign.call_ids)}


def updated_at(engine: SimulatorEngine, campaign: Campaign, moment: datetime) -> datetime:
    """The campaign's last change: its own last action or any of its orders' last change."""
    latest = campaign.changed_at
    for call_id in campaign.call_ids:
        events = engine.plan(call_id).events
        index = bisect_right(events, moment)
        if index:
            latest = max(latest, events[index - 1])
    return latest


def render_campaign(engine: SimulatorEngine, campaign: Campaign, moment: datetime) -> dict[str, Any]:
    """The campaign object of ``GET /campaigns/{id}`` at ``moment``."""
    user = simulated_user()
    return {
        "id": campaign.id,
        "name": campaign.name,
        "assistant_id": campaign.assistant_id,
        "assistant": default_assistant(campaign.assistant_id),
        "organization_id": ORGANIZATION_ID,
        "status": engine.campaigns.status(campaign.id, moment),
        "is_cancelled": campaign.cancelled,
        "created_at": iso(campaign.created_at),
        "updated_at": iso(updated_at(engine, campaign, moment)),
        "scheduled_at": iso(campaign.scheduled_at),
        "call_retry_config": campaign.call_retry_config,
        "from_phone_number": campaign.from_phone_number,
        "max_concurrent_calls": campaign.max_concurrent_calls,
        "metadata_keys": sorted({key for row in campaign.inputs for key in row} - {"to_phone_number"}),
        "row_stats": row_stats(engine, campaign, moment),
        "funnel_stats": funnel_stats(engine, campaign, moment),
        "structured_output_extraction": "none",
        "created_by": {key: user[key] for key in ("id", "email", "first_name", "last_name")},
    }


def render_rows(engine: SimulatorEngine, campaign: Campaign, moment: datetime) -> list[dict[str, Any]]:
    """The rows of ``GET /campaigns/{id}/rows``: each contact's input and its order now."""
    return [
        {
            "id": f"row_{campaign.id.removeprefix('cmp_')}_{index}",
            "row_index": index,
            "phone_number": inputs["to_phone_number"],
            "input_data": inputs,
            "call": engine.get_call(call_id, moment),
        }
        for index, (call_id, inputs) in enumerate(zip(campaign.call_ids, campaign.inputs, strict=True))
    ]


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def render_statistics(engine: SimulatorEngine, campaign: Campaign, moment: datetime) -> dict[str, Any]:
    """The report of ``GET /campaigns/{id}/statistics`` at ``moment``."""
    calls = [engine.get_call(call_id, moment) for call_id in campaign.call_ids]
    attempts = [a for call in calls for a in call["call_attempts"]]
    starts = sorted(a["started_at"] for a in attempts)
    ends = sorted(a["ended_at"] for a in attempts if a["ended_at"])
    called = sum(1 for call in calls if call["calls_count"])
    reached = sum(1 for call in calls if any(a["answered_at"] for a in call["call_attempts"]))
    human = sum(1 for call in calls if any(a["result"] == "human" for a in call["call_attempts"]))
    outcomes: dict[str, int] = {}
    leads: dict[str, list[dict[str, Any]]] = {"interested": [], "callback_requested": []}
    for call in calls:
        outcome = call["outcome"]
        if outcome is None:
            continue
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        kind = {"interested": "interested", "requested_callback_later": "callback_requested"}.get(outcome)
        if kind is not None:
            leads[kind].append(_lead(call))
    hot = sum(outcomes.get(o, 0) for o in HOT_OUTCOMES)
    first_plan = engine.plan(campaign.call_ids[0])
    return {
        "campaign": {
            "id": campaign.id,
            "name": campaign.name,
            "agent_name": default_assistant(campaign.assistant_id).get("name"),
            "status": engine.campaigns.status(campaign.id, moment),
            "is_cancelled": campaign.cancelled,
            "has_activity": bool(attempts),
            "first_activity_at": starts[0] if starts else None,
            "last_activity_at": ends[-1] if ends else None,
            "max_attempts_per_contact": first_plan.spec.rules.max_attempts,
            "timezone": first_plan.spec.zone.key,
        },
        "data_extraction": None,
        "effort": {"calls_total": len(attempts), "inbound_calls": 0, "outbound_attempts": len(attempts)},
        "funnel": {
            "called": {"count": called, "imported_rows": len(calls)},
            "reached": {
                "count": reached,
                "inbound": 0,
                "outbound": reached,
                "overlap": 0,
                "pct_of_called": _pct(reached, called),
            },
            "real_exchanges": {"count": human, "pct_of_reached": _pct(human, reached)},
            "hot_leads": {"count": hot, "pct_of_reached": _pct(hot, reached)},
        },
        "hot_lead_outcomes": list(HOT_OUTCOMES),
        "inbound": {"unique_callers": 0},
        "jump_in": {
            "joined_calls": 0,
            "median_conversation_seconds": None,
            "median_time_to_join_seconds": None,
        },
        "leads": leads,
        "outcome_breakdown": [
            {"outcome": outcome, "label": _OUTCOME_LABELS.get(outcome, outcome), "count": count}
            for outcome, count in sorted(outcomes.items())
        ],
    }


def _lead(call: dict[str, Any]) -> dict[str, Any]:
    contact = call["contact"]
    name = " ".join(part for part in (contact.get("first_name"), contact.get("last_name")) if part)
    last = call["last_call_attempt"]
    return {
        "call_id": call["id"],
        "attempt_id": last["id"] if last else None,
        "direction": "outbound",
        "name": name or call["to_phone_number"],
        "phone": call["to_phone_number"],
        "email": contact.get("email"),
        "last_activity_at": call["updated_at"],
        "summary": call["outcome_summary"],
    }
