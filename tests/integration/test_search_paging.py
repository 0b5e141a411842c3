"""Reads of ``POST /call/search`` by page number that must prove they saw every order: results that
move under the reader, an API that repeats a page, an order claiming it ended in 2199. Real HTTP
against the simulator's search faults; real Airflow ``dag.test()`` for the exports."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.export.incremental import terminal_moment
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.triggers.call_events import CURSOR_KEY, CallPoll
from airflow_provider_revox._internal.waiting.cursor import (
    FUTURE_MARGIN,
    MAX_UNTRUSTED_IDS,
    Watermark,
    first_named,
    takes,
)
from airflow_provider_revox._internal.waiting.pages import MAX_PASSES, STALE_PAGES, PageWalk
from airflow_provider_revox._simulator.faults import FAR_FUTURE_TIME, Faults
from airflow_provider_revox._simulator.scenario import apply_scenario, parse_scenario
from airflow_provider_revox.exceptions import RevoxIncompleteReadError
from airflow_provider_revox.triggers.revox import RevoxCallEventTrigger
from tests.integration.operators.test_export_incremental import exported, incremental_source
from tests.integration.operators.test_results_and_export import (
    GOOD_OUTPUT,
    export_dag,
    place,
    task_logs,
    task_state,
    xcoms,
)
from tests.support.versions import needs_asset_state_store
from tests.unit.export.test_staging import only_load
from tests.unit.triggers.test_call_events import FAST, Store, fast_sleeps, next_event, until_saved, watcher

# Fixtures used here: the watchers' fast sleeps, and the task logs of dag.test().
__all__ = ["fast_sleeps", "task_logs"]

SEARCH = "POST /call/search"
FAR_FUTURE = datetime(2199, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def pages_of_100(monkeypatch: pytest.MonkeyPatch) -> None:
    """Incremental exports here read pages of 100, as exports by search do: a few hundred orders
    span pages, and the results can move between them (the proofs do not depend on the size)."""
    from airflow_provider_revox._internal.export import search

    monkeypatch.setattr(search, "INCREMENTAL_PAGE_SIZE", 100)


def ended(simulator: Any, count: int) -> list[str]:
    """``count`` orders that end together, after every order placed before them."""
    ids = [place(simulator, GOOD_OUTPUT) for _ in range(count)]
    simulator.finish(*ids)
    return ids


def searched(simulator: Any) -> int:
    return int(simulator.stats()["by_endpoint"].get(SEARCH, 0))


# -- the simulator's switches ------------------------------------------------------------------


def test_repeat_page_answers_page_zero_whatever_page_is_asked(simulator: Any) -> None:
    ended(simulator, 3)
    with RevoxHook() as hook:
        second = [call.id for call in hook.search_calls(page=1, page_size=2).calls]
        simulator.faults.script(SEARCH, ["repeat_page"])
        repeated = [call.id for call in hook.search_calls(page=1, page_size=2).calls]
        first = [call.id for call in hook.search_calls(page=0, page_size=2).calls]
    assert len(second) == 1 and repeated == first and len(first) == 2


def test_shift_pages_holds_orders_out_until_a_later_page_is_read(simulator: Any) -> None:
    older = ended(simulator, 2)
    newer = ended(simulator, 2)
    simulator.faults.shift_pages(newer)
    sort = {"sort_by": "updated_at", "sort_direction": "desc"}
    with RevoxHook() as hook:
        zero = hook.search_calls(page=0, page_size=2, **sort)
        one = hook.search_calls(page=1, page_size=2, **sort)
    assert sorted(call.id for call in zero.calls) == sorted(older) and zero.total_count == 2
    # Released at the head: page 1 now holds what page 0 held.
    assert sorted(call.id for call in one.calls) == sorted(older) and one.total_count == 4


def test_far_future_reports_2199_in_gets_and_searches(simulator: Any) -> None:
    (poisoned,) = ended(simulator, 1)
    simulator.faults.far_future([poisoned])
    with RevoxHook() as hook:
        call = hook.get_call(poisoned)
        listed = hook.search_calls(call_ids=[poisoned]).calls[0]
    assert terminal_moment(call) == FAR_FUTURE and call.updated_at == FAR_FUTURE
    assert terminal_moment(listed) == FAR_FUTURE
    assert FAR_FUTURE_TIME.startswith("2199-")


def test_the_search_switches_come_from_a_scenario_and_a_spec(simulator: Any) -> None:
    order = {"phone_number": "+33612345678", "assistant_id": "asst_test", "attempts": [{"result": "human"}]}
    entries = [{"id": "c-held", **order, "shift_pages": True}, {"id": "c-2199", **order, "far_future": True}]
    faults = Faults("repeat_page=1")
    apply_scenario(parse_scenario({"calls": entries}), simulator.engine, faults)
    assert faults.hidden(0) == {"c-held"} and faults.hidden(1) == frozenset()
    assert b"2199-" in faults.future_times(b'{"call":{"id":"c-2199","updated_at":"x","ended_at":"y"}}')
    assert faults.next_fault(SEARCH).repeat_page
    with pytest.raises(ValueError, match="shift_pages must be true or false"):
        parse_scenario({"calls": [{"id": "x", "shift_pages": "yes"}]})


# -- an export by search -----------------------------------------------------------------------


def search_export(dag_id: str, destination: Path) -> str:
    return export_dag(dag_id, search={"assistant_ids": ["asst_planted"]}, destination=str(destination))


@pytest.mark.airflow
def test_an_export_whose_search_repeats_a_page_reads_again_and_exports_every_call(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    ids = ended(simulator, 300)
    simulator.faults.script(SEARCH, ["ok", "repeat_page"])  # page 1 answers page 0, once
    dag_run = run_dag(search_export("revox_repeated_page", tmp_path / "out"), "revox_repeated_page")
    assert task_state(dag_run, "export") == "success"
    assert xcoms(dag_run, "export")["return_value"]["calls"] == 300
    assert sorted(path.stem for path in (only_load(tmp_path / "out") / "calls").iterdir()) == sorted(ids)


@pytest.mark.airflow
def test_an_export_from_a_search_that_ignores_page_fails_naming_the_gap(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path, task_logs: Callable[[], str]
) -> None:
    ended(simulator, 300)
    simulator.faults.set_rates("repeat_page=1")
    task_logs()
    dag_run = run_dag(search_export("revox_page_ignored", tmp_path / "out"), "revox_page_ignored")
    assert task_state(dag_run, "export") == "failed"
    logs = task_logs()
    assert "RevoxIncompleteReadError" in logs
    assert "read 100 distinct call(s) of the 300 the API reports" in logs
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    # Bounded: each pass stops after a few pages that bring nothing new.
    assert searched(simulator) == MAX_PASSES * (1 + STALE_PAGES)


@pytest.mark.airflow
def test_orders_placed_while_an_export_reads_page_zero_hide_no_call(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    ids = ended(simulator, 300)
    placed = [place(simulator, GOOD_OUTPUT) for _ in range(100)]  # newest first: the head of the sort
    simulator.faults.shift_pages(placed)  # placed between the reads of page 0 and page 1
    dag_run = run_dag(search_export("revox_search_shift", tmp_path / "out"), "revox_search_shift")
    assert task_state(dag_run, "export") == "success"
    names = {path.stem for path in (only_load(tmp_path / "out") / "calls").iterdir()}
    assert set(ids) <= names  # page 1 repeated page 0; the read went on to the end


# -- an incremental export -----------------------------------------------------------------------


@needs_asset_state_store
@pytest.mark.airflow
def test_orders_ending_while_a_page_is_read_lose_no_order_across_runs(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    destination = tmp_path / "out"
    dag_id = "revox_incremental_shift"
    baseline = ended(simulator, 2)
    run_dag(incremental_source(dag_id, str(destination)), dag_id)
    assert exported(destination) == [sorted(baseline)]

    older = ended(simulator, 200)
    newer = ended(simulator, 100)
    during = ended(simulator, 100)  # end while page 0 is read: they join the head before page 1
    simulator.faults.shift_pages(during)
    for _ in range(3):
        dag_run = run_dag(incremental_source(dag_id, str(destination)), dag_id)
        assert task_state(dag_run, "export") == "success"
    names = [call_id for load in exported(destination)[1:] for call_id in load]  # every later load
    assert sorted(names) == sorted(older + newer + during)  # each once, none lost


@needs_asset_state_store
@pytest.mark.airflow
def test_an_order_claiming_it_ended_in_2199_does_not_stop_the_feed(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path, task_logs: Callable[[], str]
) -> None:
    destination = tmp_path / "out"
    dag_id = "revox_incremental_poisoned"
    first = ended(simulator, 3)
    simulator.faults.far_future(first[:1])
    task_logs()
    run1 = run_dag(incremental_source(dag_id, str(destination)), dag_id)
    assert exported(destination) == [sorted(first)]  # the poisoned order is exported too
    assert f"Revox call {first[0]} reports it ended at 2199-01-01" in task_logs()
    mark = xcoms(run1, "export")["return_value"]["watermark"]
    assert mark is not None and mark < "2100"

    later = ended(simulator, 20)
    run2 = run_dag(incremental_source(dag_id, str(destination)), dag_id)
    assert task_state(run2, "export") == "success"
    assert exported(destination) == [sorted(first), sorted(later)]  # not the poisoned one again
    run3 = run_dag(incremental_source(dag_id, str(destination)), dag_id)
    assert len(exported(destination)) == 2  # a run with nothing new adds no load
    assert xcoms(run3, "export")["return_value"]["calls"] == 0


# -- the call event watcher ----------------------------------------------------------------------


def test_a_poll_of_a_search_that_ignores_page_ends_with_a_named_error(simulator: Any) -> None:
    ended(simulator, 150)
    simulator.faults.set_rates("repeat_page=1")

    async def scenario() -> CallPoll:
        hook = RevoxHook()
        try:
            poller = CallPoll(hook, {"statuses": ["completed", "cancelled", "errored"]})
            poller.polled = True  # past the first poll, which reads one page only
            with pytest.raises(RevoxIncompleteReadError, match="read 100 distinct call"):
                await asyncio.wait_for(poller.poll(), 20)
            return poller
        finally:
            await hook.aclose()

    poller = asyncio.run(scenario())
    assert poller.requests == MAX_PASSES * (1 + STALE_PAGES)
    assert poller.mark is None  # nothing moved


def test_the_watch_loop_logs_that_error_and_keeps_polling(
    simulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    kwargs = RevoxCallEventTrigger(assistant_ids=["asst_planted"], **FAST).serialize()[1]

    async def scenario() -> list[Any]:
        wakeup = asyncio.Event()
        batches = RevoxCallEventTrigger.poll_batches(kwargs, wakeup)
        try:
            first = await asyncio.wait_for(batches.__anext__(), 10)  # nothing ended yet
            ended(simulator, 150)
            simulator.faults.set_rates("repeat_page=1")
            pending = asyncio.ensure_future(batches.__anext__())
            while "RevoxIncompleteReadError" not in caplog.text:  # noqa: ASYNC110 - logged by the loop
                await asyncio.sleep(0.01)
            wakeup.set()
            return [first, await asyncio.wait_for(pending, 10)]
        finally:
            await batches.aclose()

    with caplog.at_level(logging.WARNING):
        first, woken = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert first["calls"] == [] and woken is None  # the loop is alive: it answered the wakeup
    assert "RevoxIncompleteReadError: Revox call event poll incomplete: read 100 distinct" in caplog.text


@needs_asset_state_store
def test_a_watcher_names_an_order_from_2199_once_and_keeps_naming_later_ones(simulator: Any) -> None:
    store = Store()

    async def scenario() -> list[dict[str, Any]]:
        events = watcher(store).run()
        pending = asyncio.ensure_future(next_event(events))
        await until_saved(store, 1)  # the cursor starts now
        poisoned = ended(simulator, 2)
        simulator.faults.far_future(poisoned[:1])
        one = await pending
        later = ended(simulator, 2)
        two = await next_event(events)
        await events.aclose()
        assert sorted(c["id"] for c in one["calls"]) == sorted(poisoned)
        assert sorted(c["id"] for c in two["calls"]) == sorted(later)
        return [one, two]

    one, two = asyncio.run(scenario())
    marked = [c for c in one["calls"] if c.get("untrusted_time")]
    assert len(marked) == 1 and marked[0]["ended_at"].startswith("2199-")
    assert one["ended_at"] < "2100" and two["ended_at"] < "2100"
    cursor = store.accessor.values[CURSOR_KEY]
    assert cursor["ended_at"] < "2100" and cursor["untrusted"] == [marked[0]["id"]]


def test_a_consumer_takes_an_untrusted_time_once_without_moving_its_mark() -> None:
    mark = Watermark(datetime(2026, 3, 2, tzinfo=timezone.utc))
    calls = [
        {"id": "a", "ended_at": "2026-03-02T10:00:00+00:00"},
        {"id": "b", "ended_at": "2199-01-01T00:00:00+00:00", "untrusted_time": True},
    ]
    taken, after = first_named(mark, calls)
    assert taken == ["a", "b"]
    assert after.ended_at == datetime(2026, 3, 2, 10, tzinfo=timezone.utc) and after.untrusted == {"b"}
    again, _ = first_named(after, calls)
    assert again == []
    assert Watermark.from_state(json.loads(json.dumps(after.to_state()))) == after


# -- the page walk (pure) ------------------------------------------------------------------------


def calls(*ids: str) -> list[Call]:
    return [Call.model_validate({"id": call_id, "status": "completed"}) for call_id in ids]


def read_all(walk: PageWalk, results: Callable[[int], list[str]]) -> list[str]:
    """Run a full read; ``results(n)`` is the whole result list at the n-th page read."""
    handed: list[str] = []
    reads = 0
    while True:
        now = results(reads)
        start = walk.page * walk.page_size
        page = calls(*now[start : start + walk.page_size])
        handed += [call.id for call in walk.take(page, len(now))]
        reads += 1
        if walk.pass_done:
            if walk.proven or not walk.more_passes:
                return handed
            walk.next_pass()


def test_a_still_result_set_is_read_once_in_one_pass() -> None:
    ids = [f"c{n:03d}" for n in range(25)]
    walk = PageWalk(10, full=True)
    assert read_all(walk, lambda reads: ids) == ids
    assert walk.proven and walk.passes == 1


def test_orders_entering_ahead_of_the_reader_cost_no_pass_and_hide_nothing() -> None:
    ids = [f"c{n:03d}" for n in range(25)]
    walk = PageWalk(10, full=True)
    # Five orders arrive at the head before each later page: the pages repeat, nothing is skipped.
    handed = read_all(walk, lambda reads: [f"new{reads}-{n}" for n in range(5 * reads)][::-1] + ids)
    assert set(ids) <= set(handed) and len(handed) == len(set(handed))
    assert walk.proven and walk.passes == 1


def test_an_order_leaving_ahead_of_the_reader_makes_it_read_again() -> None:
    ids = [f"c{n:03d}" for n in range(25)]
    walk = PageWalk(10, full=True)
    # c000 leaves after page 0: c010 moves onto page 0, already read, and the first pass misses it.
    handed = read_all(walk, lambda reads: ids if reads == 0 else ids[1:])
    assert sorted(handed) == ids
    assert walk.proven and walk.passes == 2


def test_a_search_that_always_answers_page_zero_ends_unproven_after_bounded_reads() -> None:
    ids = [f"c{n:03d}" for n in range(25)]
    walk = PageWalk(10, full=True)
    handed: list[str] = []
    reads = 0
    while walk.more_passes:
        if walk.pass_done:
            walk.next_pass()
        handed += [call.id for call in walk.take(calls(*ids[:10]), 25)]  # page 0, whatever is asked
        reads += 1
    assert handed == ids[:10] and not walk.proven and walk.passes == MAX_PASSES
    assert reads == MAX_PASSES * (1 + STALE_PAGES)
    assert "read 10 distinct call(s) of the 25 the API reports in 3 pass(es)" in walk.gap()


def test_a_read_down_to_a_stop_rereads_after_a_move_and_is_proven_when_nothing_owed_is_new() -> None:
    walk = PageWalk(2, full=False)
    assert [c.id for c in walk.take(calls("a", "b"), 5)] == ["a", "b"]
    assert [c.id for c in walk.take(calls("b", "c"), 6)] == ["c"]  # "x" arrived: a move
    assert [c.id for c in walk.take(calls("d"), 6, stop=True)] == ["d"]
    assert walk.pass_done and not walk.proven and walk.more_passes
    walk.next_pass()
    owed = {"a", "b", "c", "d"}  # "x" ended after the read began: not owed
    assert [c.id for c in walk.take(calls("x", "a"), 6, owed=lambda c: c.id in owed)] == ["x"]
    walk.take(calls("b", "c"), 6, owed=lambda c: c.id in owed)
    walk.take(calls("d"), 6, stop=True, owed=lambda c: c.id in owed)
    assert walk.proven and walk.passes == 2


def test_a_time_past_the_api_clock_is_taken_once_and_moves_no_mark() -> None:
    t0 = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
    latest = t0 + FUTURE_MARGIN
    mark = Watermark(t0 - timedelta(hours=1))
    assert takes(mark, t0, "poisoned", FAR_FUTURE, latest)  # after the head, yet taken: untrusted
    assert not takes(mark, t0, "late", t0 + timedelta(seconds=1), latest)  # believed: next read
    after = mark.advance([("a", t0)], ["poisoned"])
    assert after.ended_at == t0 and not takes(after, t0, "poisoned", FAR_FUTURE, latest)
    assert set(Watermark(t0).to_state()) == {"ended_at", "ids_at"}  # stored as before when none
    many = after.advance([], [f"u{n:05d}" for n in range(2 * MAX_UNTRUSTED_IDS)])
    assert len(many.untrusted) == MAX_UNTRUSTED_IDS  # bounded
