"""How a wait's trigger ends its task itself, with no worker run to resume it (Airflow 3.3+).

A trigger built with ``end_task=True`` turns its one event into a task-end event when a real
triggerer runs it: ``success`` becomes a ``TaskSuccessEvent`` carrying the summary the sensor
would have returned as its XCom, ``failed`` and ``timeout`` with ``soft_fail`` a
``TaskSkippedEvent``, ``error`` a ``TaskFailedEvent`` (retried as the sensor's error is); the
message the sensor would have raised goes to the task's log first. ``failed`` and ``timeout``
without ``soft_fail`` still resume the task on a worker: the sensor fails them without retries
(a dead order stays dead), and Airflow retries a ``TaskFailedEvent`` whenever the task has
retries left. Anywhere else (an Airflow without the
feature, or ``dag.test()``, which runs the trigger inline and resumes the task with the event's
payload) the trigger sends the plain event and the task's ``execute_complete`` reads it, fail-closed,
as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_revox._internal.core import compat
from airflow_provider_revox._internal.waiting.outcome import EVENT_FAILED, EVENT_SUCCESS, EVENT_TIMEOUT


def ends_task(trigger: BaseTrigger, end_task: bool) -> bool:
    """Whether this run of ``trigger`` ends its task itself.

    Only a real triggerer sets ``trigger_id``: ``dag.test()``'s inline run does not, and resumes
    the task with whatever payload the event has, so it must get the plain event.
    """
    return end_task and getattr(trigger, "trigger_id", None) is not None and compat.has_start_from_trigger()


def task_end_event(
    trigger: BaseTrigger,
    payload: dict[str, Any],
    xcom: Any,
    soft_fail: bool,
    extra_xcoms: dict[str, Any] | None = None,
) -> TriggerEvent | None:
    """The task-end event for a wait's final (already redacted) ``payload``; None to resume on a worker.

    Args:
        trigger: the trigger, whose log is the task's log in the triggerer.
        payload: the event payload (``status``, ``message``, ...), as the plain event would carry.
        xcom: the task's return value on success.
        soft_fail: skip instead of failing when the wait failed or timed out.
        extra_xcoms: XComs the task would have pushed while running, kept whatever the end.
    """
    from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent

    kind, message = payload.get("status"), str(payload.get("message") or "")
    if kind == EVENT_SUCCESS:
        trigger.log.info("%s", message)
        return TaskSuccessEvent(xcoms={"return_value": xcom, **(extra_xcoms or {})})
    if soft_fail and kind in (EVENT_FAILED, EVENT_TIMEOUT):
        trigger.log.info("Skipping the task (soft_fail): %s", message)
        return TaskSkippedEvent(xcoms=extra_xcoms or None)
    if kind in (EVENT_FAILED, EVENT_TIMEOUT):
        return None  # failed without retries, on a worker: see the module's docstring
    trigger.log.error("%s", message)
    return TaskFailedEvent(xcoms=extra_xcoms or None)


async def delivered(trigger: BaseTrigger, events: AsyncIterator[TriggerEvent]) -> AsyncIterator[TriggerEvent]:
    """``events``, each task-end event's XComs pushed first through the triggerer, as a worker does.

    Airflow 3.3 stores the XComs a task-end event carries JSON-encoded once more than a worker's
    (the scheduler ``json.dumps`` them into the JSON column), so a downstream task would pull the
    summary as text. Pushed through the triggerer's own XCom channel, they are stored as the
    sensor's return value always was; where that channel is missing, the event keeps them.
    """
    async for event in events:
        xcoms = getattr(event, "xcoms", None)
        ti = getattr(trigger, "task_instance", None)
        if xcoms and ti is not None:
            try:
                from airflow.sdk.execution_time.xcom import XCom

                for key, value in xcoms.items():
                    await XCom.aset(
                        key,
                        value,
                        dag_id=ti.dag_id,
                        task_id=ti.task_id,
                        run_id=ti.run_id,
                        map_index=ti.map_index,
                    )
            except Exception as error:  # no supervisor channel (outside a triggerer): keep them
                trigger.log.warning("XComs left on the task-end event: %s", type(error).__name__)
            else:
                setattr(event, "xcoms", None)  # noqa: B010 - only task-end events have it
        yield event


def end_kwargs(end_task: bool, soft_fail: bool) -> dict[str, Any]:
    """The ending kwargs a trigger serializes: none unless set, so older stored kwargs read the same."""
    return {"end_task": True, "soft_fail": soft_fail} if end_task else {}
