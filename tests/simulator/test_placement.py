"""Placing orders in the simulator over real HTTP: every POST /call field, pause and resume of the
retry loop, the search filters and sorts an incremental reader needs, and the fault that stores a
POST and then drops the connection (the cause of duplicate orders)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.core.call import parse_iso
from airflow_provider_revox.testing import Faults, SimulatorHandle, VirtualClock, running_simulator
from tests.simulator import test_campaigns as campaign_tests
from tests.simulator.test_campaigns import NO_FILTERS, api_client

revox = pytest.importorskip("revox")

PARIS = "+33612345678"
LYON = "+33478123456"
#: Monday 2 a.m. in Paris: outside every default calling window.
NIGHT = datetime(2025, 3, 3, 1, 0, tzinfo=timezone.utc)


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(seed=3, clock=VirtualClock(NIGHT)) as handle:
        yield handle


# The campaign tests' fixtures, on this module's night-time ``sim``.
client = campaign_tests.client
sdk = campaign_tests.sdk


def search(client: httpx.Client, **fields: Any) -> httpx.Response:
    return client.post("/call/search", json={**NO_FILTERS, "page": 0, "page_size": 100, **fields})


def test_post_call_keeps_and_returns_every_field(sim: SimulatorHandle, sdk: Any) -> None:
    placed = sdk.call.create(
        phone_number=PARIS,
        assistant_id="asst_fields",
        metadata={"idempotency_key": "dag.task.run.0"},
        prompt_variables={"first_name": "Ada"},
        scheduled_at="2025-03-04T09:30:00Z",
        from_phone_number="+33159000002",
        skip_calling_window=True,
        concurrency={"key": "pharmacy-12"},
    ).call
    again = sdk.call.retrieve(placed.id).call
    for call in (placed, again):
        assert call.metadata == {"idempotency_key": "dag.task.run.0"}
        assert call.prompt_variables == {"first_name": "Ada"} and call.contact.first_name == "Ada"
        assert call.scheduled_at == "2025-03-04T09:30:00.000Z"
        assert call.from_phone_number == "+33159000002"
        assert call.model_extra is not None
        assert call.model_extra["skip_calling_window"] is True
        assert call.model_extra["concurrency"] == {"key": "pharmacy-12"}
    found = sdk.call.search(**NO_FILTERS, to_phone_number=PARIS, page=0, page_size=10)
    assert [c.metadata for c in found.calls] == [{"idempotency_key": "dag.task.run.0"}]
    with pytest.raises(revox.UnprocessableEntityError):
        sdk.call.create(phone_number=PARIS, assistant_id="a", metadata={"n": 1})
    with pytest.raises(revox.UnprocessableEntityError):
        sdk.call.create(phone_number=PARIS, assistant_id="a", concurrency={"key": ""})


def test_skip_calling_window_dials_at_night(sim: SimulatorHandle) -> None:
    anytime = sim.place_call(phone_number=PARIS, assistant_id="a", skip_calling_window=True)
    windowed = sim.place_call(phone_number=PARIS, assistant_id="a")
    assert anytime["next_call_at"] == "2025-03-03T01:00:00.000Z"
    local = parse_iso(windowed["next_call_at"]).astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (10, 0)


def test_pause_stops_the_retry_loop_and_resume_plans_from_then(sim: SimulatorHandle, sdk: Any) -> None:
    call_id = sim.place_scripted(
        "loop", [{"dial_error": "no_answer"}, {"dial_error": "no_answer"}, {"result": "human"}]
    )
    first = sim.engine.plan(call_id).attempts[0]
    sim.clock.set(first.ended_at + timedelta(seconds=1))
    assert sdk.call.pause(call_id).success is True
    sim.advance(timedelta(days=3).total_seconds())
    paused = sdk.call.retrieve(call_id).call
    assert paused.status == statuses.PAUSED and paused.calls_count == 1
    resumed_at = sim.clock.now()
    assert sdk.call.resume(call_id).success is True
    after = sdk.call.retrieve(call_id).call
    assert after.status in (statuses.SCHEDULED, statuses.QUEUED_FOR_CALLING)
    assert parse_iso(after.model_extra["next_call_at"]) >= resumed_at
    sim.clock.set(sim.engine.terminal_at(call_id) or resumed_at)
    done = sdk.call.retrieve(call_id).call
    assert done.status == statuses.COMPLETED and done.calls_count == 3
    assert done.model_extra["ended_at"] == done.updated_at


def test_pausing_a_live_attempt_hangs_it_up_with_a_documented_reason(sim: SimulatorHandle, sdk: Any) -> None:
    call_id = sim.place_scripted("live", [{"result": "human"}])
    attempt = sim.engine.plan(call_id).attempts[0]
    sim.clock.set(attempt.ringing_at + timedelta(seconds=1))
    sdk.call.pause(call_id)
    last = sdk.call.retrieve(call_id).call.last_call_attempt
    assert last is not None and (last.ended_by, last.end_reason) == ("system", "client_initiated")


def test_search_filters_by_number_assistant_and_status(sim: SimulatorHandle, client: httpx.Client) -> None:
    a = sim.place_call(phone_number=PARIS, assistant_id="asst_a", metadata={"k": "1"})["id"]
    b = sim.place_call(phone_number=LYON, assistant_id="asst_b")["id"]
    sim.engine.cancel(b)

    def ids(**fields: Any) -> list[str]:
        response = search(client, **fields)
        assert response.status_code == 200, response.text
        return [call["id"] for call in response.json()["calls"]]

    assert ids(to_phone_number=PARIS) == [a]
    assert ids(assistant_ids=["asst_b"]) == [b]
    assert ids(statuses=[statuses.CANCELLED]) == [b]
    assert ids(from_phone_numbers=["+33159000000"], to_phone_number=LYON) == [b]
    assert search(client, to_phone_number=PARIS).json()["calls"][0]["metadata"] == {"k": "1"}


def test_updated_at_moves_and_search_sorts_by_it(sim: SimulatorHandle, client: httpx.Client) -> None:
    first = sim.place_call(phone_number=PARIS, assistant_id="a")["id"]
    sim.advance(60)
    second = sim.place_call(phone_number=LYON, assistant_id="a")["id"]
    before = client.get(f"/call/{first}").json()["call"]["updated_at"]
    sim.advance(60)
    sim.engine.cancel(first)  # the older order now changed last
    after = client.get(f"/call/{first}").json()["call"]
    assert after["updated_at"] > before and after["ended_at"] == after["updated_at"]
    newest = search(client, sort_by="updated_at", sort_direction="desc").json()["calls"]
    assert [c["id"] for c in newest] == [first, second]
    oldest = search(client, sort_by="updated_at", sort_direction="asc").json()["calls"]
    assert [c["id"] for c in oldest] == [second, first]
    assert [c["id"] for c in search(client, sort_by="created_at").json()["calls"]] == [second, first]
    by_end = search(client, sort_by="ended_at", sort_direction="asc").json()["calls"]
    assert [c["id"] for c in by_end] == [first, second]  # an open order sorts as ending now


def test_refuse_sort_answers_422_to_a_sort_only() -> None:
    with running_simulator(seed=1, refuse_sort=True) as sim:
        with api_client(sim) as client:
            sim.place_call(phone_number=PARIS, assistant_id="a")
            refused = search(client, sort_by="updated_at", sort_direction="desc")
            assert refused.status_code == 422 and "sort" in refused.json()["message"]
            assert search(client).json()["total_count"] == 1
        assert sim.stats()["by_status"] == {"422": 1, "200": 1}


def test_drop_after_commit_stores_the_order_then_drops_the_connection(
    sim: SimulatorHandle, client: httpx.Client
) -> None:
    sim.faults.script(PARIS, ["drop_after_commit"])
    body = {"phone_number": PARIS, "assistant_id": "a", "metadata": {"key": "k1"}}
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/call", json=body)
    stored = search(client, to_phone_number=PARIS).json()["calls"]
    assert [call["metadata"] for call in stored] == [{"key": "k1"}]
    assert client.post("/call", json=body).status_code == 200  # the script is used up
    sim.faults.script("POST /call", ["drop_after_commit"])
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/call", json={**body, "phone_number": LYON})
    sim.faults.script("POST /campaigns", ["drop_after_commit"])
    campaign = {
        "name": "c",
        "assistant_id": "a",
        "contacts": [{"to_phone_number": LYON, "prompt_variables": {}}],
    }
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/campaigns", json=campaign)
    assert len(client.get("/campaigns").json()["campaigns"]) == 1
    assert len(search(client, to_phone_number=LYON).json()["calls"]) == 2
    stats = sim.stats()
    assert stats["by_status"]["drop_after_commit"] == 3
    assert stats["by_endpoint"]["POST /call"] == 3 and stats["by_endpoint"]["POST /campaigns"] == 1


def test_drop_after_commit_by_rate() -> None:
    faults = Faults("drop_after_commit=1", seed=2)
    with running_simulator(seed=2, faults=faults) as sim:
        with api_client(sim) as client:
            for _ in range(3):
                with pytest.raises(httpx.RemoteProtocolError):
                    client.post("/call", json={"phone_number": PARIS, "assistant_id": "a"})
        assert len(sim.engine.call_ids()) == 3
        assert sim.stats()["by_status"] == {"drop_after_commit": 3}
