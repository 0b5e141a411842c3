"""What a triggerer with many hooks relies on: one shared TLS context, connections kept between polls."""

from __future__ import annotations

import json
import ssl

import pytest

from airflow_provider_revox.client.transport import KEEPALIVE_EXPIRY, shared_ssl_context
from airflow_provider_revox.hooks.revox import RevoxHook


async def test_every_client_of_every_hook_shares_one_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_REVOX_DEFAULT",
        json.dumps(
            {"conn_type": "revox", "host": "https://api.example/api", "password": "sk_test_0123456789"}
        ),
    )
    contexts = []
    for _ in range(3):
        async with RevoxHook() as hook:
            contexts.append(hook.get_conn()._transport._pool._ssl_context)  # type: ignore[attr-defined]
            contexts.append((await hook.aget_conn())._transport._pool._ssl_context)  # type: ignore[attr-defined]
    assert isinstance(contexts[0], ssl.SSLContext)
    assert all(context is shared_ssl_context() for context in contexts)
    # Still a verifying context: sharing it must not weaken certificate checks.
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED
    assert contexts[0].check_hostname is True


async def test_idle_connections_outlive_a_poll_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_REVOX_DEFAULT",
        json.dumps(
            {"conn_type": "revox", "host": "https://api.example/api", "password": "sk_test_0123456789"}
        ),
    )
    async with RevoxHook() as hook:
        expiries = [
            hook.get_conn()._transport._pool._keepalive_expiry,  # type: ignore[attr-defined]
            (await hook.aget_conn())._transport._pool._keepalive_expiry,  # type: ignore[attr-defined]
        ]
    # Longer than the default 30-s poke interval, so a polling sensor reuses its connection.
    assert expiries == [KEEPALIVE_EXPIRY, KEEPALIVE_EXPIRY]
    assert KEEPALIVE_EXPIRY > 30
