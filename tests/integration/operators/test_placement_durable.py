"""RevoxPlaceCallOperator never calls anyone twice and cancels what it placed when killed.

Through a real Airflow (dag.test, which runs task retries) and real HTTP against the simulator:
a retry after a placement whose answer was lost, a retry with the id in the task state store,
the search by idempotency key where there is no store, the clear failure when that search
cannot be done; then ``on_kill`` of the operator and of the trigger.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_revox._internal.core import compat, durable
from airflow_provider_revox._internal.operators.placement import STATE_KEY, RevoxPlaceCallOperator, ambiguous
from airflow_provider_revox.exceptions import RevoxPlacementUnknownError
from airflow_provider_revox.sensors.revox import RevoxCallSensor
from airflow_provider_revox.testing import SimulatorHandle
from airflow_provider_revox.triggers.revox import RevoxCallTrigger
from tests.support.versions import needs_task_state_store

PARIS = "+33612345678"

DAG_TEMPLATE = """
import pendulum
from datetime import timedelta
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxPlaceCallOperator

class CrashAfterStoring(RevoxPlaceCallOperator):
    '''Dies on its first try right after the placed id is stored, as a lost worker would.'''

    def _keep(self, state, call_id, how):
        kept = super()._keep(state, call_id, how)
        if how == "placed":
            raise RuntimeError("worker lost after storing the call id")
        return kept

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    {operator}(task_id="call", retries=1, retry_delay=timedelta(seconds=0), **{kwargs})

build()
"""


def run_place(
    run_dag: Callable[..., Any], dag_id: str, operator: str = "RevoxPlaceCallOperator", **kwargs: Any
) -> Any:
    (ti,) = run_dag(
        DAG_TEMPLATE.format(dag_id=dag_id, operator=operator, kwargs=kwargs), dag_id
    ).get_task_instances()
    return ti


def endpoints(sim: SimulatorHandle) -> dict[str, int]:
    # The do-not-contact gate reads the phone history before each POST: counted in test_do_not_contact.
    served = dict(sim.stats()["by_endpoint"])
    served.pop("GET /calls/phone-history", None)
    return served


@needs_task_state_store
@pytest.mark.parametrize(("search_faults", "tries"), [([], 1), (["503"], 2)])
def test_a_placement_whose_answer_was_lost_is_found_not_placed_again(
    fast_simulator: SimulatorHandle,
    run_dag: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    search_faults: list[str],
    tries: int,
) -> None:
    # The POST is stored and its answer lost; the search right after it finds the order. When
    # that search fails too, the first try cannot tell and fails; the retry (try 2, nothing in
    # the store) searches first, finds the order by its key and places nothing.
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", fast_simulator.connection_json(max_retries=0))
    fast_simulator.faults.script("POST /call", ["drop_after_commit"])
    fast_simulator.faults.script("POST /call/search", search_faults)
    ti = run_place(run_dag, f"place_lost_answer_{tries}", phone_number=PARIS, assistant_id="asst_lost",
                   wait_for_completion=False)  # fmt: skip
    (call_id,) = fast_simulator.engine.call_ids()
    assert ti.state == "success" and ti.try_number == tries
    assert ti.xcom_pull(task_ids="call") == call_id
    assert endpoints(fast_simulator) == {"POST /call": 1, "POST /call/search": tries}
    assert fast_simulator.stats()["by_status"]["drop_after_commit"] == 1


@pytest.mark.usefixtures("without_task_state_store")
def test_without_a_store_a_lost_answer_is_found_by_the_search_after_it(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Airflow 3.2: a search before the POST (nothing yet), the POST stored and its answer lost,
    # the search after it finds the order; one try, one order.
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", fast_simulator.connection_json(max_retries=0))
    fast_simulator.faults.script("POST /call", ["drop_after_commit"])
    ti = run_place(run_dag, "place_lost_answer_no_store", phone_number=PARIS, assistant_id="asst_lost",
                   wait_for_completion=False)  # fmt: skip
    (call_id,) = fast_simulator.engine.call_ids()
    assert ti.state == "success" and ti.try_number == 1
    assert ti.xcom_pull(task_ids="call") == call_id
    assert endpoints(fast_simulator) == {"POST /call/search": 2, "POST /call": 1}


@needs_task_state_store
def test_a_retry_reattaches_to_the_id_in_the_task_state_store(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    ti = run_place(
        run_dag,
        "place_crash_after_store",
        operator="CrashAfterStoring",
        phone_number=PARIS,
        assistant_id="asst_store",
        mode="poke",
        poke_interval=15,
        fail_on_statuses=["cancelled"],
    )
    (call_id,) = fast_simulator.engine.call_ids()
    assert ti.state == "success" and ti.try_number == 2
    assert ti.xcom_pull(task_ids="call")["call_id"] == call_id
    assert fast_simulator.get_call(call_id)["status"] in ("completed", "errored")
    calls = endpoints(fast_simulator)
    assert calls["POST /call"] == 1 and "POST /call/search" not in calls  # the store, not a search


def test_without_a_store_the_order_is_found_by_its_key(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any], without_task_state_store: None
) -> None:
    def tagged(key: str, owner: str, assistant: str = "asst_key") -> str:
        metadata = {durable.METADATA_KEY: key, durable.OWNER_KEY: owner}
        placed = fast_simulator.place_call(phone_number=PARIS, assistant_id=assistant, metadata=metadata)
        return str(placed["id"])

    mine = tagged("order-7", "place_found_by_key/call")
    tagged("order-8", "place_found_by_key/call")
    tagged("order-7", "place_found_by_key/call", assistant="asst_other")
    tagged("order-7", "another_dag/call")  # same key, number and assistant: a stranger's order
    ti = run_place(run_dag, "place_found_by_key", phone_number=PARIS, assistant_id="asst_key",
                   idempotency_key="order-7", wait_for_completion=False)  # fmt: skip
    assert ti.state == "success"
    assert ti.xcom_pull(task_ids="call") == mine
    assert endpoints(fast_simulator) == {"POST /call/search": 1}
    assert fast_simulator.stats()["calls"] == 4


@pytest.mark.usefixtures("without_task_state_store")
def test_without_a_store_a_first_placement_searches_then_places_once(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ti = run_place(
        run_dag, "place_no_store", phone_number=PARIS, assistant_id="asst_new", wait_for_completion=False
    )
    (call_id,) = fast_simulator.engine.call_ids()
    assert ti.state == "success" and ti.xcom_pull(task_ids="call") == call_id
    assert endpoints(fast_simulator) == {"POST /call/search": 1, "POST /call": 1}
    key = fast_simulator.get_call(call_id)["metadata"][durable.METADATA_KEY]
    assert key.startswith("af-")
    logged = capsys.readouterr().out
    assert f"store needs Airflow 3.3 or later (this is Airflow {compat.airflow_version()})" in logged
    assert f"searches the orders to the same number for this task's idempotency key {key}" in logged


@pytest.mark.parametrize("mode", [{"mode": "reschedule"}, {"deferrable": True}])
@pytest.mark.usefixtures("without_task_state_store")
def test_without_a_store_every_poke_and_the_resumed_task_reattach(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any], mode: dict[str, Any]
) -> None:
    # Each reschedule poke runs a fresh operator: it finds the order by its key, never places again.
    # A deferred task resumes on a fresh operator too: it takes the id back from the event.
    name = "reschedule" if "mode" in mode else "deferrable"
    ti = run_place(run_dag, f"place_no_store_{name}", phone_number=PARIS, assistant_id="asst_wait",
                   poke_interval=15, fail_on_statuses=["cancelled"], **mode)  # fmt: skip
    (call_id,) = fast_simulator.engine.call_ids()
    assert ti.state == "success" and ti.xcom_pull(task_ids="call")["call_id"] == call_id
    calls = endpoints(fast_simulator)
    assert calls["POST /call"] == 1
    if name == "reschedule":  # each poke: one search (finding nothing, then the order), one GET
        assert calls["POST /call/search"] == calls["GET /call/{id}"] >= 2


@pytest.mark.usefixtures("without_task_state_store")
def test_when_the_search_cannot_be_done_nothing_is_placed(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", fast_simulator.connection_json(max_retries=0))
    fast_simulator.faults.script("POST /call/search", ["503", "503"])
    ti = run_place(
        run_dag, "place_search_down", phone_number=PARIS, assistant_id="asst_down", wait_for_completion=False
    )
    assert ti.state == "failed" and ti.try_number == 2
    assert endpoints(fast_simulator) == {"POST /call/search": 2}
    assert fast_simulator.stats()["calls"] == 0


# -- the operator outside a DAG run: the error itself, on_kill, the deferral's kwargs ----------


@dataclass
class StubTI:
    """What the operator reads of its task instance."""

    try_number: int = 1
    dag_id: str = "d"
    task_id: str = "call"
    map_index: int = -1
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


class DictStore:
    """A task state store kept in a dict (Airflow 3.3's accessor has the same get / set)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any, retention: Any = None) -> None:
        self.values[key] = value


def context(try_number: int = 1, store: DictStore | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"ti": StubTI(try_number=try_number), "run_id": "manual__1"}
    if store is not None:
        found["task_state_store"] = store
    return found


def test_the_search_failure_is_named_and_says_why_nothing_was_placed(
    revox_conn: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", revox_conn.connection_json(max_retries=0))
    revox_conn.faults.script("POST /call/search", ["503"])
    operator = RevoxPlaceCallOperator(
        task_id="call", phone_number=PARIS, assistant_id="a", wait_for_completion=False
    )
    with pytest.raises(RevoxPlacementUnknownError) as caught:
        operator.execute(context(try_number=2, store=DictStore()))  # type: ignore[arg-type]
    assert "rather than risk calling the person twice" in str(caught.value)
    assert revox_conn.api_key not in str(caught.value)
    assert endpoints(revox_conn) == {"POST /call/search": 1}  # and no POST /call


@needs_task_state_store
def test_the_id_is_stored_before_any_wait(revox_conn: SimulatorHandle) -> None:
    store = DictStore()
    operator = RevoxPlaceCallOperator(
        task_id="call", phone_number=PARIS, assistant_id="a", wait_for_completion=False
    )
    call_id = operator.execute(context(store=store))  # type: ignore[arg-type]
    assert list(store.values.values()) == [call_id] and next(iter(store.values)).startswith(f"{STATE_KEY}:")
    again = RevoxPlaceCallOperator(
        task_id="call", phone_number=PARIS, assistant_id="a", wait_for_completion=False
    )
    assert again.execute(context(try_number=2, store=store)) == call_id  # type: ignore[arg-type]
    assert endpoints(revox_conn) == {"POST /call": 1}


def test_on_kill_cancels_the_order_it_placed(revox_conn: SimulatorHandle) -> None:
    operator = RevoxPlaceCallOperator(
        task_id="call", phone_number=PARIS, assistant_id="a", wait_for_completion=False
    )
    call_id = operator.execute(context(store=DictStore()))  # type: ignore[arg-type]
    assert revox_conn.get_call(call_id)["status"] != "cancelled"
    operator.on_kill()
    assert revox_conn.get_call(call_id)["status"] == "cancelled"
    assert endpoints(revox_conn)["POST /call/{id}/cancel"] == 1


def test_on_kill_cancels_nothing_when_asked_not_to_or_before_placing(revox_conn: SimulatorHandle) -> None:
    keep = RevoxPlaceCallOperator(
        task_id="call", phone_number=PARIS, assistant_id="a", wait_for_completion=False, cancel_on_kill=False
    )
    call_id = keep.execute(context(store=DictStore()))  # type: ignore[arg-type]
    keep.on_kill()
    RevoxPlaceCallOperator(task_id="other", phone_number=PARIS, assistant_id="a").on_kill()
    assert revox_conn.get_call(call_id)["status"] != "cancelled"
    assert "POST /call/{id}/cancel" not in endpoints(revox_conn)


def test_only_the_placing_operator_defers_with_cancel_on_kill(revox_conn: SimulatorHandle) -> None:
    operator = RevoxPlaceCallOperator(task_id="call", phone_number=PARIS, assistant_id="a", deferrable=True)
    with pytest.raises(TaskDeferred) as placed:
        operator.execute(context(store=DictStore()))  # type: ignore[arg-type]
    trigger = placed.value.trigger
    assert isinstance(trigger, RevoxCallTrigger) and trigger.cancel_on_kill is True
    assert trigger.call_id == operator.call_id != ""
    sensor = RevoxCallSensor(task_id="wait", call_id=operator.call_id, deferrable=True)
    with pytest.raises(TaskDeferred) as waited:
        sensor.execute(context())  # type: ignore[arg-type]
    assert waited.value.trigger.cancel_on_kill is False


def test_without_trigger_on_kill_deferring_says_a_kill_will_not_cancel_the_order(
    revox_conn: SimulatorHandle, without_trigger_on_kill: None, capsys: pytest.CaptureFixture[str]
) -> None:
    operator = RevoxPlaceCallOperator(task_id="call", phone_number=PARIS, assistant_id="a", deferrable=True)
    with pytest.raises(TaskDeferred) as placed:
        operator.execute(context())  # type: ignore[arg-type]
    assert placed.value.trigger.cancel_on_kill is True  # still asked for, should the triggerer upgrade
    logged = capsys.readouterr()
    assert (
        "Cancelling on kill in the triggerer needs Airflow 3.3 or later (this is Airflow "
        f"{compat.airflow_version()}); while this task is deferred, killing it does not cancel call "
        f"{operator.call_id}"
    ) in logged.out + logged.err
    keeping = RevoxPlaceCallOperator(
        task_id="keep", phone_number=PARIS, assistant_id="a", deferrable=True, cancel_on_kill=False
    )
    with pytest.raises(TaskDeferred):
        keeping.execute(context())  # type: ignore[arg-type]
    logged = capsys.readouterr()
    assert "Cancelling on kill" not in logged.out + logged.err  # nothing promised, nothing to warn of


async def test_the_trigger_cancels_on_kill_only_when_told(revox_conn: SimulatorHandle) -> None:
    mine = revox_conn.place_call(phone_number=PARIS, assistant_id="a")["id"]
    theirs = revox_conn.place_call(phone_number=PARIS, assistant_id="a")["id"]
    placing = RevoxCallTrigger(call_id=mine, cancel_on_kill=True)
    _, kwargs = placing.serialize()
    assert kwargs["cancel_on_kill"] is True and json.loads(json.dumps(kwargs)) == kwargs
    await RevoxCallTrigger(**kwargs).on_kill()
    await RevoxCallTrigger(call_id=theirs).on_kill()
    assert revox_conn.get_call(mine)["status"] == "cancelled"
    assert revox_conn.get_call(theirs)["status"] != "cancelled"
    assert revox_conn.stats()["by_call_id"] == {mine: 1}  # only the order it placed was touched


async def test_a_failed_cancel_on_kill_does_not_raise(revox_conn: SimulatorHandle) -> None:
    done = revox_conn.place_call(phone_number=PARIS, assistant_id="a")["id"]
    revox_conn.engine.cancel(done)
    await RevoxCallTrigger(call_id="nobody-here", cancel_on_kill=True).on_kill()  # 404: logged
    await RevoxCallTrigger(call_id=done, cancel_on_kill=True).on_kill()  # 409, already cancelled
    assert revox_conn.stats()["by_status"] == {"404": 1, "409": 1, "200": 1}
    assert revox_conn.get_call(done)["status"] == "cancelled"


def test_which_placement_failures_are_ambiguous() -> None:
    from airflow_provider_revox.exceptions import (
        RevoxApiError,
        RevoxResponseError,
        RevoxRetriesExhaustedError,
        RevoxTransportError,
    )

    assert ambiguous(RevoxTransportError("dropped after sending"))
    assert ambiguous(RevoxResponseError("garbled 200"))
    assert ambiguous(RevoxApiError("bad gateway", status_code=502))
    assert not ambiguous(RevoxApiError("unprocessable", status_code=422))
    assert not ambiguous(RevoxRetriesExhaustedError("refused every time", attempts=3, status_code=429))
