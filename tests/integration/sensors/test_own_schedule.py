"""Without ``next_call_at`` the sensor schedules its polls on its own arithmetic.

A real Airflow (``dag.test()``) waits in poke mode on a simulator at 600x real time that
withholds ``next_call_at`` (``withhold_next_call_at``): after a missed first dial, only the
provider's own retry-delay and calling-window arithmetic can say that the next dial is two
hours away. Every answer is recorded with the simulator's clock, so the checks read the
simulated time of each GET: a wake before the retry is due would show, and load on the machine
can only make a wake later, never earlier.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from airflow_provider_revox._internal.core.call import parse_iso
from airflow_provider_revox.testing import SimulatorHandle, running_simulator

pytestmark = pytest.mark.airflow

RETRY_DELAY = timedelta(hours=2)
POKE_INTERVAL = 15
RETRY_CONFIG = {
    "calling_windows": [
        {
            "calling_window_start_time": "00:00",
            "calling_window_end_time": "23:59",
            "retry_delay_seconds": int(RETRY_DELAY.total_seconds()),
        }
    ],
    "allowed_days": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    "max_retry_attempts": 3,
}

DAG = """
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.sensors.revox import RevoxCallSensor

@dag(dag_id="own_schedule", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    RevoxCallSensor(task_id="wait", call_id={call_id!r}, mode="poke", poke_interval={poke})

build()
"""


@pytest.fixture
def blind_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorHandle]:
    """A simulator at 600x that never reports ``next_call_at``, as ``revox_default``."""
    with running_simulator(seed=21, speed=600, withhold_next_call_at=True) as sim:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", sim.connection_json())
        yield sim


def record_answers(
    sim: SimulatorHandle, call_id: str, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[datetime, str, Any]]:
    """(simulated time, status, next_call_at) of every ``GET /call/{id}`` answer for ``call_id``."""
    answers: list[tuple[datetime, str, Any]] = []
    answer = sim.engine.get_call_json

    def recording(asked: str, at: Any = None) -> bytes:
        body = answer(asked, at)
        if asked == call_id:
            call = json.loads(body)["call"]
            answers.append((sim.clock.now(), call["status"], call["next_call_at"]))
        return body

    monkeypatch.setattr(sim.engine, "get_call_json", recording)
    return answers


def resume_after_first_look(sim: SimulatorHandle, call_id: str) -> threading.Thread:
    """Hold the order paused until the sensor's first look, however slowly Airflow starts."""
    sim.engine.pause(call_id)

    def resume() -> None:
        for _ in range(6000):
            if sim.stats()["by_call_id"].get(call_id, 0) >= 1:
                break
            threading.Event().wait(0.01)
        sim.engine.resume(call_id)

    thread = threading.Thread(target=resume, daemon=True)
    thread.start()
    return thread


def test_the_sensor_sleeps_through_the_retry_delay_on_its_own_arithmetic(
    blind_simulator: SimulatorHandle, run_dag: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = blind_simulator
    call_id = sim.place_scripted(
        "blind-retry",
        [{"dial_error": "no_answer"}, {"result": "human", "duration": 60}],
        call_retry_config=RETRY_CONFIG,
        post_processing_seconds=60,
    )
    answers = record_answers(sim, call_id, monkeypatch)
    resumer = resume_after_first_look(sim, call_id)
    dag_run = run_dag(DAG.format(call_id=call_id, poke=POKE_INTERVAL), "own_schedule")
    resumer.join(timeout=5)

    (ti,) = dag_run.get_task_instances()
    assert ti.state == "success"
    truth = sim.get_call(call_id)
    assert truth["status"] == "completed"
    # The simulator told the sensor nothing about the next dial, in any answer.
    assert answers and all(next_call_at is None for _, _, next_call_at in answers)
    first, second = reversed(truth["call_attempts"])
    missed_end = parse_iso(first["ended_at"])
    retry_due = missed_end + RETRY_DELAY
    assert parse_iso(second["started_at"]) >= retry_due

    # Between the missed dial and the retry the order is "scheduled": the sensor looked once (or
    # twice, when a look fell between the retry's due time and its dial), not every 15 s (480).
    waiting = [moment for moment, status, _ in answers if status == "scheduled"]
    assert 1 <= len(waiting) <= 2
    # The look after the first "scheduled" one woke no earlier than the retry was due.
    after_wait = [moment for moment, _, _ in answers if moment > waiting[0]]
    assert after_wait and after_wait[0] >= retry_due
    # The whole wait: a handful of looks around two short calls and their analysis.
    assert len(answers) <= 25
    assert answers[0][1] == "paused"
    assert answers[-1][1] == "completed"
