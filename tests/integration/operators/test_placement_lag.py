"""A search that lags the placement is not taken for proof that no order exists.

Through a real Airflow (``dag.test()`` runs the task's retries in this process) and real HTTP
against the simulator: a POST whose answer is lost, then searches that list nothing for two
tries, as a search index behind the orders does. Before the fix the second try placed a second
order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_revox._internal.operators import placement
from airflow_provider_revox.testing import SimulatorHandle
from tests.support.versions import needs_task_state_store

PARIS = "+33612345678"

DAG = """
import pendulum
from datetime import timedelta
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxPlaceCallOperator

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    RevoxPlaceCallOperator(task_id="call", phone_number={phone!r}, assistant_id="asst_lag",
                           wait_for_completion=False, retries=2, retry_delay=timedelta(0))

build()
"""


def place(run_dag: Callable[..., Any], dag_id: str) -> Any:
    (ti,) = run_dag(DAG.format(dag_id=dag_id, phone=PARIS), dag_id).get_task_instances()
    return ti


@pytest.fixture
def lost_answer(fast_simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch) -> SimulatorHandle:
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", fast_simulator.connection_json(max_retries=0))
    return fast_simulator


@needs_task_state_store
def test_a_search_lagging_for_two_tries_places_nothing_and_the_third_reattaches(
    lost_answer: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    lost_answer.faults.script("POST /call", ["drop_after_commit"])
    lost_answer.faults.lag_search(2)
    ti = place(run_dag, "place_search_lag")
    (call_id,) = lost_answer.engine.call_ids()
    assert ti.state == "success" and ti.try_number == 3
    assert ti.xcom_pull(task_ids="call") == call_id
    endpoints = lost_answer.stats()["by_endpoint"]
    assert (endpoints["POST /call"], endpoints["POST /call/search"]) == (1, 3)


@needs_task_state_store
def test_once_the_lag_has_passed_a_search_finding_nothing_places_the_order(
    lost_answer: SimulatorHandle, run_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The POST never reached Revox (dropped before it was served); the search after it lags. The
    # next try, past SEARCH_LAG on the injected clock, still finds nothing and places the order.
    start = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
    clock: Iterator[datetime] = iter([start, start + placement.SEARCH_LAG + timedelta(seconds=1)])
    monkeypatch.setattr(placement, "_now", lambda hook: next(clock))
    lost_answer.faults.script("POST /call", ["drop"])
    lost_answer.faults.lag_search(1)
    ti = place(run_dag, "place_search_lag_passed")
    (call_id,) = lost_answer.engine.call_ids()
    assert ti.state == "success" and ti.try_number == 2
    assert ti.xcom_pull(task_ids="call") == call_id
    assert lost_answer.stats()["by_endpoint"]["POST /call"] == 2  # the dropped one, then the placement


@needs_task_state_store
def test_an_index_lagging_in_time_hides_the_order_from_the_first_try_and_the_next_reattaches(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A true lag: the search lists an order only 90 s (simulator clock) after it was placed. The
    # first try's POST is stored but its answer lost, and its search comes too early; the next
    # try, once the index caught up, finds the order and reattaches: one order, two searches.
    sim = revox_simulator
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", sim.connection_json(max_retries=0))
    sim.faults.lag_index(90)
    sim.faults.script("POST /call", ["drop_after_commit"])
    start = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)

    def now_then_time_passes(hook: object) -> datetime:
        sim.advance(120)  # between the first try's search and the next try's
        return start

    monkeypatch.setattr(placement, "_now", now_then_time_passes)
    ti = place(run_dag, "place_index_lag")
    (call_id,) = sim.engine.call_ids()
    assert ti.state == "success" and ti.try_number == 2
    assert ti.xcom_pull(task_ids="call") == call_id
    endpoints = sim.stats()["by_endpoint"]
    assert (endpoints["POST /call"], endpoints["POST /call/search"]) == (1, 2)


@needs_task_state_store
def test_within_the_lag_every_try_refuses_to_place(
    lost_answer: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    lost_answer.faults.script("POST /call", ["drop"])
    lost_answer.faults.lag_search(10)
    ti = place(run_dag, "place_search_lag_all_tries")
    assert ti.state == "failed" and ti.try_number == 3
    assert lost_answer.stats()["calls"] == 0
    assert lost_answer.stats()["by_endpoint"]["POST /call"] == 1
