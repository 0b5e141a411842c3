"""The shortcuts a large wait's polls take give the answers the long ways gave.

One RevoxCallsTrigger over 10,000 orders reads ten thousand orders every poll interval, so its
hot path skips work: pydantic's JSON parser instead of the json module, one walk of an order's
deadline instead of two, one retry policy per distinct config, a regular expression for plain
ids. Each test pins the shortcut to the original on the inputs where they could differ.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from airflow_provider_revox._internal.client.requests import validate_call_id
from airflow_provider_revox._internal.client.responses import decode_json
from airflow_provider_revox._internal.core.call import CallRetryConfig
from airflow_provider_revox._internal.core.retry_policy import RetryPolicy
from airflow_provider_revox._internal.waiting import rounds, schedule
from airflow_provider_revox.exceptions import RevoxInvalidCallIdError, RevoxResponseError
from tests.unit.waiting.test_schedule import DAYS_TWICE, FLAT, POLL_CASES, WINDOWS, make_call

BODIES = [
    b'{"a": 1, "a": 2}',
    b"[NaN, Infinity, -Infinity, 1e400]",
    b"[123456789012345678901234567890, -0.0, 0.1, 5e-324, 12345678.123456789]",
    b'"\\ud800 lone surrogate"',
    b'"\\u00e9 \xc3\xa9"',
    b"\xef\xbb\xbf{}",
    '{"utf": "sixteen"}'.encode("utf-16"),
    b"[" * 300 + b"]" * 300,
    b"null",
]
BROKEN = [b"", b"[1,]", b'{"a": 1} x', b'"\xff"', b"[" * 5000 + b"]" * 5000]


def response(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, request=httpx.Request("GET", "http://127.0.0.1/api/call/c"))


@pytest.mark.parametrize("body", BODIES)
def test_json_bodies_decode_as_the_json_module_reads_them(body: bytes) -> None:
    assert repr(decode_json(response(body), ())) == repr(json.loads(body))


@pytest.mark.parametrize("body", BROKEN)
def test_bodies_the_json_module_refuses_are_still_refused(body: bytes) -> None:
    try:
        expected = json.loads(body)
    except (ValueError, RecursionError):
        with pytest.raises(RevoxResponseError, match="not JSON"):
            decode_json(response(body), ())
    else:  # Python 3.13's json module reads nesting that 3.11's refuses: then it is read alike
        assert repr(decode_json(response(body), ())) == repr(expected)


@pytest.mark.parametrize(("fields", "now", "poke", "expected"), POLL_CASES)
def test_one_deadline_walk_gives_the_same_check_and_limit(
    fields: dict[str, Any], now: datetime, poke: float, expected: datetime
) -> None:
    call = make_call(**fields)
    wake, limit = rounds.check_and_limit(call, now, poke)
    assert wake == schedule.next_poll_at(call, now, poke) == expected
    assert limit == schedule.deadline(call, now) + schedule.DEADLINE_MARGIN == rounds.call_limit(call, now)
    assert rounds.next_check(call, now, poke) == wake


def test_an_order_that_defeats_the_deadline_is_polled_at_the_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fields, now, poke, _ = POLL_CASES[0].values

    def overflow(*args: Any) -> datetime:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(schedule, "deadline", overflow)
    assert rounds.check_and_limit(make_call(**fields), now, poke) == (now + timedelta(seconds=poke), None)


CONFIGS = [
    FLAT,
    WINDOWS,
    DAYS_TWICE,
    {**FLAT, "retry_delay_seconds": 0},
    {**FLAT, "timezone": "Not/AZone"},
    {**FLAT, "max_retry_attempts": 5},
    {**WINDOWS, "allowed_days": ["saturday"]},
    {**DAYS_TWICE, "call_twice_in_a_row": False},
    {"calling_window_start_time": "8pm", "calling_window_end_time": "6am"},
    {},
]


def test_each_distinct_retry_config_has_its_own_policy() -> None:
    policies = [RetryPolicy.from_config(CallRetryConfig.model_validate(config)) for config in CONFIGS]
    # All differ but the last two: no config, and a window that ends before it starts.
    assert len({policy.model_dump_json() for policy in policies}) == len(CONFIGS) - 1
    assert policies[-1] == policies[-2] == RetryPolicy()
    again = [RetryPolicy.from_config(CallRetryConfig.model_validate(config)) for config in CONFIGS]
    assert all(first is second for first, second in zip(policies, again, strict=True))
    assert policies[0].timezone == "Asia/Tokyo" and policies[4].timezone is None


@pytest.mark.parametrize(
    "call_id",
    [
        "call_1",
        "a.b",
        "x-y:z@w=~+",
        "A" * 128,
        "é-accent",
        ".lead",
        "trail.",
        "a..b",
        "a/b",
        "a b",
        "a%2F",
        "A" * 129,
        "a\tb",
        "a\x00",
        "a?b",
        "a#b",
        "",
        " ",
        ".",
        "..",
        "...",
        "日本",
    ],
)
def test_plain_ids_pass_and_others_get_the_full_check(call_id: str) -> None:
    def slow_check(value: str) -> bool:
        bad = (
            not value.strip()
            or len(value) > 128
            or any(ord(char) < 32 or ord(char) == 127 or char.isspace() for char in value)
            or not value.strip(".")
            or any(forbidden in value for forbidden in ("/", "?", "#", "%", ".."))
        )
        return not bad

    if slow_check(call_id):
        assert validate_call_id(call_id) == call_id
    else:
        with pytest.raises(RevoxInvalidCallIdError):
            validate_call_id(call_id)


def test_a_page_of_orders_meets_no_garbage_collection_until_it_is_dropped() -> None:
    # Collections while a page's thousands of objects are alive promote them towards the oldest
    # generation, whose growth starts full collections that stop the triggerer's event loop.
    import gc

    from airflow_provider_revox._internal.client.responses import collector_held, page_from

    order = {"status": "calling", "attempts": [{"status": "calling", "result": None}], "metadata": {"n": "1"}}
    calls = [{**order, "id": f"call-{i}"} for i in range(2000)]
    body = json.dumps({"calls": calls, "total_count": 2000}).encode()
    runs: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            runs.append(info["generation"])

    gc.collect()
    gc.callbacks.append(count)
    try:
        with collector_held():
            page = page_from(response(body), ())
            ids = [call.id for call in page.calls]
            del page
            gc.callbacks.remove(count)
    finally:
        if count in gc.callbacks:
            gc.callbacks.remove(count)
    assert ids == [f"call-{i}" for i in range(2000)]
    assert runs == []
    assert gc.isenabled()
    # Without a holder the read ends the pause itself.
    assert len(page_from(response(body), ()).calls) == 2000 and gc.isenabled()


def test_an_async_page_read_hands_the_loop_back_between_slices_and_reads_the_same_page() -> None:
    # A page validated in one go held a triggerer's loop for tens of milliseconds.
    import asyncio
    import gc

    from airflow_provider_revox._internal.client.responses import PAGE_SLICE, apage_from, page_from

    order = {"status": "calling", "attempts": [{"status": "calling", "result": None}], "metadata": {"n": "1"}}
    calls = [{**order, "id": f"call-{i}"} for i in range(10 * PAGE_SLICE)]
    body = json.dumps({"calls": calls, "total_count": 5000}).encode()
    ticks: list[int] = []

    async def read() -> Any:
        stop = False

        async def ticker() -> None:
            while not stop:
                ticks.append(1)
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        ticks.clear()
        page = await apage_from(response(body), ())
        stop = True
        await task
        return page

    page = asyncio.run(read())
    assert page == page_from(response(body), ())
    assert page.total_count == 5000 and [c.id for c in page.calls] == [
        f"call-{i}" for i in range(10 * PAGE_SLICE)
    ]
    # Other tasks ran between the slices (once after each, the last one included).
    assert len(ticks) >= 10
    assert gc.isenabled()
    with pytest.raises(RevoxResponseError, match=r"calls\[3\]"):
        bad = json.dumps({"calls": [*calls[:3], {"id": 5}]}).encode()
        asyncio.run(apage_from(response(bad), ()))
    with pytest.raises(RevoxResponseError, match="no 'calls' list"):
        asyncio.run(apage_from(response(b'{"orders": []}'), ()))
    assert gc.isenabled()


def test_pages_read_together_are_digested_one_at_a_time_one_slice_per_turn_of_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Sixteen searches answered together each ran a slice per turn of the loop: a timer waited
    # for all sixteen. One page at a time, a turn of the loop runs one slice.
    import asyncio

    from airflow_provider_revox._internal.client import responses

    order = {"status": "calling", "attempts": [{"status": "calling", "result": None}]}
    bodies = [
        json.dumps(
            {"calls": [{**order, "id": f"p{page}-{i}"} for i in range(3 * responses.PAGE_SLICE)]}
        ).encode()
        for page in range(4)
    ]
    seen: list[str] = []
    real_call_of = responses._call_of

    def call_of(payload: Any) -> Any:
        seen.append(payload["id"].split("-")[0])
        return real_call_of(payload)

    monkeypatch.setattr(responses, "_call_of", call_of)

    async def read_all() -> list[Any]:
        stop = False

        async def ticker() -> None:
            while not stop:
                seen.append("tick")
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        pages = await asyncio.gather(*(responses.apage_from(response(body), ()) for body in bodies))
        stop = True
        await task
        return pages

    pages = asyncio.run(read_all())
    assert [len(page.calls) for page in pages] == [3 * responses.PAGE_SLICE] * 4
    runs: list[list[str]] = [[]]
    for item in seen:
        if item == "tick":
            runs.append([])
        else:
            runs[-1].append(item)
    slices = [run for run in runs if run]
    # Between two turns of the ticker: one slice of one page, never slices of several pages.
    assert all(len(run) <= responses.PAGE_SLICE and len(set(run)) == 1 for run in slices)
    assert len(slices) == 4 * 3
    # And the pages one after the other, not interleaved.
    order_of_pages = [run[0] for run in slices]
    assert order_of_pages == sorted(order_of_pages, key=order_of_pages.index)
    assert [p for i, p in enumerate(order_of_pages) if i == 0 or p != order_of_pages[i - 1]] == [
        "p0",
        "p1",
        "p2",
        "p3",
    ]


def test_a_turn_held_keeps_other_page_reads_waiting_until_the_orders_are_handed_over() -> None:
    import asyncio

    from airflow_provider_revox._internal.client import responses

    body = json.dumps({"calls": [{"id": f"c{i}", "status": "calling"} for i in range(3)]}).encode()
    events: list[str] = []

    async def holder() -> None:
        with responses.turn_held():
            await responses.apage_from(response(body), ())
            await responses.apage_from(response(body), ())  # a second read in the block: no deadlock
            events.append("read")
            for _ in range(5):
                await asyncio.sleep(0)  # handing the orders over
            events.append("handed over")

    async def other() -> None:
        await asyncio.sleep(0)
        await responses.apage_from(response(body), ())
        events.append("other read")

    async def both() -> None:
        await asyncio.gather(holder(), other())
        assert not responses.digest_turn().locked()

    asyncio.run(both())
    assert events == ["read", "handed over", "other read"]


def test_the_collector_pause_restores_what_it_found() -> None:
    import gc

    from airflow_provider_revox._internal.client.responses import collector_held, collector_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("a page that is not one")
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_held():
        with collector_paused():
            pass
        assert not gc.isenabled()  # held past the read...
        raise RuntimeError("handling the page failed")
    assert gc.isenabled()  # ...and ended with the block, whatever happened
    gc.disable()
    try:
        with collector_held(), collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # someone else's choice stays
    finally:
        gc.enable()
