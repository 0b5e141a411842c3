"""Reads of ``POST /call/search`` by page number that must prove they saw every order: results that
move under the reader, an API that repeats a page, an order claiming it ended in 2199. Real HTTP
against the simulator's search faults; real Airflow ``dag.test()`` for the exports."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_revox._internal.export.incremental import terminal_moment
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._simulator.faults import FAR_FUTURE_TIME, Faults
from airflow_provider_revox._simulator.scenario import apply_scenario, parse_scenario
from tests.test_operators import GOOD_OUTPUT, place

SEARCH = "POST /call/search"
FAR_FUTURE = datetime(2199, 1, 1, tzinfo=timezone.utc)


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
