"""RevoxHook error paths, retries and key safety, against ``httpx.MockTransport``."""

from __future__ import annotations

import email.utils
import json
import logging
import pickle
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from airflow.sdk import Connection

from airflow_provider_revox._internal.client.requests import validate_call_id
from airflow_provider_revox._internal.client.retry import parse_retry_after
from airflow_provider_revox._internal.client.settings import settings_from_connection
from airflow_provider_revox._internal.hooks import revox as revox_hook
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox.exceptions import (
    RevoxApiError,
    RevoxAuthError,
    RevoxConfigError,
    RevoxError,
    RevoxInsecureConnectionError,
    RevoxNotFoundError,
    RevoxResponseError,
    RevoxRetriesExhaustedError,
)
from tests.support.paths import FIXTURES

KEY = "rvx_live_9f8e7d6c5b4a_SuperSecret"
CALL = json.loads((FIXTURES / "current_spec_call.json").read_text())
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers from a script and records every request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def ok_call(request: httpx.Request) -> httpx.Response:
    """The fixture order, under the id the request asked for."""
    asked = request.url.path.removeprefix("/api/call/")
    call_id = asked if asked and "/" not in asked and request.method == "GET" else CALL["call"]["id"]
    return httpx.Response(200, json={"call": {**CALL["call"], "id": call_id}})


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set ``revox_default`` from the environment; call again to change it."""

    def _set(
        host: str | None = "https://api.revox.test/api", password: str | None = KEY, **extra: Any
    ) -> None:
        body: dict[str, Any] = {"conn_type": "revox"}
        if host is not None:
            body["host"] = host
        if password is not None:
            body["password"] = password
        if extra:
            body["extra"] = extra
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", json.dumps(body))

    _set()
    return _set


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Record every retry wait instead of sleeping."""
    waits: list[float] = []

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    async def no_wait(seconds: float) -> None:
        pass

    monkeypatch.setattr(revox_hook, "retry_sleep", waits.append)
    monkeypatch.setattr(revox_hook, "retry_asleep", asleep)
    # The rate limit's own waits (a 429 cuts the connection's rate) are not retry waits.
    monkeypatch.setattr(revox_hook, "rate_sleep", lambda seconds: None)
    monkeypatch.setattr(revox_hook, "rate_asleep", no_wait)
    yield waits


# -- happy path ------------------------------------------------------------------------------


def test_get_call_sends_bearer_to_the_call_path(conn: Any) -> None:
    recorder = Recorder(ok_call)
    with RevoxHook(transport=recorder.transport) as hook:
        call = hook.get_call("call_7f3a9c")

    assert call.id == "call_7f3a9c" and call.status == "post_processing"
    request = recorder.requests[0]
    assert str(request.url) == "https://api.revox.test/api/call/call_7f3a9c"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["user-agent"].startswith("airflow-provider-revox/")


async def test_aget_call(conn: Any) -> None:
    recorder = Recorder(ok_call)
    async with RevoxHook(transport=recorder.transport) as hook:
        call = await hook.aget_call("call_7f3a9c")
        client = await hook.aget_conn()
        assert await hook.aget_conn() is client

    assert call.outcome == "interested"
    assert client.is_closed
    assert recorder.requests[0].url.path == "/api/call/call_7f3a9c"


async def test_async_lookup_falls_back_to_sync_connection(conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def unavailable(conn_id: str) -> Any:
        raise RuntimeError("no supervisor")

    hook = RevoxHook(transport=Recorder(ok_call).transport)
    monkeypatch.setattr(hook, "aget_connection", unavailable)
    assert (await hook.aget_call("call_7f3a9c")).id == "call_7f3a9c"
    assert hook.base_url == "https://api.revox.test/api"
    await hook.aclose()


def test_one_client_reused_and_reopened_after_close(conn: Any) -> None:
    recorder = Recorder(ok_call)
    hook = RevoxHook(transport=recorder.transport)
    first = hook.get_conn()
    hook.get_call("call_7f3a9c")
    hook.get_call("call_7f3a9c")
    assert hook.get_conn() is first
    hook.close()
    assert first.is_closed
    assert hook.get_call("call_7f3a9c").id == "call_7f3a9c"
    assert hook.get_conn() is not first
    hook.close()


def test_place_call_posts_the_payload(conn: Any) -> None:
    recorder = Recorder(ok_call)
    with RevoxHook(transport=recorder.transport) as hook:
        call = hook.place_call(phone_number="+33612345678", assistant_id="asst_hello")
    request = recorder.requests[0]
    assert (request.method, request.url.path) == ("POST", "/api/call")
    assert json.loads(request.content) == {"phone_number": "+33612345678", "assistant_id": "asst_hello"}
    assert call.id == "call_7f3a9c"


def test_cancel_call_returns_the_order_even_after_a_bare_acknowledgement(conn: Any) -> None:
    recorder = Recorder(httpx.Response(200, json={"success": True}), ok_call)
    with RevoxHook(transport=recorder.transport) as hook:
        call = hook.cancel_call("call_7f3a9c")
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("POST", "/api/call/call_7f3a9c/cancel"),
        ("GET", "/api/call/call_7f3a9c"),
    ]
    assert call.id == "call_7f3a9c"


# -- the status table ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key(conn: Any, status: int) -> None:
    recorder = Recorder(httpx.Response(status, json={"error": f"bad key {KEY}"}))
    with RevoxHook(transport=recorder.transport) as hook, pytest.raises(RevoxAuthError) as caught:
        hook.get_call("call_7f3a9c")
    assert caught.value.status_code == status
    assert caught.value.conn_id == "revox_default"
    assert "'revox_default'" in str(caught.value) and "rejected" in str(caught.value)
    assert KEY not in str(caught.value)
    assert len(recorder.requests) == 1


def test_not_found_names_the_call(conn: Any) -> None:
    with (
        RevoxHook(transport=Recorder(httpx.Response(404, json={"error": "nope"})).transport) as hook,
        pytest.raises(RevoxNotFoundError, match="'call_missing'") as caught,
    ):
        hook.get_call("call_missing")
    assert caught.value.status_code == 404
    assert caught.value.call_id == "call_missing"


_ECHO = json.dumps({"error": "invalid", "echo": f"Authorization: Bearer {KEY}", "pad": "x" * 400})
_HTML = "<html><body>Gateway says hello " + "y" * 500 + "</body></html>"


@pytest.mark.parametrize(
    ("status", "body", "error", "fragments"),
    [
        (422, _ECHO, RevoxApiError, ["HTTP 422", '"error": "invalid"', "Authorization: ***"]),
        (200, _HTML, RevoxResponseError, ["not JSON", "<html><body>Gateway says hello"]),
    ],
)
def test_error_bodies_are_quoted_redacted_and_cut(
    conn: Any, status: int, body: str, error: type[RevoxError], fragments: list[str]
) -> None:
    with (
        RevoxHook(transport=Recorder(httpx.Response(status, text=body)).transport) as hook,
        pytest.raises(error) as caught,
    ):
        hook.get_call("call_7f3a9c")
    message = str(caught.value)
    assert caught.value.status_code == status
    assert [fragment in message for fragment in fragments] == [True] * len(fragments)
    assert KEY not in message
    assert "x" * 201 not in message and "y" * 200 not in message


@pytest.mark.parametrize("body", [[1, 2], {"call": {"status": "calling"}}, "just text"])
def test_json_that_is_not_a_call(conn: Any, body: Any) -> None:
    with (
        RevoxHook(transport=Recorder(httpx.Response(200, json=body)).transport) as hook,
        pytest.raises(RevoxResponseError, match="not a call order") as caught,
    ):
        hook.get_call("call_7f3a9c")
    assert caught.value.status_code == 200


def test_errors_are_revox_errors_and_survive_pickling() -> None:
    error = RevoxRetriesExhaustedError("gave up", attempts=4, status_code=503)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, RevoxError)
    assert (str(copy), copy.attempts, copy.status_code) == ("gave up", 4, 503)
    auth = pickle.loads(pickle.dumps(RevoxAuthError("no", conn_id="x", status_code=401)))
    assert (auth.conn_id, auth.status_code) == ("x", 401)
    path, args, kwargs = RevoxNotFoundError("gone", call_id="c9").serialize()
    assert path == "airflow_provider_revox.exceptions.RevoxNotFoundError"
    assert RevoxNotFoundError(*args, **kwargs).call_id == "c9"


# -- retries ---------------------------------------------------------------------------------


def test_retry_after_seconds_is_honoured(conn: Any, sleeps: list[float]) -> None:
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "7"}), ok_call)
    with RevoxHook(transport=recorder.transport) as hook:
        assert hook.get_call("call_7f3a9c").id == "call_7f3a9c"
    assert sleeps == [7.0]
    assert len(recorder.requests) == 2


def test_retry_after_http_date_is_honoured(conn: Any, sleeps: list[float]) -> None:
    when = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    recorder = Recorder(httpx.Response(503, headers={"Retry-After": when}), ok_call)
    with RevoxHook(transport=recorder.transport) as hook:
        hook.get_call("call_7f3a9c")
    # The header has whole-second precision and the clock moves on while the test runs.
    assert len(sleeps) == 1 and 28.0 <= sleeps[0] <= 30.0


def test_retry_after_ms_and_cap(conn: Any, sleeps: list[float]) -> None:
    recorder = Recorder(
        httpx.Response(503, headers={"retry-after-ms": "1500", "Retry-After": "9"}),
        httpx.Response(502, headers={"Retry-After": "3600"}),
        ok_call,
    )
    with RevoxHook(transport=recorder.transport) as hook:
        hook.get_call("call_7f3a9c")
    assert sleeps == [1.5, 60.0]


def test_parse_retry_after_date_exactly() -> None:
    now = datetime(2025, 3, 3, 10, 0, 0, tzinfo=timezone.utc)
    headers = httpx.Headers({"Retry-After": "Mon, 03 Mar 2025 10:00:12 GMT"})
    assert parse_retry_after(headers, now=now) == 12.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "Mon, 03 Mar 2025 09:00:00 GMT"}), now=now) == 0.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"}), now=now) is None
    assert parse_retry_after(httpx.Headers({}), now=now) is None


def test_backoff_without_retry_after_grows_with_jitter(conn: Any, sleeps: list[float]) -> None:
    recorder = Recorder(*([httpx.Response(500)] * 5), ok_call)
    with RevoxHook(transport=recorder.transport) as hook:
        hook.get_call("call_7f3a9c")
    bases = [0.5, 1.0, 2.0, 4.0, 8.0]
    assert len(sleeps) == 5
    for wait, base in zip(sleeps, bases, strict=True):
        assert base <= wait <= base + 0.5


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.ConnectTimeout("slow"),
        httpx.RemoteProtocolError("peer closed connection"),
        httpx.ReadError("reset"),
    ],
)
def test_transport_errors_are_retried(conn: Any, sleeps: list[float], error: Exception) -> None:
    recorder = Recorder(error, ok_call)
    with RevoxHook(transport=recorder.transport) as hook:
        assert hook.get_call("call_7f3a9c").id == "call_7f3a9c"
    assert len(recorder.requests) == 2 and len(sleeps) == 1


def test_exhausted_retries_on_status(conn: Any, sleeps: list[float]) -> None:
    recorder = Recorder(httpx.Response(503, text="maintenance"))
    with (
        RevoxHook(max_retries=2, transport=recorder.transport) as hook,
        pytest.raises(RevoxRetriesExhaustedError) as caught,
    ):
        hook.get_call("call_7f3a9c")
    assert len(recorder.requests) == 3 and len(sleeps) == 2
    assert caught.value.attempts == 3 and caught.value.status_code == 503
    assert "after 3 tries" in str(caught.value) and "last status 503" in str(caught.value)


def test_exhausted_retries_on_transport_error(conn: Any, sleeps: list[float]) -> None:
    recorder = Recorder(httpx.ConnectError("connection refused"))
    with (
        RevoxHook(max_retries=1, transport=recorder.transport) as hook,
        pytest.raises(RevoxRetriesExhaustedError) as caught,
    ):
        hook.get_call("call_7f3a9c")
    assert caught.value.attempts == 2 and caught.value.status_code is None
    assert "ConnectError: connection refused" in str(caught.value)


async def test_async_retries_share_the_policy(conn: Any, sleeps: list[float]) -> None:
    recorder = Recorder(httpx.Response(503, headers={"Retry-After": "4"}), httpx.ReadError("reset"), ok_call)
    async with RevoxHook(transport=recorder.transport) as hook:
        assert (await hook.aget_call("call_7f3a9c")).id == "call_7f3a9c"
    assert sleeps[0] == 4.0 and len(sleeps) == 2
    async with RevoxHook(max_retries=0, transport=Recorder(httpx.Response(500)).transport) as hook:
        with pytest.raises(RevoxRetriesExhaustedError, match="after 1 tries"):
            await hook.aget_call("call_7f3a9c")


async def test_retry_sleeps_can_be_passed_in(conn: Any) -> None:
    waits: list[float] = []

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    def busy_then_ok() -> httpx.MockTransport:
        return Recorder(httpx.Response(503, headers={"Retry-After": "2"}), ok_call).transport

    hook = RevoxHook(transport=busy_then_ok(), sleep=waits.append, asleep=asleep)
    assert hook.get_call("call_7f3a9c").id == "call_7f3a9c"
    async with RevoxHook(transport=busy_then_ok(), sleep=waits.append, asleep=asleep) as other:
        assert (await other.aget_call("call_7f3a9c")).id == "call_7f3a9c"
    hook.close()
    assert waits == [2.0, 2.0]


def test_max_retries_from_extra_and_argument_wins(conn: Any, sleeps: list[float]) -> None:
    # Numbers typed in the UI form arrive as text, spaces and all.
    conn(max_retries="3", timeout=" 12.5 ")
    recorder = Recorder(httpx.Response(500))
    hook = RevoxHook(transport=recorder.transport)
    with pytest.raises(RevoxRetriesExhaustedError):
        hook.get_call("call_7f3a9c")
    assert len(recorder.requests) == 4
    timeout = hook.get_conn().timeout
    assert (timeout.read, timeout.connect) == (12.5, 5.0)
    hook.close()

    recorder = Recorder(httpx.Response(500))
    hook = RevoxHook(max_retries=0, timeout=3, transport=recorder.transport)
    with pytest.raises(RevoxRetriesExhaustedError):
        hook.get_call("call_7f3a9c")
    assert len(recorder.requests) == 1
    assert hook.get_conn().timeout.read == 3.0 and hook.get_conn().timeout.connect == 3.0
    hook.close()


def test_defaults_timeout_and_retries(conn: Any) -> None:
    hook = RevoxHook()
    timeout = hook.get_conn().timeout
    assert (timeout.read, timeout.connect) == (60.0, 5.0)
    assert hook._resolve().max_retries == 5
    hook.close()


@pytest.mark.parametrize(
    ("extra", "message"), [({"timeout": "soon"}, "timeout"), ({"max_retries": -1}, "max_retries")]
)
def test_bad_extras_are_named(conn: Any, extra: dict[str, Any], message: str) -> None:
    conn(**extra)
    with pytest.raises(ValueError, match=message):
        RevoxHook().get_call("call_7f3a9c")


def test_post_is_not_resent_after_a_timeout(conn: Any, sleeps: list[float]) -> None:
    recorder = Recorder(httpx.ReadTimeout("slow"), ok_call)
    with RevoxHook(transport=recorder.transport) as hook, pytest.raises(RevoxError, match="not retried"):
        hook.place_call(phone_number="+33612345678", assistant_id="asst_hello")
    assert len(recorder.requests) == 1 and sleeps == []


def test_post_is_resent_after_429_and_refused_connection(conn: Any, sleeps: list[float]) -> None:
    recorder = Recorder(
        httpx.Response(429, headers={"Retry-After": "1"}), httpx.ConnectError("refused"), ok_call
    )
    with RevoxHook(transport=recorder.transport) as hook:
        assert hook.place_call(phone_number="+33612345678", assistant_id="asst_hello").id == "call_7f3a9c"
    assert len(recorder.requests) == 3


def test_each_retry_is_logged_at_debug_without_key(
    conn: Any, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(httpx.Response(503, headers={"Retry-After": "7"}), httpx.Response(401, text=KEY))
    with (
        caplog.at_level(logging.DEBUG),
        RevoxHook(transport=recorder.transport) as hook,
        pytest.raises(RevoxAuthError),
    ):
        hook.get_call("call_7f3a9c")
    retries = [r for r in caplog.records if "attempt 1 of 6" in r.getMessage()]
    assert [(r.levelno, "status 503" in r.getMessage(), "7.00 s" in r.getMessage()) for r in retries] == [
        (logging.DEBUG, True, True)
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "attempt" in r.getMessage()]
    assert KEY not in caplog.text


# -- the key never leaks ---------------------------------------------------------------------


def test_key_absent_from_reprs_and_errors(
    conn: Any, caplog: pytest.LogCaptureFixture, sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = Recorder(
        httpx.Response(500, text=f"token={KEY}"),
        httpx.ConnectError(f"could not reach with {KEY}"),
    )
    hook = RevoxHook(max_retries=1, transport=recorder.transport)
    with caplog.at_level(logging.DEBUG), pytest.raises(RevoxRetriesExhaustedError) as caught:
        hook.get_call("call_7f3a9c")
    client = hook.get_conn()
    texts = [
        repr(hook),
        str(hook),
        repr(client),
        repr(client.headers),
        repr(hook._resolve()),
        str(caught.value),
    ]
    printed = capsys.readouterr()
    texts += [
        repr(recorder.requests[0]),
        repr(recorder.requests[0].headers),
        caplog.text,
        printed.out,
        printed.err,
    ]
    assert "attempt 1 of 2" in caplog.text
    for text in texts:
        assert KEY not in text, text
    assert "***" in str(caught.value)
    hook.close()


def test_key_is_registered_with_the_secrets_masker(conn: Any) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    RevoxHook().base_url  # noqa: B018  (resolves the connection)
    assert KEY not in str(redact(f"the key is {KEY}"))


def test_missing_key_names_the_connection(conn: Any) -> None:
    conn(password=None)
    recorder = Recorder(ok_call)
    with pytest.raises(RevoxAuthError, match="'revox_default' has no API key"):
        RevoxHook(transport=recorder.transport).get_call("call_7f3a9c")
    assert recorder.requests == []


def test_key_from_extra(conn: Any) -> None:
    conn(password=None, api_key=KEY)
    recorder = Recorder(ok_call)
    RevoxHook(transport=recorder.transport).get_call("call_7f3a9c")
    assert recorder.requests[0].headers["authorization"] == f"Bearer {KEY}"


# -- unusable connections are named before any request ----------------------------------------


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"timeout": 1e300}, "'timeout'"),
        ({"timeout": "inf"}, "'timeout'"),
        ({"timeout": float("inf")}, "'timeout'"),
        ({"max_requests_per_second": 1e-300}, "'max_requests_per_second'"),
        ({"max_retries": "3.5"}, "'max_retries'"),
        ({"max_retries": 3.5}, "'max_retries'"),
        ({"max_retries": "abc"}, "'max_retries'"),
        ({"max_retries": True}, "'max_retries'"),
        ({"max_response_mb": 0}, "'max_response_mb'"),
        ({"download_timeout": -1}, "'download_timeout'"),
    ],
)
def test_unusable_extras_are_named_before_any_request(conn: Any, extra: dict[str, Any], problem: str) -> None:
    conn(**extra)
    recorder = Recorder(ok_call)
    with pytest.raises(RevoxConfigError, match=problem) as caught:
        RevoxHook(transport=recorder.transport).get_call("call_7f3a9c")
    assert isinstance(caught.value, ValueError) and "'revox_default'" in str(caught.value)
    assert recorder.requests == []


def test_an_extra_that_is_a_json_list_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"conn_type": "revox", "host": "https://api.revox.test/api", "password": KEY, "extra": [1, 2]}
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", json.dumps(body))
    with pytest.raises(RevoxConfigError, match="extra must be a JSON object"):
        RevoxHook(transport=Recorder(ok_call).transport).get_call("call_7f3a9c")


def test_a_blank_password_does_not_hide_the_extra_key(conn: Any) -> None:
    conn(password="   ", api_key=KEY)
    recorder = Recorder(ok_call)
    RevoxHook(transport=recorder.transport).get_call("call_7f3a9c")
    assert recorder.requests[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("call_ids", [[], "call_a"])
def test_a_search_for_no_ids_is_refused(conn: Any, call_ids: Any) -> None:
    recorder = Recorder(ok_call)
    with pytest.raises(RevoxConfigError, match="call_ids"):
        RevoxHook(transport=recorder.transport).search_calls(call_ids)
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("addresses", "loopback"), [(["127.0.0.1", "::1"], True), (["10.0.0.5"], False), ([], False)]
)
def test_a_dot_localhost_name_counts_as_loopback_only_if_it_resolves_there(
    addresses: list[str], loopback: bool
) -> None:
    conn = Connection(conn_id="revox_dev", conn_type="revox", host="http://api.localhost:8089", password=KEY)
    if loopback:
        assert settings_from_connection(conn, resolve=lambda name: addresses).base_url.startswith("http://")
    else:
        with pytest.raises(RevoxInsecureConnectionError, match=r"api\.localhost"):
            settings_from_connection(conn, resolve=lambda name: addresses)


@pytest.mark.parametrize(
    "host", ["https://someone:pa55-w0rd@api.revox.test/api", "someone:pa55-w0rd@api.revox.test/api"]
)
async def test_a_base_url_with_a_password_is_refused_without_showing_it(conn: Any, host: str) -> None:
    conn(host=host)
    recorder = Recorder(ok_call)
    hook = RevoxHook(transport=recorder.transport)
    with pytest.raises(RevoxConfigError, match="user name or password") as caught:
        hook.get_call("call_7f3a9c")
    ok, message = hook.test_connection()
    aok, amessage = await hook.atest_connection()
    assert ok is False and aok is False and "user name or password" in message
    for text in (str(caught.value), message, amessage, repr(hook)):
        assert "pa55-w0rd" not in text and "someone" not in text
    assert recorder.requests == []


# -- bad input never reaches the network -----------------------------------------------------

BAD_IDS = [
    (None, "string"),
    (42, "string"),
    ("", "empty"),
    ("   ", "empty"),
    ("a" * 129, "129 characters"),
    ("a/b", "'/'"),
    ("a?b=1", "'\\?'"),
    ("a#b", "'#'"),
    (".", "only dots"),
    ("..", "only dots"),
    ("a..b", "'\\.\\.'"),
    ("a%2Fb", "'%'"),
    ("a b", "whitespace"),
    ("a\u00a0b", "whitespace"),
    ("a\x00b", "control"),
    ("a\nb", "control"),
    ("a\x7fb", "control"),
]


@pytest.mark.parametrize(("call_id", "problem"), BAD_IDS)
async def test_bad_call_ids_never_reach_the_network(conn: Any, call_id: Any, problem: str) -> None:
    recorder = Recorder(ok_call)
    hook = RevoxHook(transport=recorder.transport)
    with pytest.raises(ValueError, match=problem):
        hook.get_call(call_id)
    with pytest.raises(ValueError, match=problem):
        await hook.aget_call(call_id)
    with pytest.raises(ValueError, match=problem):
        hook.cancel_call(call_id)
    assert recorder.requests == []
    await hook.aclose()


def test_good_call_ids_pass() -> None:
    for good in ("call_7f3a9c", "a" * 128, "0b1e-4c2d.x", "ID:12"):
        assert validate_call_id(good) == good


# -- plain http ------------------------------------------------------------------------------


def test_plain_http_to_a_remote_host_is_refused(conn: Any) -> None:
    conn(host="http://api.revox.test/api")
    recorder = Recorder(ok_call)
    with pytest.raises(RevoxInsecureConnectionError, match="allow_insecure_http") as caught:
        RevoxHook(transport=recorder.transport).get_call("call_7f3a9c")
    assert "plain http" in str(caught.value) and "api.revox.test" in str(caught.value)
    assert recorder.requests == []


def test_plain_http_allowed_by_extra(conn: Any) -> None:
    conn(host="http://api.revox.test/api", allow_insecure_http=True)
    recorder = Recorder(ok_call)
    RevoxHook(transport=recorder.transport).get_call("call_7f3a9c")
    assert str(recorder.requests[0].url) == "http://api.revox.test/api/call/call_7f3a9c"


@pytest.mark.parametrize(
    "host", ["http://127.0.0.1:8089", "http://127.3.2.1/api", "http://localhost:9", "http://[::1]:80"]
)
def test_plain_http_to_loopback_is_fine(conn: Any, host: str) -> None:
    conn(host=host)
    recorder = Recorder(ok_call)
    RevoxHook(transport=recorder.transport).get_call("call_7f3a9c")
    assert recorder.requests[0].url.scheme == "http"


# -- base URL and connection forms -----------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, "https://www.getrevox.com/api"),
        ("", "https://www.getrevox.com/api"),
        ("www.getrevox.com/api", "https://www.getrevox.com/api"),
        ("https://eu.getrevox.com/api/", "https://eu.getrevox.com/api"),
        ("http://127.0.0.1:8089", "http://127.0.0.1:8089"),
    ],
)
def test_base_url_from_host(conn: Any, host: str | None, expected: str) -> None:
    conn(host=host)
    assert RevoxHook().base_url == expected


def test_schema_http_sets_the_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_REVOX_DEFAULT",
        json.dumps(
            {"conn_type": "revox", "host": "127.0.0.1", "port": 8089, "schema": "http", "password": KEY}
        ),
    )
    assert RevoxHook().base_url == "http://127.0.0.1:8089"


def test_uri_connection_keeps_the_api_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow parses revox://:KEY@www.getrevox.com/api into host "www.getrevox.com", schema "api".
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", f"revox://:{KEY}@www.getrevox.com/api")
    recorder = Recorder(ok_call)
    hook = RevoxHook(transport=recorder.transport)
    assert hook.base_url == "https://www.getrevox.com/api"
    hook.get_call("call_7f3a9c")
    assert str(recorder.requests[0].url) == "https://www.getrevox.com/api/call/call_7f3a9c"
    assert recorder.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_uri_connection_with_port_and_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", f"revox://:{KEY}@127.0.0.1:8089/api?max_retries=0")
    hook = RevoxHook()
    assert hook.base_url == "https://127.0.0.1:8089/api"
    assert hook._resolve().max_retries == 0


def test_json_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_REVOX_DEFAULT",
        json.dumps({"conn_type": "revox", "host": "www.getrevox.com/api", "password": KEY}),
    )
    recorder = Recorder(ok_call)
    RevoxHook(transport=recorder.transport).get_call("call_7f3a9c")
    assert str(recorder.requests[0].url) == "https://www.getrevox.com/api/call/call_7f3a9c"


def test_other_connection_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_REVOX_EU", json.dumps({"conn_type": "revox", "host": "eu.revox.test", "password": KEY})
    )
    hook = RevoxHook("revox_eu")
    assert hook.base_url == "https://eu.revox.test"
    assert "revox_eu" in repr(hook)


# -- test_connection -------------------------------------------------------------------------


def test_connection_true(conn: Any) -> None:
    recorder = Recorder(httpx.Response(200, json={"authenticated": True}))
    ok, message = RevoxHook(transport=recorder.transport).test_connection()
    assert ok is True and "https://api.revox.test/api" in message
    assert recorder.requests[0].url.path == "/api/auth-status"


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(200, json={"authenticated": False}), httpx.Response(401, json={"error": "unauthorized"})],
)
def test_connection_false_says_this_connection(conn: Any, answer: httpx.Response) -> None:
    # Airflow's Test button runs the hook on a copy of the connection under a random id.
    ok, message = RevoxHook(transport=Recorder(answer).transport).test_connection()
    assert ok is False and "API key of this connection" in message
    assert "revox_default" not in message and KEY not in message


async def test_atest_connection(conn: Any) -> None:
    async with RevoxHook(
        transport=Recorder(httpx.Response(200, json={"authenticated": True})).transport
    ) as hook:
        assert (await hook.atest_connection())[0] is True
    async with RevoxHook(transport=Recorder(httpx.Response(403)).transport) as hook:
        ok, message = await hook.atest_connection()
    assert ok is False and "rejected" in message


def test_connection_false_when_key_missing(conn: Any) -> None:
    conn(password=None)
    ok, message = RevoxHook().test_connection()
    assert ok is False and "no API key" in message


# -- downloads -------------------------------------------------------------------------------


def audio(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"OggS" + b"\x00" * 100_000)


def test_download_sends_key_only_to_the_api_origin(conn: Any) -> None:
    recorder = Recorder(audio)
    hook = RevoxHook(transport=recorder.transport)
    with hook.iter_download("https://api.revox.test/api/recordings/att_2.ogg") as chunks:
        own = b"".join(chunks)
    with hook.iter_download("https://cdn.example.com/rec/att_2.ogg?sig=abc") as chunks:
        other = b"".join(chunks)
    with hook.iter_download("https://api.revox.test:8443/rec.ogg") as chunks:
        b"".join(chunks)
    assert own == other == b"OggS" + b"\x00" * 100_000
    assert recorder.requests[0].headers.get("authorization") == f"Bearer {KEY}"
    assert "authorization" not in recorder.requests[1].headers
    assert "authorization" not in recorder.requests[2].headers
    hook.close()


def test_download_follows_redirects_without_the_key(conn: Any) -> None:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.revox.test":
            return httpx.Response(302, headers={"Location": "https://cdn.example.com/a.ogg"})
        return httpx.Response(200, content=b"audio")

    recorder = Recorder(route)
    with RevoxHook(transport=recorder.transport) as hook, hook.iter_download("recordings/a.ogg") as chunks:
        assert b"".join(chunks) == b"audio"
    assert [r.url.host for r in recorder.requests] == ["api.revox.test", "cdn.example.com"]
    assert recorder.requests[0].url.path == "/api/recordings/a.ogg"
    assert "authorization" not in recorder.requests[1].headers


def test_download_retried_before_the_first_byte(conn: Any, sleeps: list[float]) -> None:
    recorder = Recorder(httpx.Response(503, headers={"Retry-After": "2"}), httpx.ReadError("reset"), audio)
    with (
        RevoxHook(transport=recorder.transport) as hook,
        hook.iter_download("https://cdn.example.com/a.ogg") as chunks,
    ):
        assert len(b"".join(chunks)) == 100_004
    assert sleeps[0] == 2.0 and len(recorder.requests) == 3


def test_download_not_found(conn: Any) -> None:
    recorder = Recorder(httpx.Response(404))
    with (
        RevoxHook(transport=recorder.transport) as hook,
        pytest.raises(RevoxNotFoundError, match=r"cdn\.example\.com/a\.ogg\?sig=\*\*\*"),
        hook.iter_download("https://cdn.example.com/a.ogg?sig=s3cr3t"),
    ):
        pass


async def test_async_download(conn: Any, sleeps: list[float]) -> None:
    recorder = Recorder(httpx.Response(502), audio)
    async with (
        RevoxHook(transport=recorder.transport) as hook,
        hook.aiter_download("https://api.revox.test/api/rec.ogg") as chunks,
    ):
        data = b"".join([chunk async for chunk in chunks])
    assert data == b"OggS" + b"\x00" * 100_000
    assert recorder.requests[1].headers["authorization"] == f"Bearer {KEY}"
    assert len(sleeps) == 1


@pytest.mark.parametrize("url", ["", "ftp://files.example.com/a.ogg", "mailto:someone@example.com"])
def test_download_rejects_unusable_urls(conn: Any, url: str) -> None:
    recorder = Recorder(audio)
    with (
        RevoxHook(transport=recorder.transport) as hook,
        pytest.raises(ValueError, match="URL"),
        hook.iter_download(url),
    ):
        pass
    assert recorder.requests == []
