"""What a clear does to a placement on Airflow 3.2, 3.3 and 3.4: the same outcome on each.

A clear keeps the task's idempotency key unless the DAG gives a new one: with the same key the
cleared task reattaches to the order its earlier run placed (nobody is called twice); with a
new ``idempotency_key`` it places a new order, never reattaching to the old one.

What the cleared try finds in the task state store differs, and each test checks it:

* 3.2 has no store (``none``): the new try finds its order by searching on its key;
* 3.3's clear keeps the store (``kept``); ``discarded`` drops it as 3.4 does;
* 3.4's clear archives the try and starts a new one (a row per try), and discards the store
  unless the clear sets ``keep_task_state`` (``discarded`` is 3.4's default, ``kept`` the option).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_revox._internal.core import compat
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.testing import SimulatorHandle
from tests.support.clearing import clear_and_rerun

DAG = """
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxPlaceCallOperator

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    RevoxPlaceCallOperator(task_id="call", phone_number="+33612345678", assistant_id="asst_clear",
                           idempotency_key="{{{{ var.value.{variable} }}}}", wait_for_completion=False)

build()
"""
STATES = ["kept", "discarded"] if compat.has_task_state_store() else ["none"]


def set_key(name: str, value: str) -> None:
    from airflow.models.variable import Variable

    Variable.set(name, value)


def assert_store_as_cleared(stored: list[str], state: str) -> None:
    """The cleared try starts with the first try's records when the store is kept, none otherwise."""
    if state == "kept":
        assert stored and all(key.startswith("revox_") for key in stored), stored
    else:
        assert stored == []


def first_run(run_dag: Callable[..., Any], dag_id: str, variable: str) -> tuple[Any, Path]:
    run = run_dag(DAG.format(dag_id=dag_id, variable=variable), dag_id)
    (ti,) = run.get_task_instances()
    assert ti.state == "success"
    return run, Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{dag_id}.py"


@pytest.mark.parametrize("state", STATES)
def test_a_clear_with_a_new_key_places_a_new_order_never_the_old_cancelled_one(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], state: str
) -> None:
    dag_id, variable = f"clear_new_key_{state}", f"revox_clear_key_{state}"
    set_key(variable, "confirm-2026-01-05")
    run, path = first_run(run_dag, dag_id, variable)
    (old,) = revox_simulator.engine.call_ids()
    with RevoxHook() as hook:
        hook.cancel_call(old)

    set_key(variable, "confirm-2026-01-05-again")
    ti, stored = clear_and_rerun(path, dag_id, run.run_id, "call", discard_state=state == "discarded")

    assert_store_as_cleared(stored, state)
    assert ti.state == "success" and ti.try_number == 2
    new = ti.xcom_pull(task_ids="call") if hasattr(ti, "xcom_pull") else None
    placed = revox_simulator.engine.call_ids()
    assert len(placed) == 2 and old in placed
    (fresh,) = [call_id for call_id in placed if call_id != old]
    assert new in (None, fresh)
    assert (
        revox_simulator.get_call(fresh)["metadata"]["airflow_idempotency_key"] == "confirm-2026-01-05-again"
    )
    assert revox_simulator.get_call(old)["status"] == "cancelled"


@pytest.mark.parametrize("state", STATES)
def test_a_clear_with_the_same_key_reattaches_to_the_order_it_placed(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], state: str
) -> None:
    dag_id, variable = f"clear_same_key_{state}", f"revox_clear_same_{state}"
    set_key(variable, "remind-2026-01-05")
    run, path = first_run(run_dag, dag_id, variable)
    (placed,) = revox_simulator.engine.call_ids()

    ti, stored = clear_and_rerun(path, dag_id, run.run_id, "call", discard_state=state == "discarded")

    assert_store_as_cleared(stored, state)
    assert ti.state == "success" and ti.try_number == 2
    assert revox_simulator.engine.call_ids() == [placed]
    assert revox_simulator.stats()["by_endpoint"]["POST /call"] == 1
