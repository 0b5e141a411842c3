"""CallPoller and RevoxHook.search_calls: over real HTTP against the simulator, and error paths
against ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_revox._internal.client.requests import SEARCH_FILTERS
from airflow_provider_revox._internal.hooks import poller as poller_module
from airflow_provider_revox._internal.hooks import revox as hook_module
from airflow_provider_revox._internal.hooks.poller import CallPoller, shared_poller
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox.exceptions import (
    RevoxAuthError,
    RevoxNotFoundError,
    RevoxResponseError,
    RevoxRetriesExhaustedError,
)
from airflow_provider_revox.hooks.revox import Call
from airflow_provider_revox.testing import SimulatorHandle, running_simulator
from tests.support.paths import FIXTURES

KEY = "rvx_live_batching_SecretKey_42"
CALL = json.loads((FIXTURES / "current_spec_call.json").read_text())["call"]
HUMAN = [{"result": "human", "duration": 60}]


@pytest.fixture
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    async def asleep(seconds: float) -> None:
        pass

    monkeypatch.setattr(hook_module, "retry_asleep", asleep)
    monkeypatch.setattr(hook_module, "retry_sleep", lambda seconds: None)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch, no_retry_wait: None) -> Iterator[SimulatorHandle]:
    """A simulator on a manual clock with finished orders ``o-00`` .. ``o-29``."""
    with running_simulator(seed=5) as handle:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", handle.connection_json(max_retries=1))
        for index in range(30):
            handle.place_scripted(f"o-{index:02d}", HUMAN)
        handle.finish()
        handle.reset_stats()
        yield handle


def ids(count: int) -> list[str]:
    return [f"o-{index:02d}" for index in range(count)]


async def three_batches_of_ten(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], int]:
    """Orders o-00 .. o-29 fetched by one poller in batches of ten: the outcomes, the searches sent."""
    monkeypatch.setattr(poller_module, "MAX_BATCH", 10)
    poller = CallPoller(RevoxHook())
    try:
        return await poller.get_calls(ids(30)), poller.searches
    finally:
        await poller.aclose()


# -- over real HTTP ---------------------------------------------------------------------------


def test_search_calls_returns_what_get_returns(sim: SimulatorHandle) -> None:
    with RevoxHook() as hook:
        page = hook.search_calls(["o-03", "o-01", "nobody"])
        singles = {call_id: hook.get_call(call_id) for call_id in ("o-01", "o-03")}

    assert sorted(call.id for call in page.calls) == ["o-01", "o-03"]
    assert page.total_count == 2
    for call in page.calls:
        assert call.raw == singles[call.id].raw
        assert call.status == "completed"
    assert sim.stats()["by_endpoint"] == {"POST /call/search": 1, "GET /call/{id}": 2}


async def test_polls_due_together_share_one_search(sim: SimulatorHandle) -> None:
    async with shared_poller("revox_default") as poller:
        calls = await asyncio.gather(*(poller.get_call(call_id) for call_id in ids(30)))
        assert (poller.searches, poller.gets) == (1, 0)

    assert [call.id for call in calls] == ids(30)
    assert all(call.status == "completed" for call in calls)
    assert sim.stats()["by_endpoint"] == {"POST /call/search": 1}
    assert sim.stats()["by_call_id"] == dict.fromkeys(ids(30), 1)


async def test_a_page_is_handled_before_any_garbage_collection_and_the_collector_runs_after(
    sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From reading a page to dropping it, no collection may promote its objects (see
    # responses.collector_paused); the collector is back on once the round is over.

    collector_on_while_handled: list[bool] = []
    put = poller_module._Round.put

    def recording_put(self: Any, call_id: str, outcome: Any) -> None:
        collector_on_while_handled.append(gc.isenabled())
        put(self, call_id, outcome)

    monkeypatch.setattr(poller_module._Round, "put", recording_put)
    outcomes, searches = await three_batches_of_ten(monkeypatch)
    assert sorted(outcomes) == ids(30) and searches == 3
    assert collector_on_while_handled == [False] * 30
    assert gc.isenabled()


async def test_a_full_batch_goes_at_once_and_the_rest_later(
    sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(poller_module, "MAX_BATCH", 12)
    monkeypatch.setattr(poller_module, "GATHER_SECONDS", 30.0)
    poller = CallPoller(RevoxHook())
    try:
        # 30 polls, 12 per search: two full searches leave at once; the last 6 wait to gather.
        first = asyncio.gather(*(poller.get_call(call_id) for call_id in ids(24)))
        assert len(await asyncio.wait_for(first, 10)) == 24
        assert poller.searches == 2
        late = asyncio.ensure_future(poller.get_call("o-29"))
        await asyncio.sleep(0.2)
        assert not late.done()  # still gathering
    finally:
        await poller.aclose()
    assert late.cancelled()


async def test_an_order_the_search_misses_is_fetched_alone(sim: SimulatorHandle) -> None:
    poller = CallPoller(RevoxHook())
    try:
        outcomes = await poller.get_calls(["o-00", "ghost", "o-01"])
    finally:
        await poller.aclose()

    assert isinstance(outcomes["o-00"], Call) and isinstance(outcomes["o-01"], Call)
    assert isinstance(outcomes["ghost"], RevoxNotFoundError)
    assert "'ghost'" in str(outcomes["ghost"])
    assert sim.stats()["by_endpoint"] == {"POST /call/search": 1, "GET /call/{id}": 1}
    assert poller.searching is True


async def test_batch_polls_off_uses_one_get_per_order(
    sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", sim.connection_json(batch_polls="false"))
    async with shared_poller("revox_default") as poller:
        calls = await asyncio.gather(*(poller.get_call(call_id) for call_id in ids(5)))
        assert poller.searching is False

    assert [call.id for call in calls] == ids(5)
    assert sim.stats()["by_endpoint"] == {"GET /call/{id}": 5}


async def test_a_failing_search_fails_its_polls_without_falling_back(sim: SimulatorHandle) -> None:
    sim.faults.script("POST /call/search", ["503", "503"])
    async with shared_poller("revox_default") as poller:
        results = await asyncio.gather(*(poller.get_call(c) for c in ids(3)), return_exceptions=True)
        assert poller.searching is True

    assert all(isinstance(result, RevoxRetriesExhaustedError) for result in results)
    assert all(result.status_code == 503 for result in results)  # type: ignore[union-attr]
    assert gc.isenabled()
    assert sim.stats()["by_endpoint"] == {"POST /call/search": 2}  # max_retries=1; no GET


async def test_a_rejected_key_sends_nothing_more(
    sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {"conn_type": "revox", "host": sim.base_url, "password": "sk_wrong_key_000"}
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", json.dumps(conn))
    outcomes, _ = await three_batches_of_ten(monkeypatch)

    assert all(isinstance(outcome, RevoxAuthError) for outcome in outcomes.values())
    assert len(outcomes) == 30
    assert gc.isenabled()
    assert sim.stats()["by_status"] == {"401": 1}
    assert "sk_wrong_key_000" not in str(next(iter(outcomes.values())))


async def test_a_cancelled_poll_leaves_the_others_served(sim: SimulatorHandle) -> None:
    async with shared_poller("revox_default") as poller:
        doomed = asyncio.ensure_future(poller.get_call("o-00"))
        kept = asyncio.ensure_future(poller.get_call("o-01"))
        await asyncio.sleep(0)
        doomed.cancel()
        call = await kept
    assert call.id == "o-01"
    assert doomed.cancelled()


async def test_waits_share_one_poller_per_connection_and_loop(sim: SimulatorHandle) -> None:
    async with shared_poller("revox_default") as first, shared_poller("revox_default") as second:
        assert first is second
        await first.get_call("o-00")
        client = await first.hook.aget_conn()
    assert client.is_closed  # the last wait to leave closes it
    async with shared_poller("revox_default") as third:
        assert third is not first


# -- error paths ------------------------------------------------------------------------------


def sent_body(request: httpx.Request) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(request.content)
    return body


class FakeApi:
    """GET /call/{id} answers any id; POST /call/search answers as ``search`` says."""

    def __init__(self, search: Callable[[httpx.Request], httpx.Response]) -> None:
        self.search = search
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/call/search"):
            return self.search(request)
        call_id = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json={"call": {**CALL, "id": call_id}})

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path.removeprefix('/api/')}" for r in self.requests]


@pytest.fixture
def fake_conn(monkeypatch: pytest.MonkeyPatch, no_retry_wait: None) -> None:
    conn = {"conn_type": "revox", "host": "https://api.revox.test/api", "password": KEY}
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", json.dumps(conn))


def found(request: httpx.Request) -> httpx.Response:
    wanted = sent_body(request)["call_ids"]
    return httpx.Response(
        200, json={"calls": [{**CALL, "id": i} for i in wanted], "total_count": len(wanted)}
    )


async def test_the_search_body_selects_exactly_the_ids(fake_conn: None) -> None:
    api = FakeApi(found)
    async with RevoxHook(transport=httpx.MockTransport(api)) as hook:
        page = await hook.asearch_calls(["a", "b"])

    assert [call.id for call in page.calls] == ["a", "b"]
    request = api.requests[0]
    assert request.method == "POST" and request.url.path == "/api/call/search"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert sent_body(request) == {
        **{name: [] for name in SEARCH_FILTERS},
        "call_ids": ["a", "b"],
        "page": 0,
        "page_size": 2,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"call_ids": ["ok", ""]}, "call_id is empty"),
        ({"call_ids": ["a"], "page": -1}, "page must be 0 or more"),
        ({"call_ids": ["a"], "page_size": 0}, "page_size must be at least 1"),
    ],
)
def test_bad_search_arguments_send_nothing(fake_conn: None, kwargs: dict[str, Any], message: str) -> None:
    api = FakeApi(found)
    with RevoxHook(transport=httpx.MockTransport(api)) as hook, pytest.raises(ValueError, match=message):
        hook.search_calls(**kwargs)
    assert api.requests == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"results": []}, "no 'calls' list"),
        ({"calls": [{**CALL, "id": "a"}, {"status": "completed"}]}, "calls[1] that is not a call order"),
    ],
)
def test_a_search_answer_that_is_not_a_page_is_named(
    fake_conn: None, body: dict[str, Any], problem: str
) -> None:
    api = FakeApi(lambda request: httpx.Response(200, json=body))
    with RevoxHook(transport=httpx.MockTransport(api)) as hook, pytest.raises(RevoxResponseError) as caught:
        hook.search_calls(["a"])
    assert problem in str(caught.value)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize("status", [400, 404, 405, 410, 422, 501])
async def test_an_api_without_the_search_is_polled_with_gets(
    fake_conn: None, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeApi(lambda request: httpx.Response(status, json={"error": "nope"}))
    poller = CallPoller(RevoxHook(transport=httpx.MockTransport(api)))
    with caplog.at_level(logging.WARNING, logger="airflow_provider_revox._internal.hooks.poller"):
        first = await asyncio.gather(*(poller.get_call(c) for c in ("a", "b")))
        second = await asyncio.gather(*(poller.get_call(c) for c in ("a", "b")))
    await poller.aclose()

    assert [c.id for c in first + second] == ["a", "b", "a", "b"]
    assert api.paths() == ["POST call/search", "GET call/a", "GET call/b", "GET call/a", "GET call/b"]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        f"Revox connection 'revox_default': polling each call order with GET from now on, since the API "
        f"answered HTTP {status} to POST /call/search"
    ]


async def test_a_search_that_keeps_missing_what_get_finds_is_given_up(fake_conn: None) -> None:
    api = FakeApi(lambda request: httpx.Response(200, json={"calls": [], "total_count": 0}))
    poller = CallPoller(RevoxHook(transport=httpx.MockTransport(api)))
    for _ in range(poller_module.USELESS_SEARCHES_LIMIT + 1):
        assert (await poller.get_call("a")).id == "a"
    await poller.aclose()

    searches = api.paths().count("POST call/search")
    assert searches == poller_module.USELESS_SEARCHES_LIMIT
    assert api.paths().count("GET call/a") == poller_module.USELESS_SEARCHES_LIMIT + 1
    assert poller.searching is False


async def test_an_unreadable_search_falls_back_once_and_is_asked_again(fake_conn: None) -> None:
    answers = iter([httpx.Response(200, content=b'{"calls": [{"id"'), None])

    def search(request: httpx.Request) -> httpx.Response:
        answer = next(answers, None)
        return answer if answer is not None else found(request)

    api = FakeApi(search)
    poller = CallPoller(RevoxHook(transport=httpx.MockTransport(api)))
    first = await poller.get_call("a")
    second = await poller.get_call("a")
    await poller.aclose()

    assert first.id == second.id == "a"
    assert api.paths() == ["POST call/search", "GET call/a", "POST call/search"]
    assert poller.searching is True


def test_poller_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        CallPoller(RevoxHook(), max_batch=0)
    with pytest.raises(ValueError, match="gather_seconds"):
        CallPoller(RevoxHook(), gather_seconds=-1)


def test_repr_never_shows_the_key(fake_conn: None) -> None:
    poller = CallPoller(RevoxHook())
    poller.hook.connection_settings()
    assert KEY not in repr(poller)
    assert "revox_default" in repr(poller)


async def test_a_page_is_digested_in_slices_with_the_loop_handed_back_between_them(
    sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One page of 30 orders: another task of the loop must run while the page is being digested,
    # not only before and after it (a big wait's page held the triggerer's loop on a busy machine).
    monkeypatch.setattr(poller_module, "MAX_BATCH", 30)
    handed: list[str] = []
    seen_by_other_task: list[int] = []
    stop = asyncio.Event()

    async def other_task() -> None:
        while not stop.is_set():
            seen_by_other_task.append(len(handed))
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_task())
    poller = CallPoller(RevoxHook())
    try:
        await poller.get_calls(ids(30), on_outcome=lambda call_id, outcome: handed.append(call_id))
    finally:
        stop.set()
        await ticker
        await poller.aclose()

    assert sorted(handed) == ids(30)
    assert poller.searches == 1
    assert any(0 < count < 30 for count in seen_by_other_task), seen_by_other_task
