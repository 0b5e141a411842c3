"""The hook's campaign endpoints over real HTTP against the simulator, sync and async."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_revox._internal.hooks import revox as revox_hook_module
from airflow_provider_revox.exceptions import RevoxConfigError, RevoxError, RevoxNotFoundError
from airflow_provider_revox.hooks.revox import Campaign, CampaignRow, LaunchResult, RevoxHook
from airflow_provider_revox.testing import ALWAYS_OPEN_RETRY_CONFIG, SimulatorHandle

CONTACTS = [
    {"to_phone_number": "+33612345601", "prompt_variables": {"first_name": "Ana"}},
    {"to_phone_number": "+33612345602", "prompt_variables": {"first_name": "Ben"}},
]


def create(hook: RevoxHook, name: str = "Spring") -> Campaign:
    return hook.create_campaign(
        name=name, assistant_id="asst_demo", contacts=CONTACTS, call_retry_config=ALWAYS_OPEN_RETRY_CONFIG
    )


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def asleep(seconds: float) -> None:
        return None

    monkeypatch.setattr(revox_hook_module, "retry_sleep", lambda seconds: None)
    monkeypatch.setattr(revox_hook_module, "retry_asleep", asleep)


def test_every_endpoint_sync(revox_simulator: SimulatorHandle) -> None:
    with RevoxHook() as hook:
        campaign = create(hook)
        assert campaign.status == "running" and campaign.row_stats.not_launched == 2
        assert campaign.row_stats.total == 2 and campaign.name == "Spring"
        assert [c.id for c in hook.list_campaigns()] == [campaign.id]
        launched = hook.launch_campaign(campaign.id)
        assert isinstance(launched, LaunchResult) and launched.launched == 2 and launched.skipped.active == 0
        assert hook.get_campaign(campaign.id).row_stats.not_launched == 0
        rows = hook.get_campaign_rows(campaign.id)
        assert all(isinstance(row, CampaignRow) for row in rows)
        assert sorted(row.phone_number for row in rows) == ["+33612345601", "+33612345602"]
        assert all(row.call_id and row.call is not None for row in rows)
        statistics = hook.get_campaign_statistics(campaign.id)
        assert statistics.funnel["called"]["imported_rows"] == 2
        assert hook.pause_campaign(campaign.id) is True
        assert hook.get_campaign(campaign.id).status == "paused"
        assert hook.resume_campaign(campaign.id) is True
        assert hook.get_campaign(campaign.id).status == "running"
        assert hook.cancel_campaign(campaign.id) is True
        assert hook.get_campaign(campaign.id).is_cancelled is True
    counted = revox_simulator.stats()["by_endpoint"]
    assert counted["POST /campaigns"] == 1 and counted["GET /campaigns/{id}/rows"] == 1


def test_every_endpoint_async(revox_simulator: SimulatorHandle) -> None:
    async def story() -> dict[str, Any]:
        async with RevoxHook() as hook:
            campaign = await hook.acreate_campaign(
                name="Async", assistant_id="asst_demo", contacts=CONTACTS, max_concurrent_calls=1
            )
            launched = await hook.alaunch_campaign(campaign.id, call_ids=[], rows_mode="all_except")
            rows = await hook.aget_campaign_rows(campaign.id)
            stats = await hook.aget_campaign_statistics(campaign.id)
            listed = await hook.alist_campaigns()
            paused = await hook.apause_campaign(campaign.id)
            status_paused = (await hook.aget_campaign(campaign.id)).status
            resumed = await hook.aresume_campaign(campaign.id)
            cancelled = await hook.acancel_campaign(campaign.id)
            after = await hook.aget_campaign(campaign.id)
            return {
                "max": campaign.max_concurrent_calls,
                "launched": launched.launched,
                "rows": len(rows),
                "imported": stats.funnel["called"]["imported_rows"],
                "listed": [c.id for c in listed] == [campaign.id],
                "actions": (paused, status_paused, resumed, cancelled),
                "cancelled": after.is_cancelled,
            }

    assert asyncio.run(story()) == {
        "max": 1,
        "launched": 2,
        "rows": 2,
        "imported": 2,
        "listed": True,
        "actions": (True, "paused", True, True),
        "cancelled": True,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": " "}, "name must be a non-empty string"),
        ({"assistant_id": ""}, "assistant_id must be a non-empty string"),
        ({"contacts": []}, "contacts must be a non-empty list"),
        ({"contacts": [{"to_phone_number": "0612345678"}]}, "contacts[0].to_phone_number must be an E.164"),
        ({"contacts": [{"to_phone_number": "+3361234"}]}, "is not a valid phone number"),
        ({"contacts": [{"to_phone_number": "+33 6 12 34 56 78"}]}, "not written in E.164"),
        (
            {"contacts": [CONTACTS[0], {"to_phone_number": "+33612345602", "prompt_variables": {"n": 3}}]},
            "contacts[1].prompt_variables must map strings to strings",
        ),
        ({"from_phone_number": "12"}, "from_phone_number must be an E.164"),
        ({"max_concurrent_calls": 0}, "max_concurrent_calls must be a positive integer"),
    ],
)
def test_bad_input_is_refused_before_any_request(
    revox_simulator: SimulatorHandle, kwargs: dict[str, Any], message: str
) -> None:
    args = {"name": "Spring", "assistant_id": "asst_demo", "contacts": CONTACTS, **kwargs}
    with RevoxHook() as hook, pytest.raises(RevoxConfigError) as caught:
        hook.create_campaign(**args)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert revox_simulator.stats()["by_endpoint"] == {}


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ({"mode": "robocall"}, "mode must be one of"),
        ({"filters": {"colours": []}}, "unknown launch filters"),
        ({"filters": {"statuses": "completed"}}, "'statuses' must be a list"),
        ({"rows_mode": "some"}, "rows_mode must be one of"),
    ],
)
def test_bad_launch_is_refused_before_any_request(
    revox_simulator: SimulatorHandle, selection: dict[str, Any], message: str
) -> None:
    with RevoxHook() as hook, pytest.raises(RevoxConfigError, match=message):
        hook.launch_campaign("cmp_1", **selection)
    with RevoxHook() as hook, pytest.raises(RevoxConfigError, match="not a usable campaign id"):
        hook.get_campaign("../call/x")
    assert revox_simulator.stats()["by_endpoint"] == {}


def test_unknown_campaign_is_not_found(revox_simulator: SimulatorHandle) -> None:
    with RevoxHook() as hook, pytest.raises(RevoxNotFoundError):
        hook.get_campaign("cmp_nobody")


def test_create_is_never_resent_after_the_answer_is_lost(revox_simulator: SimulatorHandle) -> None:
    revox_simulator.faults.script("POST /campaigns", ["drop_after_commit"])
    with RevoxHook(max_retries=3) as hook, pytest.raises(RevoxError):
        create(hook)
    stats = revox_simulator.stats()
    # The server stored it once; the hook did not send it again.
    assert stats["campaigns"] == 1 and stats["by_endpoint"]["POST /campaigns"] == 1


def test_launch_is_never_resent_after_the_answer_is_lost(revox_simulator: SimulatorHandle) -> None:
    with RevoxHook(max_retries=3) as hook:
        campaign = create(hook)
        revox_simulator.faults.script(campaign.id, ["drop_after_commit"])
        with pytest.raises(RevoxError):
            hook.launch_campaign(campaign.id)
        assert hook.get_campaign(campaign.id).row_stats.not_launched == 0
    assert revox_simulator.stats()["by_endpoint"]["POST /campaigns/{id}/launch-calls"] == 1


def test_cancel_is_retried_after_a_lost_answer(revox_simulator: SimulatorHandle) -> None:
    with RevoxHook(max_retries=3) as hook:
        campaign = create(hook)
        revox_simulator.faults.script(campaign.id, ["503", "ok"])
        assert hook.cancel_campaign(campaign.id) is True
        assert hook.get_campaign(campaign.id).is_cancelled is True
    assert revox_simulator.stats()["by_endpoint"]["POST /campaigns/{id}/cancel"] == 2
