"""Fidelity: the vendor's own SDK (``revox`` 0.5.0), in strict mode, parses every simulator answer.

Strict response validation makes the SDK check each response against the types generated from
the vendor's OpenAPI spec: a missing required field, a wrong type or an undocumented enum value
is an error. The SDK is a development dependency only; the package never imports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

revox = pytest.importorskip("revox")

from airflow_provider_revox._internal.core import statuses  # noqa: E402
from airflow_provider_revox._simulator.harness import SimulatorHandle, running_simulator  # noqa: E402

PARIS = "+33612345678"
NEW_YORK = "+12127363100"
NO_FILTERS: dict[str, Any] = {
    "assignee_ids": [],
    "assistant_ids": [],
    "campaign_ids": [],
    "directions": [],
    "from_phone_numbers": [],
    "outcomes": [],
    "results": [],
    "statuses": [],
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(seed=11, calls=40) as handle:
        yield handle


@pytest.fixture(scope="module")
def sdk(sim: SimulatorHandle) -> Iterator[Any]:
    client = revox.Revox(
        api_key=sim.api_key, base_url=sim.base_url, _strict_response_validation=True, max_retries=0
    )
    yield client
    client.close()


def test_auth_status_and_current_user(sim: SimulatorHandle, sdk: Any) -> None:
    assert sdk.auth_status.retrieve().authenticated is True
    stranger = revox.Revox(api_key="sk_wrong", base_url=sim.base_url, _strict_response_validation=True)
    assert stranger.auth_status.retrieve().authenticated is False
    user = sdk.users.retrieve().user
    assert user.id == "user_simulator" and user.organization_id == "org_simulator"


def test_create_with_an_assistant_id_parses_strictly(sdk: Any) -> None:
    created = sdk.call.create(phone_number=NEW_YORK, assistant_id="asst_sdk", metadata={"order": "42"})
    call = created.call
    assert call.status == statuses.SCHEDULED and call.to_phone_number == NEW_YORK
    assert call.assistant is not None and call.assistant.id == "asst_sdk"
    assert call.assistant.type == "standalone" and call.assistant.stt_model in ("stt-rt-v4", "stt-rt-v5")
    assert call.contact.first_name is None
    assert call.metadata == {"order": "42"}


def test_create_with_an_inline_assistant_parses_strictly(sdk: Any) -> None:
    assistant = {
        "prompt": "Confirm the delivery slot.",
        "first_sentence": "Hello!",
        "structured_output_config": [{"name": "slot", "type": "string", "required": True}],
        "call_retry_config": {
            "calling_windows": [
                {
                    "calling_window_start_time": "9am",
                    "calling_window_end_time": "17:00",
                    "retry_delay_seconds": 60,
                }
            ],
            "allowed_days": ["monday", "saturday"],
            "max_retry_attempts": 2,
            "call_twice_in_a_row": True,
            "timezone": "Europe/Paris",
        },
    }
    call = sdk.call.create(phone_number=PARIS, assistant=assistant).call
    assert call.assistant is not None and call.assistant.prompt == "Confirm the delivery slot."
    assert call.call_retry_config is None  # the order itself gave none: the assistant's applies


def test_retrieve_search_at_every_phase_of_every_order(sim: SimulatorHandle, sdk: Any) -> None:
    """Walk a seeded population through its whole life; every order at every step parses."""
    sim.place_scripted("sdk-voicemail-then-human", [{"result": "voicemail"}, {"result": "human"}])
    sim.place_scripted("sdk-ivr", [{"result": "ivr"}])
    sim.place_scripted("sdk-failed", [{"dial_error": "no_answer"}, {"dial_error": "precondition_failed"}])
    ids = sim.engine.call_ids()
    seen: set[str] = set()
    for _ in range(12):
        page = sdk.call.search(**NO_FILTERS, page=0, page_size=1000)
        assert page.total_count == len(ids)
        seen |= {call.status for call in page.calls}
        first = sdk.call.retrieve(ids[0]).call
        assert first.id == ids[0]
        sim.advance(timedelta(hours=8).total_seconds())
    for call_id in ids:
        sdk.call.retrieve(call_id)
    assert {statuses.SCHEDULED, statuses.COMPLETED, statuses.ERRORED} <= seen


def test_cancel_pause_resume_parse_strictly(sim: SimulatorHandle, sdk: Any) -> None:
    paused = sim.place_call(phone_number=PARIS, assistant_id="asst_sdk")["id"]
    assert sdk.call.pause(paused).success is True
    assert sdk.call.retrieve(paused).call.status == statuses.PAUSED
    assert sdk.call.resume(paused).success is True
    assert sdk.call.cancel(paused).success is True
    assert sdk.call.retrieve(paused).call.status == statuses.CANCELLED


def test_sdk_errors_on_a_conflict(sim: SimulatorHandle, sdk: Any) -> None:
    call_id = sim.place_call(phone_number=PARIS, assistant_id="asst_sdk")["id"]
    sdk.call.cancel(call_id)
    with pytest.raises(revox.ConflictError):
        sdk.call.cancel(call_id)
    with pytest.raises(revox.NotFoundError):
        sdk.call.retrieve("no-such-call")


def test_unknown_extra_fields_still_parse_strictly(sim: SimulatorHandle, sdk: Any) -> None:
    call_id = sim.place_call(phone_number=PARIS, assistant_id="asst_sdk")["id"]
    sim.faults.script(call_id, ["extra_fields"])
    call = sdk.call.retrieve(call_id).call
    assert call.id == call_id and call.model_extra is not None and "sentiment" in call.model_extra
