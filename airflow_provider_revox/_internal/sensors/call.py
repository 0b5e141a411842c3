"""The wait for one Revox call order: :class:`CallWait`, and :class:`RevoxCallSensor`, which runs it.

:class:`~airflow_provider_revox._internal.operators.placement.RevoxPlaceCallOperator` runs the same
:class:`CallWait` after placing its order. :class:`RevoxCallsSensor` lives in
:mod:`airflow_provider_revox._internal.sensors.batch`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout

from airflow_provider_revox._internal.client.requests import validate_call_id
from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.core.redact import redact, redact_message
from airflow_provider_revox._internal.sensors.base import RevoxWaitSensor
from airflow_provider_revox._internal.sensors.links import RevoxCallLink
from airflow_provider_revox._internal.waiting import rounds
from airflow_provider_revox._internal.waiting.ids import holds_template, one_call_id
from airflow_provider_revox._internal.waiting.outcome import (
    call_summary,
    describe_call_timeout,
    describe_end,
    fail_or_skip,
    read_event,
)
from airflow_provider_revox.exceptions import RevoxError


class CallWait:
    """The wait for one call order, as :class:`RevoxCallSensor` and ``RevoxPlaceCallOperator`` run it.

    It keeps what the wait learns (the order's last read, the unknown statuses already warned
    about); the task running it brings the connection, the limits, the mode (poke, reschedule or
    deferrable) and ``fail_on_statuses``, through :class:`RevoxWaitSensor`.

    Args:
        task: the task that waits.
        call_id: the order to wait for.
    """

    def __init__(self, task: RevoxWaitSensor, call_id: str) -> None:
        """Nothing is read until :meth:`execute` or :meth:`poke`."""
        self.task = task
        self.call_id = call_id
        self.last_call: Call | None = None
        self.warned: set[str] = set()

    def execute(self, context: Context, **trigger_kwargs: Any) -> Any:
        """The task's ``execute``: poke or reschedule through the sensor base, or check once and defer.

        ``trigger_kwargs`` go to :class:`RevoxCallTrigger` when the wait is deferred.
        """
        task = self.task
        validate_call_id(self.call_id)
        task._begin(context)
        RevoxCallLink.persist(context, call_id=self.call_id, base_url=task.hook.base_url)
        try:
            if not task.deferrable:
                # Airflow's poke loop, which calls the task's poke (and so :meth:`poke`) or reschedules.
                return BaseSensorOperator.execute(task, context)
            call = self._try_fetch()
            if call is not None:
                done = self._check(call)
                if done is not None:
                    return done
            # The trigger module is needed only when the wait is handed to the triggerer.
            from airflow_provider_revox._internal.triggers.call import RevoxCallTrigger

            own = {**task._ends_in_triggerer(), **trigger_kwargs}
            task._defer_to(RevoxCallTrigger, self.limit(call), call_id=self.call_id, **own)
        finally:
            task.hook.close()

    def poke(self) -> bool | PokeReturnValue:
        """Fetch the order once and decide: done, failed, or keep waiting."""
        fetched = self._try_fetch()
        if fetched is not None:
            done = self._check(fetched)
            if done is not None:
                return PokeReturnValue(is_done=True, xcom_value=done)
        call = fetched or self.last_call
        if not self.task.explicit_timeout:
            limit = self.limit(call)
            if self.task.hook.server_clock.now() >= limit:
                last_status = call.status if call is not None else None
                raise AirflowSensorTimeout(
                    describe_call_timeout(self.call_id, limit, last_status)
                    + ", the latest its retry policy allows"
                )
        return False

    def complete(self, event: dict[str, Any] | None) -> dict[str, Any]:
        """The task's ``execute_complete``: the trigger's event, fail-closed."""
        task = self.task
        summary = read_event(
            event,
            trigger="RevoxCallTrigger",
            what=f"call {self.call_id}",
            payload_key="summary",
            payload_ok=lambda summary: isinstance(summary, dict) and summary.get("call_id") == self.call_id,
            soft_fail=task.soft_fail,
        )
        secrets = task._secrets()
        message = redact_message(str((event or {}).get("message") or ""), secrets)
        task.log.info("Call %s ended: %s", self.call_id, message)
        return cast(dict[str, Any], redact(summary, secrets))

    def next_poke_interval(self, run_duration: Callable[[], float]) -> float:
        """Real seconds until the next poke: the call tells when it can next change."""
        task, call = self.task, self.last_call
        now = task.hook.server_clock.now()
        note = rounds.clock_note(task.hook.server_clock.speed)
        if call is None:
            limit = task._unread_limit()
            interval = task._interval(now, now, limit, run_duration())
            task.log.info(
                "Call %s not read yet; next check in %.0f s; gives up at %s%s",
                self.call_id,
                interval,
                rounds.utc_text(limit),
                note,
            )
            return interval
        wake, _, why = rounds.explained_check(call, now, task.poke_interval)
        limit = self.limit(call)
        interval = task._interval(now, wake, limit, run_duration())
        task.log.info(
            "Call %s is %r; next check in %.0f s: %s; gives up at %s%s",
            self.call_id,
            call.status,
            interval,
            why,
            rounds.utc_text(limit),
            note,
        )
        return interval

    def limit(self, call: Call | None) -> datetime:
        """The derived deadline (server time); from the task's first start while never read."""
        task = self.task
        limit = rounds.call_limit(call, task.hook.server_clock.now()) if call is not None else None
        return limit if limit is not None else task._unread_limit()

    def _try_fetch(self) -> Call | None:
        """The order, or None after a transient failure (the hook already retried)."""
        task = self.task
        try:
            call = task.hook.get_call(self.call_id)
        except RevoxError as error:
            task._transient(error, f"Call {self.call_id}")
            return None
        task._answered(f"Call {self.call_id}")
        self.last_call = call
        rounds.warn_unknown_status(task.log, self.call_id, call.status, self.warned)
        if call.status == statuses.PAUSED:
            task.log.info("Call %s is paused; waiting for it to be resumed", self.call_id)
        return call

    def _check(self, call: Call) -> dict[str, Any] | None:
        """The summary when the wait is over, None to keep waiting; raises when the order failed."""
        task = self.task
        verdict = statuses.verdict(call.status, task.fail_on_statuses)
        if verdict == statuses.WAITING:
            return None
        secrets = task._secrets()
        if verdict == statuses.FAILED:
            fail_or_skip(task.soft_fail, describe_end(call, secrets))
        task.log.info("Call %s ended: %s", self.call_id, describe_end(call, secrets))
        return call_summary(call, secrets)


class RevoxCallSensor(RevoxWaitSensor):
    """Wait until a Revox call order reaches a terminal status, within its retry windows.

    The poll schedule and the deadline come from the call: while the order waits for a calling
    window or a retry delay the sensor sleeps until the next dial can happen; while an attempt
    is live or post-processing runs it polls every ``poke_interval`` seconds. With
    ``timeout=None`` it gives up at the latest time the order can plausibly end (plus a
    margin), recomputed as the order progresses; an order it cannot read at all is given up an
    hour after the task first started. While the API fails it backs off, doubling the interval
    up to ten minutes, with one warning when the failures start and one line when they end.

    Succeeds only on ``completed`` (never on ``post_processing``, whose results are not ready)
    and returns a small summary (ids, status, outcome, attempt count, how the last attempt
    ended), redacted: never a transcript or a secret. A status in ``fail_on_statuses`` fails the
    task at once with :class:`~airflow.sdk.exceptions.AirflowFailException`, so task retries do
    not re-wait a dead order; with ``soft_fail=True`` it is skipped instead, in every mode.
    ``execution_timeout`` is honoured while deferred too.

    Args:
        call_id: the call order to wait for (templated): an id, or what an upstream task hands
            over (a placement's or sensor's summary with ``call_id``, a list of one, an XComArg).
        revox_conn_id: the ``revox`` connection (templated).
        deferrable: hand the wait to the triggerer instead of holding a worker slot.
        poke_interval: seconds between polls while the order can change at any moment.
        timeout: an explicit limit (seconds or timedelta) that overrides the derived deadline.
        fail_on_statuses: statuses that fail the task; other terminal statuses end the wait
            successfully with that status in the summary.
        **kwargs: the shared settings above and :class:`~airflow.sdk.BaseSensorOperator`'s.
    """

    template_fields: Sequence[str] = ("call_id", "revox_conn_id")
    ui_color = "#ffd6e7"
    operator_extra_links = (RevoxCallLink(),)

    def __init__(self, *, call_id: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not holds_template(call_id):
            one_call_id(call_id)  # a literal id (or summary): report a bad one when the DAG is parsed
        self.call_id = call_id
        self._waiting: CallWait | None = None
        if isinstance(call_id, str):
            # An id or a template the triggerer renders; an XComArg or a mapping starts on a worker.
            trigger = "airflow_provider_revox.triggers.revox.RevoxCallTrigger"
            self._start_in_triggerer(trigger, call_id=call_id)

    def _wait(self) -> CallWait:
        """The wait for ``call_id`` (rendered by now), kept across the pokes of one run."""
        if self._waiting is None or self._waiting.call_id != self.call_id:
            self._waiting = CallWait(self, self.call_id)
        return self._waiting

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Render, then read the one call id out of what was handed over (an id, a summary, ...)."""
        super().render_template_fields(context, jinja_env)
        if "call_id" in self.template_fields:
            self.call_id = one_call_id(self.call_id)

    def execute(self, context: Context) -> Any:
        """Poke or reschedule through the base class, or check once and defer."""
        self.call_id = one_call_id(self.call_id)
        return self._wait().execute(context)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Fetch the order once and decide: done, failed, or keep waiting."""
        return self._wait().poke()

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Take the trigger's event, fail-closed: a missing or unknown event fails the task."""
        return self._wait().complete(event)

    def _get_next_poke_interval(
        self, started_at: datetime | float, run_duration: Callable[[], float], poke_count: int
    ) -> float:
        # The base class would wait a fixed poke_interval; the call tells us when it can next change.
        return self._wait().next_poke_interval(run_duration)
