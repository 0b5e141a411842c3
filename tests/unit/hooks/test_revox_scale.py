"""What a triggerer with many hooks relies on: one shared TLS context, connections kept between polls."""

from __future__ import annotations

import ssl

import pytest
from airflow.sdk import Connection

from airflow_provider_revox._internal.client.settings import settings_from_connection
from airflow_provider_revox._internal.client.transport import (
    KEEPALIVE_EXPIRY,
    client_options,
    shared_ssl_context,
)
from airflow_provider_revox.hooks.revox import RevoxHook
from tests.support.crafted_api import conn_json, crafted_api, orders


def test_every_client_shares_one_verifying_tls_context_and_keeps_idle_connections() -> None:
    conn = Connection(
        conn_id="revox_a", conn_type="revox", host="https://api.example/api", password="sk_0123"
    )
    options = [client_options(settings_from_connection(conn)) for _ in range(3)]
    contexts = [option["verify"] for option in options]
    assert all(context is shared_ssl_context() for context in contexts)
    # Still a verifying context: sharing it must not weaken certificate checks.
    assert isinstance(contexts[0], ssl.SSLContext)
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname is True
    # Longer than the default 30-s poke interval, so a polling sensor reuses its connection.
    assert [option["limits"].keepalive_expiry for option in options] == [KEEPALIVE_EXPIRY] * 3
    assert KEEPALIVE_EXPIRY > 30


async def test_polls_of_one_hook_reuse_one_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    with crafted_api(orders) as api:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", conn_json(api.base_url, "sk_test_0123456789"))
        async with RevoxHook() as hook:
            for index in range(5):
                assert hook.get_call(f"call_{index}").id == f"call_{index}"
                assert (await hook.aget_call(f"call_{index}")).id == f"call_{index}"
    # One connection for the sync client and one for the async client, kept across the polls.
    assert (len(api.requests), api.connection_count) == (10, 2)
