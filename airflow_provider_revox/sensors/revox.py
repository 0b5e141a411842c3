"""Sensors that wait for Revox call orders to end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any, NoReturn, TypeVar, cast

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue, conf
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from airflow_provider_revox import statuses
from airflow_provider_revox.client.poller import CallPoller
from airflow_provider_revox.client.servertime import ServerClock
from airflow_provider_revox.exceptions import TRANSIENT_ERRORS
from airflow_provider_revox.hooks.revox import RevoxHook, validate_call_id
from airflow_provider_revox.links import RevoxCallLink
from airflow_provider_revox.models import Call
from airflow_provider_revox.triggers.revox import (
    EVENT_FAILED,
    EVENT_KINDS,
    EVENT_SUCCESS,
    EVENT_TIMEOUT,
    MIN_SLEEP_SECONDS,
    RevoxCallsTrigger,
    RevoxCallTrigger,
    describe_fetch_errors,
    describe_success,
    describe_timeout,
    fleet_limit,
    poll_due,
    warn_unknown_status,
)
from airflow_provider_revox.waiting import schedule
from airflow_provider_revox.waiting.batch import Fleet, validate_concurrency, validate_ratio
from airflow_provider_revox.waiting.events import call_summary, describe_end
from airflow_provider_revox.waiting.ids import batch_call_ids, is_templated

_T = TypeVar("_T")

# Stands in for "no timeout" in the base class: the real limit comes from the call itself.
_NO_FIXED_TIMEOUT = timedelta(days=3650)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def fail_or_skip(soft_fail: bool, message: str) -> NoReturn:
    """Fail without retries, or skip when the sensor has ``soft_fail``: the wait is over for good."""
    if soft_fail:
        raise AirflowSkipException(message)
    raise AirflowFailException(message)


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
        raise AirflowException(f"{trigger} sent no valid event for {what}: {_short(event)}")
    kind = event["status"]
    message = str(event.get("message") or "")
    if kind == EVENT_SUCCESS:
        payload = event.get(payload_key)
        if not payload_ok(payload):
            raise AirflowException(f"{trigger} sent a malformed success event for {what}: {_short(event)}")
        return payload
    if kind == EVENT_FAILED:
        fail_or_skip(soft_fail, message or f"{what} failed")
    if kind == EVENT_TIMEOUT:
        raise AirflowSensorTimeout(message or f"{what} did not finish in time")
    raise AirflowException(message or f"waiting for {what} failed")


def _short(value: Any, limit: int = 500) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def wait_seconds(
    clock: ServerClock, now: datetime, wake: datetime, limit: datetime | None, remaining: float | None
) -> float:
    """Real seconds until the next poke: until ``wake`` on the server's clock, within the limits.

    Args:
        clock: the hook's view of the server's clock.
        now: the server's current time.
        wake: when the next poll is due (server time).
        limit: the derived deadline (server time), or None.
        remaining: real seconds left of an explicit timeout, or None.
    """
    if limit is not None:
        wake = min(wake, limit)
    interval = max(clock.real_seconds((wake - now).total_seconds()), MIN_SLEEP_SECONDS)
    if remaining is not None:
        interval = min(interval, max(remaining, MIN_SLEEP_SECONDS))
    return interval


class RevoxCallSensor(BaseSensorOperator):
    """Wait until a Revox call order reaches a terminal status, within its retry windows.

    The poll schedule and the deadline come from the call: while the order waits for a calling
    window or a retry delay the sensor sleeps until the next dial can happen; while an attempt
    is live or post-processing runs it polls every ``poke_interval`` seconds. With
    ``timeout=None`` it gives up at the latest time the order can plausibly end (plus a
    margin), recomputed as the order progresses.

    Succeeds only on ``completed`` (never on ``post_processing``, whose results are not ready)
    and returns a small summary (ids, status, outcome, attempt count, how the last attempt
    ended): never a transcript or a secret. A status in ``fail_on_statuses`` fails the task at
    once with :class:`~airflow.sdk.exceptions.AirflowFailException`, so task retries do not
    re-wait a dead order; with ``soft_fail=True`` it is skipped instead, in every mode.

    Args:
        call_id: the call order to wait for (templated).
        revox_conn_id: the ``revox`` connection (templated).
        deferrable: hand the wait to the triggerer instead of holding a worker slot.
        poke_interval: seconds between polls while the order can change at any moment.
        timeout: an explicit limit (seconds or timedelta) that overrides the derived deadline.
        fail_on_statuses: statuses that fail the task; other terminal statuses end the wait
            successfully with that status in the summary.
    """

    template_fields: Sequence[str] = ("call_id", "revox_conn_id")
    ui_color = "#ffd6e7"
    operator_extra_links = (RevoxCallLink(),)

    def __init__(
        self,
        *,
        call_id: str,
        revox_conn_id: str = RevoxHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 30,
        timeout: timedelta | float | None = None,
        fail_on_statuses: Sequence[str] = statuses.DEFAULT_FAIL_ON,
        **kwargs: Any,
    ) -> None:
        self.explicit_timeout = timeout is not None
        super().__init__(
            poke_interval=poke_interval,
            timeout=timeout if timeout is not None else _NO_FIXED_TIMEOUT,
            **kwargs,
        )
        self.call_id = call_id
        self.revox_conn_id = revox_conn_id
        self.deferrable = deferrable
        self.fail_on_statuses = statuses.validate_fail_on(fail_on_statuses)
        self._last_call: Call | None = None
        self._warned: set[str] = set()

    @cached_property
    def hook(self) -> RevoxHook:
        """One hook, so every poke of this task reuses one HTTP session."""
        return RevoxHook(revox_conn_id=self.revox_conn_id)

    def execute(self, context: Context) -> Any:
        """Poke or reschedule through the base class, or check once and defer."""
        validate_call_id(self.call_id)
        RevoxCallLink.persist(context, call_id=self.call_id, base_url=self.hook.base_url)
        try:
            if not self.deferrable:
                return super().execute(context)
            call = self._fetch()
            done = self._check(call)
            if done is not None:
                return done
            if self.explicit_timeout:
                deadline_at = _utcnow() + timedelta(seconds=self.timeout)
            else:
                deadline_at = self._limit(call)
            self.defer(
                trigger=RevoxCallTrigger(
                    call_id=self.call_id,
                    revox_conn_id=self.revox_conn_id,
                    poke_interval=self.poke_interval,
                    fail_on_statuses=list(self.fail_on_statuses),
                    deadline_at=deadline_at.isoformat(),
                    deadline_fixed=self.explicit_timeout,
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout) if self.explicit_timeout else None,
            )
        finally:
            self.hook.close()

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Fetch the order once and decide: done, failed, or keep waiting."""
        try:
            fetched: Call | None = self._fetch()
        except TRANSIENT_ERRORS as exc:
            # The hook already retried; like the trigger, wait it out until the deadline.
            self.log.warning("Call %s: %s; will look again", self.call_id, exc)
            fetched = None
        if fetched is not None:
            done = self._check(fetched)
            if done is not None:
                return PokeReturnValue(is_done=True, xcom_value=done)
        call = fetched or self._last_call
        if call is None:
            return False
        if not self.explicit_timeout:
            limit = self._limit(call)
            if self.hook.server_clock.now() >= limit:
                raise AirflowSensorTimeout(
                    f"call {self.call_id} did not finish by {limit.isoformat()} "
                    f"(last status {call.status!r}), the latest its retry policy allows"
                )
        return False

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Take the trigger's event, fail-closed: a missing or unknown event fails the task."""
        summary = read_event(
            event,
            trigger="RevoxCallTrigger",
            what=f"call {self.call_id}",
            payload_key="summary",
            payload_ok=lambda summary: isinstance(summary, dict) and summary.get("call_id") == self.call_id,
            soft_fail=self.soft_fail,
        )
        self.log.info("Call %s ended: %s", self.call_id, event.get("message") if event else "")
        return cast(dict[str, Any], summary)

    def _get_next_poke_interval(
        self, started_at: datetime | float, run_duration: Callable[[], float], poke_count: int
    ) -> float:
        # The base class would wait a fixed poke_interval; the call tells us when it can next change.
        call = self._last_call
        if call is None:
            return super()._get_next_poke_interval(started_at, run_duration, poke_count)
        clock = self.hook.server_clock
        now = clock.now()
        wake = schedule.next_poll_at(call, now, self.poke_interval)
        limit = None if self.explicit_timeout else self._limit(call)
        remaining = self.timeout - run_duration() if self.explicit_timeout else None
        interval = wait_seconds(clock, now, wake, limit, remaining)
        self.log.info("Call %s is %r; next check in %.0f s", self.call_id, call.status, interval)
        return interval

    def _limit(self, call: Call) -> datetime:
        """The derived deadline, on the server's clock."""
        return schedule.deadline(call, self.hook.server_clock.now()) + schedule.DEADLINE_MARGIN

    def _fetch(self) -> Call:
        call = self.hook.get_call(self.call_id)
        self._last_call = call
        warn_unknown_status(self.log, self.call_id, call.status, self._warned)
        if call.status == statuses.PAUSED:
            self.log.info("Call %s is paused; waiting for it to be resumed", self.call_id)
        return call

    def _check(self, call: Call) -> dict[str, Any] | None:
        """The summary when the wait is over, None to keep waiting; raises when the order failed."""
        verdict = statuses.verdict(call.status, self.fail_on_statuses)
        if verdict == statuses.FAILED:
            self._fail(describe_end(call))
        if verdict == statuses.SUCCESS:
            self.log.info("Call %s ended: %s", self.call_id, describe_end(call))
            return call_summary(call)
        return None

    def _fail(self, message: str) -> None:
        fail_or_skip(self.soft_fail, message)


def _run_async(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from synchronous code, even under a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    # asyncio.run refuses to nest: give the coroutine its own loop on a short-lived thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class RevoxCallsSensor(BaseSensorOperator):
    """Wait until every call order of a batch is settled, with enough of them completed.

    Each order is polled on its own schedule (:func:`~airflow_provider_revox.waiting.schedule.next_poll_at`)
    from one heap of due times, so an order waiting for tomorrow's calling window costs nothing
    while others ring now; due orders are fetched a hundred per ``POST /call/search``, at most
    ``max_concurrency`` requests at a time (see :mod:`airflow_provider_revox.client.poller`).
    An order in ``fail_on_statuses`` is *failed*: it counts against the completed ratio but does
    not end the wait, unless ``min_completed_ratio`` can no longer be met: then the task fails
    at once, without retries, naming the failed ids (``soft_fail=True`` skips it instead). The
    wait succeeds when every order is settled and ``completed / total``
    meets ``min_completed_ratio``, and returns a small result that
    :class:`~airflow_provider_revox.operators.revox.RevoxCallsToStorageOperator` takes as is::

        {"total": 3, "counts": {"completed": 2, "errored": 1}, "completed": ["c1", "c2"],
         "failed": ["c3"], "completed_ratio": 0.667}

    With ``timeout=None`` the wait gives up at the latest deadline
    (:func:`~airflow_provider_revox.waiting.schedule.deadline` plus
    :data:`~airflow_provider_revox.waiting.schedule.DEADLINE_MARGIN`) among the pending orders,
    recomputed as they progress. An order whose fetch fails transiently (the hook's retries
    spent) is tried again ``poke_interval`` later; an unknown id or a rejected key fails the
    task, naming the ids.

    Poke and reschedule modes run the same async poll round as the trigger, on a short event
    loop per poke (one code path for both, and no thread-safety questions about the hook);
    reschedule mode starts each poke from scratch, so it re-fetches every order: prefer
    ``deferrable=True`` for large batches.

    Args:
        call_ids: the orders (templated): a list of ids, or an XComArg resolving to a list of
            ids or of mappings with ``call_id``. Repeated ids are waited on once.
        revox_conn_id: the ``revox`` connection (templated).
        deferrable: hand the wait to the triggerer instead of holding a worker slot.
        poke_interval: seconds between polls while an order can change at any moment.
        timeout: an explicit limit (seconds or timedelta) that overrides the derived deadline.
        fail_on_statuses: statuses that make an order failed.
        min_completed_ratio: share of orders (0 to 1) that must be ``completed``.
        max_concurrency: most requests in flight at once.
    """

    template_fields: Sequence[str] = ("call_ids", "revox_conn_id")
    ui_color = "#ffd6e7"

    def __init__(
        self,
        *,
        call_ids: Any,
        revox_conn_id: str = RevoxHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 30,
        timeout: timedelta | float | None = None,
        fail_on_statuses: Sequence[str] = statuses.DEFAULT_FAIL_ON,
        min_completed_ratio: float = 1.0,
        max_concurrency: int = 16,
        **kwargs: Any,
    ) -> None:
        self.explicit_timeout = timeout is not None
        super().__init__(
            poke_interval=poke_interval,
            timeout=timeout if timeout is not None else _NO_FIXED_TIMEOUT,
            **kwargs,
        )
        if isinstance(call_ids, list | tuple) and not any(is_templated(item) for item in call_ids):
            batch_call_ids(call_ids)  # a literal list: report a bad id when the DAG is parsed
        self.call_ids = call_ids
        self.revox_conn_id = revox_conn_id
        self.deferrable = deferrable
        self.fail_on_statuses = statuses.validate_fail_on(fail_on_statuses)
        self.min_completed_ratio = validate_ratio(min_completed_ratio)
        self.max_concurrency = validate_concurrency(max_concurrency)
        self._fleet: Fleet | None = None
        self._started_at: datetime | None = None
        self._warned: set[str] = set()

    @cached_property
    def hook(self) -> RevoxHook:
        """One hook for the task: one connection lookup, one view of the server's clock."""
        return RevoxHook(revox_conn_id=self.revox_conn_id)

    def execute(self, context: Context) -> Any:
        """Poke or reschedule through the base class, or poll once and defer."""
        ids = batch_call_ids(self.call_ids)
        try:
            if not self.deferrable:
                try:
                    return super().execute(context)
                except AirflowSensorTimeout as exc:
                    if not self.explicit_timeout or self._fleet is None:
                        raise
                    raise AirflowSensorTimeout(f"{exc} {self._fleet.describe_pending()}") from exc
            fleet = self._poll(ids)
            done = self._check(fleet)
            if done is not None:
                return done
            if self.explicit_timeout:
                deadline_at: datetime | None = _utcnow() + timedelta(seconds=self.timeout)
            else:
                deadline_at = self._limit(fleet)
            self.defer(
                trigger=RevoxCallsTrigger(
                    call_ids=ids,
                    revox_conn_id=self.revox_conn_id,
                    poke_interval=self.poke_interval,
                    fail_on_statuses=list(self.fail_on_statuses),
                    min_completed_ratio=self.min_completed_ratio,
                    max_concurrency=self.max_concurrency,
                    settled=fleet.settled_by_status(),
                    deadline_at=deadline_at.isoformat() if deadline_at else None,
                    deadline_fixed=self.explicit_timeout,
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout) if self.explicit_timeout else None,
            )
        finally:
            self.hook.close()

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Fetch the due orders once and decide: done, failed, or keep waiting."""
        fleet = self._poll(batch_call_ids(self.call_ids))
        done = self._check(fleet)
        if done is not None:
            return PokeReturnValue(is_done=True, xcom_value=done)
        if not self.explicit_timeout:
            limit = self._limit(fleet)
            if self.hook.server_clock.now() >= limit:
                raise AirflowSensorTimeout(describe_timeout(fleet, limit))
        return False

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Take the trigger's event, fail-closed: a missing, unknown or inconsistent event fails the task."""
        ids = batch_call_ids(self.call_ids)
        result = read_event(
            event,
            trigger="RevoxCallsTrigger",
            what=f"{len(ids)} call orders",
            payload_key="result",
            payload_ok=lambda result: self._result_ok(result, ids),
            soft_fail=self.soft_fail,
        )
        self.log.info("%s", (event or {}).get("message"))
        return cast(dict[str, Any], result)

    def _result_ok(self, result: Any, ids: list[str]) -> bool:
        """A success result must cover exactly these orders and meet the ratio."""
        if not isinstance(result, dict) or result.get("total") != len(ids):
            return False
        completed, failed, counts = result.get("completed"), result.get("failed"), result.get("counts")
        if not (isinstance(completed, list) and isinstance(failed, list) and isinstance(counts, dict)):
            return False
        known = set(ids)
        if not known.issuperset(completed) or not known.issuperset(failed):
            return False
        if sum(n for n in counts.values() if isinstance(n, int)) != len(ids):
            return False
        return len(completed) >= Fleet(ids, min_completed_ratio=self.min_completed_ratio).needed

    def _get_next_poke_interval(
        self, started_at: datetime | float, run_duration: Callable[[], float], poke_count: int
    ) -> float:
        # The base class would wait a fixed poke_interval; the heap says when the next order is due.
        fleet = self._fleet
        due = fleet.next_due() if fleet is not None else None
        if fleet is None or due is None:
            return super()._get_next_poke_interval(started_at, run_duration, poke_count)
        clock = self.hook.server_clock
        now = clock.now()
        wake = datetime.fromtimestamp(due, timezone.utc)
        limit = None if self.explicit_timeout else self._limit(fleet)
        remaining = self.timeout - run_duration() if self.explicit_timeout else None
        interval = wait_seconds(clock, now, wake, limit, remaining)
        self.log.info(
            "%d of %d call orders settled (%s); next check in %.0f s",
            fleet.total - fleet.pending,
            fleet.total,
            fleet.counts(),
            interval,
        )
        return interval

    def _poll(self, ids: list[str]) -> Fleet:
        """One poll round over the due orders; the fleet lives as long as this task instance."""
        if self._fleet is None or self._fleet.call_ids != tuple(ids):
            self._fleet = Fleet(
                ids, fail_on=self.fail_on_statuses, min_completed_ratio=self.min_completed_ratio
            )
            self._started_at = None
        fleet = self._fleet
        hook = self.hook

        async def one_round() -> list[str]:
            poller = CallPoller(hook)
            try:
                return await poll_due(
                    poller,
                    fleet,
                    poke_interval=self.poke_interval,
                    max_concurrency=self.max_concurrency,
                    log=self.log,
                    warned=self._warned,
                )
            finally:
                # The async client belongs to this round's event loop, which ends with it.
                await poller.aclose()

        errors = _run_async(one_round)
        if self._started_at is None:
            self._started_at = hook.server_clock.now()
        if errors:
            raise AirflowException(describe_fetch_errors(errors))
        return fleet

    def _check(self, fleet: Fleet) -> dict[str, Any] | None:
        """The result when the wait is over, None to keep waiting; raises when it cannot succeed."""
        verdict = fleet.verdict()
        if verdict == statuses.FAILED:
            self._fail(fleet.describe_unreachable())
        if verdict == statuses.SUCCESS:
            self.log.info("%s", describe_success(fleet))
            return fleet.result()
        return None

    def _limit(self, fleet: Fleet) -> datetime:
        """The derived deadline (server time); an hour after the first poll while no order answers."""
        started = self._started_at or self.hook.server_clock.now()
        limit = fleet_limit(fleet, started + schedule.DEADLINE_MARGIN, fixed=False)
        return limit if limit is not None else started + schedule.DEADLINE_MARGIN

    def _fail(self, message: str) -> None:
        fail_or_skip(self.soft_fail, message)


__all__ = ["RevoxCallSensor", "RevoxCallsSensor"]
