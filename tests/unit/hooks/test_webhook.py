"""The hook's webhook half against the simulator: the URL, the assistant's webhook, the announced calls."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.export.tables import call_document
from airflow_provider_revox._internal.hooks.webhook import announced_entry
from airflow_provider_revox._simulator.harness import connection_json
from airflow_provider_revox._simulator.profile import AttemptDraw
from airflow_provider_revox._simulator.timeline import OrderScript
from airflow_provider_revox._simulator.webhooks import WebhookSender
from airflow_provider_revox.exceptions import RevoxConfigError, RevoxInvalidCallIdError
from airflow_provider_revox.hooks.revox import RevoxHook

TOKEN = "t" * 20 + RevoxHook.new_webhook_token()


@pytest.fixture
def hooked(revox_simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(
        "AIRFLOW_CONN_REVOX_DEFAULT",
        connection_json(
            revox_simulator.base_url,
            revox_simulator.api_key,
            webhook_base_url="https://airflow.example.com/",
            webhook_token=TOKEN,
        ),
    )
    return revox_simulator


def place(sim: Any, assistant_id: str = "asst_w") -> str:
    call = sim.place_call(
        phone_number="+33612345678",
        assistant={"id": assistant_id},
        skip_calling_window=True,
        script=OrderScript(attempts=(AttemptDraw(kind="human", talk_seconds=20),)),
    )
    return str(call["id"])


def test_the_webhook_url_is_the_base_url_the_plugins_path_and_the_token(hooked: Any) -> None:
    hook = RevoxHook()
    assert hook.webhook_url() == f"https://airflow.example.com/revox/webhooks?token={TOKEN}"
    assert TOKEN not in repr(hook) and TOKEN not in repr(hook.connection_settings())


def test_setting_the_assistants_webhook_makes_the_simulator_post_its_calls_there(hooked: Any) -> None:
    RevoxHook().set_assistant_webhook("asst_w")
    assert hooked.engine.assistant_webhooks == {"asst_w": RevoxHook().webhook_url()}
    posted: list[str] = []
    call_id = place(hooked)
    other = place(hooked, "asst_other")
    sender = WebhookSender(hooked.engine, post=lambda url, body: posted.append(url) or 200)
    hooked.finish()
    sender.step()
    assert posted == [RevoxHook().webhook_url()] and sender.counts["ended"] == 1 and call_id and other


def test_without_a_token_or_base_url_the_url_is_refused_before_any_request(revox_simulator: Any) -> None:
    with pytest.raises(RevoxConfigError, match="webhook_base_url"):
        RevoxHook().webhook_url()
    with pytest.raises(RevoxConfigError, match="assistant_id"):
        RevoxHook().set_assistant_webhook(" ")
    assert revox_simulator.stats()["by_endpoint"] == {}


def test_a_short_token_in_the_connection_is_named(
    revox_simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_REVOX_DEFAULT",
        connection_json(revox_simulator.base_url, revox_simulator.api_key, webhook_token="short"),
    )
    with pytest.raises(RevoxConfigError, match="webhook_token"):
        RevoxHook().connection_settings()


def test_announced_entries_are_dated_by_the_api_and_the_rest_kept(hooked: Any) -> None:
    ended = [place(hooked) for _ in range(3)]
    hooked.finish()
    still_open = place(hooked)
    polled = {"id": "polled", "status": "completed", "ended_at": "2026-01-01T00:00:00+00:00"}
    calls = [
        {"id": ended[1], "announced": True, "status": "cancelled"},  # the claimed status is not believed
        polled,
        {"id": still_open, "announced": True},
        {"id": "call_unknown", "announced": True},
        {"id": ended[0], "announced": True},
    ]
    resolved = RevoxHook().resolve_announced(calls)
    assert [entry["id"] for entry in resolved] == [ended[1], "polled", ended[0]]
    api_end = datetime.fromisoformat(hooked.get_call(ended[1])["ended_at"].replace("Z", "+00:00"))
    assert resolved[0]["status"] == "completed" and resolved[0]["announced"] is True
    assert datetime.fromisoformat(resolved[0]["ended_at"]) == api_end
    assert resolved[1] == polled
    assert hooked.stats()["by_endpoint"] == {"POST /call/search": 1}  # one search for four ids
    with pytest.raises(RevoxInvalidCallIdError):
        RevoxHook().resolve_announced([{"id": "bad id/../x", "announced": True}])


def test_the_token_in_an_assistants_webhook_url_is_masked_in_the_calls_the_hook_reads(hooked: Any) -> None:
    hook = RevoxHook()
    url = hook.webhook_url()
    call_id = str(
        hooked.place_call(
            phone_number="+33612345678",
            assistant={"id": "asst_w", "webhook_url": url},
            skip_calling_window=True,
            script=OrderScript(attempts=(AttemptDraw(kind="human", talk_seconds=20),)),
        )["id"]
    )
    hooked.finish()
    assert TOKEN in hooked.engine.get_call(call_id)["assistant"]["webhook_url"]
    reader = RevoxHook()
    # What an export writes as the call's JSON document (calls/<id>.json).
    document = call_document(reader.get_call(call_id), reader.known_secrets()).decode()
    assert TOKEN in reader.known_secrets()
    assert TOKEN not in document and "https://airflow.example.com/revox/webhooks?token=" in document


def test_announced_orders_outside_the_watchers_filters_are_dropped(hooked: Any) -> None:
    ours = place(hooked, "asst_w")
    other = place(hooked, "asst_other")
    hooked.finish()
    calls = [{"id": other, "announced": True}, {"id": ours, "announced": True}]
    resolved = RevoxHook().resolve_announced(calls, assistant_ids=["asst_w"], statuses=["completed"])
    assert [entry["id"] for entry in resolved] == [ours]
    assert [e["id"] for e in RevoxHook().resolve_announced(calls, statuses=["cancelled"])] == []
    assert [e["id"] for e in RevoxHook().resolve_announced(calls)] == [other, ours]


def test_an_api_that_ignores_the_filters_still_names_no_order_outside_them() -> None:
    ended = {"status": "completed", "ended_at": "2026-01-01T10:00:00Z"}
    theirs = Call.model_validate({"id": "c1", "assistant": {"id": "asst_other"}, **ended})
    cancelled = Call.model_validate(
        {"id": "c2", "assistant": {"id": "asst_w"}, **ended, "status": "cancelled"}
    )
    ours = Call.model_validate({"id": "c3", "assistant": {"id": "asst_w"}, **ended})
    watched = {"assistant_ids": ["asst_w"], "statuses": ["completed"]}
    assert announced_entry(theirs, watched) is None
    assert announced_entry(cancelled, watched) is None
    assert announced_entry(ours, watched) == {
        "id": "c3",
        "status": "completed",
        "ended_at": "2026-01-01T10:00:00+00:00",
        "announced": True,
    }
    assert announced_entry(theirs) is not None  # no filter: every ended order
