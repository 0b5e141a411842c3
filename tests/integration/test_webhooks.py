"""The webhook endpoint as the api-server serves it: Airflow's api-server app mounts the provider's
plugin, uvicorn serves it on loopback, and a webhook becomes an asset event in the metadata database."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_revox._internal.core.webhook import new_token
from airflow_provider_revox._internal.webhooks.airflow import asset_recorder, connection_tokens
from airflow_provider_revox._internal.webhooks.app import CachedTokens, create_app
from tests.support.serve import serving

ASSET = "revox_calls_finished"
TOKEN = new_token()


def webhook_events(asset_name: str = ASSET) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == asset_name)
            .order_by(AssetEvent.id)
        ).all()
        return [dict(row.extra or {}) for row in rows if (row.extra or {}).get("from_webhook")]


def ensure_asset(name: str = ASSET) -> None:
    from airflow.models.asset import AssetActive, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        if session.scalar(select(AssetModel).where(AssetModel.name == name)) is None:
            asset = AssetModel(name=name, uri=name)
            session.add(asset)
            session.flush()
            session.add(AssetActive.for_asset(asset))


@pytest.fixture
def webhook_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    extra = {"webhook_token": TOKEN, "webhook_base_url": "https://airflow.example.com"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_REVOX_DEFAULT",
        json.dumps({"conn_type": "revox", "password": "sk-test", "extra": extra}),
    )
    return TOKEN


@pytest.fixture
def endpoint(airflow_db: Path, webhook_conn: str) -> Iterator[str]:
    """Airflow's own api-server app (its routes, middlewares and plugins), served by uvicorn."""
    from airflow.api_fastapi.app import create_app

    ensure_asset()
    api_server = create_app("core")
    mounted = [route.path for route in api_server.routes]
    assert "/revox" in mounted
    with serving(api_server) as base:
        yield f"{base}/revox/webhooks"


def test_a_webhook_becomes_one_asset_event_naming_its_calls(endpoint: str, webhook_conn: str) -> None:
    before = len(webhook_events())
    body = {"type": "call.completed", "call": {"id": "call_a", "status": "completed"}, "call_ids": ["call_b"]}
    response = httpx.post(f"{endpoint}/{webhook_conn}", json=body)
    assert response.status_code == 202 and response.json() == {"recorded": 2}
    events = webhook_events()[before:]
    assert events == [
        {
            "from_webhook": True,
            "payload": {
                "calls": [
                    {"id": "call_b", "announced": True},
                    {"id": "call_a", "announced": True, "status": "completed"},
                ],
                "count": 2,
            },
        }
    ]


def test_a_wrong_or_missing_token_gets_401_is_logged_without_it_and_records_nothing(
    endpoint: str, webhook_conn: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = len(webhook_events())
    wrong = webhook_conn[:-4] + "AAAA"
    with caplog.at_level(logging.WARNING):
        assert httpx.post(f"{endpoint}/{wrong}", json={"call_id": "call_x"}).status_code == 401
        assert httpx.post(endpoint, json={"call_id": "call_x"}).status_code == 401
        assert httpx.post(f"{endpoint}/", json={"call_id": "call_x"}).status_code == 401
        assert httpx.post(endpoint, params={"token": wrong}, json={"call_id": "call_x"}).status_code == 401
        assert httpx.post(endpoint, params={"token": ""}, json={"call_id": "call_x"}).status_code == 401
    assert "wrong or missing token" in caplog.text
    assert wrong not in caplog.text and webhook_conn not in caplog.text
    assert len(webhook_events()) == before


def finished(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The access log's lines among captured structlog events."""
    return [e for e in logs if e.get("event") == "request finished"]


def test_the_url_the_hook_gives_works_and_airflows_access_log_masks_its_token(
    endpoint: str, webhook_conn: str
) -> None:
    import structlog

    from airflow_provider_revox.hooks.revox import RevoxHook

    url = RevoxHook().webhook_url()
    assert url == f"https://airflow.example.com/revox/webhooks?token={webhook_conn}"
    wrong = webhook_conn[:-4] + "AAAA"
    before = len(webhook_events())
    with structlog.testing.capture_logs() as logs:
        query = httpx.post(f"{endpoint}?{url.split('?', 1)[1]}&x=1", json={"call_id": "call_q"})
        path = httpx.post(f"{endpoint}/{webhook_conn}", json={"call_id": "call_p"})
        refused = httpx.post(f"{endpoint}/{wrong}", json={"call_id": "call_w"})
        # The server writes a request's access line just after its answer: wait for the last.
        deadline = time.monotonic() + 10
        while len(finished(logs)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert (query.status_code, path.status_code, refused.status_code) == (202, 202, 401)
    named = [[call["id"] for call in event["payload"]["calls"]] for event in webhook_events()[before:]]
    assert named == [["call_q"], ["call_p"]]
    access = [(e["path"], e["query"]) for e in finished(logs)]
    # Both forms' tokens are masked on every Airflow version (3.2's access log masks no query value).
    assert access == [
        ("/revox/webhooks", "token=%2A%2A%2A&x=1"),
        ("/revox/webhooks/***", ""),
        ("/revox/webhooks/***", ""),
    ]
    assert webhook_conn not in repr(logs) and wrong not in repr(logs)


def test_a_body_over_one_mib_is_refused_whole_or_streamed(endpoint: str, webhook_conn: str) -> None:
    before = len(webhook_events())
    big = b'{"call_id": "call_big", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert httpx.post(f"{endpoint}/{webhook_conn}", content=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"call_id": "call_big", "pad": "'
        for _ in range(300):
            yield b"y" * 4096
        yield b'"}'

    assert httpx.post(f"{endpoint}/{webhook_conn}", content=chunks()).status_code == 413
    assert len(webhook_events()) == before


def test_an_unknown_shape_is_accepted_logged_once_and_records_nothing(
    endpoint: str, webhook_conn: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = len(webhook_events())
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            response = httpx.post(f"{endpoint}/{webhook_conn}", json={"hello": {"world": 1}})
            assert response.status_code == 202 and response.json() == {"recorded": 0}
    assert caplog.text.count("naming no call id") == 1
    assert httpx.post(f"{endpoint}/{webhook_conn}", content=b"not json").status_code == 400
    assert len(webhook_events()) == before


def test_the_previous_token_is_accepted_during_a_rotation(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current, previous = new_token(), new_token()
    extra = {"webhook_token": current, "webhook_previous_token": previous}
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_ROTATING", json.dumps({"conn_type": "revox", "extra": extra}))
    recorded: list[list[dict[str, Any]]] = []

    def record(calls: list[dict[str, Any]]) -> bool:
        recorded.append(calls)
        return True

    app = create_app(CachedTokens(lambda: connection_tokens("revox_rotating"), ttl=0), record)
    with serving(app) as base:
        for token in (current, previous, new_token()):
            httpx.post(f"{base}/webhooks/{token}", json={"call_id": "call_r"})
    assert recorded == [[{"id": "call_r", "announced": True}]] * 2


def test_an_event_that_cannot_be_stored_gets_503_so_the_sender_retries(airflow_db: Path) -> None:
    ensure_asset()
    token = new_token()
    app = create_app(lambda: [token], asset_recorder("no_such_asset"))
    with serving(app) as base:
        missing = httpx.post(f"{base}/webhooks/{token}", json={"call_id": "call_m"})
    # An Asset not deployed yet is not a failure of the sender: accepted, the poll reconciles.
    assert missing.status_code == 202

    def broken(calls: list[dict[str, Any]]) -> bool:
        return False

    with serving(create_app(lambda: [token], broken)) as base:
        assert httpx.post(f"{base}/webhooks/{token}", json={"call_id": "call_m"}).status_code == 503
