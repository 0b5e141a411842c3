"""Render an order plan as the API's call object at a given moment (a pure function of time)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from airflow_provider_revox._simulator import statuses
from airflow_provider_revox._simulator.profile import polish
from airflow_provider_revox._simulator.timeline import AttemptPlan, OrderPlan

#: The simulated outbound line every order is dialled from.
FROM_PHONE_NUMBER = "+33159000000"
ORGANIZATION_ID = "org_simulator"

RecordingLink = Callable[[str], str]
"""Maps an attempt id to its signed recording URL."""


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a ``Z``, as the API writes timestamps."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def status_at(plan: OrderPlan, moment: datetime) -> str:
    """The order status at ``moment`` (see the status conventions in :mod:`.engine`)."""
    if plan.final_at is not None and moment >= plan.final_at and plan.final_status:
        return plan.final_status
    launched = plan.spec.launched_at
    if plan.spec.waiting_for_launch or (launched is not None and moment < launched):
        return statuses.NOT_LAUNCHED
    for start, end in plan.pauses:
        if start <= moment and (end is None or moment < end):
            return statuses.PAUSED
    if plan.post_start is not None and moment >= plan.post_start:
        return statuses.POST_PROCESSING
    for attempt in plan.attempts:
        if attempt.started_at <= moment < attempt.ended_at:
            return statuses.CALLING
        if moment < attempt.started_at:
            return statuses.QUEUED_FOR_CALLING if moment >= attempt.dial_due else statuses.SCHEDULED
    return statuses.SCHEDULED


def _next_call_at(plan: OrderPlan, moment: datetime, status: str) -> datetime | None:
    if status not in (statuses.SCHEDULED, statuses.QUEUED_FOR_CALLING):
        return None
    for attempt in plan.attempts:
        if attempt.started_at > moment:
            return attempt.dial_due
    return None


def render_attempt(
    plan: OrderPlan, attempt: AttemptPlan, moment: datetime, completed: bool, link: RecordingLink
) -> dict[str, Any]:
    """One attempt as the API shows it at ``moment``."""
    ended = moment >= attempt.ended_at
    answered = attempt.answered_at is not None and moment >= attempt.answered_at
    if ended:
        transcript = list(attempt.transcript)
    elif answered:
        transcript = list(attempt.transcript[:1])
    else:
        transcript = []
    duration = (attempt.ended_at - attempt.answered_at).total_seconds() if attempt.answered_at else 0.0
    return {
        "id": attempt.id,
        "status": attempt.status_at(moment),
        "phone_number": plan.spec.phone_number,
        "started_at": iso(attempt.started_at),
        "answered_at": iso(attempt.answered_at) if answered else None,
        "ended_at": iso(attempt.ended_at) if ended else None,
        "result": attempt.draw.result if answered else None,
        "handled_by_ai": answered,
        "handled_by_human": False,
        "dial_error": attempt.draw.dial_error if ended and not answered and not attempt.interrupted else None,
        "end_reason": attempt.end_reason if ended else None,
        "ended_by": attempt.ended_by if ended else None,
        "duration_secs": round(duration, 3) if ended and answered else None,
        "recording_url": link(attempt.id) if ended and attempt.connected else None,
        "transcript": transcript,
        "post_call_transcript": polish(attempt.transcript) if completed and attempt.connected else None,
        "structured_output": plan.structured_output if completed and attempt.reached_human else None,
    }


def render_call(plan: OrderPlan, moment: datetime, link: RecordingLink) -> dict[str, Any]:
    """The full call object at ``moment``: a superset of the reference page's fields."""
    spec = plan.spec
    status = status_at(plan, moment)
    completed = status == statuses.COMPLETED
    started = [a for a in plan.attempts if a.started_at <= moment]
    attempts = [render_attempt(plan, a, moment, completed, link) for a in reversed(started)]
    return {
        "id": spec.call_id,
        "status": status,
        "is_completed": completed,
        "is_cancelled": status == statuses.CANCELLED,
        "direction": "outbound",
        "organization_id": ORGANIZATION_ID,
        "to_phone_number": spec.phone_number,
        "from_phone_number": spec.from_phone_number or FROM_PHONE_NUMBER,
        "assistant": spec.assistant,
        "llm_model": spec.assistant.get("llm_model"),
        "call_retry_config": spec.call_retry_config,
        "timezone": spec.zone.key,
        "metadata": spec.metadata,
        "prompt_variables": spec.prompt_variables,
        "campaign": {"id": spec.campaign[0], "name": spec.campaign[1]} if spec.campaign else None,
        "contact": _contact(spec.prompt_variables),
        "assignee": None,
        "first_sentence_delay_ms": 400,
        "created_at": iso(spec.created_at),
        "scheduled_at": iso(spec.scheduled_at or spec.created_at),
        # Rendered at the start of a phase: the moment of the order's last change.
        "updated_at": iso(moment),
        "ended_at": iso(plan.final_at) if statuses.is_terminal(status) else None,
        "skip_calling_window": spec.skip_calling_window,
        "concurrency": {"key": spec.concurrency_key} if spec.concurrency_key else None,
        "next_call_at": iso(_next_call_at(plan, moment, status)),
        "calls_count": len(started),
        "call_attempts": attempts,
        "last_call_attempt": attempts[0] if attempts else None,
        "outcome": plan.outcome if completed else None,
        "outcome_summary": _summary(plan.outcome) if completed and plan.outcome else None,
        "structured_output": plan.structured_output if completed else None,
        "speech_events": [],
        "sms_log": [],
        "email_log": [],
    }


def _contact(variables: dict[str, Any]) -> dict[str, Any]:
    # The API fills the contact from the order's input data; here, from its prompt variables.
    return {
        name: variables.get(name) for name in ("first_name", "last_name", "email", "company", "job_title")
    }


def simulated_user() -> dict[str, Any]:
    """The account behind the simulator's API key, as ``GET /users/me`` shows it."""
    return {
        "id": "user_simulator",
        "email": "developer@example.com",
        "first_name": "Simulated",
        "last_name": "Developer",
        "organization_id": ORGANIZATION_ID,
        "organization_country": "FR",
        "has_completed_onboarding": True,
        "created_at": "2025-01-06T09:00:00.000Z",
        "updated_at": "2025-01-06T09:00:00.000Z",
    }


def _summary(outcome: str) -> str:
    return {
        "interested": "The recipient is interested and agreed to the next step.",
        "not_interested": "The recipient declined.",
        "completed": "The call reached its goal.",
        "requested_callback_later": "The recipient asked to be called back later.",
    }.get(outcome, outcome)
