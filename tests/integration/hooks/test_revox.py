"""RevoxHook end to end: real Airflow (``dag.test()``) and real HTTP over loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_revox.exceptions import RevoxAuthError, RevoxNotFoundError
from airflow_provider_revox.hooks.revox import RevoxHook
from tests.support.paths import FIXTURES

FIXTURES = FIXTURES
KEY = "rvx_test_loopback_key_5f1c2e"
CALLS = {
    "call_7f3a9c": FIXTURES / "current_spec_call.json",
    "call_flat_1": FIXTURES / "flat_retry_config_call.json",
    "id": FIXTURES / "reference_example.json",
}


class FixtureApi(BaseHTTPRequestHandler):
    """``GET /api/call/{id}`` and ``GET /api/auth-status`` served from ``tests/fixtures``."""

    seen: list[tuple[str, str | None]]

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        authorised = self.headers.get("Authorization") == f"Bearer {KEY}"
        if self.path == "/api/auth-status":
            self._answer(200, {"authenticated": authorised})
        elif not authorised:
            self._answer(401, {"error": "unauthorized"})
        elif self.path.startswith("/api/call/") and self.path[len("/api/call/") :] in CALLS:
            self._answer(200, json.loads(CALLS[self.path[len("/api/call/") :]].read_text()))
        else:
            self._answer(404, {"error": "not found"})

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def fixture_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """A fixture-serving API on 127.0.0.1, with ``revox_default`` pointing at it."""
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (FixtureApi,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/api"
    monkeypatch.setenv(
        "AIRFLOW_CONN_REVOX_DEFAULT", json.dumps({"conn_type": "revox", "host": base_url, "password": KEY})
    )
    try:
        yield base_url, seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


DAG_SOURCE = """
from airflow.sdk import dag, task

from airflow_provider_revox.hooks.revox import RevoxHook


@dag(dag_id="revox_hook_e2e", schedule=None)
def revox_hook_e2e():
    @task
    def fetch(**context):
        call_id = context["dag_run"].conf["call_id"]
        with RevoxHook() as hook:
            call = hook.get_call(call_id)
        result = {name: getattr(call, name) for name in ("id", "status", "outcome")}
        result.update(
            terminal=call.is_terminal,
            structured_output=call.result_structured_output,
            attempts=call.attempts_made,
            allowed_days=sorted(call.retry_policy.allowed_days),
            updated_at=call.updated_at.isoformat(),
        )
        return result

    fetch()


revox_hook_e2e()
"""


def xcom_of(dag_run: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key="return_value")
            .one()
        )
        value = row.value
    return json.loads(value) if isinstance(value, str) else value


@pytest.mark.airflow
def test_get_call_in_a_real_dag_over_loopback(
    run_dag: Callable[..., Any], fixture_api: tuple[str, list[tuple[str, str | None]]]
) -> None:
    _, seen = fixture_api
    dag_run = run_dag(DAG_SOURCE, "revox_hook_e2e", {"call_id": "call_7f3a9c"})

    assert str(dag_run.state) == "success"
    assert xcom_of(dag_run, "fetch") == {
        "id": "call_7f3a9c",
        "status": "post_processing",
        "terminal": False,
        "outcome": "interested",
        "structured_output": {"interest": "yes"},
        "attempts": 2,
        "allowed_days": [0, 2, 5],
        "updated_at": "2025-03-03T09:12:40.123000+00:00",
    }
    assert seen == [("/api/call/call_7f3a9c", f"Bearer {KEY}")]


def test_sync_and_async_over_loopback(fixture_api: tuple[str, list[tuple[str, str | None]]]) -> None:
    base_url, _ = fixture_api
    with RevoxHook() as hook:
        assert hook.base_url == base_url
        assert hook.get_call("id").status == "initializing"
        assert hook.get_call("call_flat_1").retry_policy.max_retry_attempts == 2
        assert hook.test_connection()[0] is True
        with pytest.raises(RevoxNotFoundError, match="'nope'"):
            hook.get_call("nope")


async def test_aget_call_over_loopback(fixture_api: tuple[str, list[tuple[str, str | None]]]) -> None:
    async with RevoxHook() as hook:
        call = await hook.aget_call("call_7f3a9c")
        ok, _ = await hook.atest_connection()
    assert call.outcome == "interested" and ok is True


def test_wrong_key_over_loopback(
    fixture_api: tuple[str, list[tuple[str, str | None]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, _ = fixture_api
    monkeypatch.setenv(
        "AIRFLOW_CONN_REVOX_DEFAULT",
        json.dumps({"conn_type": "revox", "host": base_url, "password": "rvx_wrong_key_000"}),
    )
    with RevoxHook() as hook:
        ok, message = hook.test_connection()
        assert ok is False and "this connection" in message and "revox_default" not in message
        with pytest.raises(RevoxAuthError):
            hook.get_call("call_7f3a9c")


# -- the same path against the embedded simulator -------------------------------------------


def _human_call(simulator: Any) -> str:
    import random

    from airflow_provider_revox._simulator.profile import HUMAN
    from airflow_provider_revox._simulator.timeline import OrderScript
    from airflow_provider_revox.testing import Profile

    script = OrderScript(attempts=(Profile().attempt_of_kind(HUMAN, random.Random(1)),))
    placed = simulator.place_call(phone_number="+33612345678", assistant_id="asst", script=script)
    return str(placed["id"])


@pytest.mark.airflow
def test_get_call_in_a_real_dag_against_the_simulator(run_dag: Callable[..., Any], revox_conn: Any) -> None:
    call_id = _human_call(revox_conn)
    revox_conn.advance(3 * 24 * 3600)
    expected = revox_conn.get_call(call_id)

    dag_run = run_dag(
        DAG_SOURCE.replace("revox_hook_e2e", "revox_hook_sim"), "revox_hook_sim", {"call_id": call_id}
    )

    assert str(dag_run.state) == "success"
    result = xcom_of(dag_run, "fetch")
    assert result["id"] == call_id
    assert result["status"] == expected["status"] == "completed"
    assert result["terminal"] is True
    assert result["attempts"] == expected["calls_count"] == 1


async def test_aget_call_against_the_simulator(revox_conn: Any) -> None:
    call_id = _human_call(revox_conn)
    async with RevoxHook() as hook:
        before = await hook.aget_call(call_id)
        revox_conn.advance(3 * 24 * 3600)
        after = await hook.aget_call(call_id)
        ok, _ = await hook.atest_connection()
    assert not before.is_terminal
    assert after.status == "completed" and after.is_terminal
    assert after.last_attempt is not None and after.last_attempt.reached_human
    assert ok is True
