"""What every Revox task that waits shares: settings checks, the wait's start and limits, the sleep.

The sensors and ``RevoxPlaceCallOperator`` derive from :class:`RevoxWaitSensor`: Airflow's
reschedule mode exists only for tasks built on its sensor base.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, conf
from airflow.triggers.base import BaseTrigger

from airflow_provider_revox._internal.core import compat, statuses
from airflow_provider_revox._internal.core.redact import redact_message
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.waiting import rounds
from airflow_provider_revox.exceptions import RevoxError

# Stands in for "no timeout" in the base class: the real limit comes from the orders themselves.
_NO_FIXED_TIMEOUT = timedelta(days=3650)


def utcnow() -> datetime:
    """The real current time, in UTC."""
    return datetime.now(timezone.utc)


def validate_poke_interval(value: Any) -> float:
    """Check ``poke_interval``: a finite number of seconds above zero.

    Raises:
        ValueError: naming the value.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"poke_interval must be a positive number of seconds, not {value!r}")
    return float(value)


class RevoxWaitSensor(BaseSensorOperator):
    """Base of the Revox tasks that wait: the parts of a wait that do not depend on how many orders.

    Args:
        revox_conn_id: the ``revox`` connection (templated).
        deferrable: hand the wait to the triggerer instead of holding a worker slot.
        poke_interval: seconds between polls while an order can change at any moment.
        timeout: an explicit limit (seconds or timedelta) that overrides the derived deadline.
        fail_on_statuses: statuses that fail the wait.
        start_from_trigger: with ``deferrable=True``, start and end the wait in the triggerer,
            with no worker run, where Airflow can (3.3+) and the input allows it (default);
            ``False`` starts it on a worker and resumes it on one.
        **kwargs: what :class:`~airflow.sdk.BaseSensorOperator` takes (``mode``, ``soft_fail``, ...).
    """

    #: Shortest sleep between polls, in seconds; None means the provider's minimum (1 s). Tests
    #: set a smaller one.
    min_sleep: float | None = None

    def __init__(
        self,
        *,
        revox_conn_id: str = RevoxHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 30,
        timeout: timedelta | float | None = None,
        fail_on_statuses: Sequence[str] = statuses.DEFAULT_FAIL_ON,
        start_from_trigger: bool = True,
        **kwargs: Any,
    ) -> None:
        self.explicit_timeout = timeout is not None
        super().__init__(
            poke_interval=validate_poke_interval(poke_interval),
            timeout=timeout if timeout is not None else _NO_FIXED_TIMEOUT,
            **kwargs,
        )
        self.revox_conn_id = revox_conn_id
        self.deferrable = deferrable
        self.fail_on_statuses = statuses.validate_fail_on(fail_on_statuses)
        self._started_real: datetime | None = None
        self._started_server: datetime | None = None
        self._streak = rounds.FailureStreak()
        self.wants_start_from_trigger = start_from_trigger
        self.start_from_trigger = False

    def _start_in_triggerer(self, classpath: str, **own: Any) -> None:
        """Have the scheduler start this wait in the triggerer, and the trigger end the task.

        Only where Airflow renders the task's templates there and lets a trigger end its task
        (:func:`compat.has_start_from_trigger`); elsewhere the wait starts on a worker as before.
        The trigger computes its derived deadline when it starts: the DAG file holds no start
        time. A wait with an explicit ``timeout`` starts on a worker, which turns it into the
        trigger's real-time deadline (the triggerer would only know Airflow's deferral timeout).
        """
        wanted = self.wants_start_from_trigger and self.deferrable and not self.explicit_timeout
        if not (wanted and compat.has_start_from_trigger()):
            return
        from airflow.triggers.base import StartTriggerArgs

        self.start_trigger_args = StartTriggerArgs(
            trigger_cls=classpath,
            next_method="execute_complete",
            trigger_kwargs={
                **own,
                "revox_conn_id": self.revox_conn_id,
                "poke_interval": self.poke_interval,
                "fail_on_statuses": list(self.fail_on_statuses),
                "deadline_at": None,
                "deadline_fixed": False,
                "stop_at": None,
                "end_task": True,
                "soft_fail": bool(self.soft_fail),
            },
        )
        self.start_from_trigger = True

    def _ends_in_triggerer(self) -> dict[str, Any]:
        """The trigger kwargs that let a deferred wait end its task there (Airflow 3.3+, unless
        ``start_from_trigger=False``), or none."""
        if not (self.wants_start_from_trigger and compat.has_start_from_trigger()):
            return {}
        return {"end_task": True, "soft_fail": bool(self.soft_fail)}

    @cached_property
    def hook(self) -> RevoxHook:
        """One hook for the task: one connection lookup, one HTTP session, one server clock."""
        return RevoxHook(revox_conn_id=self.revox_conn_id)

    def _begin(self, context: Context) -> None:
        """Note when the wait first started: the first try's start in reschedule mode."""
        first: datetime | None = None
        if self.mode == "reschedule" and not getattr(self, "deferrable", False):
            first = context["ti"].get_first_reschedule_date(context)
        self._started_real = first or utcnow()

    def _secrets(self) -> tuple[str, ...]:
        """The connection's credentials to mask; none when the connection is gone (nothing to mask)."""
        return self.hook.secrets_to_mask()

    def _unread_limit(self) -> datetime:
        """When a wait whose orders never answered gives up, on the server's clock.

        Measured from the task's first start: a reschedule poke (a fresh operator) converts that
        real time to the server's clock; within one run the first conversion is kept.
        """
        if self._started_server is None:
            clock = self.hook.server_clock
            if self._started_real is None:
                self._started_real = utcnow()
            self._started_server = rounds.server_time_of(clock, clock.now(), self._started_real, utcnow())
        return rounds.unread_limit(self._started_server)

    def _stop_at(self) -> datetime | None:
        """The real time the wait must end: ``execution_timeout`` from the task's start."""
        if self.execution_timeout is None:
            return None
        return (self._started_real or utcnow()) + self.execution_timeout

    def _defer_timeout(self) -> timedelta | None:
        """The deferral's own timeout: the explicit one, or what ``execution_timeout`` leaves."""
        limits = [timedelta(seconds=self.timeout)] if self.explicit_timeout else []
        stop = self._stop_at()
        if stop is not None:
            limits.append(max(stop - utcnow(), timedelta(0)))
        return min(limits) if limits else None

    def _defer_to(self, trigger: type[BaseTrigger], derived_deadline: datetime, **own: Any) -> None:
        """Hand the wait to ``trigger``: its own kwargs plus the limits every wait carries.

        Where Airflow lets a trigger end its task, ``own`` usually asks it to
        (:meth:`_ends_in_triggerer`): the task is not resumed on a worker.
        """
        if self.explicit_timeout:
            deadline_at = utcnow() + timedelta(seconds=self.timeout)
        else:
            deadline_at = derived_deadline
        stop = self._stop_at()
        self.defer(
            trigger=trigger(
                **own,
                revox_conn_id=self.revox_conn_id,
                poke_interval=self.poke_interval,
                fail_on_statuses=list(self.fail_on_statuses),
                deadline_at=deadline_at.isoformat(),
                deadline_fixed=self.explicit_timeout,
                stop_at=stop.isoformat() if stop else None,
            ),
            method_name="execute_complete",
            timeout=self._defer_timeout(),
        )

    def _transient(self, error: RevoxError, what: str) -> None:
        """Wait out a transient error: re-raise a final one; warn once per failing streak."""
        if not error.transient:
            raise error
        if self._streak.failed():
            text = redact_message(str(error), self._secrets())
            self.log.warning("%s: %s; will look again, waiting longer each time", what, text)

    def _answered(self, what: str) -> None:
        if self._streak.recovered():
            self.log.info("%s: Revox answers again", what)

    def _interval(self, now: datetime, wake: datetime, limit: datetime | None, run_seconds: float) -> float:
        """Real seconds until the next poke, within the derived or the explicit limit."""
        if self._streak.count:
            wake = now + timedelta(seconds=rounds.error_backoff(self.poke_interval, self._streak.count))
        return rounds.sleep_seconds(
            self.hook.server_clock,
            now,
            wake,
            limit=None if self.explicit_timeout else limit,
            real_left=self.timeout - run_seconds if self.explicit_timeout else None,
            min_sleep=self.min_sleep,
        )
