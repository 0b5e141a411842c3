"""Deferrable wait for a Revox call order, run by Airflow's triggerer."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_revox import statuses
from airflow_provider_revox.client.poller import CallPoller, Outcome, shared_poller
from airflow_provider_revox.client.servertime import ServerClock
from airflow_provider_revox.exceptions import TRANSIENT_ERRORS, RevoxError
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.models import Call
from airflow_provider_revox.waiting import schedule
from airflow_provider_revox.waiting.batch import MAX_LISTED_IDS, Fleet, validate_concurrency, validate_ratio
from airflow_provider_revox.waiting.events import call_summary, describe_end

#: Every kind of event the trigger sends; the sensor rejects anything else.
EVENT_SUCCESS = "success"
EVENT_FAILED = "failed"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"
EVENT_KINDS = frozenset({EVENT_SUCCESS, EVENT_FAILED, EVENT_TIMEOUT, EVENT_ERROR})

#: Never poll faster than this, whatever the schedule says (a fast simulator's clock included).
MIN_SLEEP_SECONDS = 1.0


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def sleep_seconds(
    clock: ServerClock,
    now: datetime,
    wake: datetime,
    limit: datetime | None,
    limit_now: datetime,
    *,
    fixed: bool,
) -> float:
    """Real seconds to sleep until ``wake`` on the server's clock, never past ``limit``.

    Args:
        clock: the hook's view of the server's clock.
        now: the server's current time.
        wake: when the next poll is due, on the server's clock.
        limit: the deadline, or None.
        limit_now: the current time on the deadline's clock (real for a fixed one).
        fixed: True when ``limit`` is real time (an explicit timeout), not server time.
    """
    sleep = clock.real_seconds((wake - now).total_seconds())
    if limit is not None:
        until_limit = (limit - limit_now).total_seconds()
        sleep = min(sleep, until_limit if fixed else clock.real_seconds(until_limit))
    return max(sleep, MIN_SLEEP_SECONDS)


class _Log(Protocol):
    def warning(self, msg: Any, /, *args: Any, **kwargs: Any) -> Any: ...


def warn_unknown_status(log: _Log, call_id: str, status: str, warned: set[str]) -> None:
    """Warn once per status value the API spec does not document: the wait goes on regardless."""
    if statuses.is_known(status) or status in warned:
        return
    warned.add(status)
    log.warning(
        "Call %s has status %r, which this provider does not know; treating it as not finished",
        call_id,
        status,
    )


class RevoxCallTrigger(BaseTrigger):
    """Wait, fully async, until a call order reaches a terminal status or its deadline passes.

    The poll schedule comes from :func:`airflow_provider_revox.waiting.schedule.next_poll_at`: the trigger
    sleeps until the next dial can happen and polls at ``poke_interval`` only while an attempt
    is live or post-processing runs. Its whole state is its kwargs plus the API, so it resumes
    correctly after a triggerer restart. It sends exactly one event.

    Args:
        call_id: the call order to wait for.
        revox_conn_id: the ``revox`` connection.
        poke_interval: seconds between polls while the order can change at any moment.
        fail_on_statuses: statuses that end the wait with a ``failed`` event.
        deadline_at: ISO 8601 time after which the wait gives up.
        deadline_fixed: True when ``deadline_at`` comes from an explicit ``timeout``; otherwise
            the deadline is recomputed from each fetched call and ``deadline_at`` is only the
            fallback while the API cannot be reached.
    """

    def __init__(
        self,
        *,
        call_id: str,
        revox_conn_id: str = RevoxHook.default_conn_name,
        poke_interval: float = 30.0,
        fail_on_statuses: list[str] | tuple[str, ...] = statuses.DEFAULT_FAIL_ON,
        deadline_at: str | None = None,
        deadline_fixed: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.call_id = call_id
        self.revox_conn_id = revox_conn_id
        self.poke_interval = float(poke_interval)
        self.fail_on_statuses = list(fail_on_statuses)
        self.deadline_at = deadline_at
        self.deadline_fixed = deadline_fixed

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and JSON-only kwargs: the trigger's whole state."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "call_id": self.call_id,
                "revox_conn_id": self.revox_conn_id,
                "poke_interval": self.poke_interval,
                "fail_on_statuses": list(self.fail_on_statuses),
                "deadline_at": self.deadline_at,
                "deadline_fixed": self.deadline_fixed,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll the order on its own schedule; yield one event."""
        limit = datetime.fromisoformat(self.deadline_at) if self.deadline_at else None
        # Only the small summary outlives a poll: a triggerer runs a thousand of these at once.
        last_summary: dict[str, Any] | None = None
        warned: set[str] = set()
        # Every trigger of this connection in the triggerer shares one client, and the polls that
        # fall due together share one request.
        async with shared_poller(self.revox_conn_id) as poller:
            clock = poller.clock
            while True:
                try:
                    call: Call | None = await poller.get_call(self.call_id)
                except TRANSIENT_ERRORS as exc:
                    self.log.warning("Call %s: %s; waiting it out", self.call_id, exc)
                    call = None
                except (RevoxError, ValueError) as exc:  # a rejected key or an unknown call: final
                    yield self._event(EVENT_ERROR, last_summary, f"call {self.call_id}: {exc}")
                    return
                now = clock.now()
                if call is not None:
                    last_summary = call_summary(call)
                    verdict = statuses.verdict(call.status, self.fail_on_statuses)
                    if verdict == statuses.SUCCESS:
                        yield self._event(EVENT_SUCCESS, last_summary, describe_end(call))
                        return
                    if verdict == statuses.FAILED:
                        yield self._event(EVENT_FAILED, last_summary, describe_end(call))
                        return
                    warn_unknown_status(self.log, self.call_id, call.status, warned)
                    if call.status == statuses.PAUSED:
                        self.log.info("Call %s is paused; waiting for it to be resumed", self.call_id)
                    if not self.deadline_fixed:
                        limit = schedule.deadline(call, now) + schedule.DEADLINE_MARGIN
                    wake = schedule.next_poll_at(call, now, self.poke_interval)
                    call = None
                else:
                    wake = now + timedelta(seconds=self.poke_interval)
                # An explicit timeout is real time; a derived deadline is on the server's clock.
                limit_now = _utcnow() if self.deadline_fixed else now
                if limit is not None and limit_now >= limit:
                    last_status = f" (last status {last_summary['status']!r})" if last_summary else ""
                    yield self._event(
                        EVENT_TIMEOUT,
                        last_summary,
                        f"call {self.call_id} did not finish by {limit.isoformat()}{last_status}",
                    )
                    return
                await asyncio.sleep(
                    sleep_seconds(clock, now, wake, limit, limit_now, fixed=self.deadline_fixed)
                )

    def _event(self, kind: str, summary: dict[str, Any] | None, message: str) -> TriggerEvent:
        summary = summary or {"call_id": self.call_id}
        payload = {"status": kind, "call_id": self.call_id, "summary": summary, "message": message}
        return TriggerEvent(payload)  # type: ignore[no-untyped-call]


async def poll_due(
    poller: CallPoller,
    fleet: Fleet,
    *,
    poke_interval: float,
    max_concurrency: int,
    log: _Log,
    warned: set[str],
) -> list[str]:
    """Fetch every order of ``fleet`` that is due, in searches of up to a hundred orders.

    Each fetched order is reduced to its status, its next due time
    (:func:`~airflow_provider_revox.waiting.schedule.next_poll_at`) and its deadline, and dropped. An
    order whose fetch fails transiently goes back in the heap ``poke_interval`` later. One
    poll round of both :class:`RevoxCallsTrigger` and the sensor's poke, so the two modes
    cannot drift apart.

    Args:
        poller: fetches the orders (batched) and knows the server's clock.
        fleet: the wait's state; updated in place.
        poke_interval: seconds between polls while an order can change at any moment.
        max_concurrency: most requests in flight at once.
        log: where to warn about transient errors and undocumented statuses.
        warned: undocumented statuses already warned about (updated).

    Returns:
        One message per order that cannot be fetched at all (unknown id, rejected key).
    """
    clock = poller.clock
    due = fleet.pop_due(clock.now().timestamp())
    if not due and clock.speed == 0:
        # A manual clock (a simulator under test) reads the same until a response says it moved,
        # so with nothing due the wait would never learn the time: fetch the earliest order.
        due = fleet.pop_next()
    if not due:
        return []
    errors: list[str] = []
    transient: dict[str, int] = {}

    def settle(call_id: str, outcome: Outcome) -> None:
        now = clock.now()
        if isinstance(outcome, TRANSIENT_ERRORS):
            transient[str(outcome)] = transient.get(str(outcome), 0) + 1
            fleet.retry_at(call_id, (now + timedelta(seconds=poke_interval)).timestamp())
        elif isinstance(outcome, (RevoxError, ValueError)):
            # The hook's messages name the connection, never its key.
            errors.append(f"call {call_id}: {outcome}")
            fleet.retry_at(call_id, -math.inf)
        elif statuses.verdict(outcome.status, fleet.fail_on) != statuses.WAITING:
            fleet.record(call_id, outcome.status, due=now.timestamp())
        else:
            warn_unknown_status(log, call_id, outcome.status, warned)
            wake = schedule.next_poll_at(outcome, now, poke_interval)
            limit = schedule.deadline(outcome, now) + schedule.DEADLINE_MARGIN
            fleet.record(call_id, outcome.status, due=wake.timestamp(), deadline=limit.timestamp())

    # Each order is reduced as it arrives, so a campaign's orders are never all held at once.
    await poller.get_calls(due, concurrency=max_concurrency, on_outcome=settle)
    for message, count in transient.items():
        # One line per distinct failure: a failed search fails a hundred orders the same way.
        log.warning("%d call order(s): %s; will look again", count, message)
    return errors


class RevoxCallsTrigger(BaseTrigger):
    """Wait, fully async, until every order of a batch is settled or the wait is hopeless.

    Orders are polled on their own schedules through one heap of due times
    (:class:`~airflow_provider_revox.waiting.batch.Fleet`), at most ``max_concurrency`` requests at a
    time, in searches of up to a hundred orders; per order only its status, due time and
    deadline are kept.
    Its whole state is its kwargs plus the API: after a triggerer restart it polls every order
    not in ``settled`` once, then carries on. It sends exactly one event, whose ``result`` is
    the fleet's result (counts by status, completed and failed ids, completed ratio):
    ``success`` when every order is settled and the ratio is met, ``failed`` as soon as it can
    no longer be met, ``timeout`` past the deadline, ``error`` when an order cannot be
    fetched at all (unknown id, rejected key).

    Args:
        call_ids: the orders, distinct, in the order results list them.
        revox_conn_id: the ``revox`` connection.
        poke_interval: seconds between polls while an order can change at any moment, and
            before retrying an order whose fetch failed.
        fail_on_statuses: statuses that make an order failed.
        min_completed_ratio: share of ``completed`` orders needed to succeed.
        max_concurrency: most requests in flight at once.
        settled: orders already settled when the wait was handed over, as ``{status: [ids]}``.
        deadline_at: ISO 8601 time after which the wait gives up.
        deadline_fixed: True when ``deadline_at`` comes from an explicit ``timeout`` (real
            time); otherwise the deadline is the latest one among pending orders (server
            time) and ``deadline_at`` only applies while none of them has answered.
    """

    def __init__(
        self,
        *,
        call_ids: list[str],
        revox_conn_id: str = RevoxHook.default_conn_name,
        poke_interval: float = 30.0,
        fail_on_statuses: list[str] | tuple[str, ...] = statuses.DEFAULT_FAIL_ON,
        min_completed_ratio: float = 1.0,
        max_concurrency: int = 16,
        settled: dict[str, list[str]] | None = None,
        deadline_at: str | None = None,
        deadline_fixed: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.call_ids = list(call_ids)
        self.revox_conn_id = revox_conn_id
        self.poke_interval = float(poke_interval)
        self.fail_on_statuses = list(fail_on_statuses)
        self.min_completed_ratio = validate_ratio(min_completed_ratio)
        self.max_concurrency = validate_concurrency(max_concurrency)
        self.settled = {status: list(ids) for status, ids in (settled or {}).items()}
        self.deadline_at = deadline_at
        self.deadline_fixed = deadline_fixed

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and JSON-only kwargs: the trigger's whole state."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "call_ids": list(self.call_ids),
                "revox_conn_id": self.revox_conn_id,
                "poke_interval": self.poke_interval,
                "fail_on_statuses": list(self.fail_on_statuses),
                "min_completed_ratio": self.min_completed_ratio,
                "max_concurrency": self.max_concurrency,
                "settled": {status: list(ids) for status, ids in self.settled.items()},
                "deadline_at": self.deadline_at,
                "deadline_fixed": self.deadline_fixed,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll due orders until the batch is decided; yield one event."""
        fleet = Fleet(
            self.call_ids,
            fail_on=self.fail_on_statuses,
            min_completed_ratio=self.min_completed_ratio,
            settled=self.settled,
        )
        fallback = datetime.fromisoformat(self.deadline_at) if self.deadline_at else None
        warned: set[str] = set()
        async with shared_poller(self.revox_conn_id) as poller:
            clock = poller.clock
            while True:
                errors = await poll_due(
                    poller,
                    fleet,
                    poke_interval=self.poke_interval,
                    max_concurrency=self.max_concurrency,
                    log=self.log,
                    warned=warned,
                )
                if errors:
                    yield self._event(EVENT_ERROR, fleet, describe_fetch_errors(errors))
                    return
                verdict = fleet.verdict()
                if verdict == statuses.SUCCESS:
                    yield self._event(EVENT_SUCCESS, fleet, describe_success(fleet))
                    return
                if verdict == statuses.FAILED:
                    yield self._event(EVENT_FAILED, fleet, fleet.describe_unreachable())
                    return
                now = clock.now()
                limit = fleet_limit(fleet, fallback, fixed=self.deadline_fixed)
                limit_now = _utcnow() if self.deadline_fixed else now
                if limit is not None and limit_now >= limit:
                    yield self._event(EVENT_TIMEOUT, fleet, describe_timeout(fleet, limit))
                    return
                next_due = fleet.next_due()
                wake = now if next_due is None else datetime.fromtimestamp(next_due, timezone.utc)
                await asyncio.sleep(
                    sleep_seconds(clock, now, wake, limit, limit_now, fixed=self.deadline_fixed)
                )

    def _event(self, kind: str, fleet: Fleet, message: str) -> TriggerEvent:
        payload = {"status": kind, "result": fleet.result(), "message": message}
        return TriggerEvent(payload)  # type: ignore[no-untyped-call]


def fleet_limit(fleet: Fleet, fallback: datetime | None, *, fixed: bool) -> datetime | None:
    """When a batch wait gives up: a fixed limit, else the latest deadline of a pending order.

    ``fallback`` stands in for the derived deadline while no pending order has answered.
    """
    if fixed:
        return fallback
    latest = fleet.latest_deadline()
    return fallback if latest is None else datetime.fromtimestamp(latest, timezone.utc)


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


def describe_fetch_errors(errors: list[str]) -> str:
    """One message for every order that could not be fetched at all."""
    return (
        f"{len(errors)} call order(s) could not be fetched: "
        + "; ".join(errors[:MAX_LISTED_IDS])
        + (f" (and {len(errors) - MAX_LISTED_IDS} more)" if len(errors) > MAX_LISTED_IDS else "")
    )
