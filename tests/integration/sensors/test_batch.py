"""RevoxCallsSensor and RevoxCallsTrigger: many orders at once, against the simulator over loopback.

The DAG tests run a real Airflow (``dag.test()``) against a simulator at 600x real time, in poke
and deferrable mode. The trigger tests run it directly against a faster scaled clock or a
manual one, and count the requests the simulator served per call id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.hooks import poller as poller_module
from airflow_provider_revox._internal.hooks import revox as hook_module
from airflow_provider_revox._internal.waiting.batch import Fleet, list_ids, settled_from_codes
from airflow_provider_revox._internal.waiting.ids import batch_call_ids
from airflow_provider_revox._internal.waiting.outcome import describe_fetch_errors
from airflow_provider_revox._simulator.clock import DEFAULT_VIRTUAL_START, ScaledClock
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.sensors.revox import RevoxCallsSensor
from airflow_provider_revox.testing import SimulatorHandle, running_simulator
from airflow_provider_revox.triggers.revox import RevoxCallsTrigger

HUMAN = [{"result": "human", "duration": 60}]
VOICEMAIL_THEN_HUMAN = [{"result": "voicemail", "duration": 30}, {"result": "human", "duration": 60}]
DEAD_NUMBER = [{"dial_error": "number_non_attributed"}]


def connect(monkeypatch: pytest.MonkeyPatch, sim: SimulatorHandle, **extra: Any) -> None:
    """Point ``revox_default`` at ``sim``."""
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", sim.connection_json(**extra))


def place(sim: SimulatorHandle, call_id: str, attempts: list[dict[str, Any]], **extra: Any) -> str:
    """Place one scripted order on the simulator and return its id."""
    return sim.place_scripted(call_id, attempts, post_processing_seconds=60, **extra)


def errored(sim: SimulatorHandle, call_id: str, **extra: Any) -> str:
    """An order whose only dial fails for good."""
    return place(sim, call_id, DEAD_NUMBER, final_status="errored", **extra)


def far_ahead(sim: SimulatorHandle, call_id: str, hours: float) -> str:
    """An order whose first dial is ``hours`` away on the simulator's clock."""
    when = sim.clock.now() + timedelta(hours=hours)
    return place(sim, call_id, HUMAN, scheduled_at=when.isoformat())


# -- through a real Airflow --------------------------------------------------------------------

DAG_TEMPLATE = """
import pendulum
from airflow.sdk import dag, task
from airflow_provider_revox.sensors.revox import RevoxCallsSensor

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    RevoxCallsSensor(task_id="wait", call_ids={call_ids!r}, retries=2, **{kwargs})

build()
"""

XCOM_DAG_TEMPLATE = """
import pendulum
from airflow.sdk import dag, task
from airflow_provider_revox.sensors.revox import RevoxCallsSensor

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    @task
    def placed():
        return {upstream!r}

    RevoxCallsSensor(task_id="wait", call_ids=placed(), retries=2, **{kwargs})

build()
"""

MODES = {
    "poke": {"mode": "poke", "poke_interval": 15},
    "deferrable": {"deferrable": True, "poke_interval": 15},
}


@pytest.fixture
def trigger_runs(monkeypatch: pytest.MonkeyPatch) -> list[RevoxCallsTrigger]:
    """Every RevoxCallsTrigger that ``dag.test()`` runs, so a test knows the wait was deferred."""
    runs: list[RevoxCallsTrigger] = []
    original = RevoxCallsTrigger.run

    def recording(self: RevoxCallsTrigger) -> Any:
        runs.append(self)
        return original(self)

    monkeypatch.setattr(RevoxCallsTrigger, "run", recording)
    return runs


@pytest.fixture
def held(fast_simulator: SimulatorHandle) -> Iterator[Callable[[str], str]]:
    """Pause an order until the sensor has looked at it once, so the first look never settles it.

    Without this, a slow task start could let every order end before the sensor's first look,
    and a deferrable sensor would then never defer.
    """
    threads: list[threading.Thread] = []
    stop = threading.Event()

    def hold(call_id: str) -> str:
        fast_simulator.engine.pause(call_id)

        def resume_after_first_look() -> None:
            while not stop.is_set():
                if fast_simulator.stats()["by_call_id"].get(call_id, 0) >= 1:
                    fast_simulator.engine.resume(call_id)
                    return
                stop.wait(0.01)

        thread = threading.Thread(target=resume_after_first_look, daemon=True)
        thread.start()
        threads.append(thread)
        return call_id

    yield hold
    stop.set()
    for thread in threads:
        thread.join(timeout=5)


def deferred_as_expected(mode: str, runs: list[RevoxCallsTrigger]) -> bool:
    return len(runs) == (1 if mode == "deferrable" else 0)


def run_wait(run_dag: Callable[..., Any], source: str, dag_id: str) -> tuple[str, Any, Any]:
    """Run a DAG whose waiting task is ``wait``; return its state, XCom and task instance."""
    dag_run = run_dag(source, dag_id)
    ti = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "wait")
    value = ti.xcom_pull(task_ids="wait") if ti.state == "success" else None
    return ti.state, value, ti


def run_sensor(
    run_dag: Callable[..., Any], dag_id: str, call_ids: list[str], **kwargs: Any
) -> tuple[str, Any, Any]:
    source = DAG_TEMPLATE.format(dag_id=dag_id, call_ids=call_ids, kwargs=kwargs)
    return run_wait(run_dag, source, dag_id)


@dataclass
class Dags:
    """What the DAG tests share: the simulator, the triggers run, and the ways to run a wait."""

    sim: SimulatorHandle
    runs: list[RevoxCallsTrigger]
    hold: Callable[[str], str]
    run_dag: Callable[..., Any]

    def sensor(self, dag_id: str, call_ids: list[str], **kwargs: Any) -> tuple[str, Any, Any]:
        return run_sensor(self.run_dag, dag_id, call_ids, **kwargs)

    def wait(self, source: str, dag_id: str) -> tuple[str, Any, Any]:
        return run_wait(self.run_dag, source, dag_id)


@pytest.fixture
def dags(
    fast_simulator: SimulatorHandle,
    run_dag: Callable[..., Any],
    trigger_runs: list[RevoxCallsTrigger],
    held: Callable[[str], str],
) -> Dags:
    return Dags(fast_simulator, trigger_runs, held, run_dag)


@pytest.mark.airflow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_all_completed_succeeds_with_exact_counts_and_ids(mode: str, dags: Dags) -> None:
    ids = [
        place(dags.sim, f"all-a-{mode}", HUMAN),
        dags.hold(place(dags.sim, f"all-b-{mode}", VOICEMAIL_THEN_HUMAN)),
        place(dags.sim, f"all-c-{mode}", HUMAN),
    ]
    # A repeated id is waited on once.
    state, result, _ = dags.sensor(f"calls_all_{mode}", [*ids, ids[0]], **MODES[mode])

    assert state == "success"
    assert deferred_as_expected(mode, dags.runs)
    assert [dags.sim.get_call(call_id)["status"] for call_id in ids] == ["completed"] * 3
    assert result == {
        "total": 3,
        "counts": {"completed": 3},
        "completed": ids,
        "failed": [],
        "completed_ratio": 1.0,
    }
    # In every mode the orders are fetched together, by search, never one GET each.
    served = dags.sim.stats()["by_endpoint"]
    assert served["POST /call/search"] >= 2 and "GET /call/{id}" not in served


@pytest.mark.airflow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_some_failed_within_ratio_succeeds_with_lists(mode: str, dags: Dags) -> None:
    ok_1 = place(dags.sim, f"half-ok1-{mode}", VOICEMAIL_THEN_HUMAN)
    dead = dags.hold(errored(dags.sim, f"half-dead-{mode}"))
    ok_2 = place(dags.sim, f"half-ok2-{mode}", HUMAN)
    gone = place(dags.sim, f"half-gone-{mode}", HUMAN)
    dags.sim.engine.cancel(gone)

    state, result, _ = dags.sensor(
        f"calls_half_{mode}", [ok_1, dead, ok_2, gone], min_completed_ratio=0.5, **MODES[mode]
    )

    assert state == "success"
    assert deferred_as_expected(mode, dags.runs)
    assert result == {
        "total": 4,
        "counts": {"completed": 2, "errored": 1, "cancelled": 1},
        "completed": [ok_1, ok_2],
        "failed": [dead, gone],
        "completed_ratio": 0.5,
    }


@pytest.mark.airflow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_unreachable_ratio_fails_at_once_without_retries(mode: str, dags: Dags) -> None:
    dead_1 = dags.hold(errored(dags.sim, f"lost-dead1-{mode}"))
    dead_2 = errored(dags.sim, f"lost-dead2-{mode}")
    ok = place(dags.sim, f"lost-ok-{mode}", HUMAN)
    # Its first dial is two days away: the wait must not sit it out.
    later = far_ahead(dags.sim, f"lost-later-{mode}", hours=48)

    state, _, ti = dags.sensor(
        f"calls_lost_{mode}", [dead_1, dead_2, ok, later], min_completed_ratio=0.75, **MODES[mode]
    )

    assert state == "failed"
    assert deferred_as_expected(mode, dags.runs)
    assert ti.try_number == 1  # AirflowFailException: retries=2 are not spent on a lost cause
    assert dags.sim.get_call(later)["status"] == "scheduled"
    assert dags.sim.stats()["by_call_id"][later] <= 2


@pytest.mark.airflow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_unreachable_ratio_with_soft_fail_is_skipped(mode: str, dags: Dags) -> None:
    dead = dags.hold(errored(dags.sim, f"soft-dead-{mode}"))
    ok = place(dags.sim, f"soft-ok-{mode}", HUMAN)
    state, _, _ = dags.sensor(f"calls_soft_{mode}", [dead, ok], soft_fail=True, **MODES[mode])
    assert state == "skipped"
    assert deferred_as_expected(mode, dags.runs)


@pytest.mark.airflow
@pytest.mark.parametrize(
    ("mode", "as_dicts"), [("poke", False), ("poke", True), ("deferrable", False), ("deferrable", True)]
)
def test_ids_from_an_upstream_task(mode: str, as_dicts: bool, dags: Dags) -> None:
    suffix = f"{mode}-{'dicts' if as_dicts else 'ids'}"
    ids = [
        dags.hold(place(dags.sim, f"xcom-a-{suffix}", HUMAN)),
        errored(dags.sim, f"xcom-b-{suffix}"),
    ]
    upstream: list[Any] = (
        [{"call_id": call_id, "status": "scheduled"} for call_id in ids] if as_dicts else ids
    )
    dag_id = f"calls_xcom_{suffix.replace('-', '_')}"
    kwargs = {"min_completed_ratio": 0.5, **MODES[mode]}
    source = XCOM_DAG_TEMPLATE.format(dag_id=dag_id, upstream=upstream, kwargs=kwargs)

    state, result, _ = dags.wait(source, dag_id)

    assert state == "success"
    assert deferred_as_expected(mode, dags.runs)
    assert result["completed"] == [ids[0]]
    assert result["failed"] == [ids[1]]
    assert result["counts"] == {"completed": 1, "errored": 1}


# -- the trigger, run directly ------------------------------------------------------------------


@pytest.fixture
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook's retries cost no real time."""

    async def no_sleep(seconds: float) -> None:
        return None

    monkeypatch.setattr(hook_module, "retry_asleep", no_sleep)


@pytest.fixture
def scaled_sim(monkeypatch: pytest.MonkeyPatch, no_waiting: None) -> Iterator[SimulatorHandle]:
    """A simulator at two simulated hours per real second, from a Monday morning."""
    with running_simulator(seed=5, clock=ScaledClock(7200, start=DEFAULT_VIRTUAL_START)) as sim:
        connect(monkeypatch, sim, max_retries=1)
        yield sim


@pytest.fixture
def manual_sim(monkeypatch: pytest.MonkeyPatch, no_waiting: None) -> Iterator[SimulatorHandle]:
    """A simulator on a manual clock whose orders are all placed, then the clock moved past them."""
    with running_simulator(seed=3) as sim:
        connect(monkeypatch, sim, max_retries=1)
        yield sim


async def until(condition: Callable[[], bool], limit: float = 30.0) -> None:
    """Poll the simulator (it runs on its own thread, so no event to await) until ``condition`` holds."""
    for _ in range(int(limit / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"still not true after {limit} s")


def listed(event: dict[str, Any], call_ids: list[str]) -> dict[str, list[str]]:
    """The completed and failed ids of an event's compact result, rebuilt as the sensor does."""
    settled = settled_from_codes(call_ids, event["result"])
    failed = {call_id for status in statuses.DEFAULT_FAIL_ON for call_id in settled.get(status, [])}
    return {
        "completed": settled.get("completed", []),
        "failed": [call_id for call_id in call_ids if call_id in failed],
    }


async def collect(trigger: RevoxCallsTrigger) -> list[dict[str, Any]]:
    trigger.min_sleep = 0.005  # a fast or manual clock: no need to wait a real second
    return [event.payload async for event in trigger.run()]


async def test_only_due_orders_are_fetched(scaled_sim: SimulatorHandle) -> None:
    # Dialled a quarter of an hour from now and talking ten minutes: several polls each.
    soon = (scaled_sim.clock.now() + timedelta(minutes=15)).isoformat()
    long_talk = [{"result": "human", "duration": 600}]
    fast = [place(scaled_sim, f"due-{name}", long_talk, scheduled_at=soon) for name in ("a", "b")]
    later = far_ahead(scaled_sim, "due-later", hours=2)
    trigger = RevoxCallsTrigger(call_ids=[*fast, later], poke_interval=30, min_completed_ratio=0.5)
    waiting = asyncio.create_task(collect(trigger))
    # Cancel the far-ahead order once the others are over; the trigger sees it at its planned dial.
    await until(lambda: all(statuses.is_terminal(scaled_sim.engine.status(call_id)) for call_id in fast))
    scaled_sim.engine.cancel(later)
    events = await asyncio.wait_for(waiting, timeout=30)

    assert [event["status"] for event in events] == ["success"]
    assert {key: events[0]["result"][key] for key in ("total", "counts", "completed_ratio")} == {
        "total": 3,
        "counts": {"completed": 2, "cancelled": 1},
        "completed_ratio": 2 / 3,
    }
    assert listed(events[0], [*fast, later]) == {"completed": fast, "failed": [later]}
    served = scaled_sim.stats()["by_call_id"]
    # Once at the start, once at its planned dial: never swept along by the others' polls.
    assert served[later] == 2
    assert all(served[call_id] >= 4 for call_id in fast), served


async def test_settled_orders_are_not_fetched_again(manual_sim: SimulatorHandle) -> None:
    done, rest = place(manual_sim, "settled-done", HUMAN), place(manual_sim, "settled-rest", HUMAN)
    manual_sim.finish()
    trigger = RevoxCallsTrigger(call_ids=[done, rest], poke_interval=0.05, settled={"completed": [done]})
    events = await collect(trigger)

    assert events[0]["status"] == "success"
    assert listed(events[0], [done, rest])["completed"] == [done, rest]
    assert manual_sim.stats()["by_call_id"] == {rest: 1}


async def test_restart_resumes_from_kwargs_and_repolls_pending_once(scaled_sim: SimulatorHandle) -> None:
    quick = place(scaled_sim, "restart-quick", HUMAN)
    # Eight simulated hours are 4 s here: the first trigger is stopped long before this order can
    # end (with one hour, half a second, a loaded machine saw the trigger finish first).
    later = far_ahead(scaled_sim, "restart-later", hours=8)
    first = RevoxCallsTrigger(call_ids=[quick, later], poke_interval=30)
    running = asyncio.create_task(collect(first))
    await until(lambda: scaled_sim.stats()["by_call_id"].get(later, 0) >= 1)
    running.cancel()  # the triggerer stops: no event was sent
    with pytest.raises(asyncio.CancelledError):
        await running
    before = scaled_sim.stats()["by_call_id"][later]

    _, kwargs = first.serialize()
    events = await asyncio.wait_for(collect(RevoxCallsTrigger(**json.loads(json.dumps(kwargs)))), 30)

    assert [event["status"] for event in events] == ["success"]
    assert listed(events[0], [quick, later])["completed"] == [quick, later]
    # After the restart: once at once, then at its dial and while it rings, talks, post-processes.
    assert scaled_sim.stats()["by_call_id"][later] > before


class Peak:
    """The most calls of one hook method in flight at once; each holds its slot a moment, so
    calls overlap whenever the bound allows."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.now = self.most = 0
        original = getattr(RevoxHook, name)

        async def counting(hook: RevoxHook, *args: Any, **kwargs: Any) -> Any:
            self.now += 1
            self.most = max(self.most, self.now)
            try:
                await asyncio.sleep(0.002)
                return await original(hook, *args, **kwargs)
            finally:
                self.now -= 1

        monkeypatch.setattr(RevoxHook, name, counting)


@pytest.mark.parametrize(
    ("method", "bound", "served"),
    [
        ("aget_call", 1, {"GET /call/{id}": 24}),
        ("aget_call", 5, {"GET /call/{id}": 24}),
        # 24 orders, 4 per search: six requests, each order served once.
        ("asearch_calls", 1, {"POST /call/search": 6}),
        ("asearch_calls", 3, {"POST /call/search": 6}),
    ],
)
async def test_concurrency_bound_is_respected(
    manual_sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch, method: str, bound: int, served: Any
) -> None:
    if method == "aget_call":
        connect(monkeypatch, manual_sim, max_retries=1, batch_polls=False)
    else:
        monkeypatch.setattr(poller_module, "MAX_BATCH", 4)
    ids = [place(manual_sim, f"many-{index:02d}", HUMAN) for index in range(24)]
    manual_sim.finish()
    peak = Peak(monkeypatch, method)
    events = await collect(RevoxCallsTrigger(call_ids=ids, poke_interval=0.05, max_concurrency=bound))

    assert events[0]["status"] == "success"
    assert listed(events[0], ids)["completed"] == ids
    assert peak.most == bound
    assert manual_sim.stats()["by_endpoint"] == served
    assert manual_sim.stats()["by_call_id"] == dict.fromkeys(ids, 1)


async def test_transient_errors_are_waited_out_per_order(
    manual_sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, manual_sim, max_retries=1, batch_polls=False)
    flaky, steady = place(manual_sim, "flaky", HUMAN), place(manual_sim, "steady", HUMAN)
    manual_sim.finish()
    # max_retries=1: each fetch makes two requests, so two fetches fail before one succeeds.
    manual_sim.faults.script(flaky, ["503", "503", "429", "429", "ok"])
    events = await collect(RevoxCallsTrigger(call_ids=[flaky, steady], poke_interval=0.05))

    assert [event["status"] for event in events] == ["success"]
    assert listed(events[0], [flaky, steady])["completed"] == [flaky, steady]
    served = manual_sim.stats()
    assert served["by_call_id"] == {flaky: 5, steady: 1}
    assert served["by_status"]["503"] == 2
    assert served["by_status"]["429"] == 2


async def test_a_failing_search_is_waited_out_then_asked_again(
    manual_sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = place(manual_sim, "search-a", HUMAN), place(manual_sim, "search-b", HUMAN)
    manual_sim.finish()
    # max_retries=1: the first round's search fails twice (503, 429); the next round's works.
    manual_sim.faults.script("POST /call/search", ["503", "429", "ok"])
    warned: list[str] = []

    class Log:
        def warning(self, msg: str, *args: Any) -> None:
            warned.append(msg % args)

        def info(self, msg: str, *args: Any) -> None:
            pass

    monkeypatch.setattr(RevoxCallsTrigger, "log", Log())
    with caplog.at_level(logging.WARNING):
        events = await collect(RevoxCallsTrigger(call_ids=[first, second], poke_interval=0.05))

    assert [event["status"] for event in events] == ["success"]
    assert listed(events[0], [first, second])["completed"] == [first, second]
    served = manual_sim.stats()
    # Two failed tries, then (a manual clock never lets the retry fall due) each later round
    # fetches the earliest order alone.
    assert served["by_endpoint"] == {"POST /call/search": 4}
    assert served["by_status"] == {"503": 1, "429": 1, "200": 2}
    assert served["by_call_id"] == {first: 1, second: 1}
    # One warning for the two orders the failed search left unknown, and no switch to GETs.
    assert len(warned) == 1 and warned[0].startswith(
        f"2 call order(s): Revox API at {manual_sim.base_url.removesuffix('/api')} still failing"
    )
    assert not any("with GET from now on" in r.getMessage() for r in caplog.records)


async def test_unknown_ids_send_one_error_event_naming_them(manual_sim: SimulatorHandle) -> None:
    real = place(manual_sim, "real-one", HUMAN)
    manual_sim.finish()
    events = await collect(RevoxCallsTrigger(call_ids=["ghost-1", real, "ghost-2"], poke_interval=0.05))

    assert [event["status"] for event in events] == ["error"]
    assert "2 call order(s) could not be fetched" in events[0]["message"]
    assert "ghost-1" in events[0]["message"] and "ghost-2" in events[0]["message"]
    assert real not in events[0]["message"]


@pytest.mark.parametrize(("batch_polls", "refused"), [(True, 1), (False, 2)])
async def test_rejected_key_stops_the_round(
    manual_sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch, batch_polls: bool, refused: int
) -> None:
    ids = [place(manual_sim, f"key-{index}", HUMAN) for index in range(10)]
    manual_sim.finish()
    conn = {
        "conn_type": "revox",
        "host": manual_sim.base_url,
        "password": "sk_wrong_key_123",
        "extra": {"batch_polls": batch_polls},
    }
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", json.dumps(conn))
    events = await collect(RevoxCallsTrigger(call_ids=ids, poke_interval=0.05, max_concurrency=2))

    assert [event["status"] for event in events] == ["error"]
    assert "rejected the API key" in events[0]["message"]
    assert "sk_wrong_key_123" not in json.dumps(events)
    # One search for all ten, or the two GETs in flight: then nothing more.
    assert manual_sim.stats()["by_status"]["401"] == refused


async def test_unreachable_ratio_sends_failed_event_before_the_rest_end(scaled_sim: SimulatorHandle) -> None:
    dead = errored(scaled_sim, "early-dead")
    later = far_ahead(scaled_sim, "early-later", hours=30)
    events = await asyncio.wait_for(collect(RevoxCallsTrigger(call_ids=[dead, later], poke_interval=30)), 30)

    assert [event["status"] for event in events] == ["failed"]
    assert f"failed: {dead}" in events[0]["message"]
    assert "min_completed_ratio=1 needs 2" in events[0]["message"]
    assert listed(events[0], [dead, later])["failed"] == [dead]
    assert scaled_sim.get_call(later)["status"] == "scheduled"


async def test_fixed_deadline_sends_timeout_listing_pending(manual_sim: SimulatorHandle) -> None:
    done = place(manual_sim, "late-done", HUMAN)
    manual_sim.finish()
    paused = place(manual_sim, "late-paused", HUMAN)
    manual_sim.engine.pause(paused)
    soon = (datetime.now(timezone.utc) + timedelta(seconds=0.5)).isoformat()
    events = await collect(
        RevoxCallsTrigger(call_ids=[done, paused], poke_interval=0.05, deadline_at=soon, deadline_fixed=True)
    )

    assert [event["status"] for event in events] == ["timeout"]
    assert f"1 of 2 call orders still pending: {paused}" in events[0]["message"]
    assert events[0]["result"]["counts"] == {"completed": 1, "paused": 1}


# -- the sensor's own checks --------------------------------------------------------------------


def make_sensor(**kwargs: Any) -> RevoxCallsSensor:
    return RevoxCallsSensor(task_id="wait", **{"call_ids": ["c-1", "c-2", "c-3"], **kwargs})


def good_result(**changes: Any) -> dict[str, Any]:
    result = {
        "total": 3,
        "counts": {"completed": 2, "errored": 1},
        "completed": ["c-1", "c-2"],
        "failed": ["c-3"],
        "completed_ratio": 2 / 3,
    }
    return {**result, **changes}


@pytest.mark.parametrize(
    "event",
    [
        None,
        {},
        "success",
        {"status": "done", "result": good_result()},
        {"status": "success"},
        {"status": "success", "result": good_result(total=4)},
        {"status": "success", "result": good_result(completed=["c-1", "stranger"])},
        {"status": "success", "result": good_result(failed="c-3")},
        {"status": "success", "result": good_result(counts={"completed": 2})},
        {"status": "success", "result": {**good_result(), "completed": ["c-1"], "failed": ["c-2", "c-3"]}},
    ],
)
def test_execute_complete_is_fail_closed(event: Any) -> None:
    with pytest.raises(AirflowException, match=r"^RevoxCallsTrigger sent (no valid|a malformed)") as info:
        make_sensor(min_completed_ratio=0.6).execute_complete(context={}, event=event)  # type: ignore[arg-type]
    # Exactly AirflowException: a retryable failure, neither a skip nor a fail-without-retry.
    assert type(info.value) is AirflowException


def test_execute_complete_maps_each_event_kind() -> None:
    result = good_result()
    sensor = make_sensor(min_completed_ratio=0.6)
    assert sensor.execute_complete({}, {"status": "success", "result": result, "message": "ok"}) == result  # type: ignore[arg-type]
    failed = {"status": "failed", "result": result, "message": "2 of 3 call orders failed"}
    with pytest.raises(AirflowFailException, match="2 of 3 call orders failed"):
        sensor.execute_complete({}, failed)  # type: ignore[arg-type]
    with pytest.raises(AirflowSkipException, match="2 of 3 call orders failed"):
        make_sensor(soft_fail=True).execute_complete({}, failed)  # type: ignore[arg-type]
    with pytest.raises(AirflowSensorTimeout, match="still pending"):
        sensor.execute_complete({}, {"status": "timeout", "result": result, "message": "1 still pending"})  # type: ignore[arg-type]
    with pytest.raises(AirflowException) as info:
        sensor.execute_complete({}, {"status": "error", "result": result, "message": "could not be fetched"})  # type: ignore[arg-type]
    assert type(info.value) is AirflowException and str(info.value) == "could not be fetched"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([], "call_ids is empty"),
        ("['c-1', 'c-2']", "render_template_as_native_obj=True"),
        (["c-1", "bad id"], "whitespace"),
        (["c-1", 7], "must be a string"),
        ([{"status": "completed"}], "needs 'call_id'"),
    ],
)
def test_bad_call_ids_are_rejected_with_the_reason(value: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        batch_call_ids(value)


def test_call_ids_are_deduplicated_in_order() -> None:
    assert batch_call_ids(["b", {"call_id": "a"}, "b", "c", {"call_id": "a"}]) == ["b", "a", "c"]


def test_literal_call_ids_are_checked_when_the_dag_is_parsed() -> None:
    with pytest.raises(ValueError, match="contains '/'"):
        make_sensor(call_ids=["c-1", "c/2"])
    templated = make_sensor(call_ids=["{{ params.first }}"])
    assert templated.call_ids == ["{{ params.first }}"]


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"min_completed_ratio": 1.5}, "min_completed_ratio"),
        ({"min_completed_ratio": True}, "min_completed_ratio"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 2.5}, "max_concurrency"),
        ({"fail_on_statuses": ("erored",)}, "erored"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        make_sensor(**kwargs)


# -- the heap itself ---------------------------------------------------------------------------


def test_fleet_pops_only_due_orders_and_settled_ones_leave() -> None:
    fleet = Fleet(["a", "b", "c"], min_completed_ratio=0.5)
    assert fleet.pop_due(0.0) == ["a", "b", "c"]  # all due at first
    assert fleet.record("a", "calling", due=10.0, deadline=500.0) is False
    assert fleet.record("b", "scheduled", due=1000.0, deadline=2000.0) is False
    assert fleet.record("c", "errored", due=0.0) is True
    assert fleet.next_due() == 10.0
    assert fleet.pop_due(9.0) == []
    assert fleet.pop_due(10.0) == ["a"]
    assert fleet.latest_deadline() == 2000.0
    fleet.record("a", "completed", due=10.0)
    assert fleet.verdict() == statuses.WAITING
    assert fleet.pop_due(999.0) == []
    assert fleet.pop_due(1000.0) == ["b"]
    fleet.record("b", "completed", due=1000.0)
    assert fleet.next_due() is None
    assert fleet.latest_deadline() is None
    assert fleet.verdict() == statuses.SUCCESS
    assert fleet.result()["completed"] == ["a", "b"]
    assert fleet.settled_by_status() == {"completed": ["a", "b"], "errored": ["c"]}


def test_fleet_fails_as_soon_as_the_ratio_is_out_of_reach() -> None:
    fleet = Fleet([f"c{i}" for i in range(10)], min_completed_ratio=0.7)
    assert fleet.needed == 7
    fleet.pop_due(0.0)
    for call_id in ("c0", "c1", "c2"):
        fleet.record(call_id, "errored", due=0.0)
    assert fleet.verdict() == statuses.WAITING  # 7 can still complete
    fleet.record("c3", "cancelled", due=0.0)
    assert fleet.verdict() == statuses.FAILED
    message = fleet.describe_unreachable()
    assert message.startswith("4 of 10 call orders failed")
    assert "at most 6 of 10 can complete but min_completed_ratio=0.7 needs 7" in message
    assert message.endswith("failed: c0, c1, c2, c3")


def test_fleet_unknown_and_unfailed_terminal_statuses() -> None:
    fleet = Fleet(["a", "b"], fail_on=("errored",), min_completed_ratio=0.5)
    fleet.pop_due(0.0)
    fleet.record("a", "awaiting_carrier_review", due=5.0)  # undocumented: keep waiting
    fleet.record("b", "cancelled", due=0.0)  # terminal, not failed, not completed
    assert fleet.verdict() == statuses.WAITING
    assert fleet.result()["failed"] == []
    assert fleet.pending_ids() == ["a"]


def test_fleet_restores_settled_orders_and_rejects_strangers() -> None:
    fleet = Fleet(["a", "b"], settled={"completed": ["a"]})
    assert fleet.pop_due(0.0) == ["b"]
    with pytest.raises(ValueError, match="'z' is not one of call_ids"):
        Fleet(["a"], settled={"completed": ["z"]})
    with pytest.raises(ValueError, match="empty"):
        Fleet([])
    with pytest.raises(ValueError, match="repeated"):
        Fleet(["a", "a"])


def test_long_id_lists_are_cut_in_messages() -> None:
    ids = [f"c{i}" for i in range(25)]
    assert list_ids(ids) == ", ".join(ids[:20]) + " (and 5 more)"


def test_fleet_of_ten_thousand_keeps_no_call_objects() -> None:
    ids = [f"call_{i:05d}" for i in range(10_000)]
    fleet = Fleet(ids)
    due = fleet.pop_due(0.0)
    assert len(due) == 10_000
    for index, call_id in enumerate(due):
        fleet.record(call_id, "scheduled", due=float(index % 100), deadline=1e6)
    assert fleet.pop_due(0.0) == ids[::100]  # only the hundred due at 0
    assert set(fleet._status.values()) == {"scheduled"}  # strings, no models
    assert fleet.verdict() == statuses.WAITING


def test_sensor_raises_naming_unknown_ids_in_poke_mode(
    manual_sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = place(manual_sim, "poke-real", HUMAN)
    manual_sim.finish()
    sensor = make_sensor(call_ids=[real, "poke-ghost"])
    with pytest.raises(AirflowException) as info:
        sensor.poke(context={})  # type: ignore[arg-type]
    assert type(info.value) is AirflowException
    assert str(info.value).startswith("1 call order(s) could not be fetched: call poke-ghost: ")
    assert real not in str(info.value)


def test_sensor_poke_reports_unreachable_ratio_with_ids(manual_sim: SimulatorHandle) -> None:
    dead_1, dead_2 = errored(manual_sim, "poke-dead1"), errored(manual_sim, "poke-dead2")
    ok = place(manual_sim, "poke-ok", HUMAN)
    manual_sim.finish()
    with pytest.raises(AirflowFailException, match=rf"2 of 3 call orders failed.*failed: {dead_1}, {dead_2}"):
        make_sensor(call_ids=[dead_1, ok, dead_2]).poke(context={})  # type: ignore[arg-type]


def test_fetch_error_message_lists_the_first_twenty() -> None:
    message = describe_fetch_errors([f"call c{i}: gone" for i in range(22)])
    assert message.startswith("22 call order(s) could not be fetched: call c0: gone; call c1: gone")
    assert "call c19: gone" in message
    assert "call c20" not in message
    assert message.endswith("(and 2 more)")
