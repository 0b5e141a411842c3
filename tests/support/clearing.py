"""Clear a finished task instance and run it again, as a user's clear and the scheduler do.

``dag.test()`` always makes a new DAG run, so a test of a clear needs the steps Airflow takes
itself: ``clear_task_instances`` (what the UI, CLI and REST clear call), the scheduler's
``schedule_tis`` (which moves the try number on), then the task run in process as ``dag.test()``
runs it. Airflow 3.4's clear archives the cleared try's row and returns the next try's, whose
try number it has already moved on; its REST clear also discards the task state store unless
``keep_task_state`` is set: ``discard_state=True`` does the same on every version that has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple


class Rerun(NamedTuple):
    """What :func:`clear_and_rerun` saw: the task instance after its new try, and the store before it."""

    ti: Any
    #: The task state store's keys for the task when its new try started ([] without a store).
    stored_keys: list[str]


def clear_and_rerun(dag_path: Path, dag_id: str, run_id: str, task_id: str, *, discard_state: bool) -> Rerun:
    """Clear ``task_id`` of the run ``run_id``, run it once more, and return what happened."""
    from airflow._shared.timezones import timezone
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    dag = DagBag(str(dag_path)).get_dag(dag_id)
    assert dag is not None
    with create_session() as session:
        ti = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
            )
        ).one()
        tried = ti.try_number
        # Airflow 3.4 keeps each try as its own row: its clear archives this one and returns the
        # next try's (earlier versions clear the row in place and return None).
        cleared = clear_task_instances([ti], session)
        if cleared:
            (ti,) = cleared
        if discard_state:
            _discard(ti, session)
        session.flush()
        # What the scheduler's schedule_tis does to a cleared task instance, as dag.test() does it.
        if ti.try_number == tried:  # Airflow 3.4's clear moves it on itself
            ti.try_number += 1
        ti.state = TaskInstanceState.SCHEDULED
        ti.scheduled_dttm = timezone.utcnow()
        session.commit()
        session.refresh(ti)
        session.expunge(ti)
        stored = _stored_keys(dag_id, run_id, task_id, session)
    _run_task(ti=ti, task=dag.task_dict[task_id])
    with create_session() as session:
        # Airflow 3.4's ORM queries see only the live try's row.
        after = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
            )
        ).one()
    return Rerun(after, stored)


def _stored_keys(dag_id: str, run_id: str, task_id: str, session: Any) -> list[str]:
    """The keys of the task's state store rows (none where this Airflow has no store)."""
    try:
        from airflow.models.task_state_store import TaskStateStoreModel
    except ImportError:  # Airflow 3.2
        return []
    from sqlalchemy import select

    rows = session.scalars(
        select(TaskStateStoreModel.key).where(
            TaskStateStoreModel.dag_id == dag_id,
            TaskStateStoreModel.run_id == run_id,
            TaskStateStoreModel.task_id == task_id,
        )
    )
    return sorted(rows)


def _discard(ti: Any, session: Any) -> None:
    """Drop the task's stored state: through Airflow 3.4's own clear step where it has one."""
    try:
        from airflow.api_fastapi.core_api.services.public.task_instances import (  # type: ignore[attr-defined]
            _discard_task_state_store,
        )
    except ImportError:  # Airflow 3.3: the clear keeps the state; drop its rows as 3.4 does
        from airflow.models.task_state_store import TaskStateStoreModel
        from sqlalchemy import delete

        session.execute(
            delete(TaskStateStoreModel).where(
                TaskStateStoreModel.dag_id == ti.dag_id,
                TaskStateStoreModel.run_id == ti.run_id,
                TaskStateStoreModel.task_id == ti.task_id,
            )
        )
        return
    _discard_task_state_store([ti], session, event="Discarded task state on clear")
