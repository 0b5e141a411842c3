"""The simulator's lifecycle engine without HTTP: windows, timezones, retries, cancel, determinism."""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._simulator import profile as profile_module
from airflow_provider_revox._simulator.profile import BUSY, FAILED, HUMAN, IVR, NO_ANSWER, VOICEMAIL
from airflow_provider_revox._simulator.timeline import OrderScript
from airflow_provider_revox.hooks.revox import Call
from airflow_provider_revox.testing import (
    Conflict,
    InvalidOrder,
    Profile,
    SimulatorEngine,
    UnknownCall,
    VirtualClock,
)

UTC = timezone.utc
PARIS = "+33612345678"
NEW_YORK = "+12127363100"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def draw(kind: str, **overrides: Any) -> profile_module.AttemptDraw:
    return Profile().attempt_of_kind(kind, random.Random(0), **overrides)


def script(*kinds: str, **options: Any) -> OrderScript:
    return OrderScript(attempts=tuple(draw(kind) for kind in kinds), **options)


def engine_at(start: str, **options: Any) -> SimulatorEngine:
    return SimulatorEngine(seed=3, clock=VirtualClock(at(start)), **options)


def first_dial(engine: SimulatorEngine, call: dict[str, Any]) -> datetime:
    moment = parse(call["next_call_at"])
    assert moment is not None
    return moment


def attempt_times(engine: SimulatorEngine, call_id: str) -> list[tuple[datetime, datetime]]:
    """(started_at, ended_at) of each attempt, oldest first, read at the terminal moment."""
    final = engine.get_call(call_id, at=engine.terminal_at(call_id))
    return [(parse(a["started_at"]), parse(a["ended_at"])) for a in reversed(final["call_attempts"])]  # type: ignore[misc]


def test_paris_number_is_dialled_at_ten_paris_time() -> None:
    engine = engine_at("2025-03-03T06:00:00")  # Monday, 07:00 in Paris
    call = engine.place_call(phone_number=PARIS, assistant_id="asst_1")
    assert call["status"] == statuses.SCHEDULED
    assert call["timezone"] == "Europe/Paris"
    assert first_dial(engine, call) == at("2025-03-03T09:00:00")  # 10:00 CET
    assert engine.get_call(call["id"], at=at("2025-03-03T08:59:59"))["status"] == statuses.SCHEDULED
    assert engine.get_call(call["id"], at=at("2025-03-03T09:00:00"))["status"] == statuses.QUEUED_FOR_CALLING


def test_new_york_number_is_dialled_at_new_york_time() -> None:
    engine = engine_at("2025-03-03T12:00:00")  # Monday, 07:00 in New York (EST)
    call = engine.place_call(phone_number=NEW_YORK, assistant_id="asst_1")
    assert call["timezone"] == "America/New_York"
    assert first_dial(engine, call) == at("2025-03-03T15:00:00")


def test_placed_inside_the_window_dials_at_once() -> None:
    engine = engine_at("2025-03-03T10:00:00")  # 11:00 in Paris
    call = engine.place_call(phone_number=PARIS, assistant_id="asst_1")
    assert call["status"] == statuses.QUEUED_FOR_CALLING
    assert first_dial(engine, call) == at("2025-03-03T10:00:00")


def test_weekend_is_skipped_unless_allowed() -> None:
    friday_evening = "2025-03-07T17:30:00"  # 18:30 in Paris: the window has closed
    engine = engine_at(friday_evening)
    call = engine.place_call(phone_number=PARIS, assistant_id="asst_1")
    assert first_dial(engine, call) == at("2025-03-10T09:00:00")  # Monday 10:00 CET
    weekend = engine.place_call(
        phone_number=PARIS, assistant_id="asst_1", call_retry_config={"allowed_days": ["saturday", "sunday"]}
    )
    assert first_dial(engine, weekend) == at("2025-03-08T09:00:00")  # Saturday 10:00


def test_windows_follow_daylight_saving_changes() -> None:
    # Paris moves to CEST on Sunday 30 March 2025: Monday's 10:00 is 08:00 UTC, not 09:00.
    paris = engine_at("2025-03-28T18:00:00").place_call(phone_number=PARIS, assistant_id="a")
    assert parse(paris["next_call_at"]) == at("2025-03-31T08:00:00")
    # New York moves to EDT on Sunday 9 March 2025: Monday's 10:00 is 14:00 UTC, not 15:00.
    new_york = engine_at("2025-03-07T23:30:00").place_call(phone_number=NEW_YORK, assistant_id="a")
    assert parse(new_york["next_call_at"]) == at("2025-03-10T14:00:00")


def test_withhold_next_call_at_reports_null_with_the_same_lifecycle() -> None:
    told = engine_at("2025-03-28T18:00:00")
    withheld = engine_at("2025-03-28T18:00:00", withhold_next_call_at=True)
    shown = told.place_call(phone_number=PARIS, assistant_id="a")
    hidden = withheld.place_call(phone_number=PARIS, assistant_id="a")

    assert shown["status"] == hidden["status"] == statuses.SCHEDULED
    assert parse(shown["next_call_at"]) == at("2025-03-31T08:00:00")
    assert hidden["next_call_at"] is None
    # The order still dials at the window's opening: only the report is withheld.
    assert withheld.status(hidden["id"], at=at("2025-03-31T07:59:00")) == statuses.SCHEDULED
    assert withheld.terminal_at(hidden["id"]) == told.terminal_at(shown["id"])
    found = json.loads(withheld.search_json(withheld.search_calls(call_ids=[hidden["id"]])))
    assert [c["next_call_at"] for c in found["calls"]] == [None]


def test_explicit_timezone_overrides_the_phone_number() -> None:
    engine = engine_at("2025-03-03T06:00:00")
    call = engine.place_call(
        phone_number=PARIS, assistant_id="a", call_retry_config={"timezone": "America/New_York"}
    )
    assert call["timezone"] == "America/New_York"
    assert first_dial(engine, call) == at("2025-03-03T15:00:00")


def test_order_retry_config_wins_over_the_assistant() -> None:
    engine = engine_at("2025-03-03T06:00:00")
    assistant = {
        "id": "asst_x",
        "call_retry_config": {"calling_windows": [{"calling_window_start_time": "8am"}], "timezone": "UTC"},
    }
    own = {"calling_windows": [{"calling_window_start_time": "14:00", "calling_window_end_time": "15:00"}]}
    from_assistant = engine.place_call(phone_number=PARIS, assistant=assistant)
    from_order = engine.place_call(phone_number=PARIS, assistant=assistant, call_retry_config=own)
    assert first_dial(engine, from_assistant) == at("2025-03-03T08:00:00")  # 8am UTC
    assert first_dial(engine, from_order) == at("2025-03-03T13:00:00")  # 14:00 Paris


def test_retries_wait_the_delay_and_roll_over_to_the_next_window() -> None:
    engine = engine_at("2025-03-03T09:00:00")
    config = {
        "calling_windows": [
            {
                "calling_window_start_time": "10:00",
                "calling_window_end_time": "12:00",
                "retry_delay_seconds": 3600,
            }
        ],
        "max_retry_attempts": 3,
    }
    call = engine.place_call(
        phone_number=PARIS, assistant_id="a", call_retry_config=config, script=script(BUSY, NO_ANSWER, HUMAN)
    )
    (s1, e1), (s2, e2), (s3, _) = attempt_times(engine, call["id"])
    assert s1 >= at("2025-03-03T09:00:00")
    dial_2 = s2 - timedelta(seconds=draw(NO_ANSWER).queue_seconds)
    assert dial_2 == e1 + timedelta(hours=1)  # 11:0x Paris, inside the window
    # e2 + 1 h is past 12:00 Paris: the third dial waits for Tuesday 10:00.
    assert s3.date() == date(2025, 3, 4)
    assert s3 - timedelta(seconds=draw(HUMAN).queue_seconds) == at("2025-03-04T09:00:00")
    between = engine.get_call(call["id"], at=e2 + timedelta(minutes=5))
    assert between["status"] == statuses.SCHEDULED
    assert parse(between["next_call_at"]) == at("2025-03-04T09:00:00")


def test_call_twice_in_a_row_redials_at_once_only_after_a_miss() -> None:
    engine = engine_at("2025-03-03T09:00:00")
    config = {"call_twice_in_a_row": True, "max_retry_attempts": 3}
    missed = engine.place_call(
        phone_number=PARIS,
        assistant_id="a",
        call_retry_config=config,
        script=script(NO_ANSWER, VOICEMAIL, HUMAN),
    )
    (_, e1), (s2, e2), (s3, _) = attempt_times(engine, missed["id"])
    assert s2 == e1 + timedelta(seconds=draw(VOICEMAIL).queue_seconds)  # no retry delay
    assert s3 >= e2 + timedelta(seconds=7200)  # the third attempt waits the default delay
    plain = engine.place_call(phone_number=PARIS, assistant_id="a", script=script(NO_ANSWER, HUMAN))
    (_, p1), (p2, _) = attempt_times(engine, plain["id"])
    assert p2 >= p1 + timedelta(seconds=7200)
    reached = engine.place_call(
        phone_number=PARIS, assistant_id="a", call_retry_config=config, script=script(HUMAN, HUMAN)
    )
    assert len(attempt_times(engine, reached["id"])) == 1


def test_reaching_a_person_stops_retrying_and_completes_with_results() -> None:
    engine = engine_at("2025-03-03T09:00:00")
    call = engine.place_call(phone_number=PARIS, assistant_id="a", script=script(VOICEMAIL, HUMAN, VOICEMAIL))
    final = engine.get_call(call["id"], at=engine.terminal_at(call["id"]))
    assert final["status"] == statuses.COMPLETED
    assert final["calls_count"] == 2
    assert final["last_call_attempt"]["result"] == "human"
    assert final["outcome"] in ("interested", "not_interested", "completed", "requested_callback_later")
    assert set(final["structured_output"]) == {
        "confirmed",
        "contact_name",
        "email",
        "party_size",
        "interest_level",
        "new_date",
        "callback_at",
    }
    assert final["is_completed"] is True and final["is_cancelled"] is False


def test_voicemail_only_completes_without_outcome() -> None:
    engine = engine_at("2025-03-03T09:00:00", profile=Profile(outcome_weights={VOICEMAIL: 1.0}))
    call = engine.place_call(phone_number=PARIS, assistant_id="a")
    final = engine.get_call(call["id"], at=engine.terminal_at(call["id"]))
    assert final["status"] == statuses.COMPLETED
    assert final["calls_count"] == 3  # the default max_retry_attempts
    assert final["outcome"] is None and final["structured_output"] is None
    assert all(a["result"] == "voicemail" and a["recording_url"] for a in final["call_attempts"])
    assert final["call_attempts"][0]["post_call_transcript"]


def test_every_dial_failing_errors_without_post_processing() -> None:
    engine = engine_at("2025-03-03T09:00:00")
    call = engine.place_call(phone_number=PARIS, assistant_id="a", script=script(BUSY, NO_ANSWER, FAILED))
    plan_events = engine._plans[call["id"]].events
    seen = {engine.get_call(call["id"], at=moment)["status"] for moment in plan_events}
    assert statuses.POST_PROCESSING not in seen
    final = engine.get_call(call["id"], at=engine.terminal_at(call["id"]))
    assert final["status"] == statuses.ERRORED
    newest_first = [a["dial_error"] for a in final["call_attempts"]]
    assert newest_first == [draw(FAILED).dial_error, "no_answer", "busy"]
    assert all(
        a["status"] == statuses.ATTEMPT_ERROR and a["recording_url"] is None for a in final["call_attempts"]
    )


def test_attempt_walks_queued_ringing_ongoing_completed() -> None:
    engine = engine_at("2025-03-03T09:00:00")
    call = engine.place_call(phone_number=PARIS, assistant_id="a", script=script(HUMAN))
    walk = []
    for moment in engine._plans[call["id"]].events:
        state = engine.get_call(call["id"], at=moment)
        last = state["last_call_attempt"]
        walk.append((state["status"], last["status"] if last else None))
    assert walk == [
        (statuses.QUEUED_FOR_CALLING, None),
        (statuses.QUEUED_FOR_CALLING, None),
        (statuses.CALLING, statuses.ATTEMPT_QUEUED),
        (statuses.CALLING, statuses.ATTEMPT_RINGING),
        (statuses.CALLING, statuses.ATTEMPT_ONGOING),
        (statuses.POST_PROCESSING, statuses.ATTEMPT_COMPLETED),
        (statuses.POST_PROCESSING, statuses.ATTEMPT_COMPLETED),
        (statuses.COMPLETED, statuses.ATTEMPT_COMPLETED),
    ]


def test_post_call_transcript_and_results_appear_only_when_completed() -> None:
    engine = engine_at("2025-03-03T09:00:00")
    call = engine.place_call(phone_number=PARIS, assistant_id="a", script=script(HUMAN))
    plan = engine._plans[call["id"]]
    assert plan.post_start is not None and plan.final_at is not None
    during = engine.get_call(call["id"], at=plan.post_start)
    assert during["status"] == statuses.POST_PROCESSING
    assert during["last_call_attempt"]["post_call_transcript"] is None
    assert during["last_call_attempt"]["transcript"]
    assert during["structured_output"] is None and during["outcome"] is None
    done = engine.get_call(call["id"], at=plan.final_at)
    assert done["last_call_attempt"]["post_call_transcript"]
    assert done["last_call_attempt"]["structured_output"] == done["structured_output"]


def test_structured_output_follows_the_config_types() -> None:
    fields = [
        {"name": "city", "type": "string", "required": True},
        {"name": "seats", "type": "number", "required": True},
        {"name": "agreed", "type": "boolean", "required": True},
        {"name": "tier", "type": "enum", "required": True, "enum_options": ["gold", "silver"]},
        {"name": "day", "type": "date", "required": True},
        {"name": "meeting", "type": "datetime", "required": True},
    ]
    engine = engine_at("2025-03-03T09:00:00")
    for _ in range(5):
        call = engine.place_call(
            phone_number=PARIS, assistant={"structured_output_config": fields}, script=script(HUMAN)
        )
        output = engine.get_call(call["id"], at=engine.terminal_at(call["id"]))["structured_output"]
        assert isinstance(output["city"], str) and output["city"]
        assert isinstance(output["seats"], int | float) and not isinstance(output["seats"], bool)
        assert isinstance(output["agreed"], bool)
        assert output["tier"] in ("gold", "silver")
        assert date.fromisoformat(output["day"]) > date(2025, 3, 3)
        assert parse(output["meeting"]).tzinfo is not None  # type: ignore[union-attr]


def test_max_call_duration_caps_a_call() -> None:
    engine = engine_at("2025-03-03T09:00:00")
    long_call = OrderScript(attempts=(draw(HUMAN, talk_seconds=900.0),))
    call = engine.place_call(phone_number=PARIS, assistant={"max_call_duration_secs": 120}, script=long_call)
    attempt = engine.get_call(call["id"], at=engine.terminal_at(call["id"]))["last_call_attempt"]
    assert attempt["duration_secs"] == 120
    assert (attempt["ended_by"], attempt["end_reason"]) == ("system", "max_duration")


def test_future_scheduled_at_is_honoured() -> None:
    engine = engine_at("2025-03-03T09:00:00")
    call = engine.place_call(phone_number=PARIS, assistant_id="a", scheduled_at="2025-03-05T13:30:00Z")
    assert call["status"] == statuses.SCHEDULED
    assert call["scheduled_at"] == "2025-03-05T13:30:00.000Z"
    assert first_dial(engine, call) == at("2025-03-05T13:30:00")


def test_cancel_while_scheduled_and_while_calling() -> None:
    engine = engine_at("2025-03-03T06:00:00")
    waiting = engine.place_call(phone_number=PARIS, assistant_id="a", script=script(HUMAN))
    cancelled = engine.cancel(waiting["id"])
    assert cancelled["status"] == statuses.CANCELLED and cancelled["is_cancelled"] is True
    assert cancelled["calls_count"] == 0
    assert engine.terminal_at(waiting["id"]) == at("2025-03-03T06:00:00")
    engine.clock.advance(86400)  # type: ignore[attr-defined]
    assert engine.get_call(waiting["id"])["calls_count"] == 0  # nothing dialled after the cancel

    live = engine.place_call(phone_number=PARIS, assistant_id="a", script=script(HUMAN, HUMAN))
    plan = engine._plans[live["id"]]
    mid_call = plan.attempts[0].answered_at + timedelta(seconds=5)  # type: ignore[operator]
    cut = engine.cancel(live["id"], at=mid_call)
    attempt = cut["last_call_attempt"]
    assert cut["status"] == statuses.CANCELLED
    assert attempt["status"] == statuses.ATTEMPT_COMPLETED and parse(attempt["ended_at"]) == mid_call
    assert (attempt["ended_by"], attempt["end_reason"]) == ("system", "client_initiated")
    assert engine.terminal_at(live["id"]) == mid_call
    with pytest.raises(Conflict, match="already cancelled"):
        engine.cancel(live["id"], at=mid_call + timedelta(seconds=1))


def test_pause_and_resume_replan_the_remaining_attempts() -> None:
    engine = engine_at("2025-03-03T09:00:00")
    call = engine.place_call(phone_number=PARIS, assistant_id="a", script=script(BUSY, HUMAN))
    first_end = engine._plans[call["id"]].attempts[0].ended_at
    paused_at = first_end + timedelta(minutes=1)
    paused = engine.pause(call["id"], at=paused_at)
    assert paused["status"] == statuses.PAUSED and paused["next_call_at"] is None
    assert engine.terminal_at(call["id"]) is None
    assert engine.get_call(call["id"], at=paused_at + timedelta(days=3))["status"] == statuses.PAUSED
    resumed_at = at("2025-03-04T09:30:00")
    with pytest.raises(Conflict, match="cannot be paused"):
        engine.pause(call["id"], at=resumed_at)
    resumed = engine.resume(call["id"], at=resumed_at)
    assert resumed["status"] == statuses.QUEUED_FOR_CALLING  # 10:30 Paris: inside the window
    final = engine.get_call(call["id"], at=engine.terminal_at(call["id"]))
    assert final["status"] == statuses.COMPLETED and final["calls_count"] == 2
    assert parse(final["last_call_attempt"]["started_at"]) > resumed_at  # type: ignore[operator]
    # The past is unchanged: the order was scheduled between attempt 1 and the pause.
    assert engine.get_call(call["id"], at=first_end)["status"] == statuses.SCHEDULED


def _story(engine: SimulatorEngine, count: int = 10) -> tuple[list[str], list[Any]]:
    """Place ``count`` orders; their ids, and what happened to them with every id left out."""
    ids = [engine.place_call(phone_number=PARIS, assistant_id="a")["id"] for _ in range(count)]
    finals = [engine.get_call(i, at=engine.terminal_at(i)) for i in ids]
    story = [
        (
            call["status"],
            call["outcome"],
            call["structured_output"],
            call["next_call_at"],
            [
                (a["status"], a["result"], a["dial_error"], a["started_at"], a["ended_at"], a["transcript"])
                for a in call["call_attempts"]
            ],
        )
        for call in finals
    ]
    return ids, story


def test_same_seed_same_story_different_seed_different_story() -> None:
    first_ids, first = _story(SimulatorEngine(seed=11))
    again_ids, again = _story(SimulatorEngine(seed=11))
    assert first == again
    assert _story(SimulatorEngine(seed=12))[1] != first
    # A restart with the same seed never hands out an id given before: a wait still holding an
    # old id must not follow a different order.
    assert not set(first_ids) & set(again_ids)


def test_a_restarted_simulator_keeps_fixed_ids_and_draws() -> None:
    def scripted_ids(seed: int) -> list[str]:
        engine = SimulatorEngine(seed=seed)
        engine.place_call(phone_number=PARIS, assistant_id="a", call_id="call-fixed")
        return [
            a["id"]
            for a in engine.get_call("call-fixed", at=engine.terminal_at("call-fixed"))["call_attempts"]
        ]

    assert scripted_ids(3) == scripted_ids(3)


def test_get_call_at_does_not_move_the_clock() -> None:
    engine = engine_at("2025-03-03T09:00:00")
    call = engine.place_call(phone_number=PARIS, assistant_id="a", script=script(HUMAN))
    end = engine.terminal_at(call["id"])
    assert engine.get_call(call["id"], at=end)["status"] == statuses.COMPLETED
    assert engine.clock.now() == at("2025-03-03T09:00:00")
    assert engine.get_call(call["id"])["status"] == statuses.QUEUED_FOR_CALLING
    engine.clock.set(end)  # type: ignore[attr-defined]
    assert engine.get_call(call["id"])["status"] == statuses.COMPLETED
    assert engine.status(call["id"]) == statuses.COMPLETED
    with pytest.raises(UnknownCall, match="did not exist yet"):
        engine.get_call(call["id"], at=at("2025-03-03T08:00:00"))
    with pytest.raises(UnknownCall, match="no call with id"):
        engine.get_call("nope")


def test_updated_at_is_the_last_change() -> None:
    engine = engine_at("2025-03-03T09:00:00")
    call = engine.place_call(phone_number=PARIS, assistant_id="a", script=script(VOICEMAIL))
    events = engine._plans[call["id"]].events
    later = events[3] + timedelta(milliseconds=1)
    assert parse(engine.get_call(call["id"], at=later)["updated_at"]) == events[3]
    assert engine.next_change_at(call["id"], at=later) == events[4]


def test_assistant_is_echoed_with_its_secrets() -> None:
    assistant = {
        "id": "asst_custom",
        "llm_model": {"type": "custom", "api_key": "sk-planted-llm-secret", "api_url": "https://llm.example"},
        "custom_tools": [{"name": "crm", "headers": {"Authorization": "Bearer planted-tool-token"}}],
    }
    engine = engine_at("2025-03-03T09:00:00")
    call = engine.place_call(phone_number=PARIS, assistant=assistant)
    assert {name: call["assistant"][name] for name in assistant} == assistant
    assert call["assistant"]["type"] == "standalone"  # the fields not given take the API's defaults
    assert call["llm_model"]["api_key"] == "sk-planted-llm-secret"
    default = engine.place_call(phone_number=PARIS, assistant_id="asst_given")
    assert default["assistant"]["id"] == "asst_given"
    assert {f["type"] for f in default["assistant"]["structured_output_config"]} == {
        "string",
        "number",
        "boolean",
        "enum",
        "date",
        "datetime",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"phone_number": "+1234", "assistant_id": "a"}, "phone_number '\\+1234' is not a valid"),
        (
            {"phone_number": "not a number", "assistant_id": "a"},
            "phone_number 'not a number' is not an E.164",
        ),
        ({"phone_number": None, "assistant_id": "a"}, "phone_number is required"),
        ({"phone_number": PARIS}, "either assistant .* or assistant_id"),
        ({"phone_number": PARIS, "assistant": "x"}, "assistant must be an object"),
        ({"phone_number": PARIS, "assistant_id": "a", "scheduled_at": "next tuesday"}, "scheduled_at"),
        ({"phone_number": PARIS, "assistant_id": "a", "metadata": ["x"]}, "metadata must be an object"),
        (
            {"phone_number": PARIS, "assistant_id": "a", "call_retry_config": {"timezone": "Mars/Olympus"}},
            "not an IANA timezone",
        ),
        (
            {"phone_number": PARIS, "assistant_id": "a", "call_retry_config": {"max_retry_attempts": "many"}},
            "max_retry_attempts",
        ),
    ],
)
def test_bad_orders_are_rejected_with_a_clear_message(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOrder, match=message):
        SimulatorEngine().place_call(**kwargs)


def test_profile_rejects_bad_distributions() -> None:
    with pytest.raises(ValueError, match="unknown outcome kinds \\['fax'\\]"):
        Profile(outcome_weights={"fax": 1.0})
    with pytest.raises(ValueError, match="ring_seconds must be"):
        Profile(ring_seconds=(10.0, 5.0, 20.0))


def _every_state(engine: SimulatorEngine) -> list[dict[str, Any]]:
    return [
        engine.get_call(cid, at=moment) for cid in engine.call_ids() for moment in engine._plans[cid].events
    ]


def test_models_parse_every_state_the_engine_produces() -> None:
    engine = engine_at("2025-03-03T06:00:00")
    for _ in range(40):
        engine.place_call(phone_number=PARIS, assistant_id="a")
    engine.place_call(phone_number=NEW_YORK, assistant_id="a", script=script(BUSY, FAILED, NO_ANSWER))
    engine.place_call(phone_number=NEW_YORK, assistant_id="a", script=script(IVR, VOICEMAIL))
    to_cancel = engine.place_call(phone_number=PARIS, assistant_id="a", script=script(HUMAN))
    to_pause = engine.place_call(phone_number=PARIS, assistant_id="a", script=script(NO_ANSWER, HUMAN))
    engine.cancel(to_cancel["id"], at=engine._plans[to_cancel["id"]].attempts[0].ringing_at)
    engine.pause(to_pause["id"], at=at("2025-03-03T07:00:00"))
    engine.resume(to_pause["id"], at=at("2025-03-03T12:00:00"))

    order_statuses, attempt_statuses, results = set(), set(), set()
    for state in _every_state(engine):
        call = Call.from_response({"call": state})
        assert call.status == state["status"] and call.is_known_status
        assert call.calls_count == len(call.call_attempts) == len(state["call_attempts"])
        assert call.is_terminal == (state["status"] in statuses.TERMINAL)
        starts = [a.started_at for a in call.call_attempts]
        assert starts == sorted(starts, reverse=True)  # most recent first
        if call.last_attempt is not None:
            assert call.last_attempt.id == call.call_attempts[0].id
            attempt_statuses.add(call.last_attempt.status)
            results.add(call.last_attempt.result)
        if state["status"] != statuses.COMPLETED:
            assert all(a.post_call_transcript is None for a in call.call_attempts)
            assert call.structured_output is None and call.outcome is None
        if state["status"] == statuses.SCHEDULED and call.next_call_at is not None:
            assert call.updated_at is not None and call.next_call_at >= call.created_at  # type: ignore[operator]
        order_statuses.add(call.status)
    assert order_statuses == {
        statuses.SCHEDULED,
        statuses.QUEUED_FOR_CALLING,
        statuses.CALLING,
        statuses.POST_PROCESSING,
        statuses.PAUSED,
        statuses.COMPLETED,
        statuses.CANCELLED,
        statuses.ERRORED,
    }
    assert attempt_statuses == statuses.ATTEMPT_LIVE | statuses.ATTEMPT_ENDED
    assert {"human", "voicemail", "IVR", None} <= results


def test_a_restarted_population_has_new_ids_and_the_same_lives() -> None:
    from airflow_provider_revox._simulator.population import seed_population

    def run() -> tuple[list[str], list[tuple[Any, ...]]]:
        engine = SimulatorEngine(seed=5)
        ids = seed_population(engine, 25)
        lives = []
        for call_id in ids:
            call = engine.get_call(call_id, at=engine.terminal_at(call_id))
            lives.append((call["to_phone_number"], call["status"], call["calls_count"], call["updated_at"]))
        return ids, lives

    first_ids, first_lives = run()
    second_ids, second_lives = run()
    assert first_lives == second_lives
    assert not set(first_ids) & set(second_ids)
