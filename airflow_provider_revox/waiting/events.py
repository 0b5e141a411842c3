"""The small, secret-free summary of a call order that sensors return and triggers send."""

from __future__ import annotations

from typing import Any

from airflow_provider_revox.models import Call


def call_summary(call: Call) -> dict[str, Any]:
    """A JSON-safe summary: ids, status, outcome and how the last attempt ended; never a transcript."""
    last = call.last_attempt
    ended = call.ended_at
    return {
        "call_id": call.id,
        "status": call.status,
        "outcome": call.outcome,
        "calls_count": call.attempts_made,
        "last_attempt_result": last.result if last else None,
        "last_attempt_end_reason": last.end_reason if last else None,
        "last_attempt_dial_error": last.dial_error if last else None,
        "ended_at": ended.isoformat() if ended else None,
    }


def describe_end(call: Call) -> str:
    """One line saying why an order ended the way it did, for task failure messages."""
    last = call.last_attempt
    parts = [f"call {call.id} is {call.status!r} after {call.attempts_made} attempt(s)"]
    if last is not None:
        details = [
            f"{name}={value}"
            for name, value in (
                ("result", last.result),
                ("dial_error", last.dial_error),
                ("end_reason", last.end_reason),
            )
            if value
        ]
        if details:
            parts.append("last attempt: " + ", ".join(details))
    return "; ".join(parts)
