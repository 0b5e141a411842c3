"""What an incremental export's search costs: pages of 1,000 (an API that serves fewer per page is
read at its own limit, every order still read), and ended orders only.
Real HTTP: the simulator, and a crafted API that serves at most 100 orders a page."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO

import pytest

from airflow_provider_revox._internal.core.statuses import TERMINAL
from airflow_provider_revox._internal.export.incremental import NewCalls, terminal_only
from airflow_provider_revox._internal.export.search import INCREMENTAL_PAGE_SIZE, calls_by_search
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.waiting.cursor import Watermark
from airflow_provider_revox._internal.waiting.pages import PageWalk
from airflow_provider_revox.exceptions import RevoxConfigError
from tests.support.crafted_api import Request, answer, call_body, conn_json, crafted_api

KEY = "sk_test_0123456789"
SEARCH = "POST /call/search"
SERVED_PER_PAGE = 100
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def ended_orders(count: int) -> list[dict[str, Any]]:
    """``count`` orders that ended a second apart, newest change first (the sort asked for)."""
    found = []
    for index in range(count):
        stamp = (T0 - timedelta(seconds=index)).isoformat().replace("+00:00", "Z")
        call = call_body(f"call_{index:04d}", status="completed", updated_at=stamp, ended_at=stamp)["call"]
        found.append(call)
    return found


def capped_search(orders: list[dict[str, Any]]) -> Any:
    """A search that serves at most SERVED_PER_PAGE orders a page, whatever page_size asks."""

    def route(request: Request, out: BinaryIO) -> None:
        body = json.loads(request.body)
        size = min(int(body["page_size"]), SERVED_PER_PAGE)
        start = int(body["page"]) * size
        answer(out, 200, {"calls": orders[start : start + size], "total_count": len(orders)})

    return route


def asked(api: Any) -> list[tuple[int, int]]:
    """(page, page_size) of every search the API saw."""
    return [(json.loads(r.body)["page"], json.loads(r.body)["page_size"]) for r in api.requests]


def test_a_search_asking_for_pages_of_1000_reads_an_api_that_serves_100_at_its_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orders = ended_orders(250)
    with crafted_api(capped_search(orders)) as api:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", conn_json(api.base_url, KEY))
        with RevoxHook() as hook:
            read = [call.id for call in calls_by_search(hook, {}, sleep=lambda _: None, page_size=1000)]
    assert read == [order["id"] for order in orders]
    # Asked 1,000, served 100: the read goes on at the API's own size, one request a page.
    assert asked(api) == [(0, 1000), (1, 100), (2, 100)]


def test_an_incremental_read_of_an_api_serving_100_a_page_takes_every_ended_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orders = ended_orders(250)
    with crafted_api(capped_search(orders)) as api:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", conn_json(api.base_url, KEY))
        with RevoxHook() as hook:
            new = NewCalls(hook, {"assistant_ids": ["asst_x"]}, Watermark(), sleep=lambda _: None)
            read = [call.id for call in new]
    # A first page shorter than asked is not the end while total_count says more match.
    assert sorted(read) == sorted(order["id"] for order in orders)
    assert asked(api) == [(0, INCREMENTAL_PAGE_SIZE), (1, 100), (2, 100)]
    assert INCREMENTAL_PAGE_SIZE == 1000
    assert new.watermark.ended_at == T0
    bodies = [json.loads(r.body) for r in api.requests]
    assert {tuple(body["statuses"]) for body in bodies} == {tuple(sorted(TERMINAL))}


def test_an_incremental_first_run_reads_only_the_ended_orders_in_one_request(simulator: Any) -> None:
    ended = [
        simulator.place_scripted(f"ended-{index:03d}", [{"result": "human", "duration": 30}])
        for index in range(250)
    ]
    simulator.finish(*ended)
    later = (simulator.clock.now() + timedelta(days=2)).isoformat()
    live = [
        simulator.place_scripted(f"live-{index:03d}", [{"result": "human"}], scheduled_at=later)
        for index in range(150)
    ]
    assert {simulator.get_call(call_id)["status"] for call_id in live} == {"scheduled"}
    before = int(simulator.stats()["by_endpoint"].get(SEARCH, 0))
    with RevoxHook() as hook:
        new = NewCalls(hook, {"assistant_ids": ["asst_test"]}, Watermark(), sleep=lambda _: None)
        read = sorted(call.id for call in new)
    assert read == sorted(ended)
    # 250 ended orders and 150 waiting ones: one page of ended orders, the waiting never read.
    assert int(simulator.stats()["by_endpoint"][SEARCH]) - before == 1


def test_an_incremental_read_keeps_the_terminal_statuses_it_is_given_and_refuses_none() -> None:
    assert terminal_only({"campaign_ids": ["c"]})["statuses"] == sorted(TERMINAL)
    assert terminal_only({"statuses": ["completed", "calling"]})["statuses"] == ["completed"]
    with pytest.raises(RevoxConfigError, match="names none of them"):
        terminal_only({"statuses": ["calling", "scheduled"]})


def test_a_capped_walk_takes_the_first_short_page_as_the_api_limit_and_a_later_one_as_a_move() -> None:
    orders = ended_orders(250)

    def page(number: int, size: int) -> list[Any]:
        from airflow_provider_revox._internal.core.call import Call

        return [Call.from_response(order) for order in orders[number * size : (number + 1) * size]]

    walk = PageWalk(1000, full=False, capped=True)
    walk.take(page(0, 100), 250)
    assert (walk.page_size, walk.pass_done) == (100, False)
    walk.take(page(1, 100)[:40], 250)  # short, though 110 more match: the results moved
    assert walk.pass_done and not walk.proven and walk.more_passes
    # Uncapped (the triggers' walks), a short page is the end, as before.
    plain = PageWalk(1000, full=False)
    plain.take(page(0, 100), 250)
    assert plain.pass_done and plain.proven


def test_orders_that_end_while_the_pages_are_read_wait_for_the_next_read_not_taken_as_untrusted(
    simulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    first = [
        simulator.place_scripted(f"first-{index:03d}", [{"result": "human", "duration": 30}])
        for index in range(150)
    ]
    simulator.finish(*first)
    soon = (simulator.clock.now() + timedelta(minutes=10)).isoformat()
    during = [
        simulator.place_scripted(
            f"during-{index:02d}", [{"result": "human", "duration": 30}], scheduled_at=soon
        )
        for index in range(5)
    ]
    with RevoxHook() as hook:
        search = hook.search_calls
        pages: list[int] = []

        def moving(*args: Any, **kwargs: Any) -> Any:
            found = search(*args, **kwargs)
            pages.append(kwargs["page"])
            if len(pages) == 1:  # the API's clock moves 30 minutes while page 0 is worked on
                simulator.advance(1800)
            return found

        hook.search_calls = moving  # type: ignore[method-assign]
        new = NewCalls(hook, {}, Watermark(), sleep=lambda _: None, page_size=100)
        read = sorted(call.id for call in new)
        assert {simulator.get_call(call_id)["status"] for call_id in during} == {"completed"}
        # Ended after the read began: the next read takes them, with believed times.
        assert read == sorted(first)
        assert "later than the API's clock allows" not in caplog.text
        again = NewCalls(hook, {}, new.watermark, sleep=lambda _: None, page_size=100)
        assert sorted(call.id for call in again) == sorted(during)
    assert again.watermark.untrusted == frozenset()
