"""Sensors that wait for Revox call orders to end."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue, conf
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from airflow_provider_revox import polling, statuses
from airflow_provider_revox.exceptions import TRANSIENT_ERRORS
from airflow_provider_revox.hooks.revox import RevoxHook, validate_call_id
from airflow_provider_revox.models import Call
from airflow_provider_revox.summary import call_summary, describe_end
from airflow_provider_revox.triggers.revox import (
    EVENT_FAILED,
    EVENT_KINDS,
    EVENT_SUCCESS,
    EVENT_TIMEOUT,
    MIN_SLEEP_SECONDS,
    RevoxCallTrigger,
)

# Stands in for "no timeout" in the base class: the real limit comes from the call itself.
_NO_FIXED_TIMEOUT = timedelta(days=3650)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


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
        self._warned_unknown = False

    @cached_property
    def hook(self) -> RevoxHook:
        """One hook, so every poke of this task reuses one HTTP session."""
        return RevoxHook(revox_conn_id=self.revox_conn_id)

    def execute(self, context: Context) -> Any:
        """Poke or reschedule through the base class, or check once and defer."""
        validate_call_id(self.call_id)
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
        if not isinstance(event, dict) or event.get("status") not in EVENT_KINDS:
            raise AirflowException(f"RevoxCallTrigger sent no valid event for call {self.call_id}: {event!r}")
        kind = event["status"]
        message = str(event.get("message") or "")
        summary = event.get("summary")
        if kind == EVENT_SUCCESS:
            if not isinstance(summary, dict) or summary.get("call_id") != self.call_id:
                raise AirflowException(f"RevoxCallTrigger sent a malformed success event: {event!r}")
            self.log.info("Call %s ended: %s", self.call_id, message)
            return summary
        if kind == EVENT_FAILED:
            self._fail(message)
        if kind == EVENT_TIMEOUT:
            raise AirflowSensorTimeout(message)
        raise AirflowException(message or f"waiting for call {self.call_id} failed")

    def _get_next_poke_interval(
        self, started_at: datetime | float, run_duration: Callable[[], float], poke_count: int
    ) -> float:
        # The base class would wait a fixed poke_interval; the call tells us when it can next change.
        call = self._last_call
        if call is None:
            return super()._get_next_poke_interval(started_at, run_duration, poke_count)
        clock = self.hook.server_clock
        now = clock.now()
        wake = polling.next_poll_at(call, now, self.poke_interval)
        if not self.explicit_timeout:
            wake = min(wake, self._limit(call))
        interval = max(clock.real_seconds((wake - now).total_seconds()), MIN_SLEEP_SECONDS)
        if self.explicit_timeout:
            interval = min(interval, max(self.timeout - run_duration(), MIN_SLEEP_SECONDS))
        self.log.info("Call %s is %r; next check in %.0f s", self.call_id, call.status, interval)
        return interval

    def _limit(self, call: Call) -> datetime:
        """The derived deadline, on the server's clock."""
        return polling.deadline(call, self.hook.server_clock.now()) + polling.DEADLINE_MARGIN

    def _fetch(self) -> Call:
        call = self.hook.get_call(self.call_id)
        self._last_call = call
        if not call.is_known_status and not self._warned_unknown:
            self._warned_unknown = True
            self.log.warning(
                "Call %s has status %r, which this provider does not know; treating it as not finished",
                self.call_id,
                call.status,
            )
        elif call.status == statuses.PAUSED:
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
        if self.soft_fail:
            raise AirflowSkipException(message)
        raise AirflowFailException(message)


__all__ = ["RevoxCallSensor"]
