"""The simulator over real HTTP on loopback: auth, endpoints, faults, stats, recordings, keep-alive."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._simulator.faults import UNKNOWN_STATUS_VALUE, FaultRates, parse_token
from airflow_provider_revox.hooks.revox import Call
from airflow_provider_revox.testing import (
    Faults,
    SimulatorEngine,
    SimulatorHandle,
    SimulatorServer,
    running_simulator,
)

PARIS = "+33612345678"


@pytest.fixture
def client(simulator: SimulatorHandle) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {simulator.api_key}"}
    with httpx.Client(base_url=simulator.base_url, headers=headers, timeout=5) as http:
        yield http


def place(simulator: SimulatorHandle) -> dict[str, Any]:
    return simulator.place_call(phone_number=PARIS, assistant_id="asst_http")


def test_base_url_is_loopback_under_api(simulator: SimulatorHandle) -> None:
    assert simulator.base_url == f"http://127.0.0.1:{simulator.port}/api"
    assert simulator.api_key not in repr(simulator)


def test_missing_or_wrong_key_is_401_without_echoing_it(simulator: SimulatorHandle) -> None:
    call = place(simulator)
    url = f"{simulator.base_url}/call/{call['id']}"
    missing = httpx.get(url)
    wrong = httpx.get(url, headers={"Authorization": "Bearer sk_wrong_key_value"})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert wrong.json()["error"] == "unauthorized"
    assert "sk_wrong_key_value" not in wrong.text and simulator.api_key not in wrong.text


def test_auth_status_answers_200_with_false_for_a_bad_key(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    bad = httpx.get(f"{simulator.base_url}/auth-status", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 200 and bad.json() == {"authenticated": False}
    assert client.get("/auth-status").json() == {"authenticated": True}


def test_get_call_parses_with_the_package_models(simulator: SimulatorHandle, client: httpx.Client) -> None:
    call = place(simulator)
    response = client.get(f"/call/{call['id']}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    parsed = Call.from_response(response.json())
    assert parsed.id == call["id"] and parsed.status == statuses.SCHEDULED
    assert parsed.to_phone_number == PARIS


def test_unknown_call_is_404(client: httpx.Client) -> None:
    response = client.get("/call/does-not-exist")
    assert response.status_code == 404
    assert "does-not-exist" in response.json()["message"]


def test_post_call_places_an_order(simulator: SimulatorHandle, client: httpx.Client) -> None:
    response = client.post(
        "/call",
        json={
            "phone_number": "+12127363100",
            "assistant_id": "asst_post",
            "metadata": {"customer_id": "42"},
            "prompt_variables": {"first_name": "Ada"},
            "call_retry_config": {"max_retry_attempts": 2, "call_twice_in_a_row": True},
        },
    )
    assert response.status_code == 200
    call = response.json()["call"]
    assert call["id"] in simulator.engine.call_ids()
    assert call["metadata"] == {"customer_id": "42"} and call["timezone"] == "America/New_York"
    assert Call.from_response(response.json()).retry_policy.max_retry_attempts == 2


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"phone_number": "+1234", "assistant_id": "a"}, 422, "phone_number '+1234' is not a valid"),
        ({"phone_number": PARIS}, 422, "assistant_id"),
        ({"phone_number": PARIS, "assistant_id": "a", "scheduled_at": "soon"}, 422, "scheduled_at"),
        ([1, 2], 400, "must be a JSON object"),
        ({}, 422, "missing required field(s): phone_number (the recipient, E.164;"),
        (
            {"to_phone_number": PARIS, "assistant_id": "a"},
            422,
            "missing required field(s): phone_number (the recipient, E.164; to_phone_number is the "
            "field of a campaign's contacts)",
        ),
    ],
)
def test_post_call_rejects_bad_input(client: httpx.Client, body: Any, status: int, message: str) -> None:
    response = client.post("/call", json=body)
    assert response.status_code == status
    assert message in response.json()["message"]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/campaigns", {}, "missing required field(s): name, assistant_id, contacts"),
        ("/campaigns", {"name": "June", "assistant_id": "a"}, "missing required field(s): contacts"),
        ("/campaigns/{id}/launch-calls", {}, "missing required field(s): mode, selection"),
        ("/campaigns/{id}/launch-calls", {"mode": "ai_first"}, "missing required field(s): selection"),
    ],
)
def test_a_campaign_request_missing_a_field_is_422_naming_it(
    client: httpx.Client, path: str, body: dict[str, Any], message: str
) -> None:
    created = client.post(
        "/campaigns", json={"name": "June", "assistant_id": "a", "contacts": [{"to_phone_number": PARIS}]}
    )
    response = client.post(path.format(id=created.json()["campaign"]["id"]), json=body)
    assert (response.status_code, response.json()["message"]) == (422, message)
    # The connection survives: the answer was an answer, not a crash.
    assert client.get("/auth-status").json() == {"authenticated": True}


def test_post_call_with_broken_json_is_400(client: httpx.Client) -> None:
    response = client.post("/call", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["message"]


def test_cancel_over_http(simulator: SimulatorHandle, client: httpx.Client) -> None:
    call = place(simulator)
    response = client.post(f"/call/{call['id']}/cancel")
    assert response.status_code == 200 and response.json()["call"]["status"] == statuses.CANCELLED
    again = client.post(f"/call/{call['id']}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["message"]


def test_pause_and_resume_over_http(simulator: SimulatorHandle, client: httpx.Client) -> None:
    call = place(simulator)
    assert client.post(f"/call/{call['id']}/pause").json()["call"]["status"] == statuses.PAUSED
    assert client.post(f"/call/{call['id']}/resume").json()["call"]["status"] == statuses.SCHEDULED


def test_scripted_error_statuses_and_retry_after(simulator: SimulatorHandle, client: httpx.Client) -> None:
    call = place(simulator)
    simulator.faults.script(call["id"], ["429:7", "500", "502", "503", "504", "ok"])
    responses = [client.get(f"/call/{call['id']}") for _ in range(6)]
    assert [r.status_code for r in responses] == [429, 500, 502, 503, 504, 200]
    assert responses[0].headers["retry-after"] == "7"
    assert simulator.faults.pending(call["id"]) == 0


def test_dropped_connection(simulator: SimulatorHandle, client: httpx.Client) -> None:
    call = place(simulator)
    simulator.faults.script(call["id"], ["drop"])
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(f"/call/{call['id']}")
    assert client.get(f"/call/{call['id']}").status_code == 200
    assert simulator.stats()["by_status"]["dropped"] == 1


def test_truncated_json(simulator: SimulatorHandle, client: httpx.Client) -> None:
    call = place(simulator)
    simulator.faults.script(call["id"], ["truncate"])
    response = client.get(f"/call/{call['id']}")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_unknown_status_and_extra_fields(simulator: SimulatorHandle, client: httpx.Client) -> None:
    call = place(simulator)
    simulator.faults.script(call["id"], ["unknown_status+extra_fields"])
    body = client.get(f"/call/{call['id']}").json()
    parsed = Call.from_response(body)
    assert parsed.status == UNKNOWN_STATUS_VALUE
    assert not parsed.is_known_status and not parsed.is_terminal
    assert body["request_id"] == "req_simulated"
    assert parsed.model_extra is not None and parsed.model_extra["sentiment"]["label"] == "neutral"


def test_slow_response(simulator: SimulatorHandle) -> None:
    call = place(simulator)
    simulator.faults.script(call["id"], ["slow:1.5", "slow:0.05"])
    headers = {"Authorization": f"Bearer {simulator.api_key}"}
    url = f"{simulator.base_url}/call/{call['id']}"
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url, headers=headers, timeout=0.2)
    assert httpx.get(url, headers=headers, timeout=5).status_code == 200


def test_fault_rates_apply_to_the_api_but_never_to_simulator_routes() -> None:
    with running_simulator(seed=1, faults="503=1.0") as sim:
        call = place(sim)
        headers = {"Authorization": f"Bearer {sim.api_key}"}
        assert httpx.get(f"{sim.base_url}/call/{call['id']}", headers=headers).status_code == 503
        assert httpx.get(f"{sim.base_url}/auth-status", headers=headers).status_code == 503
        assert httpx.get(f"{sim.base_url}/_simulator/stats").status_code == 200
        assert httpx.get(f"{sim.base_url}/_simulator/calls").json() == {"call_ids": [call["id"]]}


def test_fault_rates_are_deterministic_for_a_seed() -> None:
    def codes(seed: int) -> list[int]:
        with running_simulator(seed=seed, faults="429=0.3,500=0.2") as sim:
            call = place(sim)
            headers = {"Authorization": f"Bearer {sim.api_key}"}
            with httpx.Client(headers=headers) as http:
                return [http.get(f"{sim.base_url}/call/{call['id']}").status_code for _ in range(40)]

    first = codes(5)
    assert first == codes(5)
    assert {200, 429, 500} <= set(first)


def test_stats_count_api_requests_per_call_and_status(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    one, two = place(simulator), place(simulator)
    for _ in range(3):
        client.get(f"/call/{one['id']}")
    client.get(f"/call/{two['id']}")
    client.get("/call/missing")
    httpx.get(f"{simulator.base_url}/call/{two['id']}")  # no key: 401
    stats = httpx.get(f"{simulator.base_url}/_simulator/stats").json()
    assert stats["by_call_id"] == {one["id"]: 3, two["id"]: 2, "missing": 1}
    assert stats["by_status"] == {"200": 4, "404": 1, "401": 1}
    assert stats["by_endpoint"] == {"GET /call/{id}": 6}
    assert stats["requests_total"] == 6
    assert simulator.stats() == stats
    assert httpx.post(f"{simulator.base_url}/_simulator/stats/reset").status_code == 200
    assert simulator.stats()["requests_total"] == 0


def test_recordings_are_presigned_wav_files(simulator: SimulatorHandle, client: httpx.Client) -> None:
    call = simulator.place_call(phone_number=PARIS, assistant_id="a")
    simulator.clock.set(simulator.engine.terminal_at(call["id"]))  # type: ignore[attr-defined]
    final = client.get(f"/call/{call['id']}").json()["call"]
    urls = [a["recording_url"] for a in final["call_attempts"] if a["recording_url"]]
    assert urls, final["call_attempts"]
    url = urls[0]
    assert url.startswith(f"{simulator.base_url}/_simulator/recordings/att_") and "?sig=" in url
    audio = httpx.get(url)  # no bearer token: the signature is the authorisation
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert audio.content[:4] == b"RIFF" and audio.content[8:12] == b"WAVE"
    assert int(audio.headers["content-length"]) == len(audio.content)
    assert 30_000 <= len(audio.content) <= 300_000
    assert httpx.get(url).content == audio.content  # deterministic
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(audio.content))
    assert httpx.get(url.split("?sig=")[0] + "?sig=0000").status_code == 403
    assert httpx.get(url.split("?")[0]).status_code == 403
    assert simulator.stats()["recordings_served"] == 2


def test_connections_are_kept_alive(simulator: SimulatorHandle) -> None:
    call = place(simulator)
    connection = http.client.HTTPConnection("127.0.0.1", simulator.port, timeout=5)
    headers = {"Authorization": f"Bearer {simulator.api_key}"}
    sockets = []
    try:
        for _ in range(3):
            connection.request("GET", f"/api/call/{call['id']}", headers=headers)
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read())["call"]["id"] == call["id"]
            assert response.getheader("Connection") == "keep-alive"
            sockets.append(connection.sock)
    finally:
        connection.close()
    assert sockets[0] is not None and sockets[0] is sockets[1] is sockets[2]


def test_paths_outside_api_are_404(simulator: SimulatorHandle) -> None:
    response = httpx.get(f"http://127.0.0.1:{simulator.port}/call/x")
    assert response.status_code == 404 and "/api" in response.json()["message"]


def test_refuses_non_loopback_without_permission() -> None:
    with pytest.raises(ValueError, match="--allow-remote"):
        SimulatorServer(SimulatorEngine(), api_key="k", host="0.0.0.0")
    SimulatorServer(SimulatorEngine(), api_key="k", host="0.0.0.0", allow_remote=True)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("418=0.1", "unknown fault '418'"),
        ("429", "needs a rate"),
        ("503=1.5", "between 0 and 1"),
        ("503=abc", "rate of 503 must be a number"),
        ("429=0.6,503=0.6", "add up to 1.2"),
        ("drop=0.1:3", "takes no ':seconds'"),
    ],
)
def test_fault_spec_errors_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faults(spec)


def test_fault_spec_and_tokens_parse() -> None:
    rates = FaultRates.parse("429=0.05:3,503=0.02,drop=0.01,slow=0.05:2.5,truncate=0.01,unknown_status=0.01")
    assert dict(rates.rates)["503"] == 0.02 and rates.slow_seconds == 2.5 and rates.retry_after == 3
    assert parse_token("slow:0.5+unknown_status").delay == 0.5
    assert parse_token("ok").is_noop
    with pytest.raises(ValueError, match="unknown fault 'teapot'"):
        Faults().script("c", ["ok", "teapot"])


def test_the_extra_link_opens_a_page_about_the_call(simulator: SimulatorHandle) -> None:
    from airflow_provider_revox._internal.sensors.links import call_dashboard_url

    simulator.place_scripted("call-<b>&\"'", [{"result": "human", "duration": 60}])
    simulator.advance(3 * 3600)
    page = httpx.get(call_dashboard_url("call-<b>&\"'", simulator.base_url))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "call-&lt;b&gt;&amp;&quot;&#x27;" in page.text and "<b>" not in page.text
    assert ">completed<" in page.text and ">human<" in page.text
    assert simulator.stats()["requests_total"] == 0  # not an API request
    missing = httpx.get(call_dashboard_url("<img src=x onerror=alert(1)>", simulator.base_url))
    assert missing.status_code == 404 and "<img" not in missing.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in missing.text


def test_cli_takes_the_key_from_the_environment() -> None:
    from airflow_provider_revox._simulator.cli import _build, build_parser
    from airflow_provider_revox._simulator.harness import ServerThread

    args = build_parser().parse_args(["--port", "0"])
    server, generated = _build(args, {"REVOX_API_KEY": "sk_from_environment"})
    assert generated is None
    thread = ServerThread(server)
    thread.start()
    try:
        good = httpx.get(
            f"{server.base_url}/auth-status", headers={"Authorization": "Bearer sk_from_environment"}
        )
        bad = httpx.get(f"{server.base_url}/auth-status", headers={"Authorization": "Bearer other"})
    finally:
        thread.stop()
    assert good.json() == {"authenticated": True} and bad.json() == {"authenticated": False}
    command_line = build_parser().parse_args(["--port", "0", "--api-key", "sk_given"])
    assert _build(command_line, {"REVOX_API_KEY": "sk_from_environment"})[1] is None
    assert _build(build_parser().parse_args(["--port", "0"]), {})[1] is not None  # generated, printed


@pytest.mark.parametrize(("flags", "strict"), [([], False), (["--strict-search"], True)])
def test_cli_strict_search_refuses_a_search_missing_a_required_field(flags: list[str], strict: bool) -> None:
    from airflow_provider_revox._simulator.cli import _build, build_parser
    from airflow_provider_revox._simulator.harness import ServerThread

    server, _ = _build(build_parser().parse_args(["--port", "0", *flags]), {"REVOX_API_KEY": "sk_cli"})
    thread = ServerThread(server)
    thread.start()
    try:
        response = httpx.post(
            f"{server.base_url}/call/search", json={}, headers={"Authorization": "Bearer sk_cli"}
        )
    finally:
        thread.stop()
    assert response.status_code == (422 if strict else 200)


def test_a_client_that_hangs_up_mid_body_is_dropped_quietly(
    simulator: SimulatorHandle, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    # A trigger cancelled while its search is being sent: the server drops the request, without
    # a traceback in its log, and goes on serving.
    import socket
    import time

    head = (
        f"POST /api/call/search HTTP/1.1\r\nHost: {simulator.host}\r\n"
        f"Authorization: Bearer {simulator.api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
    )
    with caplog.at_level("ERROR"):
        with socket.create_connection((simulator.host, simulator.port)) as sock:
            sock.sendall(head.encode() + b'{"call_ids": [')
            time.sleep(0.3)
        time.sleep(0.5)
        assert client.get("/auth-status").status_code == 200
    assert "Exception in ASGI application" not in caplog.text
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []


# -- HTML pages ---------------------------------------------------------------------------


def test_an_empty_simulator_index_says_how_to_start(simulator: SimulatorHandle) -> None:
    response = httpx.get(simulator.base_url.removesuffix("/api") + "/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "Calls (0)" in response.text and "No calls yet" in response.text
    assert "Campaigns (0)" in response.text


@pytest.mark.parametrize("path", ["/", "/dashboard", "/dashboard/"])
def test_the_index_lists_calls_and_campaigns_linking_to_each_call(
    simulator: SimulatorHandle, client: httpx.Client, path: str
) -> None:
    first = place(simulator)["id"]
    simulator.advance(60)
    second = client.post("/call", json={"phone_number": PARIS, "assistant_id": "a"}).json()["call"]["id"]
    contacts = [{"to_phone_number": "+33612345679"}]
    created = client.post(
        "/campaigns", json={"name": "<b>June</b>", "assistant_id": "a", "contacts": contacts}
    )
    campaign = created.json()["campaign"]["id"]
    origin = simulator.base_url.removesuffix("/api")
    response = httpx.get(origin + path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    links = re.findall(r'href="(/dashboard/calls/[^"]+)"', page)
    # Newest first: the campaign's order, then the two placed ones.
    assert links[1:] == [f"/dashboard/calls/{second}", f"/dashboard/calls/{first}"] and len(links) == 3
    assert "Calls (3)" in page and "Campaigns (1)" in page and campaign in page
    assert "&lt;b&gt;June&lt;/b&gt;" in page and "<b>June</b>" not in page
    followed = httpx.get(origin + links[-1])
    assert followed.status_code == 200 and first in followed.text and 'href="/dashboard"' in followed.text


def test_the_index_lists_the_newest_500_of_more(simulator: SimulatorHandle) -> None:
    for _ in range(501):
        place(simulator)
    page = httpx.get(simulator.base_url.removesuffix("/api") + "/dashboard").text
    assert "Calls (the newest 500 of 501)" in page
    assert len(re.findall(r'href="/dashboard/calls/', page)) == 500
