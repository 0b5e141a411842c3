"""The simulator's webhook sender: one delivery per ended order, and the faults it claims."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from airflow_provider_revox._simulator.profile import AttemptDraw
from airflow_provider_revox._simulator.timeline import OrderScript
from airflow_provider_revox._simulator.webhooks import WebhookFaults, WebhookSender
from airflow_provider_revox.testing import running_simulator


def place(sim: Any, webhook_url: str | None = "https://hooks.example/revox") -> str:
    assistant: dict[str, Any] = {"id": "asst_hooks"}
    if webhook_url:
        assistant["webhook_url"] = webhook_url
    call = sim.place_call(
        phone_number="+33612345678",
        assistant=assistant,
        skip_calling_window=True,
        script=OrderScript(attempts=(AttemptDraw(kind="human", talk_seconds=30),)),
    )
    return str(call["id"])


def test_each_ended_order_is_posted_once_to_its_assistants_url_after_it_ends() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    with running_simulator(seed=3) as sim:
        ids = [place(sim) for _ in range(5)]
        silent = place(sim, webhook_url=None)
        sender = WebhookSender(sim.engine, post=lambda url, body: sent.append((url, body)) or 204)
        sender.step()
        assert sent == []  # nothing ended yet
        sim.finish()
        sender.step()
    assert sorted(body["call"]["id"] for _, body in sent) == sorted(ids)
    assert {url for url, _ in sent} == {"https://hooks.example/revox"}
    assert all(body["call"]["status"] == "completed" and body["call"]["ended_at"] for _, body in sent)
    assert silent not in str(sent)
    assert sender.counts["ended"] == 5 and sender.counts["delivered"] == 5


def test_drops_duplicates_delays_and_retries_happen_at_their_rates() -> None:
    answers: dict[str, int] = {}
    sent: list[str] = []

    def post(url: str, body: dict[str, Any]) -> int:
        call_id = body["call"]["id"]
        sent.append(call_id)
        answers[call_id] = answers.get(call_id, 0) + 1
        return 503 if answers[call_id] == 1 and int(call_id[-1], 16) % 4 == 0 else 200  # some fail once

    faults = WebhookFaults.parse("drop=0.1,duplicate=0.1,delay=30,reorder=0.2,retries=2,retry_wait=1")
    with running_simulator(seed=5) as sim:
        ids = [place(sim) for _ in range(400)]
        sender = WebhookSender(sim.engine, faults, seed=5, post=post)
        sim.finish()
        sender.step()  # every order ended now; the deliveries are due within the delays
        first = len(sent)
        for _ in range(400):
            sim.advance(1)
            sender.step()
    counts = sender.counts
    assert counts["ended"] == 400
    assert 20 <= counts["dropped"] <= 70 and 20 <= counts["duplicated"] <= 70
    assert counts["retried"] > 0 and counts["gave_up"] == 0
    assert first < len(sent)  # delayed: most were sent later than the order's end
    assert set(sent) == set(ids) - sender.lost and len(sender.lost) == counts["dropped"]
    order = [call_id for call_id in dict.fromkeys(sent)]
    by_end = sorted(order, key=lambda i: (sim.engine.terminal_at(i), i))
    assert order != by_end  # out of order


def test_a_sender_that_never_gets_a_2xx_gives_up_and_counts_the_order_lost() -> None:
    with running_simulator(seed=1) as sim:
        call_id = place(sim)
        sender = WebhookSender(sim.engine, "retries=2,retry_wait=1", post=lambda url, body: 500)
        sim.finish()
        for _ in range(10):
            sender.step()
            sim.advance(timedelta(seconds=2).total_seconds())
    assert sender.counts["sent"] == 3 and sender.counts["gave_up"] == 1 and sender.lost == {call_id}


def test_the_default_sender_posts_the_body_as_json_to_the_url() -> None:
    received: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(request.url.path)
        return httpx.Response(202)

    with running_simulator(seed=2) as sim:
        call_id = place(sim, webhook_url="http://receiver.test/revox/webhooks/t")
        sender = WebhookSender(sim.engine)
        sender._client = httpx.Client(transport=httpx.MockTransport(handler))
        sim.finish()
        assert sender.step() == 1
    assert received == ["/revox/webhooks/t"] and call_id


@pytest.mark.parametrize("spec", ["drop=2", "nope=1", "delay=x"])
def test_a_bad_spec_is_named(spec: str) -> None:
    with pytest.raises(ValueError):
        WebhookFaults.parse(spec)


def test_the_command_line_names_a_bad_webhook_fault_before_serving(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from airflow_provider_revox._simulator.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["--port", "0", "--webhook-url", "http://127.0.0.1:9/x", "--webhook-faults", "drop=2"], {})
    assert stopped.value.code == 2 and "webhook fault 'drop' is out of range" in capsys.readouterr().err
