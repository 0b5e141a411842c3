"""RevoxCallTrigger over real HTTP against the simulator, and the sensor's fail-closed event check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from airflow_provider_revox._internal.client import servertime
from airflow_provider_revox._internal.hooks import revox as hook_module
from airflow_provider_revox.sensors.revox import RevoxCallSensor
from airflow_provider_revox.testing import SimulatorHandle, running_simulator
from airflow_provider_revox.triggers.revox import RevoxCallsTrigger, RevoxCallTrigger


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorHandle]:
    """A simulator on a manual clock; the hook retries once and never really sleeps."""
    with running_simulator(seed=3) as handle:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", handle.connection_json(max_retries=1))
        slept: list[float] = []

        async def no_sleep(seconds: float) -> None:
            slept.append(seconds)

        monkeypatch.setattr(hook_module, "retry_asleep", no_sleep)
        yield handle


def finished_call(sim: SimulatorHandle, call_id: str, **extra: Any) -> str:
    extra.setdefault("attempts", [{"result": "human", "duration": 60}])
    sim.place_scripted(call_id, **extra)
    sim.finish(call_id)
    return call_id


async def collect(trigger: RevoxCallTrigger) -> list[dict[str, Any]]:
    trigger.min_sleep = 0.01  # the simulator's manual clock: no need to wait a real second
    return [event.payload async for event in trigger.run()]


@pytest.mark.parametrize(
    ("cls", "own"),
    [
        (RevoxCallTrigger, {"call_id": "c-1"}),
        (
            RevoxCallsTrigger,
            {
                "call_ids": ["c-1", "c-2", "c-3"],
                "min_completed_ratio": 0.5,
                "max_concurrency": 8,
                "settled": {"completed": ["c-2"]},
            },
        ),
    ],
)
def test_serialisation_round_trip_is_json_only(cls: Any, own: dict[str, Any]) -> None:
    shared = {
        "revox_conn_id": "revox_prod",
        "poke_interval": 20.0,
        "fail_on_statuses": ["errored"],
        "deadline_at": "2026-01-02T03:04:05+00:00",
        "deadline_fixed": True,
        "stop_at": "2026-01-02T04:00:00+00:00",
    }
    trigger = cls(**own, **{**shared, "poke_interval": 20, "fail_on_statuses": ("errored",)})
    classpath, kwargs = trigger.serialize()
    assert classpath == f"airflow_provider_revox.triggers.revox.{cls.__name__}"
    assert json.loads(json.dumps(kwargs)) == kwargs == {**own, **shared}
    assert cls(**kwargs).serialize() == (classpath, kwargs)


async def test_success_event_carries_the_summary(sim: SimulatorHandle) -> None:
    call_id = finished_call(sim, "trig-ok", outcome="interested")
    events = await collect(RevoxCallTrigger(call_id=call_id, poke_interval=0.05))
    assert len(events) == 1
    assert events[0]["status"] == "success"
    assert events[0]["summary"]["status"] == "completed"
    assert events[0]["summary"]["outcome"] == "interested"
    assert events[0]["summary"]["calls_count"] == 1


@pytest.fixture(params=["search", "get"])
def polled_by(request: pytest.FixtureRequest, sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch) -> str:
    """Poll by ``POST /call/search`` (the default) or by ``GET /call/{id}`` (``batch_polls`` off)."""
    if request.param == "get":
        monkeypatch.setenv(
            "AIRFLOW_CONN_REVOX_DEFAULT", sim.connection_json(max_retries=1, batch_polls=False)
        )
    return str(request.param)


def script_polls(sim: SimulatorHandle, polled_by: str, call_id: str, tokens: list[str]) -> str:
    """Script the faults of the requests that poll ``call_id``; return their endpoint."""
    if polled_by == "search":
        sim.faults.script("POST /call/search", tokens)
        return "POST /call/search"
    sim.faults.script(call_id, tokens)
    return "GET /call/{id}"


async def test_keeps_waiting_through_429_and_503(sim: SimulatorHandle, polled_by: str) -> None:
    call_id = finished_call(sim, "trig-flaky")
    # max_retries=1: each poll makes two requests, so three polls fail before one succeeds.
    endpoint = script_polls(sim, polled_by, call_id, ["429", "503", "503", "429", "429", "503", "ok"])
    events = await collect(RevoxCallTrigger(call_id=call_id, poke_interval=0.05))
    assert [e["status"] for e in events] == ["success"]
    assert sim.stats()["by_endpoint"] == {endpoint: 7}
    assert sim.stats()["by_status"] == {"429": 3, "503": 3, "200": 1}


async def test_one_http_client_for_the_triggers_life(
    sim: SimulatorHandle, polled_by: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    call_id = finished_call(sim, "trig-client")
    endpoint = script_polls(sim, polled_by, call_id, ["503", "503", "503", "503", "ok"])
    created: list[httpx.AsyncClient] = []
    original = httpx.AsyncClient.__init__

    def counting_init(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> None:
        created.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "__init__", counting_init)
    events = await collect(RevoxCallTrigger(call_id=call_id, poke_interval=0.05))
    assert events[0]["status"] == "success"
    assert sim.stats()["by_endpoint"] == {endpoint: 5}  # three polls...
    assert len(created) == 1  # ...one client
    assert created[0].is_closed


async def test_failed_status_sends_failed_event_with_reason(sim: SimulatorHandle) -> None:
    call_id = finished_call(
        sim, "trig-err", attempts=[{"dial_error": "number_non_attributed"}], final_status="errored"
    )
    events = await collect(RevoxCallTrigger(call_id=call_id, poke_interval=0.05))
    assert events[0]["status"] == "failed"
    assert "errored" in events[0]["message"]
    assert "number_non_attributed" in events[0]["message"]


async def test_unknown_call_sends_error_event(sim: SimulatorHandle) -> None:
    events = await collect(RevoxCallTrigger(call_id="no-such-call", poke_interval=0.05))
    assert [e["status"] for e in events] == ["error"]
    assert "no-such-call" in events[0]["message"]


class RealClock:
    """The triggers' real time, moved only by the sleeps they ask for: no test waits on the machine."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
        self.slept: list[float] = []

    def utcnow(self) -> datetime:
        return self.now

    async def pause(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


async def test_fixed_deadline_sends_timeout_once_it_passes_with_the_last_status_read(
    sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The simulator's clock stands still: each poll sleeps the frozen clock's pause, 30 s here, so
    # every request has at least 30 s of the deadline left whatever the machine's load.
    monkeypatch.setattr(servertime, "_FROZEN_CLOCK_POLL_SECONDS", 30.0)
    placed = sim.place_call(phone_number="+33612345678", assistant_id="asst_test")
    sim.engine.pause(placed["id"])
    real = RealClock()
    deadline = real.now + timedelta(seconds=90)
    trigger = RevoxCallTrigger(
        call_id=placed["id"], poke_interval=30, deadline_at=deadline.isoformat(), deadline_fixed=True
    )
    trigger.utcnow = real.utcnow  # type: ignore[method-assign]
    trigger.pause = real.pause  # type: ignore[method-assign]
    events = await collect(trigger)

    assert [e["status"] for e in events] == ["timeout"]
    expected = f"call {placed['id']} did not finish by {deadline.isoformat()} (last status 'paused')"
    assert events[0]["message"] == expected
    assert events[0]["summary"]["status"] == "paused"
    # It polled on its interval until the deadline, never slept past it, and gave up at it.
    assert real.slept == [30.0, 30.0, 30.0]
    assert real.now == deadline


async def test_fixed_deadline_already_passed_sends_timeout_after_one_read(sim: SimulatorHandle) -> None:
    placed = sim.place_call(phone_number="+33612345678", assistant_id="asst_test")
    sim.engine.pause(placed["id"])
    real = RealClock()
    passed = real.now - timedelta(seconds=1)
    trigger = RevoxCallTrigger(
        call_id=placed["id"], poke_interval=30, deadline_at=passed.isoformat(), deadline_fixed=True
    )
    trigger.utcnow = real.utcnow  # type: ignore[method-assign]
    trigger.pause = real.pause  # type: ignore[method-assign]
    events = await collect(trigger)

    assert [e["status"] for e in events] == ["timeout"]
    # No budget left for a request: the wait ends on the deadline without reading the order.
    expected = f"call {placed['id']} did not finish by {passed.isoformat()} (never read)"
    assert events[0]["message"] == expected
    assert real.slept == []


def make_sensor(**kwargs: Any) -> RevoxCallSensor:
    return RevoxCallSensor(task_id="wait", call_id="c-1", **kwargs)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (None, "RevoxCallTrigger sent no valid event for call c-1: None"),
        ({}, "RevoxCallTrigger sent no valid event for call c-1: {}"),
        ({"status": "done"}, "RevoxCallTrigger sent no valid event for call c-1: {'status': 'done'}"),
        ("success", "RevoxCallTrigger sent no valid event for call c-1: 'success'"),
        (
            {"status": "success", "summary": {"call_id": "other"}},
            "RevoxCallTrigger sent a malformed success event for call c-1: "
            "{'status': 'success', 'summary': {'call_id': 'other'}}",
        ),
    ],
)
def test_execute_complete_is_fail_closed(event: Any, message: str) -> None:
    with pytest.raises(AirflowException) as info:
        make_sensor().execute_complete(context={}, event=event)  # type: ignore[arg-type]
    # Exactly AirflowException: a retryable failure, neither a skip nor a fail-without-retry.
    assert type(info.value) is AirflowException
    assert str(info.value) == message


def test_execute_complete_maps_each_event_kind() -> None:
    summary = {"call_id": "c-1", "status": "completed"}
    assert make_sensor().execute_complete({}, {"status": "success", "summary": summary}) == summary  # type: ignore[arg-type]
    with pytest.raises(AirflowFailException, match="errored"):
        make_sensor().execute_complete({}, {"status": "failed", "message": "call c-1 is 'errored'"})  # type: ignore[arg-type]
    with pytest.raises(AirflowSkipException, match="errored"):
        make_sensor(soft_fail=True).execute_complete(  # type: ignore[arg-type]
            {}, {"status": "failed", "message": "call c-1 is 'errored'"}
        )
    with pytest.raises(AirflowSensorTimeout, match="did not finish"):
        make_sensor().execute_complete({}, {"status": "timeout", "message": "did not finish"})  # type: ignore[arg-type]
    with pytest.raises(AirflowException) as info:
        make_sensor().execute_complete({}, {"status": "error", "message": "key was rejected"})  # type: ignore[arg-type]
    assert type(info.value) is AirflowException and str(info.value) == "key was rejected"


def test_bad_fail_on_statuses_is_rejected() -> None:
    with pytest.raises(ValueError, match="erored"):
        make_sensor(fail_on_statuses=("erored",))
    with pytest.raises(ValueError, match="completed"):
        make_sensor(fail_on_statuses=("completed",))
