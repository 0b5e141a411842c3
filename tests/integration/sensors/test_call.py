"""RevoxCallSensor through a real Airflow (dag.test) against the simulator over loopback.

The simulator runs at 600x real time and reports its clock, so an order with a few attempts
resolves in seconds while the sensor schedules its polls exactly as it would in production.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_revox._internal.core.call import parse_iso
from airflow_provider_revox.testing import SimulatorHandle, running_simulator

pytestmark = pytest.mark.airflow

DAG_TEMPLATE = """
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.sensors.revox import RevoxCallSensor

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    RevoxCallSensor(task_id="wait", call_id={call_id!r}, retries=2, **{kwargs})

build()
"""


def place(sim: SimulatorHandle, call_id: str, attempts: list[dict[str, Any]], **extra: Any) -> str:
    """Place one scripted order on the simulator and return its id."""
    return sim.place_scripted(call_id, attempts, post_processing_seconds=60, **extra)


def held(sim: SimulatorHandle, call_id: str, looks: int = 1) -> threading.Thread:
    """Pause an order until the sensor has looked at it ``looks`` times (so a deferrable sensor
    always defers), however slowly Airflow starts; at most a minute."""
    sim.engine.pause(call_id)

    def resume_after_first_look() -> None:
        for _ in range(6000):
            if sim.stats()["by_call_id"].get(call_id, 0) >= looks:
                break
            threading.Event().wait(0.01)
        sim.engine.resume(call_id)

    thread = threading.Thread(target=resume_after_first_look, daemon=True)
    thread.start()
    return thread


MODES = {
    "poke": {"mode": "poke", "poke_interval": 15},
    "reschedule": {"mode": "reschedule", "poke_interval": 15},
    "deferrable": {"deferrable": True, "poke_interval": 15},
}


@dataclass
class Case:
    """One mode of one test: the simulator, and a way to run a one-sensor DAG in that mode."""

    mode: str
    sim: SimulatorHandle
    run_dag: Callable[..., Any]

    def run(self, dag_id: str, call_id: str, **kwargs: Any) -> tuple[str, Any, Any]:
        """Run the sensor in this case's mode; return its state, XCom and task instance."""
        return run_sensor(self.run_dag, dag_id, call_id, **MODES[self.mode], **kwargs)


@pytest.fixture(params=sorted(MODES))
def case(
    request: pytest.FixtureRequest, fast_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> Case:
    return Case(str(request.param), fast_simulator, run_dag)


def run_sensor(run_dag: Callable[..., Any], dag_id: str, call_id: str, **kwargs: Any) -> tuple[str, Any, Any]:
    """Run a one-sensor DAG; return the task state, its XCom and the task instance."""
    dag_run = run_dag(DAG_TEMPLATE.format(dag_id=dag_id, call_id=call_id, kwargs=kwargs), dag_id)
    (ti,) = dag_run.get_task_instances()
    value = ti.xcom_pull(task_ids="wait") if ti.state == "success" else None
    return ti.state, value, ti


def test_completed_order_succeeds_with_summary(case: Case) -> None:
    mode, fast_simulator = case.mode, case.sim
    call_id = place(
        fast_simulator,
        f"call-ok-{mode}",
        [{"result": "voicemail", "duration": 30}, {"result": "human", "duration": 90}],
        outcome="interested",
    )
    resumer = held(fast_simulator, call_id)
    state, summary, ti = case.run(f"sensor_ok_{mode}", call_id)
    resumer.join(timeout=5)

    truth = fast_simulator.get_call(call_id)
    assert state == "success"
    assert truth["status"] == "completed"
    assert summary == {
        "call_id": call_id,
        "status": "completed",
        "outcome": "interested",
        "calls_count": 2,
        "last_attempt_result": "human",
        "last_attempt_end_reason": truth["last_call_attempt"]["end_reason"],
        "last_attempt_dial_error": None,
        "last_attempt_ended_at": parse_iso(truth["last_call_attempt"]["ended_at"]).isoformat(),
        "ended_at": parse_iso(truth["ended_at"]).isoformat(),
    }
    # Nothing else: no transcript, no assistant, no secret in the XCom.
    assert "transcript" not in json.dumps(summary)
    link = ti.xcom_pull(task_ids="wait", key="revox_call_link")
    assert link == {
        "call_id": call_id,
        "url": f"{fast_simulator.base_url.removesuffix('/api')}/dashboard/calls/{call_id}",
    }
    # The sensor GETs its order; its trigger fetches it with the triggerer's other polls by search.
    served = fast_simulator.stats()["by_endpoint"]
    assert served["GET /call/{id}"] >= 1
    assert ("POST /call/search" in served) == (mode == "deferrable")


@contextlib.contextmanager
def paced(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorHandle]:
    """A simulator at 150x instead of 600x, as ``revox_default``, for tests racing a deadline.

    Airflow 3.2 takes 3 to 12 real seconds to start a task on a loaded machine (the first try,
    each reschedule poke, the resume after a deferral): up to two simulated hours at 600x, past
    a whole post-processing or the derived deadline of an order that ended. At 150x it is half
    an hour at most.
    """
    with running_simulator(seed=0, speed=150) as sim:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", sim.connection_json())
        yield sim


def test_post_processing_is_not_success(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    mode = case.mode
    with paced(monkeypatch) as sim:
        # Held until the sensor's first look (however slowly Airflow starts), then dialled; then
        # half an hour of post-processing (12 real seconds) that the sensor sees and waits through.
        call_id = sim.place_scripted(
            f"call-post-{mode}", [{"result": "human", "duration": 30}], post_processing_seconds=1800
        )
        resumer = held(sim, call_id)
        state, summary, _ = case.run(f"sensor_post_{mode}", call_id)
        resumer.join(timeout=5)

        assert state == "success"
        assert summary["status"] == "completed"
        truth = sim.get_call(call_id)
        # The order ended when post-processing did; its last attempt half an hour before.
        assert summary["ended_at"] == parse_iso(truth["ended_at"]).isoformat()
        last_attempt_end = parse_iso(truth["last_call_attempt"]["ended_at"]).isoformat()
        assert summary["last_attempt_ended_at"] == last_attempt_end
        assert summary["ended_at"] > summary["last_attempt_ended_at"]
        assert sim.stats()["by_call_id"][call_id] >= 3  # polled through post_processing


def test_errored_order_fails_without_retrying(case: Case) -> None:
    mode, fast_simulator = case.mode, case.sim
    call_id = place(
        fast_simulator,
        f"call-err-{mode}",
        [{"dial_error": "number_non_attributed"}],
        final_status="errored",
    )
    state, _, ti = case.run(f"sensor_err_{mode}", call_id)

    assert fast_simulator.get_call(call_id)["status"] == "errored"
    assert state == "failed"
    assert ti.try_number == 1  # AirflowFailException: retries=2 are not used on a dead order


def test_cancelled_order_with_soft_fail_is_skipped(case: Case) -> None:
    mode, fast_simulator = case.mode, case.sim
    call_id = place(fast_simulator, f"call-cancel-{mode}", [{"result": "human", "duration": 600}])
    fast_simulator.engine.cancel(call_id)
    state, _, _ = case.run(f"sensor_cancel_{mode}", call_id, soft_fail=True)

    assert fast_simulator.get_call(call_id)["status"] == "cancelled"
    assert state == "skipped"


def test_cancelled_is_success_when_not_in_fail_on_statuses(case: Case) -> None:
    mode, fast_simulator = case.mode, case.sim
    call_id = place(fast_simulator, f"call-cancel-ok-{mode}", [{"result": "human", "duration": 600}])
    fast_simulator.engine.cancel(call_id)
    state, summary, _ = case.run(f"sensor_cancel_ok_{mode}", call_id, fail_on_statuses=("errored",))
    assert state == "success"
    assert summary["status"] == "cancelled"


def test_unknown_status_keeps_waiting(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    mode = case.mode
    with paced(monkeypatch) as sim:
        call_id = place(sim, f"call-unknown-{mode}", [{"result": "human", "duration": 60}])
        # The first answers carry a status nobody has documented; the sensor must not stop on
        # them. A sensor GETs the order; a trigger (deferrable mode) fetches it with the others
        # by search. Held until the second of them, however slowly Airflow starts.
        for polled_by in (call_id, "POST /call/search"):
            sim.faults.script(polled_by, ["unknown_status", "unknown_status", "ok"])
        resumer = held(sim, call_id, looks=2)
        state, summary, _ = case.run(f"sensor_unknown_{mode}", call_id)
        resumer.join(timeout=5)

        assert state == "success"
        assert summary["status"] == "completed"
        assert sim.stats()["by_call_id"][call_id] >= 3
        if mode == "deferrable":
            assert sim.faults.pending("POST /call/search") == 0


def served_statuses(sim: SimulatorHandle, call_id: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statuses ``GET /call/{id}`` answers for ``call_id`` from now on, in order."""
    served: list[str] = []
    answer = sim.engine.get_call_json

    def recording(asked: str, at: Any = None) -> bytes:
        body = answer(asked, at)
        if asked == call_id:
            served.append(json.loads(body)["call"]["status"])
        return body

    monkeypatch.setattr(sim.engine, "get_call_json", recording)
    return served


def test_paused_order_keeps_waiting_until_resumed(
    case: Case,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mode, fast_simulator = case.mode, case.sim
    call_id = place(
        fast_simulator, f"call-paused-{mode}", [{"result": "voicemail", "duration": 30}, {"result": "human"}]
    )
    served = served_statuses(fast_simulator, call_id, monkeypatch)
    # Paused until the sensor has looked at it: its first look sees "paused", and it keeps waiting.
    resumer = held(fast_simulator, call_id)
    state, summary, _ = case.run(f"sensor_paused_{mode}", call_id)
    resumer.join(timeout=5)
    assert state == "success"
    assert summary["status"] == "completed"
    logged = capsys.readouterr()
    if mode != "deferrable":  # the trigger's own log lines do not reach dag.test()'s output
        assert f"Call {call_id} is 'paused'" in logged.out + logged.err + caplog.text
    assert fast_simulator.stats()["by_call_id"][call_id] >= 2  # a look while paused, one after
    # The sensor's first look (a GET in every mode) was answered "paused", and it kept waiting.
    assert served[0] == "paused"


def test_explicit_timeout_fails_or_skips(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    mode, fast_simulator = case.mode, case.sim
    # Paused and never resumed: nothing happens within the 1.5-second timeout.
    call_id = place(fast_simulator, f"call-late-{mode}", [{"result": "human"}])
    fast_simulator.engine.pause(call_id)
    capsys.readouterr()
    state, _, _ = case.run(f"sensor_timeout_{mode}", call_id, timeout=1.5)
    assert state == "failed"
    logged = capsys.readouterr()
    # It failed on the timeout, not on anything else: Airflow's sensor timeout on a worker; the
    # trigger's deadline (the same timeout) for this order when deferred, seen paused or, when the
    # machine is slow enough for the 1.5 s to pass first, never read.
    text = logged.out + logged.err
    if mode == "deferrable":
        expected = rf"call {re.escape(call_id)} did not finish by \S+ \((last status 'paused'|never read)\)"
    else:
        expected = (
            r"Sensor has timed out; run duration of [\d.]+ seconds exceeds the specified timeout of 1\.5\."
        )
    assert re.search(f"AirflowSensorTimeout: {expected}", text), text[-3000:]

    state, _, _ = case.run(f"sensor_timeout_soft_{mode}", call_id, timeout=1.5, soft_fail=True)
    assert state == "skipped"


def test_a_poke_wait_says_why_it_sleeps_until_when_and_on_which_clock(
    simulator: SimulatorHandle, run_dag: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # A manual clock stands still: the order stays scheduled, and the explicit timeout ends the wait.
    later = (simulator.clock.now() + timedelta(hours=2)).isoformat()
    call_id = place(simulator, "call-why", [{"result": "human", "duration": 60}], scheduled_at=later)
    state, _, _ = run_sensor(run_dag, "sensor_why", call_id, mode="poke", poke_interval=5, timeout=2)
    assert state == "failed"
    logged = capsys.readouterr()
    text = logged.out + logged.err
    line = next(line for line in text.splitlines() if f"Call {call_id} is 'scheduled'; next check in" in line)
    assert re.search(
        r"next check in \d+ s: the API plans the next attempt at (?P<dial>\d{4}-\d\d-\d\d \d\d:\d\d):00 UTC"
        r"(; sleeping at most [^;]+)?; gives up at "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(times are the simulator's manual clock\)",
        line,
    ), line
    # The planned dial is the order's own, two hours after the simulator's "now".
    dial = re.search(r"attempt at (\S+ \S+) UTC", line)
    assert dial is not None and dial.group(1) == (simulator.clock.now() + timedelta(hours=2)).strftime(
        "%Y-%m-%d %H:%M:%S"
    )


def test_an_outage_is_one_warning_and_one_line_not_a_line_per_request(
    simulator: SimulatorHandle,
    run_dag: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call_id = place(simulator, "call-outage", [{"result": "human", "duration": 60}])
    simulator.advance(3 * 86400)  # the order ends before the wait starts
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", simulator.connection_json(max_retries=1))
    # Three polls of two tries fail (six requests), then Revox answers.
    simulator.faults.script(call_id, ["503"] * 6 + ["ok"])
    state, summary, _ = run_sensor(run_dag, "sensor_outage", call_id, mode="poke", poke_interval=1)
    logged = capsys.readouterr()
    lines = (logged.out + logged.err).splitlines()
    assert state == "success" and summary["status"] == "completed"
    assert simulator.stats()["by_status"]["503"] == 6
    assert len([line for line in lines if "will look again, waiting longer each time" in line]) == 1
    assert len([line for line in lines if "Revox answers again" in line]) == 1
    assert not [line for line in lines if "retrying in" in line and "[warning" in line]
