"""Every wait ends: an order the model cannot read, and execution_timeout while deferred.

Through a real Airflow (``dag.test()``) against a simulator at 3,000x real time, where the
hour a wait grants an order it cannot read passes in 1.2 real seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_revox.testing import SimulatorHandle, running_simulator

pytestmark = pytest.mark.airflow

DAG = """
import datetime
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.sensors.revox import RevoxCallSensor, RevoxCallsSensor

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    {sensor}(task_id="wait", poke_interval=60, **{kwargs})

build()
"""

MODES = {
    "poke": {"mode": "poke"},
    "reschedule": {"mode": "reschedule"},
    "deferrable": {"deferrable": True},
}


@pytest.fixture
def faster_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorHandle]:
    """A simulator at 3,000x real time with ``revox_default`` pointing at it."""
    with running_simulator(seed=13, speed=3000) as sim:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", sim.connection_json())
        yield sim


def unreadable(sim: SimulatorHandle, call_id: str) -> str:
    """An order whose answers the model rejects (numeric enum options), as a drifted API might send."""
    sim.place_scripted(call_id, [{"result": "human", "duration": 60}])
    plan = sim.engine._plans[call_id]
    plan.spec.assistant["structured_output_config"] = [
        {"name": "tier", "type": "enum", "enum_options": [1, 2]}
    ]
    return call_id


def run_wait(
    sim: SimulatorHandle, run_dag: Callable[..., Any], dag_id: str, sensor: str, **kwargs: Any
) -> tuple[str, timedelta]:
    """Run the wait; return its state and the simulated time it took (the simulator's clock)."""
    started = sim.clock.now()
    source = DAG.format(dag_id=dag_id, sensor=sensor, kwargs=kwargs)
    source = source.replace("'__TIMEOUT__'", "datetime.timedelta(seconds=3)")
    dag_run = run_dag(source, dag_id)
    (ti,) = dag_run.get_task_instances()
    return ti.state, sim.clock.now() - started


@pytest.mark.parametrize("mode", sorted(MODES))
def test_an_unreadable_order_is_given_up_an_hour_after_the_first_start(
    mode: str,
    faster_simulator: SimulatorHandle,
    run_dag: Callable[..., Any],
    capfd: pytest.CaptureFixture[str],
) -> None:
    call_id = unreadable(faster_simulator, f"unreadable-{mode}")
    state, took = run_wait(
        faster_simulator, run_dag, f"unreadable_{mode}", "RevoxCallSensor", call_id=call_id, **MODES[mode]
    )

    assert state == "failed"
    out = capfd.readouterr().out
    assert f"call {call_id} did not finish by" in out and "(never read)" in out
    # Waited the hour of grace out (on the simulator's clock), polling more than once, whatever the mode.
    assert took >= timedelta(hours=1)
    assert faster_simulator.stats()["by_call_id"][call_id] >= 2
    # One warning when the failures start, not one per poll.
    assert out.count("will look again, waiting longer each time") == 1


def test_a_batch_in_reschedule_mode_keeps_its_first_start(
    faster_simulator: SimulatorHandle, run_dag: Callable[..., Any], capfd: pytest.CaptureFixture[str]
) -> None:
    call_id = unreadable(faster_simulator, "unreadable-batch")
    state, took = run_wait(
        faster_simulator,
        run_dag,
        "unreadable_batch",
        "RevoxCallsSensor",
        call_ids=[call_id],
        mode="reschedule",
    )

    assert state == "failed"
    assert "call orders did not all finish by" in capfd.readouterr().out
    # The hour of grace counted from the first start, not from each reschedule's.
    assert took >= timedelta(hours=1)


@pytest.mark.parametrize("sensor", ["RevoxCallSensor", "RevoxCallsSensor"])
def test_execution_timeout_ends_a_deferred_wait(
    sensor: str,
    fast_simulator: SimulatorHandle,
    run_dag: Callable[..., Any],
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Paused and never resumed: its derived deadline moves with the pause, for ever.
    call_id = fast_simulator.place_scripted(f"paused-{sensor}", [{"result": "human"}])
    fast_simulator.engine.pause(call_id)
    ids: dict[str, Any] = {"call_id": call_id} if sensor == "RevoxCallSensor" else {"call_ids": [call_id]}
    before = datetime.now(timezone.utc)
    state, _ = run_wait(
        fast_simulator,
        run_dag,
        f"stopped_{sensor.lower()}",
        sensor,
        deferrable=True,
        execution_timeout="__TIMEOUT__",
        **ids,
    )

    after = datetime.now(timezone.utc)

    assert state == "failed"
    out = capfd.readouterr().out
    # The sensor's own timeout, at the execution_timeout (3 s after the task started), not some
    # other failure nor the order's derived deadline (it has none while paused).
    found = re.search(r"AirflowSensorTimeout: [^\n]*? finish by (\d{4}-\d\d-\d\dT[\d:.]+\+00:00)", out)
    assert found is not None, out[-3000:]
    by = datetime.fromisoformat(found.group(1))
    assert before + timedelta(seconds=3) <= by <= after
