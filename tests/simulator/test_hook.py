"""The package's RevoxHook reads every state the simulator produces, over real HTTP."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._simulator.profile import BUSY, FAILED, HUMAN, IVR, NO_ANSWER, VOICEMAIL
from airflow_provider_revox._simulator.timeline import OrderScript
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.testing import Profile, SimulatorHandle


def _script(*kinds: str) -> OrderScript:
    return OrderScript(attempts=tuple(Profile().attempt_of_kind(k, random.Random(1)) for k in kinds))


def test_hook_reads_every_state(revox_conn: SimulatorHandle) -> None:
    sim = revox_conn
    engine = sim.engine
    scripts = [
        _script(HUMAN),
        _script(VOICEMAIL, NO_ANSWER, HUMAN),
        _script(IVR, VOICEMAIL),
        _script(BUSY, FAILED, NO_ANSWER),
        _script(NO_ANSWER, HUMAN),
        _script(HUMAN),
    ]
    ids = [sim.place_call(phone_number="+33612345678", assistant_id="asst", script=s)["id"] for s in scripts]
    paused, cancelled = ids[4], ids[5]
    first_end = engine._plans[paused].attempts[0].ended_at
    engine.pause(paused, at=first_end)
    engine.resume(paused, at=first_end + timedelta(minutes=30))
    ringing = engine._plans[cancelled].attempts[0].ringing_at
    engine.cancel(cancelled, at=ringing)
    moments = sorted({(moment, call_id) for call_id in ids for moment in engine._plans[call_id].events})
    seen_status, seen_attempt = set(), set()
    with RevoxHook() as hook:
        for moment, call_id in moments:
            if moment > sim.clock.now():
                sim.clock.set(moment)  # type: ignore[attr-defined]
            call = hook.get_call(call_id)
            expected = engine.get_call(call_id)
            assert call.status == expected["status"]
            assert call.calls_count == expected["calls_count"]
            assert [a.status for a in call.call_attempts] == [a["status"] for a in expected["call_attempts"]]
            assert call.is_terminal == statuses.is_terminal(expected["status"])
            seen_status.add(call.status)
            seen_attempt.update(a.status for a in call.call_attempts)
    # Every documented status but the two the simulator never reports.
    assert seen_status == statuses.KNOWN - {statuses.INITIALIZING, statuses.NOT_LAUNCHED}
    assert seen_attempt == statuses.ATTEMPT_LIVE | statuses.ATTEMPT_ENDED
    assert sim.stats()["by_status"] == {"200": len(moments)}


def test_hook_connection_test_against_the_simulator(revox_conn: SimulatorHandle) -> None:
    ok, message = RevoxHook().test_connection()
    assert ok, message


def test_hook_sees_the_unknown_status_fault(revox_conn: SimulatorHandle) -> None:
    call_id = revox_conn.place_call(phone_number="+33612345678", assistant_id="asst")["id"]
    revox_conn.faults.script(call_id, ["unknown_status"])
    call = RevoxHook().get_call(call_id)
    assert not call.is_known_status and not call.is_terminal


@pytest.mark.parametrize("token", ["503", "429:0"])
def test_hook_retries_through_scripted_faults(
    revox_conn: SimulatorHandle, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    import airflow_provider_revox._internal.hooks.revox as hook_module

    slept: list[float] = []
    monkeypatch.setattr(hook_module, "retry_sleep", slept.append)
    call_id = revox_conn.place_call(phone_number="+33612345678", assistant_id="asst")["id"]
    revox_conn.faults.script(call_id, [token, "ok"])
    assert RevoxHook().get_call(call_id).id == call_id
    # One retry. A 429 also cuts the connection's rate: the retried request then waits for its
    # turn at the cut rate, through the same sleep.
    if token == "429:0":
        assert len(slept) == 2 and slept[0] == 0.0 and slept[1] > 0
    else:
        assert len(slept) == 1
    assert revox_conn.stats()["by_call_id"][call_id] == 2
