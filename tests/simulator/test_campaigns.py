"""Campaigns in the simulator over real HTTP: creation, launch, pacing, windows, pause, resume, cancel.

Every response of the campaign endpoints also goes through the vendor's SDK in strict mode.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._simulator.lanes import Lanes
from airflow_provider_revox._simulator.search import SEARCH_FILTERS
from airflow_provider_revox.testing import SimulatorHandle, running_simulator

revox = pytest.importorskip("revox")

PARIS = ZoneInfo("Europe/Paris")
#: Every dial between 10:00 and 12:00 Paris time, Monday to Friday, two attempts 10 minutes apart.
MORNINGS = {
    "calling_windows": [
        {"calling_window_start_time": "10:00", "calling_window_end_time": "12:00", "retry_delay_seconds": 600}
    ],
    "allowed_days": ["monday", "tuesday", "wednesday", "thursday", "friday"],
    "max_retry_attempts": 2,
    "call_twice_in_a_row": False,
    "timezone": "Europe/Paris",
}
#: A search that filters nothing (every filter list is required, an empty one does not filter).
NO_FILTERS: dict[str, Any] = dict.fromkeys(SEARCH_FILTERS, ())
ALL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
EVERYONE = {
    "filters": {"statuses": [], "outcomes": [], "results": [], "directions": [], "assignee_ids": []},
    "rows": {"call_ids": [], "mode": "all_except"},
}


def contacts(count: int) -> list[dict[str, Any]]:
    return [
        {"to_phone_number": f"+336123456{index:02d}", "prompt_variables": {"first_name": f"Guest {index}"}}
        for index in range(count)
    ]


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(seed=5) as handle:
        yield handle


@contextmanager
def api_client(sim: SimulatorHandle) -> Iterator[httpx.Client]:
    """An HTTP client of the simulator's API, with its key."""
    headers = {"Authorization": f"Bearer {sim.api_key}"}
    with httpx.Client(base_url=sim.base_url, headers=headers, timeout=5) as http:
        yield http


@contextmanager
def strict_sdk(sim: SimulatorHandle) -> Iterator[Any]:
    """The vendor's SDK on the simulator, validating every response strictly, never retrying."""
    client = revox.Revox(
        api_key=sim.api_key, base_url=sim.base_url, _strict_response_validation=True, max_retries=0
    )
    with client:
        yield client


@pytest.fixture
def client(sim: SimulatorHandle) -> Iterator[httpx.Client]:
    with api_client(sim) as http:
        yield http


@pytest.fixture
def sdk(sim: SimulatorHandle) -> Iterator[Any]:
    with strict_sdk(sim) as client:
        yield client


def create(client: httpx.Client, count: int, **extra: Any) -> dict[str, Any]:
    body = {"name": "Spring reminders", "assistant_id": "asst_campaign", "contacts": contacts(count), **extra}
    response = client.post("/campaigns", json=body)
    assert response.status_code == 200, response.text
    campaign: dict[str, Any] = response.json()["campaign"]
    return campaign


def campaign_calls(client: httpx.Client, campaign_id: str) -> list[dict[str, Any]]:
    body = {**NO_FILTERS, "campaign_ids": [campaign_id], "page": 0, "page_size": 1000}
    calls: list[dict[str, Any]] = client.post("/call/search", json=body).json()["calls"]
    return calls


def finish(sim: SimulatorHandle, campaign_id: str) -> None:
    book = sim.engine.campaigns
    ends = [sim.engine.terminal_at(i) for i in book.campaign(campaign_id).call_ids]
    assert all(end is not None for end in ends)
    sim.clock.set(max(end for end in ends if end is not None))


def test_creation_makes_not_launched_orders_and_dials_nothing(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    campaign = create(client, 4, max_concurrent_calls=2)
    assert campaign["status"] == "running" and campaign["is_cancelled"] is False
    assert campaign["row_stats"]["not_launched"] == 4 and campaign["row_stats"]["total"] == 4
    assert campaign["max_concurrent_calls"] == 2
    sim.advance(timedelta(days=3).total_seconds())
    calls = campaign_calls(client, campaign["id"])
    assert len(calls) == 4
    assert {call["status"] for call in calls} == {statuses.NOT_LAUNCHED}
    assert all(call["calls_count"] == 0 and call["campaign"]["id"] == campaign["id"] for call in calls)
    assert {call["prompt_variables"]["first_name"] for call in calls} == {f"Guest {i}" for i in range(4)}
    assert client.get(f"/campaigns/{campaign['id']}").json()["campaign"]["row_stats"]["not_launched"] == 4


def test_a_bad_contact_creates_nothing(sim: SimulatorHandle, client: httpx.Client) -> None:
    rows = contacts(3)
    rows[1]["to_phone_number"] = "12"
    response = client.post("/campaigns", json={"name": "x", "assistant_id": "a", "contacts": rows})
    assert response.status_code == 422
    assert response.json()["message"].startswith("contacts[1].to_phone_number '12'")
    assert client.get("/campaigns").json() == {"campaigns": []}
    assert sim.engine.call_ids() == []


def test_launch_keeps_at_most_max_concurrent_calls_live_inside_the_windows(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    campaign = create(client, 30, max_concurrent_calls=3, call_retry_config=MORNINGS)
    launched = client.post(
        f"/campaigns/{campaign['id']}/launch-calls", json={"mode": "ai_first", "selection": EVERYONE}
    )
    assert launched.json() == {
        "launched": 30,
        "skipped": {"active": 0, "attempts_exhausted": 0, "cancelled": 0},
        "session": None,
    }
    plans = [sim.engine.plan(i) for i in sim.engine.campaigns.campaign(campaign["id"]).call_ids]
    attempts = [attempt for plan in plans for attempt in plan.attempts]
    assert len(attempts) >= 30
    live = [sum(1 for o in attempts if o.dial_due <= a.dial_due < o.ended_at) for a in attempts]
    assert max(live) == 3  # the three lines are used, never a fourth
    for attempt in attempts:
        local = attempt.dial_due.astimezone(PARIS)
        assert local.weekday() < 5 and 10 <= local.hour < 12, local
    sim.clock.set(min(a.started_at for a in attempts) + timedelta(seconds=1))
    during = client.get(f"/campaigns/{campaign['id']}").json()["campaign"]
    assert during["status"] == "running" and during["row_stats"]["not_launched"] == 0
    assert during["row_stats"]["calling"] >= 1
    finish(sim, campaign["id"])
    done = client.get(f"/campaigns/{campaign['id']}").json()["campaign"]
    assert done["status"] == "completed"
    stats = done["row_stats"]
    assert stats["completed"] + stats["failed"] == 30 and stats["total"] == 30
    assert done["funnel_stats"]["total_leads"] == 30
    assert 0 < done["funnel_stats"]["talked_to_human"] <= 30


def test_a_single_order_resumed_inside_a_campaign_waits_for_a_free_line(sim: SimulatorHandle) -> None:
    book = sim.engine.campaigns
    cid = book.create(name="one line", assistant_id="a", contacts=contacts(3), max_concurrent_calls=1)
    book.launch(cid, mode="ai_first", selection=None)
    first = book.campaign(cid).call_ids[0]
    sim.engine.pause(first)
    sim.engine.resume(first)
    attempts = [a for call_id in book.campaign(cid).call_ids for a in sim.engine.plan(call_id).attempts]
    for attempt in attempts:
        overlapping = [o for o in attempts if o.dial_due < attempt.ended_at and attempt.dial_due < o.ended_at]
        assert overlapping == [attempt]
    assert sim.stats()["campaigns"] == 1


def test_lanes_never_overlap_more_than_their_count() -> None:
    lanes = Lanes(2)
    start = datetime(2025, 3, 3, 9, tzinfo=timezone.utc)
    minute = timedelta(minutes=1)
    taken = [lanes.reserve(start, 10 * minute, lambda moment: moment) for _ in range(5)]
    assert taken == [start, start, start + 10 * minute, start + 10 * minute, start + 20 * minute]
    # A later reservation fills a gap left earlier, if it fits.
    late = lanes.reserve(start + 40 * minute, 5 * minute, lambda moment: moment)
    early = lanes.reserve(start + 20 * minute, 5 * minute, lambda moment: moment)
    assert (late, early) == (start + 40 * minute, start + 20 * minute)
    assert lanes.live_at(start + 21 * minute) == 2
    with pytest.raises(ValueError, match="at least one lane"):
        Lanes(0)


def test_launch_selection_only_some_rows_then_again(sim: SimulatorHandle, client: httpx.Client) -> None:
    campaign = create(client, 4)
    ids = sim.engine.campaigns.campaign(campaign["id"]).call_ids
    only = {"filters": EVERYONE["filters"], "rows": {"call_ids": ids[:2], "mode": "only"}}
    url = f"/campaigns/{campaign['id']}/launch-calls"
    assert client.post(url, json={"mode": "ai_first", "selection": only}).json()["launched"] == 2
    again = client.post(url, json={"mode": "ai_first", "selection": EVERYONE}).json()
    assert again["launched"] == 2 and again["skipped"]["active"] == 2
    speed = client.post(url, json={"mode": "speed_dial", "selection": EVERYONE})
    assert speed.status_code == 422 and "speed_dial" in speed.json()["message"]


def test_pause_stops_the_campaign_and_resume_plans_from_then(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    campaign = create(client, 6, max_concurrent_calls=2, call_retry_config=MORNINGS)
    cid = campaign["id"]
    client.post(f"/campaigns/{cid}/launch-calls", json={"mode": "ai_first", "selection": EVERYONE})
    sim.clock.set(datetime(2025, 3, 3, 9, 5, tzinfo=timezone.utc))  # 10:05 in Paris: dialling
    assert client.post(f"/campaigns/{cid}/pause").json() == {"success": True}
    paused_at = sim.clock.now()
    counts = {call["id"]: call["calls_count"] for call in campaign_calls(client, cid)}
    assert client.get(f"/campaigns/{cid}").json()["campaign"]["status"] == "paused"
    assert client.post(f"/campaigns/{cid}/pause").status_code == 409
    sim.advance(timedelta(days=2).total_seconds())
    calls = campaign_calls(client, cid)
    assert {call["id"]: call["calls_count"] for call in calls} == counts  # nobody dialled while paused
    assert {call["status"] for call in calls} <= {
        statuses.PAUSED,
        *statuses.TERMINAL,
        statuses.POST_PROCESSING,
    }
    assert client.post(f"/campaigns/{cid}/resume").json() == {"success": True}
    resumed_at = sim.clock.now()
    for call_id in sim.engine.campaigns.campaign(cid).call_ids:
        for attempt in sim.engine.plan(call_id).attempts:
            assert attempt.started_at <= paused_at or attempt.dial_due >= resumed_at
    finish(sim, cid)
    assert client.get(f"/campaigns/{cid}").json()["campaign"]["status"] == "completed"
    assert client.post(f"/campaigns/{cid}/resume").status_code == 409


def test_cancel_ends_every_open_order(sim: SimulatorHandle, client: httpx.Client) -> None:
    campaign = create(client, 3)
    cid = campaign["id"]
    assert client.post(f"/campaigns/{cid}/cancel").json() == {"success": True}
    after = client.get(f"/campaigns/{cid}").json()["campaign"]
    assert after["is_cancelled"] is True and after["status"] == "completed"
    assert after["row_stats"]["skipped"] == 3
    assert {call["status"] for call in campaign_calls(client, cid)} == {statuses.CANCELLED}
    assert all(call["ended_at"] is not None for call in campaign_calls(client, cid))
    assert client.post(f"/campaigns/{cid}/cancel").status_code == 409
    launch = client.post(f"/campaigns/{cid}/launch-calls", json={"mode": "ai_first", "selection": EVERYONE})
    assert launch.status_code == 409
    assert client.get("/campaigns/cmp_missing").status_code == 404


def test_every_campaign_endpoint_parses_strictly_and_is_counted(sim: SimulatorHandle, sdk: Any) -> None:
    created = sdk.campaigns.create(
        name="SDK campaign",
        assistant_id="asst_sdk",
        contacts=contacts(5),
        call_retry_config=MORNINGS,
        from_phone_number="+33159000001",
        max_concurrent_calls=2,
    ).campaign
    assert created.status == "running" and created.row_stats is not None
    assert created.row_stats.not_launched == 5 and created.from_phone_number == "+33159000001"
    assert created.call_retry_config is not None and created.call_retry_config.max_retry_attempts == 2
    launched = sdk.campaigns.launch(created.id, mode="ai_first", selection=EVERYONE)
    assert launched.launched == 5 and launched.session is None
    sim.clock.set(datetime(2025, 3, 3, 9, 5, tzinfo=timezone.utc))
    assert sdk.campaigns.pause(created.id).success is True
    assert sdk.campaigns.retrieve(created.id).campaign.status == "paused"
    assert sdk.campaigns.resume(created.id).success is True
    finish(sim, created.id)
    got = sdk.campaigns.retrieve(created.id).campaign
    assert got.status == "completed" and got.funnel_stats is not None and got.funnel_stats.total_leads == 5
    rows = sdk.campaigns.get_rows(created.id).rows
    assert [row.row_index for row in rows] == [0, 1, 2, 3, 4]
    assert rows[0].call is not None and rows[0].call.from_phone_number == "+33159000001"
    assert rows[0].input_data["first_name"] == "Guest 0"
    report = sdk.campaigns.statistics(created.id).statistics
    assert report.funnel.called.imported_rows == 5 and report.effort.outbound_attempts >= 5
    assert sum(item.count for item in report.outcome_breakdown) <= 5
    assert [c.id for c in sdk.campaigns.list().campaigns] == [created.id]
    other = sdk.campaigns.create(name="Other", assistant_id="asst_sdk", contacts=contacts(1)).campaign
    assert sdk.campaigns.cancel(other.id).success is True
    assert sdk.campaigns.retrieve(other.id).campaign.is_cancelled is True
    counted = sim.stats()["by_endpoint"]
    for endpoint, times in {
        "POST /campaigns": 2,
        "POST /campaigns/{id}/launch-calls": 1,
        "GET /campaigns/{id}": 3,
        "GET /campaigns/{id}/rows": 1,
        "GET /campaigns/{id}/statistics": 1,
        "GET /campaigns": 1,
        "POST /campaigns/{id}/pause": 1,
        "POST /campaigns/{id}/resume": 1,
        "POST /campaigns/{id}/cancel": 1,
    }.items():
        assert counted[endpoint] == times, endpoint


def test_campaign_life_runs_on_a_scaled_clock() -> None:
    """At 3,600x real time a campaign of short retries completes within 20 h of its clock, over HTTP."""
    window = {
        "calling_window_start_time": "00:00",
        "calling_window_end_time": "23:59",
        "retry_delay_seconds": 60,
    }
    anytime = {**MORNINGS, "calling_windows": [window], "allowed_days": list(ALL_DAYS)}
    with running_simulator(seed=9, speed=3600.0) as sim, api_client(sim) as client:
        campaign = create(client, 3, call_retry_config=anytime)
        url = f"/campaigns/{campaign['id']}"
        client.post(f"{url}/launch-calls", json={"mode": "ai_first", "selection": EVERYONE})
        # A bound on the simulator's own clock: a loaded machine polls less often, and the
        # campaign's course on that clock is the same (how many polls see it running is not).
        deadline = sim.clock.now() + timedelta(hours=20)
        seen: list[str] = []
        while sim.clock.now() < deadline:
            status = client.get(url).json()["campaign"]["status"]
            seen.append(status)
            if status == "completed":
                break
            time.sleep(0.05)
    assert seen[-1] == "completed"
    assert set(seen) <= {"running", "completed"}
    assert seen == sorted(seen, key=["running", "completed"].index)
