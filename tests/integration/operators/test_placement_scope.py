"""RevoxPlaceCallOperator never reattaches to, nor cancels, another DAG's order, and cancels its
own order when its wait gives up.

Through a real Airflow (dag.test) and real HTTP against the simulator: two DAGs placing under the
same idempotency key, number and assistant; the opt-in shared scope; a wait that times out in
poke and deferrable mode, by its ``timeout``, by the deadline it derives from the order (a
transcript analysis that stalls past it) and by Airflow's ``execution_timeout``; Airflow's own
deferral timeout, which reaches the operator without an event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pendulum
import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout

from airflow_provider_revox._internal.core import compat, durable
from airflow_provider_revox._internal.operators.placement import STATE_KEY, RevoxPlaceCallOperator
from airflow_provider_revox.testing import (
    ALWAYS_OPEN_RETRY_CONFIG,
    Profile,
    SimulatorHandle,
    running_simulator,
)
from tests.integration.operators.test_placement_durable import DictStore, StubTI

PARIS = "+33612345678"

DAG_TEMPLATE = """
import datetime
import pendulum
from datetime import timedelta
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxPlaceCallOperator
from airflow_provider_revox.sensors.revox import RevoxCallSensor

class FailsBeforePlacing(RevoxPlaceCallOperator):
    '''Its first try fails before anything is placed, so only the retry places.'''

    def _placed(self, context, arguments):
        if context["ti"].try_number == 1:
            raise RuntimeError("the first try failed before placing")
        return super()._placed(context, arguments)

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    {operator}(task_id="call", retries={retries}, retry_delay=timedelta(seconds=0), **{kwargs})

build()
"""


def run_task(
    run_dag: Callable[..., Any], dag_id: str, operator: str = "RevoxPlaceCallOperator", retries: int = 0,
    **kwargs: Any,
) -> Any:  # fmt: skip
    source = DAG_TEMPLATE.format(dag_id=dag_id, operator=operator, retries=retries, kwargs=kwargs)
    (ti,) = run_dag(source, dag_id).get_task_instances()
    return ti


def endpoints(sim: SimulatorHandle) -> dict[str, int]:
    return dict(sim.stats()["by_endpoint"])


def context(dag_id: str, try_number: int = 1, store: DictStore | None = None) -> dict[str, Any]:
    ti = StubTI(try_number=try_number, dag_id=dag_id)
    found: dict[str, Any] = {"ti": ti, "run_id": "manual__1"}
    if store is not None:
        found["task_state_store"] = store
    return found


# -- 1. a key identifies a placement within its task ----------------------------------------------


@pytest.mark.parametrize("store", ["with_store", "without_store"])
def test_another_dag_under_the_same_key_places_its_own_order(
    store: str, revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    # Without a store the first try searches; with one, the retry does (the first failed before
    # placing). Either way dag_b must not take dag_a's order for its own.
    if store == "without_store":
        request.getfixturevalue("without_task_state_store")
    same = {"phone_number": PARIS, "assistant_id": "asst_same", "idempotency_key": "renewal-7",
            "wait_for_completion": False}  # fmt: skip
    a = run_task(run_dag, f"scope_a_{store}", **same)
    b = run_task(run_dag, f"scope_b_{store}", operator="FailsBeforePlacing", retries=1, **same)
    assert a.state == b.state == "success" and b.try_number == 2
    order_a, order_b = a.xcom_pull(task_ids="call"), b.xcom_pull(task_ids="call")
    assert order_a != order_b
    assert sorted(revox_simulator.engine.call_ids()) == sorted([order_a, order_b])
    assert endpoints(revox_simulator)["POST /call"] == 2
    metadata = revox_simulator.get_call(order_b)["metadata"]
    assert metadata[durable.METADATA_KEY] == "renewal-7"
    assert metadata[durable.OWNER_KEY] == f"scope_b_{store}/call"


def test_the_shared_scope_reattaches_across_dags(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], without_task_state_store: None
) -> None:
    same = {"phone_number": PARIS, "assistant_id": "asst_same", "idempotency_key": "renewal-8",
            "idempotency_scope": "shared", "wait_for_completion": False}  # fmt: skip
    a = run_task(run_dag, "shared_a", **same)
    b = run_task(run_dag, "shared_b", **same)
    assert a.xcom_pull(task_ids="call") == b.xcom_pull(task_ids="call")
    assert endpoints(revox_simulator)["POST /call"] == 1


def test_a_kill_never_cancels_another_dags_order(revox_conn: SimulatorHandle) -> None:
    arguments = {"phone_number": PARIS, "assistant_id": "a", "idempotency_key": "k-1",
                 "wait_for_completion": False}  # fmt: skip
    placed_by_a = RevoxPlaceCallOperator(task_id="call", **arguments)
    order_a = placed_by_a.execute(context("dag_a", store=DictStore()))  # type: ignore[arg-type]
    # dag_b opted into the shared scope: it reattaches to dag_a's order, but it did not place it.
    shared = RevoxPlaceCallOperator(task_id="call", idempotency_scope="shared", **arguments)
    assert shared.execute(context("dag_b", try_number=2, store=DictStore())) == order_a  # type: ignore[arg-type]
    shared.on_kill()
    assert revox_conn.get_call(order_a)["status"] != "cancelled"
    # In the default scope dag_c places its own order, and a kill cancels that one only.
    own = RevoxPlaceCallOperator(task_id="call", **arguments)
    order_c = own.execute(context("dag_c", try_number=2, store=DictStore()))  # type: ignore[arg-type]
    assert order_c != order_a
    own.on_kill()
    assert revox_conn.get_call(order_c)["status"] == "cancelled"
    assert revox_conn.get_call(order_a)["status"] != "cancelled"
    assert endpoints(revox_conn)["POST /call/{id}/cancel"] == 1


def test_the_placing_task_identity_is_reserved(revox_conn: SimulatorHandle) -> None:
    from airflow_provider_revox.exceptions import RevoxInvalidRequestError

    with pytest.raises(RevoxInvalidRequestError, match="airflow_task"):
        RevoxPlaceCallOperator(task_id="call", phone_number=PARIS, assistant_id="a",
                               metadata={durable.OWNER_KEY: "someone/else"})  # fmt: skip
    with pytest.raises(ValueError, match="idempotency_scope"):
        RevoxPlaceCallOperator(task_id="call", phone_number=PARIS, assistant_id="a", idempotency_scope="all")


# -- 2. a wait that gives up cancels the order it placed --------------------------------------------


def tomorrow() -> str:
    return pendulum.now("UTC").add(days=1).isoformat()


@pytest.mark.parametrize("mode", [{"mode": "poke"}, {"deferrable": True}])
def test_a_timed_out_wait_cancels_its_order(
    mode: dict[str, Any],
    revox_simulator: SimulatorHandle,
    run_dag: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = "poke" if "mode" in mode else "deferrable"
    ti = run_task(run_dag, f"timeout_{name}", phone_number=PARIS, assistant_id="asst_later",
                  scheduled_at=tomorrow(), timeout=2, poke_interval=1, **mode)  # fmt: skip
    (call_id,) = revox_simulator.engine.call_ids()
    assert ti.state == "failed"
    assert revox_simulator.get_call(call_id)["status"] == "cancelled"
    assert endpoints(revox_simulator)["POST /call/{id}/cancel"] == 1
    assert (
        f"Call {call_id} cancelled because the wait for it gave up (cancel_on_timeout)"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize("mode", [{"mode": "poke"}, {"deferrable": True}])
def test_with_soft_fail_a_timed_out_wait_is_skipped_and_cancels_its_order(
    mode: dict[str, Any], revox_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    name = "poke" if "mode" in mode else "deferrable"
    ti = run_task(run_dag, f"timeout_soft_{name}", phone_number=PARIS, assistant_id="asst_later",
                  scheduled_at=tomorrow(), timeout=2, poke_interval=1, soft_fail=True, **mode)  # fmt: skip
    (call_id,) = revox_simulator.engine.call_ids()
    assert ti.state == "skipped"
    assert revox_simulator.get_call(call_id)["status"] == "cancelled"


def test_without_cancel_on_timeout_the_order_is_left_and_the_log_says_so(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ti = run_task(run_dag, "timeout_kept", phone_number=PARIS, assistant_id="asst_later", mode="poke",
                  scheduled_at=tomorrow(), timeout=2, poke_interval=1, cancel_on_timeout=False)  # fmt: skip
    (call_id,) = revox_simulator.engine.call_ids()
    assert ti.state == "failed"
    assert revox_simulator.get_call(call_id)["status"] == "scheduled"
    assert "POST /call/{id}/cancel" not in endpoints(revox_simulator)
    assert f"The wait for call {call_id} gave up; the order is left as it is" in capsys.readouterr().out


@pytest.fixture
def stalled_analysis(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorHandle]:
    """A simulator at 3,000x real time where a person always answers and the transcript analysis
    then stalls for ten hours: far past the deadline the wait derives for a post-processing order
    (its last attempt's end, plus the grace and the margin: an hour and a half, 1.8 real seconds)."""
    profile = Profile(outcome_weights={"human": 1.0}, post_processing_seconds=(36000.0, 36000.0, 36000.0))
    with running_simulator(seed=21, speed=3000, profile=profile) as sim:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", sim.connection_json())
        yield sim


@pytest.mark.parametrize(
    ("mode", "cancel_on_timeout"),
    [({"mode": "poke"}, True), ({"deferrable": True}, True), ({"mode": "poke"}, False)],
)
def test_the_derived_deadline_cancels_its_order(
    mode: dict[str, Any],
    cancel_on_timeout: bool,
    stalled_analysis: SimulatorHandle,
    run_dag: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No timeout, no execution_timeout: only the deadline derived from the order ends the wait.
    assistant = {"prompt": "Confirm the appointment", "call_retry_config": ALWAYS_OPEN_RETRY_CONFIG}
    name = f"derived_deadline_{'poke' if 'mode' in mode else 'deferrable'}_{cancel_on_timeout}"
    ti = run_task(run_dag, name, phone_number=PARIS, assistant=assistant, poke_interval=5,
                  cancel_on_timeout=cancel_on_timeout, **mode)  # fmt: skip
    (call_id,) = stalled_analysis.engine.call_ids()
    assert ti.state == "failed"
    out = capsys.readouterr().out
    assert f"call {call_id} did not finish by" in out
    if cancel_on_timeout:
        assert stalled_analysis.get_call(call_id)["status"] == "cancelled"
        assert endpoints(stalled_analysis)["POST /call/{id}/cancel"] == 1
        assert f"Call {call_id} cancelled because the wait for it gave up (cancel_on_timeout)" in out
    else:
        assert stalled_analysis.get_call(call_id)["status"] == "post_processing"
        assert "POST /call/{id}/cancel" not in endpoints(stalled_analysis)


@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_execution_timeout_in_poke_mode_cancels_its_order(
    cancel_on_kill: bool,
    revox_simulator: SimulatorHandle,
    run_dag: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No wait timeout: Airflow's execution_timeout ends the task while it sleeps between pokes,
    # then calls on_kill. cancel_on_timeout cancels, whether cancel_on_kill is on or not.
    ti = run_task(run_dag, f"exec_timeout_{cancel_on_kill}", phone_number=PARIS, assistant_id="asst_later",
                  mode="poke", scheduled_at=tomorrow(), poke_interval=1, cancel_on_kill=cancel_on_kill,
                  execution_timeout=timedelta(seconds=2))  # fmt: skip
    (call_id,) = revox_simulator.engine.call_ids()
    assert ti.state == "failed"
    assert revox_simulator.get_call(call_id)["status"] == "cancelled"
    assert endpoints(revox_simulator)["POST /call/{id}/cancel"] == 1
    assert (
        f"Call {call_id} cancelled because the task ran past its execution_timeout (cancel_on_timeout)"
        in capsys.readouterr().out
    )


def test_without_cancel_on_timeout_execution_timeout_leaves_the_order(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # cancel_on_kill stays on: the on_kill Airflow calls after execution_timeout must not cancel.
    ti = run_task(run_dag, "exec_timeout_kept", phone_number=PARIS, assistant_id="asst_later", mode="poke",
                  scheduled_at=tomorrow(), poke_interval=1, cancel_on_timeout=False,
                  execution_timeout=timedelta(seconds=2))  # fmt: skip
    (call_id,) = revox_simulator.engine.call_ids()
    assert ti.state == "failed"
    assert revox_simulator.get_call(call_id)["status"] == "scheduled"
    assert "POST /call/{id}/cancel" not in endpoints(revox_simulator)
    assert f"The wait for call {call_id} gave up; the order is left as it is" in capsys.readouterr().out


@pytest.mark.parametrize("limit", ["timeout", "execution_timeout"])
def test_the_sensor_which_placed_nothing_never_cancels(
    limit: str, revox_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    call_id = revox_simulator.place_call(
        phone_number=PARIS, assistant_id="asst_later", scheduled_at=tomorrow()
    )["id"]
    limits = {"timeout": 2} if limit == "timeout" else {"execution_timeout": timedelta(seconds=2)}
    ti = run_task(run_dag, f"timeout_sensor_{limit}", operator="RevoxCallSensor", call_id=call_id,
                  mode="poke", poke_interval=1, **limits)  # fmt: skip
    assert ti.state == "failed"
    assert revox_simulator.get_call(call_id)["status"] == "scheduled"
    assert "POST /call/{id}/cancel" not in endpoints(revox_simulator)


@pytest.mark.skipif(
    not compat.has_task_state_store(), reason=compat.needs_airflow_3_3("The task state store")
)
def test_airflows_deferral_timeout_cancels_the_order(revox_conn: SimulatorHandle) -> None:
    # Airflow's own deferral timeout resumes the task with __fail__: no event, the trigger's
    # on_kill skipped. A fresh operator reads the id back from the store and cancels.
    store = DictStore()
    arguments = {"phone_number": PARIS, "assistant_id": "a", "scheduled_at": tomorrow()}
    placed = RevoxPlaceCallOperator(task_id="call", wait_for_completion=False, **arguments)
    call_id = placed.execute(context("dag_t", store=store))  # type: ignore[arg-type]
    assert list(store.values.values()) == [call_id] and next(iter(store.values)).startswith(f"{STATE_KEY}:")
    resumed = RevoxPlaceCallOperator(task_id="call", deferrable=True, **arguments)
    with pytest.raises(AirflowSensorTimeout):
        resumed.resume_execution("__fail__", {"error": "Trigger timeout"}, context("dag_t", store=store))  # type: ignore[arg-type]
    assert revox_conn.get_call(call_id)["status"] == "cancelled"
    assert endpoints(revox_conn)["POST /call/{id}/cancel"] == 1


def test_airflows_deferral_timeout_without_a_store_finds_the_order_and_cancels_it(
    revox_conn: SimulatorHandle, without_task_state_store: None
) -> None:
    arguments = {"phone_number": PARIS, "assistant_id": "a", "scheduled_at": tomorrow()}
    placed = RevoxPlaceCallOperator(task_id="call", wait_for_completion=False, **arguments)
    call_id = placed.execute(context("dag_t"))  # type: ignore[arg-type]
    resumed = RevoxPlaceCallOperator(task_id="call", deferrable=True, **arguments)
    with pytest.raises(AirflowSensorTimeout):
        resumed.resume_execution("__fail__", {"error": "Trigger timeout"}, context("dag_t"))  # type: ignore[arg-type]
    assert revox_conn.get_call(call_id)["status"] == "cancelled"
    # Another DAG's deferral timeout finds no order of its own and cancels nothing more.
    stranger = RevoxPlaceCallOperator(task_id="call", deferrable=True, **arguments)
    with pytest.raises(AirflowSensorTimeout):
        stranger.resume_execution("__fail__", {"error": "Trigger timeout"}, context("dag_x"))  # type: ignore[arg-type]
    assert endpoints(revox_conn)["POST /call/{id}/cancel"] == 1
