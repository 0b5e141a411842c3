"""What a deferred wait does while it waits: cut a request at its deadline, stay quiet through an
outage while backing off, and say when the order's status changes. Against the simulator over
loopback; sleeps are recorded instead of slept where the test is about their length."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_revox._internal.hooks import revox as hook_module
from airflow_provider_revox._simulator.clock import DEFAULT_VIRTUAL_START, ScaledClock
from airflow_provider_revox.testing import SimulatorHandle, running_simulator
from airflow_provider_revox.triggers.revox import RevoxCallsTrigger, RevoxCallTrigger


class Log:
    """Collects what a trigger logs, by level."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {"warning": [], "info": []}

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.lines["warning"].append(msg % args)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.lines["info"].append(msg % args)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Log:
    collected = Log()
    for cls in (RevoxCallTrigger, RevoxCallsTrigger):
        monkeypatch.setattr(cls, "log", collected)
    return collected


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorHandle]:
    """A manual-clock simulator polled by GET; the hook retries once and never really sleeps."""

    async def no_sleep(seconds: float) -> None:
        return None

    monkeypatch.setattr(hook_module, "retry_asleep", no_sleep)
    with running_simulator(seed=9) as handle:
        monkeypatch.setenv(
            "AIRFLOW_CONN_REVOX_DEFAULT", handle.connection_json(max_retries=1, batch_polls=False)
        )
        yield handle


def finished(sim: SimulatorHandle, call_id: str) -> str:
    sim.place_scripted(call_id, [{"result": "human", "duration": 60}])
    sim.finish(call_id)
    return call_id


async def run(trigger: Any, slept: list[float] | None = None) -> list[dict[str, Any]]:
    async def record(seconds: float) -> None:
        if slept is not None:
            slept.append(seconds)
        await asyncio.sleep(0)

    trigger.pause = record
    trigger.min_sleep = 0.01
    return [event.payload async for event in trigger.run()]


@pytest.mark.parametrize("limit", ["deadline_at", "stop_at"])
async def test_the_deadline_cuts_a_request_in_flight(sim: SimulatorHandle, limit: str) -> None:
    call_id = finished(sim, "slow-answer")
    sim.faults.script(call_id, ["slow:600"])  # the server sits on the request for ten minutes
    soon = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
    kwargs: dict[str, Any] = {"deadline_at": soon, "deadline_fixed": True} if limit == "deadline_at" else {}
    if limit == "stop_at":
        kwargs["stop_at"] = soon
    # The deadline, not the answer, ends the wait: without the cut this would sit for ten minutes
    # (a minute here is only the test's own safety net).
    events = await asyncio.wait_for(run(RevoxCallTrigger(call_id=call_id, poke_interval=0.05, **kwargs)), 60)

    assert [event["status"] for event in events] == ["timeout"]
    assert events[0]["message"] == f"call {call_id} did not finish by {soon} (never read)"


async def test_an_outage_logs_once_and_backs_off(sim: SimulatorHandle, log: Log) -> None:
    ids = [finished(sim, f"outage-{index}") for index in range(20)]
    for call_id in ids:
        # max_retries=1: six polls of two failed requests each, then an answer.
        sim.faults.script(call_id, ["503"] * 12 + ["ok"])
    slept: list[float] = []
    waits = [run(RevoxCallTrigger(call_id=call_id, poke_interval=0.05), slept) for call_id in ids]
    results = await asyncio.gather(*waits)

    assert [events[0]["status"] for events in results] == ["success"] * 20
    assert sim.stats()["by_status"] == {"503": 240, "200": 20}
    # Twenty waits, six failed polls each: one warning per wait, not one per failed poll...
    assert len(log.lines["warning"]) == 20
    assert all("waiting it out, longer each time" in line for line in log.lines["warning"])
    # ...one line each when Revox answers again...
    assert sum("Revox answers again" in line for line in log.lines["info"]) == 20
    # ...and pauses that double from poke_interval (a manual clock caps a pause at 1 s).
    assert sorted(set(slept))[:5] == [0.05, 0.1, 0.2, 0.4, 0.8]


async def test_a_batch_outage_logs_once_and_recovers(sim: SimulatorHandle, log: Log) -> None:
    ids = [finished(sim, f"batch-outage-{index}") for index in range(3)]
    for call_id in ids:
        sim.faults.script(call_id, ["503"] * 8 + ["ok"])
    events = await run(RevoxCallsTrigger(call_ids=ids, poke_interval=0.05))

    assert [event["status"] for event in events] == ["success"]
    [warning] = log.lines["warning"]
    assert warning.startswith(
        f"3 call order(s): Revox API at {sim.base_url.removesuffix('/api')} still failing"
    )
    assert warning.endswith("; will look again, waiting longer each time")
    assert sum("Revox answers again" in line for line in log.lines["info"]) == 1


async def test_a_deferred_wait_logs_each_status_change_once(
    monkeypatch: pytest.MonkeyPatch, log: Log
) -> None:
    with running_simulator(seed=4, clock=ScaledClock(3600, start=DEFAULT_VIRTUAL_START)) as sim:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", sim.connection_json(batch_polls=False))
        # Two real seconds away at 3600x: the first poll sees the order scheduled on a loaded host.
        dial = (sim.clock.now() + timedelta(hours=2)).isoformat()
        call_id = sim.place_scripted(
            "talkative",
            [{"result": "human", "duration": 600}],
            scheduled_at=dial,
            post_processing_seconds=900,
        )
        trigger = RevoxCallTrigger(call_id=call_id, poke_interval=30)
        trigger.min_sleep = 0.01
        events = await asyncio.wait_for(run_real(trigger), 60)

    assert [event["status"] for event in events] == ["success"]
    changes = [line for line in log.lines["info"] if line.startswith(f"Call {call_id} is ")]
    statuses = [line.split("'")[1] for line in changes]
    # Each status once, in order, with the next check time; never a line per poll.
    assert statuses[0] == "scheduled"
    assert "calling" in statuses and "post_processing" in statuses
    assert len(statuses) == len(set(statuses))
    assert all("; next check at " in line for line in changes)
    assert sim.stats()["by_call_id"][call_id] > len(changes)


async def run_real(trigger: Any) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]
