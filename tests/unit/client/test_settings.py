"""What a person reads when a connection is set up wrong: named, once, with the URL and the fix."""

from __future__ import annotations

import json
import logging
import socket

import pytest
from airflow.sdk import Connection

from airflow_provider_revox._internal.client import settings as settings_module
from airflow_provider_revox._internal.client.settings import settings_from_connection
from airflow_provider_revox.exceptions import RevoxRetriesExhaustedError
from airflow_provider_revox.hooks.revox import RevoxHook

KEY = "sk_test_connection_messages_0123456789"
LOGGER = "airflow_provider_revox._internal.hooks.revox"


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "_warned", set())


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == LOGGER]


def test_an_unknown_extra_is_named_once_with_the_closest_known_one(caplog: pytest.LogCaptureFixture) -> None:
    conn = Connection(
        conn_id="revox_typo",
        conn_type="revox",
        host="https://www.getrevox.com/api",
        password=KEY,
        extra=json.dumps({"timout": 5, "max_retries": 2, "zzz": 1}),
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        first = settings_from_connection(conn)
        settings_from_connection(conn)
    assert first.timeout == 60.0 and first.max_retries == 2
    assert warnings_of(caplog) == [
        "Revox connection 'revox_typo': extra 'timout' is not a setting of this provider, ignored; "
        "did you mean 'timeout'?",
        "Revox connection 'revox_typo': extra 'zzz' is not a setting of this provider, ignored; the "
        "extras it reads are adaptive_rate, allow_insecure_http, api_key, batch_polls, download_timeout, "
        "max_recording_mb, max_requests_per_second, max_response_mb, max_retries, timeout, "
        "webhook_base_url, webhook_previous_token, webhook_token",
    ]


def test_a_port_beside_a_full_base_url_is_named(caplog: pytest.LogCaptureFixture) -> None:
    conn = Connection(
        conn_id="revox_port", conn_type="revox", host="http://127.0.0.1/api", port=8089, password=KEY
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        settings = settings_from_connection(conn)
    assert settings.base_url == "http://127.0.0.1/api"
    assert warnings_of(caplog) == [
        "Revox connection 'revox_port': the Port field (8089) is ignored because the Base URL is a full "
        "URL (http://127.0.0.1/api); put the port in the Base URL, e.g. https://host:8443/api"
    ]
    assert KEY not in caplog.text


def test_a_known_extra_and_a_port_in_the_url_say_nothing(caplog: pytest.LogCaptureFixture) -> None:
    conn = Connection(
        conn_id="revox_ok",
        conn_type="revox",
        host="http://127.0.0.1:8089/api",
        port=8089,
        password=KEY,
        extra=json.dumps({"timeout": 5, "api_key": "ignored-because-password-wins"}),
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        settings_from_connection(conn)
    assert warnings_of(caplog) == []


def test_a_server_that_is_not_there_is_named_by_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_REVOX_GONE",
        json.dumps({"conn_type": "revox", "host": f"http://127.0.0.1:{port}/api", "password": KEY}),
    )
    hook = RevoxHook("revox_gone", max_retries=1, sleep=lambda seconds: None)
    with pytest.raises(RevoxRetriesExhaustedError) as raised:
        hook.get_call("c-1")
    message = str(raised.value)
    assert message.startswith(
        f"Revox API at http://127.0.0.1:{port} still failing after 2 tries; last error ConnectError"
    )
    assert KEY not in message
