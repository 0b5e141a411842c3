"""An order a placement may already have made: whether a failed POST may have placed it, finding
it by its idempotency key, and cancelling it only when this task placed it."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from airflow.sdk.exceptions import (
    AirflowNotFoundException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferralTimeout,
)

from airflow_provider_revox._internal.core import durable, statuses
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox.exceptions import (
    RevoxApiError,
    RevoxError,
    RevoxPlacementUnknownError,
    RevoxResponseError,
    RevoxTransportError,
)

#: Guards what a kill and the placing code both read and write: the order's id, the POST in flight,
#: and which of them cancels. Reentrant: Airflow's SIGTERM handler calls ``on_kill`` on the very
#: thread it interrupts, maybe inside this lock; elsewhere the kill comes from another thread.
#: Module-level: an operator is deep-copied, and a lock is not.
KILL_LOCK = threading.RLock()


class Log(Protocol):
    """The part of a task's logger used here."""

    def info(self, message: str, /, *args: Any) -> Any: ...
    def warning(self, message: str, /, *args: Any) -> Any: ...


class Found(NamedTuple):
    """An order found by its idempotency key, and whether this very task placed it."""

    call_id: str
    owned: bool


def ambiguous(error: RevoxError) -> bool:
    """Whether a failed ``POST /call`` may still have placed the order.

    A timeout or a dropped connection after sending, a 5xx (a gateway may answer it after the
    order was stored) or an unreadable success body: the order may exist. A 4xx, a refused
    connection or a run of 429s prove it was not placed.
    """
    if isinstance(error, RevoxTransportError | RevoxResponseError):
        return True
    return isinstance(error, RevoxApiError) and (error.status_code or 0) >= 500


def find_by_key(
    hook: RevoxHook, arguments: Mapping[str, Any], identity: str, scope: str, log: Log
) -> Found | None:
    """The order already placed under the key in ``arguments``, among the orders to the same
    number and assistant, that this task may reattach to (``scope``); another task's order under
    the same key is logged and passed over.

    Raises:
        RevoxPlacementUnknownError: the search failed, so whether one exists is unknown.
    """
    key = arguments["metadata"][durable.METADATA_KEY]
    filters: dict[str, Any] = {"to_phone_number": arguments["phone_number"]}
    if arguments.get("assistant_id") is not None:
        filters["assistant_ids"] = [arguments["assistant_id"]]
    try:
        for call in hook.iter_calls(**filters):
            if durable.matches(call.metadata, key, identity, scope):
                return Found(call.id, call.metadata.get(durable.OWNER_KEY) == identity)
            if call.metadata.get(durable.METADATA_KEY) == key:
                log.warning(
                    "Call %s carries idempotency key %s but was placed by %r, not this task "
                    "(%s): not reattaching to it (idempotency_scope=%r)",
                    call.id,
                    key,
                    call.metadata.get(durable.OWNER_KEY),
                    identity,
                    scope,
                )
    except RevoxError as error:
        raise RevoxPlacementUnknownError(
            f"Cannot tell whether an earlier try already placed this call: the search for "
            f"idempotency key {key} failed ({error}). No call is placed rather than risk "
            "calling the person twice; the task's next try searches again."
        ) from error
    return None


def find_in_flight(conn_id: str, arguments: Mapping[str, Any], identity: str, log: Log) -> str:
    """The order a POST still unanswered when the task was killed placed, found by its key, or "".

    Only an order carrying this task's identity is returned (never another DAG's). A hook of its
    own: the task's hook is in the middle of that POST.
    """
    hook = RevoxHook(revox_conn_id=conn_id)
    try:
        found = find_by_key(hook, arguments, identity, durable.SCOPE_TASK, log)
    except (RevoxError, AirflowNotFoundException) as error:
        log.warning("Task killed while placing; its order could not be looked up: %s", error)
        return ""
    finally:
        hook.close()
    if found is None:
        key = arguments["metadata"][durable.METADATA_KEY]
        log.warning("Task killed while placing; no order with idempotency key %s is visible", key)
        return ""
    log.info("Task killed while placing: call %s found by its idempotency key", found.call_id)
    return found.call_id


def cancel_owned(conn_id: str, call_id: str, identity: str, why: str, log: Log) -> None:
    """Cancel ``call_id`` only if it carries this task's ``identity``; failures are logged."""
    # A hook of its own: the task's hook may be mid-request when a kill arrives.
    hook = RevoxHook(revox_conn_id=conn_id)
    try:
        call = hook.get_call(call_id)
        owner = call.metadata.get(durable.OWNER_KEY)
        if not identity or owner != identity:
            log.warning(
                "Call %s not cancelled although %s: it was placed by %r, not by this task (%s)",
                call_id,
                why,
                owner,
                identity or "unknown",
            )
            return
        if statuses.is_terminal(call.status):
            log.info("Call %s has ended already (%r); nothing to cancel", call_id, call.status)
            return
        call = hook.cancel_call(call_id)
        log.info("Call %s cancelled because %s; it is now %r", call_id, why, call.status)
    except (RevoxError, AirflowNotFoundException) as error:
        log.warning("Call %s could not be cancelled (%s): %s", call_id, why, error)
    finally:
        hook.close()


def gave_up(error: BaseException) -> bool:
    """Whether ``error`` ends a wait that timed out, also as the skip ``soft_fail`` makes of it."""
    timeouts = (AirflowSensorTimeout, TaskDeferralTimeout)
    if isinstance(error, timeouts):
        return True
    # soft_fail turns a timeout into a skip: raised from it, or (an explicit timeout) with this text.
    return isinstance(error, AirflowSkipException) and (
        isinstance(error.__cause__, timeouts) or str(error).startswith("Sensor has timed out")
    )


def check_search_lag(uncertain: str | None, now: datetime, lag: timedelta, key: str) -> None:
    """Refuse to place while a search may still lag the POST that an earlier try left uncertain.

    Raises:
        RevoxPlacementUnknownError: the POST at ``uncertain`` is less than ``lag`` before ``now``.
    """
    until = durable.lag_until(uncertain, now, lag)
    if until is not None:
        raise RevoxPlacementUnknownError(
            f"An earlier try's POST, at {uncertain}, may have placed the call, and the search does "
            f"not show an order with idempotency key {key} yet; a search may lag a placement by up "
            f"to {lag}. None is placed before {until.isoformat()}; the task's next try "
            "searches again (give it retries, with retry_exponential_backoff, to span that time)."
        )
