"""Deferrable wait for a Revox call order, run by Airflow's triggerer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_revox import polling, statuses
from airflow_provider_revox.exceptions import TRANSIENT_ERRORS, RevoxError
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.models import Call
from airflow_provider_revox.summary import call_summary, describe_end

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


class RevoxCallTrigger(BaseTrigger):
    """Wait, fully async, until a call order reaches a terminal status or its deadline passes.

    The poll schedule comes from :func:`airflow_provider_revox.polling.next_poll_at`: the trigger
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
        """Poll the order on its own schedule with one HTTP client; yield one event."""
        limit = datetime.fromisoformat(self.deadline_at) if self.deadline_at else None
        last_call: Call | None = None
        warned_unknown = False
        async with RevoxHook(revox_conn_id=self.revox_conn_id) as hook:
            clock = hook.server_clock
            while True:
                try:
                    call: Call | None = await hook.aget_call(self.call_id)
                except TRANSIENT_ERRORS as exc:
                    self.log.warning("Call %s: %s; waiting it out", self.call_id, exc)
                    call = None
                except (RevoxError, ValueError) as exc:  # a rejected key or an unknown call: final
                    yield self._event(EVENT_ERROR, last_call, f"call {self.call_id}: {exc}")
                    return
                now = clock.now()
                if call is not None:
                    last_call = call
                    verdict = statuses.verdict(call.status, self.fail_on_statuses)
                    if verdict == statuses.SUCCESS:
                        yield self._event(EVENT_SUCCESS, call, describe_end(call))
                        return
                    if verdict == statuses.FAILED:
                        yield self._event(EVENT_FAILED, call, describe_end(call))
                        return
                    if not call.is_known_status and not warned_unknown:
                        warned_unknown = True
                        self.log.warning(
                            "Call %s has status %r, which this provider does not know; "
                            "treating it as not finished",
                            self.call_id,
                            call.status,
                        )
                    elif call.status == statuses.PAUSED:
                        self.log.info("Call %s is paused; waiting for it to be resumed", self.call_id)
                    if not self.deadline_fixed:
                        limit = polling.deadline(call, now) + polling.DEADLINE_MARGIN
                    wake = polling.next_poll_at(call, now, self.poke_interval)
                else:
                    wake = now + timedelta(seconds=self.poke_interval)
                # An explicit timeout is real time; a derived deadline is on the server's clock.
                limit_now = _utcnow() if self.deadline_fixed else now
                if limit is not None and limit_now >= limit:
                    yield self._event(
                        EVENT_TIMEOUT,
                        last_call,
                        f"call {self.call_id} did not finish by {limit.isoformat()}"
                        + (f" (last status {last_call.status!r})" if last_call else ""),
                    )
                    return
                sleep = clock.real_seconds((wake - now).total_seconds())
                if limit is not None:
                    until_limit = (limit - limit_now).total_seconds()
                    sleep = min(
                        sleep, until_limit if self.deadline_fixed else clock.real_seconds(until_limit)
                    )
                await asyncio.sleep(max(sleep, MIN_SLEEP_SECONDS))

    def _event(self, kind: str, call: Call | None, message: str) -> TriggerEvent:
        summary = call_summary(call) if call is not None else {"call_id": self.call_id}
        payload = {"status": kind, "call_id": self.call_id, "summary": summary, "message": message}
        return TriggerEvent(payload)  # type: ignore[no-untyped-call]
