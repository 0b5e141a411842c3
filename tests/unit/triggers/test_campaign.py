"""RevoxCampaignTrigger on its own, against the simulator over loopback: the first poll waits for
the time the sensor handed over, and that time is checked before any request."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_revox.exceptions import RevoxConfigError
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.testing import SimulatorHandle
from airflow_provider_revox.triggers.revox import RevoxCampaignTrigger

GET = "GET /campaigns/{id}"


def cancelled_campaign() -> str:
    with RevoxHook() as hook:
        created = hook.create_campaign(
            name="Handover",
            assistant_id="asst_demo",
            contacts=[{"to_phone_number": "+33612345601"}],
        )
        assert hook.cancel_campaign(created.id)
    return created.id


async def run(
    trigger: RevoxCampaignTrigger, sim: SimulatorHandle
) -> tuple[list[Any], list[tuple[float, int]]]:
    """The trigger's events, and each pause with the GETs served before it."""
    pauses: list[tuple[float, int]] = []

    async def record(seconds: float) -> None:
        pauses.append((seconds, sim.stats()["by_endpoint"].get(GET, 0)))
        await asyncio.sleep(0)

    trigger.pause = record  # type: ignore[method-assign]
    return [event.payload async for event in trigger.run()], pauses


async def test_the_first_poll_waits_for_the_time_the_sensor_handed_over(
    revox_simulator: SimulatorHandle,
) -> None:
    campaign_id = cancelled_campaign()
    revox_simulator.reset_stats()
    due = datetime.now(timezone.utc) + timedelta(seconds=30)
    trigger = RevoxCampaignTrigger(campaign_id=campaign_id, poke_interval=30, next_poll_at=due.isoformat())
    before = datetime.now(timezone.utc)
    events, pauses = await run(trigger, revox_simulator)
    after = datetime.now(timezone.utc)
    assert [event["status"] for event in events] == ["failed"]
    # One pause of about the time left, before any request; then the one poll that saw the end.
    assert len(pauses) == 1
    seconds, gets_before = pauses[0]
    # The time left until ``due`` as the trigger saw it: between what was left before and after it ran.
    assert (due - after).total_seconds() <= seconds <= (due - before).total_seconds()
    assert gets_before == 0
    assert revox_simulator.stats()["by_endpoint"][GET] == 1


@pytest.mark.parametrize("next_poll_at", [None, "past"])
async def test_without_a_time_or_with_one_passed_it_polls_at_once(
    revox_simulator: SimulatorHandle, next_poll_at: str | None
) -> None:
    campaign_id = cancelled_campaign()
    revox_simulator.reset_stats()
    when = (datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat() if next_poll_at else None
    events, pauses = await run(
        RevoxCampaignTrigger(campaign_id=campaign_id, next_poll_at=when), revox_simulator
    )
    assert [event["status"] for event in events] == ["failed"] and pauses == []
    assert revox_simulator.stats()["by_endpoint"][GET] == 1


def test_the_time_travels_in_its_kwargs_only_when_given() -> None:
    due = "2026-03-02T09:00:30+00:00"
    _, kwargs = RevoxCampaignTrigger(campaign_id="cmp_1", next_poll_at=due).serialize()
    assert kwargs["next_poll_at"] == due
    assert RevoxCampaignTrigger(**kwargs).serialize()[1] == kwargs
    assert "next_poll_at" not in RevoxCampaignTrigger(campaign_id="cmp_1").serialize()[1]


@pytest.mark.parametrize("value", ["2026-03-02T09:00:30", "soon", "2026-13-40T00:00:00Z"])
def test_a_time_without_an_offset_or_unreadable_is_refused(value: str) -> None:
    with pytest.raises(RevoxConfigError, match="next_poll_at must be an ISO 8601 time with its UTC offset"):
        RevoxCampaignTrigger(campaign_id="cmp_1", next_poll_at=value)
