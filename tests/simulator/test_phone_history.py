"""The simulator's ``GET /calls/phone-history``: built from its orders, marks by scenario and by a
do-not-call ending, read streamed by the hook over real HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from airflow_provider_revox._simulator.harness import SimulatorHandle, running_simulator
from airflow_provider_revox._simulator.scenario import apply_scenario, parse_scenario
from airflow_provider_revox.exceptions import RevoxPhoneHistoryError
from airflow_provider_revox.hooks.revox import RevoxHook

PARIS = "+33612345678"
LYON = "+33478000000"


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorHandle]:
    with running_simulator(seed=5) as handle:
        monkeypatch.setitem(os.environ, "AIRFLOW_CONN_REVOX_DEFAULT", handle.connection_json())
        yield handle


def test_a_do_not_call_ending_marks_the_number(sim: SimulatorHandle) -> None:
    scenario = parse_scenario(
        {
            "do_not_contact": [LYON],
            "calls": [
                {
                    "id": "c-asks",
                    "phone_number": PARIS,
                    "assistant_id": "asst",
                    "attempts": [
                        {"result": "voicemail", "duration": 20},
                        {"result": "human", "duration": 40},
                    ],
                    "outcome": "not_interested",
                    "asks_not_to_be_called": True,
                }
            ],
        }
    )
    (call_id,) = apply_scenario(scenario, sim.engine, sim.faults)
    with RevoxHook() as hook:
        before = hook.phone_history([PARIS, LYON])
        assert PARIS not in before.entries  # nobody dialled yet
        assert before.entries[LYON].do_not_contact is True and before.entries[LYON].count == 0
        sim.finish(call_id)
        after = hook.phone_history([PARIS]).entries[PARIS]
    assert after.do_not_contact is True
    assert after.count == 2 and after.reached_human is True and after.last_outcome == "not_interested"
    assert after.last_called_at is not None
    assert sim.engine.phone_book.reads == 2


def test_an_ordinary_ending_leaves_the_number_callable(sim: SimulatorHandle) -> None:
    call_id = sim.place_scripted("c-ok", [{"result": "human", "duration": 40}], phone_number=PARIS)
    sim.finish(call_id)
    entry = RevoxHook().phone_history([PARIS]).entries[PARIS]
    assert entry.do_not_contact is False and entry.reached_human is True and entry.count == 1


def test_a_large_history_is_streamed_keeping_only_the_numbers_asked(sim: SimulatorHandle) -> None:
    sim.engine.phone_book.background = 40_000
    sim.engine.phone_book.mark([LYON])
    wanted = [LYON, "+15550000003", "+15550039999", PARIS]
    history = RevoxHook().phone_history(wanted)
    assert history.numbers_scanned == 40_001
    assert sorted(history.entries) == sorted([LYON, "+15550000003", "+15550039999"])
    assert history.entries[LYON].do_not_contact is True
    # Read in many pieces, and never more than a sliver of the body held at once.
    assert history.chunks_read >= 20
    assert history.bytes_read > 5_000_000
    assert history.max_buffered_chars < history.bytes_read / 20


@pytest.mark.parametrize("fault", ["truncate", "drop"])
def test_a_history_not_read_whole_is_an_error(
    sim: SimulatorHandle, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow_provider_revox._internal.hooks.revox as hook_module

    monkeypatch.setattr(hook_module, "retry_sleep", lambda seconds: None)
    sim.engine.phone_book.background = 1_000
    sim.faults.script("GET /calls/phone-history", [fault] * 10)
    with pytest.raises(RevoxPhoneHistoryError, match="could not be read whole"):
        RevoxHook().phone_history([PARIS])


async def test_the_async_read_matches_the_sync_one(sim: SimulatorHandle) -> None:
    sim.engine.phone_book.background = 2_000
    sim.engine.phone_book.mark([LYON])
    hook = RevoxHook()
    try:
        history = await hook.aphone_history([LYON, "+15550000001"])
    finally:
        await hook.aclose()
    assert history.numbers_scanned == 2_001 and sorted(history.entries) == ["+15550000001", LYON]
