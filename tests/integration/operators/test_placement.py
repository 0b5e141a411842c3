"""RevoxPlaceCallOperator through a real Airflow (dag.test) against the simulator over loopback:
placement then wait in each mode, the id at once without waiting, and bad input refused before
any request."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_revox._internal.core import compat, durable
from airflow_provider_revox.exceptions import RevoxInvalidRequestError
from airflow_provider_revox.operators.revox import RevoxPlaceCallOperator
from airflow_provider_revox.testing import ALWAYS_OPEN_RETRY_CONFIG, SimulatorHandle

pytestmark = pytest.mark.airflow

PARIS = "+33612345678"
#: An inline assistant that may dial at any hour, so an order ends within seconds at 600x.
ASSISTANT = {"prompt": "Confirm the appointment", "call_retry_config": ALWAYS_OPEN_RETRY_CONFIG}

DAG_TEMPLATE = """
import pendulum
from datetime import timedelta
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxPlaceCallOperator

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    RevoxPlaceCallOperator(task_id="call", retries={retries}, retry_delay=timedelta(seconds=0), **{kwargs})

build()
"""

MODES = {
    "poke": {"mode": "poke", "poke_interval": 15},
    "reschedule": {"mode": "reschedule", "poke_interval": 15},
    "deferrable": {"deferrable": True, "poke_interval": 15},
}


def run_place(
    run_dag: Callable[..., Any],
    dag_id: str,
    retries: int = 0,
    conf: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Run a one-task DAG; return its task instance."""
    source = DAG_TEMPLATE.format(dag_id=dag_id, retries=retries, kwargs=kwargs)
    (ti,) = run_dag(source, dag_id).get_task_instances()
    return ti


def as_python_iso(stamp: str) -> str:
    """The API's ``...123Z`` timestamp as Python's ``isoformat()`` writes the same instant."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).isoformat()


def orders(sim: SimulatorHandle) -> list[dict[str, Any]]:
    return [sim.get_call(call_id) for call_id in sim.engine.call_ids()]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_places_one_order_then_waits_for_it(
    mode: str, fast_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    ti = run_place(
        run_dag,
        f"place_wait_{mode}",
        phone_number=PARIS,
        assistant=ASSISTANT,
        metadata={"customer": "c-42"},
        prompt_variables={"first_name": "Ada"},
        fail_on_statuses=["cancelled"],
        **MODES[mode],
    )
    (order,) = orders(fast_simulator)
    assert ti.state == "success"
    assert order["status"] in ("completed", "errored")
    summary = ti.xcom_pull(task_ids="call")
    last = order["last_call_attempt"]
    assert summary == {
        "call_id": order["id"],
        "status": order["status"],
        "outcome": order["outcome"],
        "calls_count": len(order["call_attempts"]),
        "last_attempt_result": last["result"],
        "last_attempt_end_reason": last["end_reason"],
        "last_attempt_dial_error": last["dial_error"],
        "last_attempt_ended_at": as_python_iso(last["ended_at"]),
        "ended_at": as_python_iso(order["ended_at"]),
    }
    assert order["metadata"]["customer"] == "c-42"
    assert order["metadata"][durable.METADATA_KEY].startswith("af-")
    assert order["prompt_variables"] == {"first_name": "Ada"}
    link = ti.xcom_pull(task_ids="call", key="revox_call_link")
    assert link["call_id"] == order["id"] and link["url"].endswith(f"/dashboard/calls/{order['id']}")
    stats = fast_simulator.stats()
    assert stats["by_endpoint"]["POST /call"] == 1
    searches = stats["by_endpoint"].get("POST /call/search", 0)
    if compat.has_task_state_store():  # the id is kept there: no search was needed, even across pokes
        # No key lookup on the first try nor on any poke. A deferred wait is left out: its
        # trigger may poll the order by the triggerer's shared search (by id) or by GET.
        if mode != "deferrable":
            assert searches == 0
    else:  # Airflow 3.2: each try (and each reschedule poke) first looks for its order by key
        assert searches >= 1


def test_without_waiting_returns_the_id_at_once(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    ti = run_place(
        run_dag, "place_no_wait", phone_number=PARIS, assistant_id="asst_nowait", wait_for_completion=False
    )
    (order,) = orders(fast_simulator)
    assert ti.state == "success"
    assert ti.xcom_pull(task_ids="call") == order["id"]
    # Returned at once: the order was never read (whether it has ended by now depends on how fast
    # the 600x clock ran past its first dial). Without a task state store (Airflow 3.2) the first
    # try looks for its order before placing it.
    searched = {} if compat.has_task_state_store() else {"POST /call/search": 1}
    history = {"GET /calls/phone-history": 1}  # the do-not-contact gate, before the POST
    assert fast_simulator.stats()["by_endpoint"] == {**searched, **history, "POST /call": 1}
    assert ti.xcom_pull(task_ids="call", key="revox_call_link")["call_id"] == order["id"]


@pytest.mark.parametrize(
    ("conf", "problem"),
    [
        ({"phone": "06 12 34 56 78", "metadata": {"k": "v"}}, "phone_number"),
        ({"phone": "+33000000000", "metadata": {"k": "v"}}, "phone_number"),
        ({"phone": PARIS, "assistant": {"prompt": "x"}, "metadata": {"k": "v"}}, "both"),
        ({"phone": PARIS, "assistant_id": None, "metadata": {"k": "v"}}, "neither"),
        ({"phone": PARIS, "metadata": {"count": 3}}, "metadata"),
    ],
)
def test_bad_input_is_refused_before_any_request(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any], conf: dict[str, Any], problem: str
) -> None:
    dag_id = "place_bad_" + re.sub(r"\W", "_", f"{problem}{conf['phone']}")
    source = f"""
import pendulum
from airflow.sdk import dag, task
from airflow_provider_revox.operators.revox import RevoxPlaceCallOperator

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
     catchup=False, render_template_as_native_obj=True)
def build():
    RevoxPlaceCallOperator(
        task_id="call",
        phone_number="{{{{ dag_run.conf['phone'] }}}}",
        assistant_id="{{{{ dag_run.conf.get('assistant_id', 'asst_x') }}}}",
        assistant="{{{{ dag_run.conf.get('assistant') }}}}",
        metadata="{{{{ dag_run.conf['metadata'] }}}}",
    )

build()
"""
    (ti,) = run_dag(source, dag_id, conf=conf).get_task_instances()
    assert ti.state == "failed"
    assert fast_simulator.stats()["requests_total"] == 0
    assert fast_simulator.stats()["calls"] == 0


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"phone_number": "0612345678", "assistant_id": "a"}, "phone_number"),
        ({"phone_number": PARIS}, "assistant_id"),
        ({"phone_number": PARIS, "assistant_id": "a", "metadata": {"n": 1}}, "metadata"),
        ({"phone_number": PARIS, "assistant_id": "a", "metadata": {durable.METADATA_KEY: "x"}}, "metadata"),
    ],
)
def test_literal_bad_input_is_refused_when_the_dag_is_parsed(arguments: dict[str, Any], field: str) -> None:
    with pytest.raises(RevoxInvalidRequestError) as caught:
        RevoxPlaceCallOperator(task_id="call", **arguments)
    assert caught.value.field == field


def test_templated_values_are_left_for_run_time() -> None:
    operator = RevoxPlaceCallOperator(task_id="call", phone_number="{{ params.phone }}", assistant_id="a")
    assert operator.call_id == "" and operator.wait_for_completion is True and operator.cancel_on_kill is True


def test_mapped_placements_place_one_order_each_under_its_own_key(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    numbers = [PARIS, "+33478123456", "+12125550123"]
    source = f"""
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxPlaceCallOperator

@dag(dag_id="place_mapped", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    RevoxPlaceCallOperator.partial(
        task_id="call", assistant_id="asst_mapped", wait_for_completion=False
    ).expand(phone_number={numbers!r})

build()
"""
    tis = run_dag(source, "place_mapped").get_task_instances()
    assert sorted(ti.state for ti in tis) == ["success"] * 3
    placed = {ti.map_index: ti.xcom_pull(task_ids="call", map_indexes=ti.map_index) for ti in tis}
    by_id = {order["id"]: order for order in orders(fast_simulator)}
    assert sorted(placed.values()) == sorted(by_id)
    assert [by_id[placed[index]]["to_phone_number"] for index in range(3)] == numbers
    assert len({order["metadata"][durable.METADATA_KEY] for order in by_id.values()}) == 3
