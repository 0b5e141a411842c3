"""RevoxHook's call-order endpoints over real HTTP against the simulator: placing with every field,
cancel / pause / resume, the search with its filters and the iterators over every page, the
checks that refuse bad input before any request, and the no-resend rule of a placement."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from airflow_provider_revox.exceptions import (
    RevoxApiError,
    RevoxConfigError,
    RevoxIncompleteReadError,
    RevoxInvalidRequestError,
    RevoxTransportError,
)
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.testing import SimulatorHandle, VirtualClock, running_simulator

PARIS = "+33612345678"
LYON = "+33478123456"
NIGHT = datetime(2025, 3, 3, 1, 0, tzinfo=timezone.utc)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorHandle]:
    with running_simulator(seed=5, clock=VirtualClock(NIGHT)) as handle:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", handle.connection_json())
        yield handle


def posts(sim: SimulatorHandle, endpoint: str = "POST /call") -> int:
    return int(sim.stats()["by_endpoint"].get(endpoint, 0))


def test_place_call_sends_every_field_and_returns_the_order(sim: SimulatorHandle) -> None:
    with RevoxHook() as hook:
        call = hook.place_call(
            phone_number=PARIS,
            assistant_id="asst_fields",
            metadata={"customer": "c-1"},
            prompt_variables={"first_name": "Ada"},
            scheduled_at=datetime(2025, 3, 4, 9, 30, tzinfo=timezone.utc),
            from_phone_number="+33159000002",
            skip_calling_window=True,
            concurrency_key="pharmacy-12",
        )
    truth = sim.get_call(call.id)
    assert call.to_phone_number == truth["to_phone_number"] == PARIS
    assert call.metadata == truth["metadata"] == {"customer": "c-1"}
    assert truth["prompt_variables"] == {"first_name": "Ada"}
    assert truth["scheduled_at"] == "2025-03-04T09:30:00.000Z"
    assert truth["from_phone_number"] == "+33159000002"
    assert truth["concurrency"] == {"key": "pharmacy-12"}
    assert posts(sim) == 1


async def test_aplace_call_places_one_order(sim: SimulatorHandle) -> None:
    async with RevoxHook() as hook:
        call = await hook.aplace_call(phone_number=LYON, assistant={"prompt": "Hello"}, metadata={"k": "v"})
    assert sim.get_call(call.id)["metadata"] == {"k": "v"}
    assert sim.stats()["calls"] == 1


OK = {"phone_number": PARIS, "assistant_id": "a"}
BAD_PLACEMENTS = [
    ({"phone_number": "0612345678", "assistant_id": "a"}, "phone_number", "E.164"),
    ({"phone_number": "+33 6 12 34 56 78", "assistant_id": "a"}, "phone_number", "E.164"),
    ({"phone_number": "+33000000000", "assistant_id": "a"}, "phone_number", "not a valid phone number"),
    ({"phone_number": 33612345678, "assistant_id": "a"}, "phone_number", "must be a string"),
    ({"phone_number": PARIS}, "assistant_id", "neither was given"),
    ({**OK, "assistant": {"prompt": "x"}}, "assistant_id", "both"),
    ({**OK, "metadata": {"n": 1}}, "metadata", r"metadata\['n'\] is of type int"),
    ({**OK, "metadata": "k=v"}, "metadata", "mapping"),
    ({**OK, "prompt_variables": {"a": None}}, "prompt_variables", "NoneType"),
    ({**OK, "scheduled_at": "2025-03-04T09:30"}, "scheduled_at", "timezone"),
    ({**OK, "scheduled_at": "tomorrow"}, "scheduled_at", "ISO 8601"),
    ({**OK, "from_phone_number": "12"}, "from_phone_number", "E.164"),
    ({**OK, "skip_calling_window": "yes"}, "skip_calling_window", "True or False"),
    ({**OK, "concurrency_key": ""}, "concurrency_key", "non-empty"),
]  # fmt: skip


@pytest.mark.parametrize(("arguments", "field", "problem"), BAD_PLACEMENTS)
async def test_bad_placements_are_refused_before_any_request(
    sim: SimulatorHandle, arguments: dict[str, Any], field: str, problem: str
) -> None:
    hook = RevoxHook()
    with pytest.raises(RevoxInvalidRequestError, match=problem) as caught:
        hook.place_call(**arguments)
    assert caught.value.field == field and field in str(caught.value)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(RevoxInvalidRequestError, match=problem):
        await hook.aplace_call(**arguments)
    await hook.aclose()
    assert sim.stats()["requests_total"] == 0


def test_a_placement_dropped_after_the_server_stored_it_is_not_sent_again(sim: SimulatorHandle) -> None:
    sim.faults.script("POST /call", ["drop_after_commit"])
    with RevoxHook(max_retries=3) as hook, pytest.raises(RevoxTransportError, match="not retried"):
        hook.place_call(phone_number=PARIS, assistant_id="asst_drop")
    assert posts(sim) == 1
    assert sim.stats()["calls"] == 1


def test_a_placement_refused_with_429_is_sent_again(sim: SimulatorHandle, monkeypatch: Any) -> None:
    monkeypatch.setattr("airflow_provider_revox._internal.hooks.revox.retry_sleep", lambda seconds: None)
    sim.faults.script("POST /call", ["429"])
    with RevoxHook(max_retries=2) as hook:
        call = hook.place_call(phone_number=PARIS, assistant_id="asst_429")
    assert posts(sim) == 2
    assert sim.stats()["calls"] == 1 and sim.get_call(call.id)["status"] != ""


def test_pause_resume_cancel(sim: SimulatorHandle) -> None:
    with RevoxHook() as hook:
        placed = hook.place_call(phone_number=PARIS, assistant_id="asst_actions")
        assert hook.pause_call(placed.id).status == "paused"
        assert sim.get_call(placed.id)["status"] == "paused"
        resumed = hook.resume_call(placed.id)
        assert (
            resumed.status not in ("paused", "cancelled")
            and resumed.status == sim.get_call(placed.id)["status"]
        )
        assert hook.cancel_call(placed.id).status == "cancelled"
        with pytest.raises(RevoxApiError, match="409"):
            hook.pause_call(placed.id)  # a cancelled order cannot be paused: the refusal stands
    assert sim.get_call(placed.id)["status"] == "cancelled"


async def test_async_pause_resume_cancel(sim: SimulatorHandle) -> None:
    async with RevoxHook() as hook:
        placed = await hook.aplace_call(phone_number=PARIS, assistant_id="asst_actions")
        assert (await hook.apause_call(placed.id)).status == "paused"
        assert (await hook.aresume_call(placed.id)).status != "paused"
        assert (await hook.acancel_call(placed.id)).status == "cancelled"
    assert sim.get_call(placed.id)["status"] == "cancelled"


def test_an_action_whose_answer_was_dropped_is_retried_and_counts_as_done(
    sim: SimulatorHandle, monkeypatch: Any
) -> None:
    monkeypatch.setattr("airflow_provider_revox._internal.hooks.revox.retry_sleep", lambda seconds: None)
    with RevoxHook(max_retries=2) as hook:
        placed = hook.place_call(phone_number=PARIS, assistant_id="asst_cancel")
        sim.faults.script(placed.id, ["drop_after_commit"])
        call = hook.cancel_call(placed.id)
    # The first cancel was applied and its answer lost; the resent one is refused (409) because
    # the order is already cancelled, which is what was asked.
    assert call.status == "cancelled"
    assert posts(sim, "POST /call/{id}/cancel") == 2


def test_search_calls_filters(sim: SimulatorHandle) -> None:
    with RevoxHook() as hook:
        a = hook.place_call(phone_number=PARIS, assistant_id="asst_a", metadata={"n": "1"})
        b = hook.place_call(phone_number=PARIS, assistant_id="asst_b")
        c = hook.place_call(phone_number=LYON, assistant_id="asst_a")
        hook.cancel_call(c.id)
        by_number = hook.search_calls(to_phone_number=PARIS)
        by_both = hook.search_calls(to_phone_number=PARIS, assistant_ids=["asst_a"])
        cancelled = hook.search_calls(statuses=["cancelled"])
        by_ids = hook.search_calls([b.id, c.id, "nobody"])
        oldest_first = hook.search_calls(assistant_ids=["asst_a"], sort_by="created_at", sort_direction="asc")
    assert {call.id for call in by_number.calls} == {a.id, b.id} and by_number.total_count == 2
    assert [call.id for call in by_both.calls] == [a.id] and by_both.calls[0].metadata == {"n": "1"}
    assert [call.id for call in cancelled.calls] == [c.id]
    assert {call.id for call in by_ids.calls} == {b.id, c.id}
    assert [call.id for call in oldest_first.calls] == [a.id, c.id]


def test_the_search_body_carries_every_filter_by_its_api_name(sim: SimulatorHandle) -> None:
    seen: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"calls": [], "total_count": 0})

    with RevoxHook(transport=httpx.MockTransport(answer)) as hook:
        hook.search_calls(
            statuses=["completed"], campaign_ids=["cmp"], assistant_ids=["asst"], to_phone_number=PARIS,
            from_phone_numbers=["+33159000002"], outcomes=["interested"], results=["human"],
            directions=["outbound"], assignee_ids=["u1"], query="ada", sort_by="updated_at",
            sort_direction="desc", page=2, page_size=50,
        )  # fmt: skip
    assert seen == [
        {
            "statuses": ["completed"], "campaign_ids": ["cmp"], "assistant_ids": ["asst"],
            "to_phone_number": PARIS, "from_phone_numbers": ["+33159000002"], "outcomes": ["interested"],
            "results": ["human"], "directions": ["outbound"], "assignee_ids": ["u1"], "query": "ada",
            "sort_by": "updated_at", "sort_direction": "desc", "page": 2, "page_size": 50,
        }
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"call_ids": []}, "call_ids is empty"),
        ({"statuses": "completed"}, "statuses must be a list"),
        ({"to_phone_number": "06 12"}, "to_phone_number"),
        ({"sort_direction": "up"}, "'asc' or 'desc'"),
        ({"assistant_ids": [""]}, r"assistant_ids\[0\]"),
        ({"page_size": 0}, "page_size"),
    ],
)
def test_bad_searches_send_nothing(sim: SimulatorHandle, arguments: dict[str, Any], problem: str) -> None:
    with RevoxHook() as hook, pytest.raises(RevoxConfigError, match=problem):
        hook.search_calls(**arguments)
    with RevoxHook() as hook, pytest.raises(RevoxConfigError, match=problem):
        list(hook.iter_calls(**arguments))
    assert sim.stats()["requests_total"] == 0


def test_iter_calls_reads_every_page_once(sim: SimulatorHandle) -> None:
    placed = [sim.place_call(phone_number=PARIS, assistant_id="asst_pages")["id"] for _ in range(7)]
    sim.place_call(phone_number=LYON, assistant_id="asst_pages")
    sim.reset_stats()
    with RevoxHook() as hook:
        found = [call.id for call in hook.iter_calls(to_phone_number=PARIS, page_size=3)]
    assert sorted(found) == sorted(placed) and len(found) == 7
    assert posts(sim, "POST /call/search") == 3


async def test_aiter_calls_reads_every_page_once(sim: SimulatorHandle) -> None:
    placed = [sim.place_call(phone_number=LYON, assistant_id="asst_pages")["id"] for _ in range(5)]
    async with RevoxHook() as hook:
        found = [call.id async for call in hook.aiter_calls(assistant_ids=["asst_pages"], page_size=2)]
    assert sorted(found) == sorted(placed)
    assert posts(sim, "POST /call/search") == 3


def test_iter_calls_lists_every_order_when_orders_placed_meanwhile_shift_the_pages(
    sim: SimulatorHandle,
) -> None:
    placed = [sim.place_call(phone_number=PARIS, assistant_id="asst_pages")["id"] for _ in range(5)]
    meanwhile = [sim.place_call(phone_number=PARIS, assistant_id="asst_pages")["id"] for _ in range(2)]
    sim.faults.shift_pages(meanwhile)  # placed between page 0 and page 1: page 1 repeats page 0
    with RevoxHook() as hook:
        found = [call.id for call in hook.iter_calls(to_phone_number=PARIS, page_size=2)]
    assert set(placed) <= set(found) and len(found) == len(set(found))


def test_iter_calls_fails_rather_than_end_short_when_the_api_ignores_the_page(sim: SimulatorHandle) -> None:
    same_page = {"calls": [{"id": "a", "status": "completed"}, {"id": "b", "status": "completed"}],
                 "total_count": 50}  # fmt: skip
    asked: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(json.loads(request.content)["page"])
        return httpx.Response(200, json=same_page)

    hook = RevoxHook(transport=httpx.MockTransport(answer))
    with hook, pytest.raises(RevoxIncompleteReadError, match=r"read 2 distinct call\(s\) of the 50"):
        list(hook.iter_calls(page_size=2))
    assert asked == [0, 1, 2, 3] * 3  # each pass ends after three pages with nothing new
