"""Answer a human-in-the-loop task from a test, as the Airflow UI's "Required actions" does.

``dag.test()`` never answers a human-in-the-loop task itself: it waits for a response recorded
in the metadata database. This writes one, the way the REST API's response handler does: the
chosen option on the task's ``hitl_detail`` row, then (Airflow 3.3+, a task parked in
``awaiting_input``) the resume event; a deferred task (Airflow 3.2) is resumed by its trigger
polling the row, which 3.2's ``dag.test()`` cannot run (``tests.support.versions.needs_awaiting_input``).
"""

from __future__ import annotations

import threading
import time


def _respond_once(dag_id: str, task_id: str, option: str) -> bool:
    from airflow.models.hitl import HITLDetail, HITLUser
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    parked = {
        TaskInstanceState.DEFERRED,
        getattr(TaskInstanceState, "AWAITING_INPUT", TaskInstanceState.DEFERRED),
    }
    with create_session() as session:
        # Earlier runs of the same DAG may share the database: only a parked one is asked.
        ti = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.task_id == task_id,
                TaskInstance.state.in_(parked),
            )
        ).first()
        if ti is None:
            return False
        detail = session.get(HITLDetail, ti.id)
        if detail is None:
            return False
        detail.responded_by = HITLUser(id="test", name="test")
        from airflow._shared.timezones import timezone

        detail.responded_at = timezone.utcnow()
        detail.chosen_options = [option]
        detail.params_input = {}
        session.add(detail)
        if ti.state != TaskInstanceState.DEFERRED:
            from airflow.models.trigger import handle_event_submit
            from airflow.triggers.base import TriggerEvent

            handle_event_submit(
                TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session
            )
    return True


def answer_when_asked(dag_id: str, task_id: str, option: str, timeout: float = 300.0) -> threading.Thread:
    """Start a thread that answers ``task_id`` with ``option`` once it waits for a person."""

    def answer() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not _respond_once(dag_id, task_id, option):
            time.sleep(0.2)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


__all__ = ["answer_when_asked"]
