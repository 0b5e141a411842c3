"""RevoxCallEventTrigger's pace through the simulator on its manual clock: the trigger's own loop
runs, and its sleeps move the simulated clock instead of waiting. Quiet while no order can end,
every ``poll_interval`` while orders end, an order placed during a sleep named within
``max_poll_interval`` of its end, and a blind backoff when the API refuses the probe."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_revox._internal.triggers.call_events import CallPoll, RevoxCallEventTrigger
from airflow_provider_revox._simulator.profile import AttemptDraw
from airflow_provider_revox._simulator.timeline import OrderScript
from airflow_provider_revox.testing import running_simulator
from tests.unit.triggers.test_call_events import Store

INTERVAL, LONGEST = 60.0, 3600.0
SEARCH = "POST /call/search"


def place(sim: Any, at: datetime, talk: float = 60.0) -> str:
    """An order dialled at ``at`` (whatever the calling window), answered, ``talk`` seconds long."""
    call = sim.engine.place_call(
        phone_number="+33612345678",
        assistant={"id": "asst_pace"},
        scheduled_at=at,
        skip_calling_window=True,
        script=OrderScript(attempts=(AttemptDraw(kind="human", talk_seconds=talk),)),
    )
    return str(call["id"])


def searches(sim: Any) -> int:
    return int(sim.stats()["by_endpoint"].get(SEARCH, 0))


def test_the_trigger_sleeps_until_orders_can_end_then_names_each_within_one_interval(
    revox_simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = revox_simulator
    start = sim.clock.now()
    evening = [place(sim, start + timedelta(hours=10, seconds=120 * n), talk=30 + 10 * n) for n in range(20)]
    newcomer: list[str] = []
    sleeps: list[tuple[datetime, datetime, int]] = []

    async def pause(clock: Any, wake: datetime, wakeup: Any = None) -> bool:
        now = sim.clock.now()
        sleeps.append((now, wake, searches(sim)))
        if not newcomer and (wake - now).total_seconds() > INTERVAL:
            # Placed while the trigger sleeps: dialled at once, unknown to its last probe.
            newcomer.append(place(sim, now + timedelta(seconds=5)))
        sim.advance(max(0.0, (wake - now).total_seconds()))
        await asyncio.sleep(0)
        return False

    monkeypatch.setattr(RevoxCallEventTrigger, "pause", staticmethod(pause))
    trigger = RevoxCallEventTrigger(
        assistant_ids=["asst_pace"], poll_interval=INTERVAL, max_poll_interval=LONGEST
    )
    trigger.asset_state_store = Store()  # type: ignore[assignment]

    async def scenario() -> dict[str, float]:
        delays: dict[str, float] = {}
        events = trigger.run()
        async for event in events:
            for call in event.payload["calls"]:
                assert call["id"] not in delays  # each order once
                ended = sim.engine.terminal_at(call["id"])
                delays[call["id"]] = (sim.clock.now() - ended).total_seconds()
            if len(delays) == len(evening) + 1:
                break
        await events.aclose()
        return delays

    delays = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert set(delays) == {*evening, *newcomer}
    assert 0 <= delays[newcomer[0]] <= LONGEST
    assert max(delays[call_id] for call_id in evening) <= INTERVAL
    first_dial = start + timedelta(hours=10)
    # The first empty poll probed, then the trigger slept at most LONGEST at a time.
    assert (sleeps[0][1] - sleeps[0][0]).total_seconds() == LONGEST and sleeps[0][2] == 2
    before_dusk = [entry for entry in sleeps if entry[0] < first_dial]
    assert all((wake - now).total_seconds() <= LONGEST for now, wake, _ in before_dusk)
    # Ten quiet hours: about one search an hour (plus the newcomer's poll and probes), not 600.
    assert before_dusk[-1][2] <= 16
    assert any(now == first_dial + timedelta(seconds=INTERVAL) for now, _, _ in sleeps)


def test_an_api_that_refuses_the_probe_gets_the_blind_backoff_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_revox.hooks.revox import RevoxHook

    with running_simulator(seed=3, refuse_sort=True) as sim:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", sim.connection_json())
        place(sim, sim.clock.now() + timedelta(hours=5))

        async def scenario() -> list[float]:
            hook = RevoxHook()
            poll = CallPoll(hook, {"statuses": ["completed"]}, interval=INTERVAL, max_interval=LONGEST)
            now = sim.clock.now()
            try:
                return [((await poll.next_poll_at(None)) - now).total_seconds() for _ in range(4)]
            finally:
                await hook.aclose()

        with caplog.at_level(logging.WARNING, logger="airflow_provider_revox._internal.triggers.call_events"):
            delays = asyncio.run(scenario())
        assert delays == [120.0, 240.0, 480.0, 960.0]
        assert sim.stats()["by_endpoint"][SEARCH] == 1  # refused once, never asked again
    warnings = [r for r in caplog.records if "refused the search of open orders" in r.getMessage()]
    assert len(warnings) == 1 and "HTTP 422" in warnings[0].getMessage()


def test_sleeps_follow_the_api_clock_but_never_shorter_than_the_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_revox._internal.triggers import call_events as module

    class FastClock:
        """A simulator's clock at --speed 600."""

        speed = 600.0
        moment = datetime(2026, 11, 30, 9, tzinfo=timezone.utc)

        def now(self) -> datetime:
            return self.moment

        def real_seconds(self, server_seconds: float) -> float:
            return server_seconds / self.speed

    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    clock = FastClock()
    monkeypatch.setattr(module.asyncio, "sleep", record)
    for wake in (timedelta(seconds=INTERVAL), timedelta(hours=6)):
        asyncio.run(RevoxCallEventTrigger.pause(clock, clock.moment + wake))  # type: ignore[arg-type]
    monkeypatch.setattr(RevoxCallEventTrigger, "min_sleep", 0.0)
    asyncio.run(RevoxCallEventTrigger.pause(clock, clock.moment + timedelta(seconds=INTERVAL)))  # type: ignore[arg-type]
    assert slept == [1.0, 36.0, 0.1]
