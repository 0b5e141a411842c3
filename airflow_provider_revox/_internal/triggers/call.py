"""Deferrable waits for Revox call orders, run by Airflow's triggerer.

Thin adapters: the schedule, the deadlines, the backoff and the messages come from
:mod:`airflow_provider_revox._internal.waiting`; the requests go through the connection's shared
:class:`~airflow_provider_revox._internal.hooks.poller.CallPoller`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.triggers.base import TriggerEvent

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.core.dashboard import (
    LINK_XCOM_KEY,
    RESOLVED_LINK_XCOM_KEY,
    call_dashboard_url,
)
from airflow_provider_revox._internal.core.redact import redact_message
from airflow_provider_revox._internal.hooks.poller import shared_poller
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.triggers.call_events import (
    RevoxCallEventTrigger as RevoxCallEventTrigger,
)
from airflow_provider_revox._internal.triggers.ending import delivered, ends_task, task_end_event
from airflow_provider_revox._internal.triggers.wait import WaitTrigger, parse_time, within
from airflow_provider_revox._internal.waiting import rounds
from airflow_provider_revox._internal.waiting.batch import Fleet, validate_concurrency, validate_ratio
from airflow_provider_revox._internal.waiting.ids import batch_call_ids, one_call_id
from airflow_provider_revox._internal.waiting.outcome import (
    EVENT_ERROR,
    EVENT_FAILED,
    EVENT_SUCCESS,
    EVENT_TIMEOUT,
    call_summary,
    describe_call_timeout,
    describe_end,
    describe_fetch_errors,
    describe_success,
    describe_timeout,
    event_payload,
)
from airflow_provider_revox.exceptions import RevoxError, is_transient


class RevoxCallTrigger(WaitTrigger):
    """Wait, fully async, until a call order reaches a terminal status or its deadline passes.

    The poll schedule comes from the order itself: the
    trigger sleeps until the next dial can happen and polls at ``poke_interval`` only while an
    attempt is live or post-processing runs. While the API fails it backs off (doubling up to
    ten minutes) and logs one warning, then one line when it answers again. It logs each status
    change with the next check time. Its whole state is its kwargs plus the API, so it resumes
    correctly after a triggerer restart. It sends exactly one event.

    Args:
        call_id: the call order to wait for.
        revox_conn_id: the ``revox`` connection.
        poke_interval: seconds between polls while the order can change at any moment.
        fail_on_statuses: statuses that end the wait with a ``failed`` event.
        deadline_at: ISO 8601 time after which the wait gives up.
        deadline_fixed: True when ``deadline_at`` comes from an explicit ``timeout`` (real
            time); otherwise the deadline is recomputed from each fetched call (server time) and
            ``deadline_at`` only applies while the order cannot be read.
        stop_at: ISO 8601 real time at which the wait ends whatever the order does (the task's
            ``execution_timeout``); a request in flight then is cut.
        cancel_on_kill: cancel the order when a user kills the deferred task (Airflow 3.3's
            trigger ``on_kill``). Only the operator that placed the order sets it: a sensor
            waiting for someone else's order never cancels it.
        end_task: end the task from the triggerer (its summary as the XCom) instead of resuming
            it on a worker, where Airflow can (3.3+); see ``start_from_trigger``.
        soft_fail: with ``end_task``, skip the task instead of failing it when the wait fails.
        resume_on_timeout: with ``end_task``, still resume the task on a worker when the wait
            times out (the placing operator cancels its order there).
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
        stop_at: str | None = None,
        cancel_on_kill: bool = False,
        end_task: bool = False,
        soft_fail: bool = False,
        resume_on_timeout: bool = False,
    ) -> None:
        super().__init__(revox_conn_id, poke_interval, fail_on_statuses, deadline_at, deadline_fixed, stop_at)
        self.call_id = call_id
        self.cancel_on_kill = bool(cancel_on_kill)
        self.resume_on_timeout = bool(resume_on_timeout)
        self._ending(end_task, soft_fail)
        self._base_url: str | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and JSON-only kwargs: the trigger's whole state."""
        # Only a placing operator's trigger carries the flag: a sensor's serializes as before.
        own: dict[str, Any] = {"cancel_on_kill": True} if self.cancel_on_kill else {}
        if self.resume_on_timeout:
            own["resume_on_timeout"] = True
        return self._serialized(
            "airflow_provider_revox.triggers.revox.RevoxCallTrigger", call_id=self.call_id, **own
        )

    async def on_kill(self) -> None:
        """Cancel the order when ``cancel_on_kill`` is set (the task placed it and was killed).

        Airflow 3.3 calls this only when a user kills the deferred task, never on a triggerer
        restart. A failed cancel is logged, not raised: the kill goes on either way.
        """
        if not self.cancel_on_kill:
            return
        # A hook of its own: the run's shared poller may be closing as the trigger is cancelled.
        hook = RevoxHook(revox_conn_id=self.revox_conn_id)
        try:
            call = await hook.acancel_call(self.call_id)
            self.log.info("Call %s cancelled on kill; it is now %r", self.call_id, call.status)
        except (RevoxError, AirflowNotFoundException) as error:
            # The hook's errors are already redacted; a missing connection holds no key.
            self.log.warning("Call %s could not be cancelled on kill: %s", self.call_id, error)
        finally:
            await hook.aclose()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll the order on its own schedule; yield one event."""
        async for event in delivered(self, self._events()):
            yield event

    async def _events(self) -> AsyncIterator[TriggerEvent]:
        limit = parse_time(self.deadline_at)
        try:
            # Started in the triggerer, call_id was rendered here: read the one id out of it.
            self.call_id = one_call_id(self.call_id)
        except ValueError as error:
            yield self._event(EVENT_ERROR, None, str(error), ())
            return
        # Only the small summary outlives a poll: a triggerer runs a thousand of these at once.
        last_summary: dict[str, Any] | None = None
        last_status: str | None = None
        warned: set[str] = set()
        streak = rounds.FailureStreak()
        secrets: tuple[str, ...] = ()
        # Every trigger of this connection in the triggerer shares one client, and the polls that
        # fall due together share one request.
        async with shared_poller(self.revox_conn_id) as poller:
            clock = poller.clock
            limit = self._start_limit(limit, clock)
            while True:
                call: Call | None = None
                budget = self._budget(limit, clock.now(), clock)
                try:
                    # Cut at the deadline (then call stays None: the check below ends the wait).
                    _, call = await within(budget, poller.get_call(self.call_id))
                except RevoxError as exc:
                    secrets = secrets or poller.hook.secrets_to_mask()
                    if not is_transient(exc):  # a rejected key or an unknown call: final
                        message = f"call {self.call_id}: {exc}"
                        yield self._event(EVENT_ERROR, last_summary, message, secrets)
                        return
                    if streak.failed():
                        self.log.warning(
                            "Call %s: %s; waiting it out, longer each time",
                            self.call_id,
                            redact_message(str(exc), secrets),
                        )
                now = clock.now()
                wake = now + timedelta(seconds=rounds.error_backoff(self.poke_interval, streak.count))
                changed = False
                if call is not None:
                    secrets = secrets or poller.hook.secrets_to_mask()
                    if self._base_url is None and self.end_task:
                        self._base_url = (await poller.hook.aconnection_settings()).base_url
                    if streak.recovered():
                        self.log.info("Call %s: Revox answers again", self.call_id)
                    last_summary = call_summary(call, secrets)
                    verdict = statuses.verdict(call.status, self.fail_on_statuses)
                    if verdict != statuses.WAITING:
                        kind = EVENT_SUCCESS if verdict == statuses.SUCCESS else EVENT_FAILED
                        yield self._event(kind, last_summary, describe_end(call, secrets), secrets)
                        return
                    rounds.warn_unknown_status(self.log, self.call_id, call.status, warned)
                    wake, own_limit = rounds.check_and_limit(call, now, self.poke_interval)
                    if not self.deadline_fixed:
                        limit = own_limit or limit
                    changed, last_status = call.status != last_status, call.status
                    call = None
                passed = self._passed(limit, now)
                if passed is not None:
                    message = describe_call_timeout(self.call_id, passed, last_status)
                    yield self._event(EVENT_TIMEOUT, last_summary, message, secrets)
                    return
                seconds = self._sleep_for(clock, now, wake, limit)
                if changed:
                    self.log.info(
                        "Call %s is %r; next check at %s (in %.0f s)",
                        self.call_id,
                        last_status,
                        wake.isoformat(timespec="seconds"),
                        seconds,
                    )
                await self.pause(seconds)

    def _event(
        self, kind: str, summary: dict[str, Any] | None, message: str, secrets: tuple[str, ...]
    ) -> TriggerEvent:
        payload = event_payload(
            kind, message, secrets, call_id=self.call_id, summary=summary or {"call_id": self.call_id}
        )
        resume = kind == EVENT_TIMEOUT and self.resume_on_timeout
        if ends_task(self, self.end_task) and not resume:
            # The "Revox call" link too: a task started here never ran the sensor's execute, and
            # no worker's task runner resolves the link as the task ends.
            url = call_dashboard_url(self.call_id, self._base_url)
            link = {LINK_XCOM_KEY: {"call_id": self.call_id, "url": url}, RESOLVED_LINK_XCOM_KEY: url}
            ended = task_end_event(self, payload, payload["summary"], self.soft_fail, link)
            if ended is not None:
                return ended
        return TriggerEvent(payload)  # type: ignore[no-untyped-call]


class RevoxCallsTrigger(WaitTrigger):
    """Wait, fully async, until every order of a batch is settled or the wait is hopeless.

    Orders are polled on their own schedules through one heap of due times, at most
    ``max_concurrency`` requests at a time, in searches of up to a hundred orders; per order only its
    status, due time and deadline are kept. Its whole state is its kwargs plus the API: after a
    triggerer restart it polls every order not in ``settled`` once, then carries on. It sends exactly
    one event, whose ``result`` is the fleet's compact result (counts by status, completed ratio, and
    each order's status as one character): ``success`` when every order is settled and the ratio is
    met, ``failed`` as soon as it can no longer be met, ``timeout`` past the deadline, ``error`` when
    an order cannot be fetched at all (unknown id, rejected key).

    Args:
        call_ids: the orders, distinct, in the order results list them.
        revox_conn_id: the ``revox`` connection.
        poke_interval: seconds between polls while an order can change at any moment, and
            before retrying an order whose fetch failed (growing while failures go on).
        fail_on_statuses: statuses that make an order failed.
        min_completed_ratio: share of ``completed`` orders needed to succeed.
        max_concurrency: most requests in flight at once.
        settled: orders already settled when the wait was handed over, as ``{status: [ids]}``.
        deadline_at: ISO 8601 time after which the wait gives up.
        deadline_fixed: True when ``deadline_at`` comes from an explicit ``timeout`` (real
            time); otherwise the deadline is the latest one among pending orders (server
            time) and ``deadline_at`` only applies while none of them has answered.
        stop_at: ISO 8601 real time at which the wait ends whatever the orders do (the task's
            ``execution_timeout``).
        end_task: end the task from the triggerer (the fleet's full result as the XCom) instead
            of resuming it on a worker, where Airflow can (3.3+); see ``start_from_trigger``.
        soft_fail: with ``end_task``, skip the task instead of failing it when the wait fails.
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
        stop_at: str | None = None,
        end_task: bool = False,
        soft_fail: bool = False,
    ) -> None:
        super().__init__(revox_conn_id, poke_interval, fail_on_statuses, deadline_at, deadline_fixed, stop_at)
        self._ending(end_task, soft_fail)
        self.call_ids = call_ids if isinstance(call_ids, str) else list(call_ids)
        self.min_completed_ratio = validate_ratio(min_completed_ratio)
        self.max_concurrency = validate_concurrency(max_concurrency)
        self.settled = {status: list(ids) for status, ids in (settled or {}).items()}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and JSON-only kwargs: the trigger's whole state."""
        return self._serialized(
            "airflow_provider_revox.triggers.revox.RevoxCallsTrigger",
            call_ids=self.call_ids if isinstance(self.call_ids, str) else list(self.call_ids),
            min_completed_ratio=self.min_completed_ratio,
            max_concurrency=self.max_concurrency,
            settled={status: list(ids) for status, ids in self.settled.items()},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll due orders until the batch is decided; yield one event."""
        async for event in delivered(self, self._events()):
            yield event

    async def _events(self) -> AsyncIterator[TriggerEvent]:
        try:
            # Started in the triggerer, call_ids were rendered here: read the ids out of them.
            self.call_ids = batch_call_ids(self.call_ids)
        except ValueError as error:
            yield TriggerEvent(event_payload(EVENT_ERROR, str(error), ()))  # type: ignore[no-untyped-call]
            return
        fleet = Fleet(
            self.call_ids,
            fail_on=self.fail_on_statuses,
            min_completed_ratio=self.min_completed_ratio,
            settled=self.settled,
        )
        fallback = parse_time(self.deadline_at)
        state = rounds.BatchRound(fleet, poke_interval=self.poke_interval, log=self.log)
        last_counts: dict[str, int] | None = None
        async with shared_poller(self.revox_conn_id) as poller:
            clock = poller.clock
            fallback = self._start_limit(fallback, clock)
            while True:
                limit = rounds.fleet_limit(fleet, fallback, fixed=self.deadline_fixed)
                in_time, found = await within(
                    self._budget(limit, clock.now(), clock),
                    rounds.poll_due(poller, state, max_concurrency=self.max_concurrency),
                )
                # Out of time, the deadline passed mid-round: the check below ends the wait.
                errors = found if in_time and found is not None else []
                state.secrets = state.secrets or poller.hook.secrets_to_mask()
                if errors:
                    yield self._event(EVENT_ERROR, fleet, describe_fetch_errors(errors, state.secrets), state)
                    return
                verdict = fleet.verdict()
                if verdict == statuses.SUCCESS:
                    yield self._event(EVENT_SUCCESS, fleet, describe_success(fleet), state)
                    return
                if verdict == statuses.FAILED:
                    yield self._event(EVENT_FAILED, fleet, fleet.describe_unreachable(), state)
                    return
                now = clock.now()
                limit = rounds.fleet_limit(fleet, fallback, fixed=self.deadline_fixed)
                passed = self._passed(limit, now)
                if passed is not None:
                    yield self._event(EVENT_TIMEOUT, fleet, describe_timeout(fleet, passed), state)
                    return
                next_due = fleet.next_due()
                wake = now if next_due is None else datetime.fromtimestamp(next_due, timezone.utc)
                counts = fleet.counts()
                if counts != last_counts:
                    last_counts = counts
                    self.log.info(
                        "%d of %d call orders settled (%s); next check at %s",
                        fleet.total - fleet.pending,
                        fleet.total,
                        counts,
                        wake.isoformat(timespec="seconds"),
                    )
                await self.pause(self._sleep_for(clock, now, wake, limit))

    def _event(self, kind: str, fleet: Fleet, message: str, state: rounds.BatchRound) -> TriggerEvent:
        # The statuses as one character per order, not id lists: the event is stored with the
        # task instance, and the sensor knows the ids.
        if ends_task(self, self.end_task):
            # The sensor's XCom: the full result, which the compact one stands in for on a worker.
            payload = event_payload(kind, message, state.secrets, result=fleet.result())
            ended = task_end_event(self, payload, payload["result"], self.soft_fail)
            if ended is not None:
                return ended
        payload = event_payload(kind, message, state.secrets, result=fleet.compact_result())
        return TriggerEvent(payload)  # type: ignore[no-untyped-call]
