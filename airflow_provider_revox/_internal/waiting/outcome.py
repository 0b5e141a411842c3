"""What a wait hands back: the trigger event, the call summary, and every message it writes.

Every text built here goes through :func:`~airflow_provider_revox._internal.core.redact.redact` with the
connection's known secrets, because order fields (``outcome``, ``dial_error``, ...) are
whatever the API sent and can echo a key or a credential-bearing URL. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NoReturn

from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.core.redact import redact, redact_message, redact_text
from airflow_provider_revox._internal.waiting.batch import MAX_LISTED_IDS, Fleet

#: Every kind of event a trigger sends; the sensor rejects anything else.
EVENT_SUCCESS = "success"
EVENT_FAILED = "failed"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"
EVENT_KINDS = frozenset({EVENT_SUCCESS, EVENT_FAILED, EVENT_TIMEOUT, EVENT_ERROR})


def call_summary(call: Call, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """A JSON-safe, redacted summary: ids, status, outcome, how the last attempt ended, and when.

    ``ended_at`` is the order's end (:attr:`Call.ended_at`); ``last_attempt_ended_at`` its last
    attempt's, earlier when post-processing followed it.

    Never a transcript. ``secrets`` are the connection's credentials, masked wherever they appear.
    """
    last = call.last_attempt
    ended, last_ended = call.ended_at, call.last_attempt_ended_at
    summary = {
        "call_id": call.id,
        "status": call.status,
        "outcome": call.outcome,
        "calls_count": call.attempts_made,
        "last_attempt_result": last.result if last else None,
        "last_attempt_end_reason": last.end_reason if last else None,
        "last_attempt_dial_error": last.dial_error if last else None,
        "last_attempt_ended_at": last_ended.isoformat() if last_ended else None,
        "ended_at": ended.isoformat() if ended else None,
    }
    cleaned: dict[str, Any] = redact(summary, secrets)
    return cleaned


def describe_end(call: Call, secrets: Iterable[str] = ()) -> str:
    """One redacted line saying why an order ended the way it did, for logs and failure messages."""
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
    return redact_text("; ".join(parts), secrets)


def describe_success(fleet: Fleet) -> str:
    """One line for the log when a batch wait succeeds."""
    result = fleet.result()
    return (
        f"all {fleet.total} call orders settled; {len(result['completed'])} completed "
        f"(ratio {result['completed_ratio']:.3f}), {len(result['failed'])} failed; "
        f"statuses {dict(sorted(result['counts'].items()))}"
    )


def describe_timeout(fleet: Fleet, limit: datetime) -> str:
    """Why a batch wait timed out: the limit, and which orders were still pending."""
    return f"call orders did not all finish by {limit.isoformat()}: {fleet.describe_pending()}"


def describe_call_timeout(call_id: str, limit: datetime, last_status: str | None) -> str:
    """Why a single-order wait timed out: the limit, and the last status seen."""
    seen = f" (last status {last_status!r})" if last_status is not None else " (never read)"
    return f"call {call_id} did not finish by {limit.isoformat()}{seen}"


def describe_fetch_errors(errors: list[str], secrets: Iterable[str] = ()) -> str:
    """One redacted message for every order that could not be fetched at all."""
    text = (
        f"{len(errors)} call order(s) could not be fetched: "
        + "; ".join(errors[:MAX_LISTED_IDS])
        + (f" (and {len(errors) - MAX_LISTED_IDS} more)" if len(errors) > MAX_LISTED_IDS else "")
    )
    return redact_text(text, secrets)


def event_payload(kind: str, message: str, secrets: Iterable[str] = (), **payload: Any) -> dict[str, Any]:
    """A trigger event's payload, redacted as a whole: nothing in it leaves unmasked."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    # The message is the provider's own prose, built from redacted data: masked by value only.
    cleaned: dict[str, Any] = redact({"status": kind, **payload}, secrets)
    cleaned["message"] = redact_message(str(message), secrets)
    return cleaned


def fail_or_skip(soft_fail: bool, message: str) -> NoReturn:
    """Fail without retries, or skip when the sensor has ``soft_fail``: the wait is over for good."""
    if soft_fail:
        raise AirflowSkipException(message)
    raise AirflowFailException(message)


def _short(value: Any, limit: int = 500) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def read_event(
    event: Any,
    *,
    trigger: str,
    what: str,
    payload_key: str,
    payload_ok: Callable[[Any], bool],
    soft_fail: bool,
) -> Any:
    """Check a trigger's event, fail-closed, and return its success payload.

    A missing or unknown event, or a success whose payload does not check out, fails the task;
    ``failed`` fails it without retries (or skips it with ``soft_fail``); ``timeout`` raises
    :class:`~airflow.sdk.exceptions.AirflowSensorTimeout`; ``error`` fails it with the message.

    Args:
        event: what the trigger sent.
        trigger: the trigger's class name, for messages.
        what: what was waited for (``"call c-1"``), for messages.
        payload_key: the event key holding the success payload.
        payload_ok: whether a success payload is the one this sensor expects.
        soft_fail: skip instead of failing on a ``failed`` event.
    """
    if not isinstance(event, dict) or event.get("status") not in EVENT_KINDS:
        raise AirflowException(f"{trigger} sent no valid event for {what}: {_short(redact(event))}")
    kind = event["status"]
    message = redact_message(str(event.get("message") or ""))
    if kind == EVENT_SUCCESS:
        payload = event.get(payload_key)
        if not payload_ok(payload):
            shown = _short(redact(event))
            raise AirflowException(f"{trigger} sent a malformed success event for {what}: {shown}")
        return payload
    if kind == EVENT_FAILED:
        fail_or_skip(soft_fail, message or f"{what} failed")
    if kind == EVENT_TIMEOUT:
        raise AirflowSensorTimeout(message or f"{what} did not finish in time")
    raise AirflowException(message or f"waiting for {what} failed")
