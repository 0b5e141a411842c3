"""The hook against servers that misbehave: wrong orders, unreadable or huge bodies, trickled bytes,
odd clock headers, plain http behind https, rotated keys. Real HTTP over loopback throughout."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pytest

from airflow_provider_revox._internal.hooks.poller import CallPoller, shared_poller
from airflow_provider_revox.exceptions import (
    RevoxAuthError,
    RevoxResponseError,
    RevoxResponseTooLargeError,
    RevoxRetriesExhaustedError,
    RevoxTransportError,
    is_transient,
)
from airflow_provider_revox.hooks.revox import RevoxHook
from tests.support.crafted_api import (
    CALL_PATH,
    CraftedApi,
    Request,
    answer,
    call_body,
    conn_json,
    crafted_api,
    orders,
    trickle,
)

KEY = "rvx_live_hardening_0123456789abcdefXYZ"


@pytest.fixture
def use_api(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point ``revox_default`` at a crafted API: ``use_api(api, key=..., **extra)``."""

    def _use(api: CraftedApi, key: str = KEY, **extra: Any) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", conn_json(api.base_url, key, **extra))

    return _use


# -- 2: excerpts are redacted whole, then cut -------------------------------------------------


def test_an_error_body_never_keeps_part_of_the_key_at_the_cut(use_api: Callable[..., None]) -> None:
    # The key starts 170 characters in: the 200-character excerpt would end in its middle.
    body = ("e" * 170 + KEY + "e" * 100).encode()
    with crafted_api(lambda request, out: answer(out, 422, body)) as api:
        use_api(api)
        with RevoxHook() as hook, pytest.raises(Exception) as caught:
            hook.get_call("call_A")
    message = str(caught.value)
    assert "HTTP 422" in message and "e" * 170 + "***" in message
    assert KEY[:8] not in message


# -- 9: an answer about another order is refused ----------------------------------------------


def test_an_answer_about_another_order_is_refused(use_api: Callable[..., None]) -> None:
    with crafted_api(lambda request, out: answer(out, 200, call_body("call_B"))) as api:
        use_api(api)
        with RevoxHook() as hook, pytest.raises(RevoxResponseError, match=r"'call_A'.*'call_B'"):
            hook.get_call("call_A")

        async def fetch() -> None:
            async with RevoxHook() as hook:
                await hook.aget_call("call_A")

        with pytest.raises(RevoxResponseError, match=r"'call_A'.*'call_B'"):
            asyncio.run(fetch())


# -- 12: any decoding failure is a RevoxResponseError; a broken search never sinks the polls ----

DEEP = b"[" * 200_000 + b"]" * 200_000


def test_deeply_nested_json_is_a_response_error(use_api: Callable[..., None]) -> None:
    with crafted_api(lambda request, out: answer(out, 200, DEEP)) as api:
        use_api(api, max_retries=0)
        with RevoxHook() as hook, pytest.raises(RevoxResponseError, match="not JSON"):
            hook.get_call("call_A")


async def test_an_unreadable_search_falls_back_to_get_for_every_poll(use_api: Callable[..., None]) -> None:
    def route(request: Request, out: BinaryIO) -> None:
        if request.method == "POST":
            answer(out, 200, DEEP)
        else:
            orders(request, out)

    with crafted_api(route) as api:
        use_api(api, max_retries=0)
        poller = CallPoller(RevoxHook(), gather_seconds=0.05)
        try:
            first, second = await asyncio.gather(poller.get_call("call_A"), poller.get_call("call_B"))
        finally:
            await poller.aclose()
    assert (first.id, second.id) == ("call_A", "call_B")
    assert (poller.searches, poller.gets) == (1, 2)
    sent = [(r.method, r.path) for r in api.requests]
    assert sent[0] == ("POST", "/api/call/search")
    assert sorted(sent[1:]) == [("GET", "/api/call/call_A"), ("GET", "/api/call/call_B")]


# -- 13: size limits on bodies and recordings ---------------------------------------------------


def _chunked(out: BinaryIO, size: int) -> None:
    out.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    block = b"x" * 65536
    try:
        for _ in range(size // len(block)):
            out.write(b"%x\r\n" % len(block) + block + b"\r\n")
        out.write(b"0\r\n\r\n")
        out.flush()
    except OSError:
        pass  # the client stopped reading, as it should


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_limit_fails_at_once_and_is_not_transient(
    use_api: Callable[..., None], declared: bool
) -> None:
    size = 8 * 1024 * 1024

    def route(request: Request, out: BinaryIO) -> None:
        if declared:
            out.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
            out.flush()
        else:
            _chunked(out, size)

    with crafted_api(route) as api:
        use_api(api, max_response_mb=1)
        with (
            RevoxHook() as hook,
            pytest.raises(RevoxResponseTooLargeError, match="max_response_mb") as caught,
        ):
            hook.get_call("call_A")
    assert not is_transient(caught.value)
    assert len(api.requests) == 1


def test_a_recording_over_the_limit_stops_the_download(use_api: Callable[..., None]) -> None:
    with crafted_api(lambda request, out: _chunked(out, 4 * 1024 * 1024)) as api:
        use_api(api, max_recording_mb=1)
        written = 0
        with (
            RevoxHook() as hook,
            pytest.raises(RevoxResponseTooLargeError, match="max_recording_mb"),
            hook.iter_download("/recordings/a.mp3") as chunks,
        ):
            for chunk in chunks:
                written += len(chunk)
    assert written <= 1024 * 1024


async def test_an_async_recording_over_the_limit_stops_the_download(use_api: Callable[..., None]) -> None:
    with crafted_api(lambda request, out: _chunked(out, 4 * 1024 * 1024)) as api:
        use_api(api, max_recording_mb=1)
        written = 0
        async with RevoxHook() as hook:
            with pytest.raises(RevoxResponseTooLargeError, match="max_recording_mb"):
                async with hook.aiter_download("/recordings/a.mp3") as chunks:
                    async for chunk in chunks:
                        written += len(chunk)
    assert written <= 1024 * 1024


def test_a_trickled_recording_is_cut_at_the_download_timeout(use_api: Callable[..., None]) -> None:
    def route(request: Request, out: BinaryIO) -> None:
        out.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        trickle(out, b"r" * 100, 0.1)

    with crafted_api(route) as api:
        use_api(api, download_timeout=0.5)
        with (
            RevoxHook() as hook,
            pytest.raises(RevoxTransportError, match="download_timeout"),
            hook.iter_download("/recordings/a.mp3") as chunks,
        ):
            for _ in chunks:
                pass
        # Cut before the end: the server was still trickling its 10-s body when the hook hung up.
        assert wait_for_abandoned(api) == ["/recordings/a.mp3"]


# -- 5: every request has an overall deadline --------------------------------------------------


def _trickled_body(request: Request, out: BinaryIO) -> None:
    data = json.dumps(call_body(request.path.removeprefix(CALL_PATH))).encode()
    out.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode())
    trickle(out, data, 0.2)


def _trickled_head(request: Request, out: BinaryIO) -> None:
    trickle(out, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 200 + b"\r\n\r\n", 0.2)


def test_a_trickled_body_is_cut_at_the_timeout(use_api: Callable[..., None]) -> None:
    with crafted_api(_trickled_body) as api:
        use_api(api, timeout=1, max_retries=0)
        with RevoxHook() as hook, pytest.raises(RevoxRetriesExhaustedError, match="ReadTimeout"):
            hook.get_call("call_A")
        assert wait_for_abandoned(api) == ["/api/call/call_A"]


@pytest.mark.parametrize("route", [_trickled_body, _trickled_head])
async def test_an_async_request_is_cut_at_the_timeout(use_api: Callable[..., None], route: Any) -> None:
    with crafted_api(route) as api:
        use_api(api, timeout=1, max_retries=0)
        async with RevoxHook() as hook:
            with pytest.raises(RevoxRetriesExhaustedError, match="ReadTimeout"):
                await hook.aget_call("call_A")
        assert wait_for_abandoned(api) == ["/api/call/call_A"]


async def test_a_caller_deadline_cancels_cleanly_and_the_hook_goes_on(use_api: Callable[..., None]) -> None:
    def route(request: Request, out: BinaryIO) -> None:
        (_trickled_body if request.path.endswith("slow") else orders)(request, out)

    with crafted_api(route) as api:
        use_api(api, timeout=30)
        async with RevoxHook() as hook:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(hook.aget_call("call_slow"), 0.5)
            assert (await hook.aget_call("call_next")).id == "call_next"
        assert wait_for_abandoned(api) == ["/api/call/call_slow"]
    # The cut request's connection was dropped, not reused for the next one.
    assert api.connection_count == 2


# -- 14: the simulator's clock headers are believed only when sane ----------------------------


@pytest.mark.parametrize(
    ("stamp", "speed"),
    [
        ("2026-03-01T10:00:00+00:00", "nan"),
        ("2026-03-01T10:00:00+00:00", "inf"),
        ("2026-03-01T10:00:00+00:00", "1e300"),
        ("2026-03-01T10:00:00+00:00", "-1"),
        ("9999-12-31T23:00:00+00:00", "1"),
        ("1901-01-01T00:00:00+00:00", "1"),
        ("2026-03-01T10:00:00", "1"),
    ],
)
def test_insane_clock_headers_are_ignored(use_api: Callable[..., None], stamp: str, speed: str) -> None:
    headers = {"X-Revox-Simulator-Time": stamp, "X-Revox-Simulator-Speed": speed}

    def route(request: Request, out: BinaryIO) -> None:
        answer(out, 200, call_body("call_A"), headers)

    with crafted_api(route) as api:
        use_api(api)
        with RevoxHook() as hook:
            hook.get_call("call_A")
            before = time.time()
            now = hook.server_clock.now()
            after = time.time()
    # The machine's own clock, not the header's time: read between two readings of it.
    assert hook.server_clock.speed == 1.0
    assert before <= now.timestamp() <= after


def test_sane_clock_headers_are_followed(use_api: Callable[..., None]) -> None:
    headers = {"X-Revox-Simulator-Time": "2026-03-01T10:00:00+00:00", "X-Revox-Simulator-Speed": "600"}
    with crafted_api(lambda request, out: answer(out, 200, call_body("call_A"), headers)) as api:
        use_api(api)
        with RevoxHook() as hook:
            hook.get_call("call_A")
    assert hook.server_clock.speed == 600.0
    assert hook.server_clock.now().isoformat().startswith("2026-03-01T10:")


# -- 21: a rotated key is picked up once ---------------------------------------------------------


@pytest.fixture
def rotating_api() -> Iterator[tuple[CraftedApi, list[str]]]:
    """An API that accepts only the key in ``valid[0]``."""
    valid = ["rvx_old_key_0001"]

    def route(request: Request, out: BinaryIO) -> None:
        if request.key != valid[0]:
            time.sleep(0.1)  # so that requests sent together are all refused before any re-read
            answer(out, 401, {"error": "unauthorized"})
        elif request.method == "POST":
            ids = json.loads(request.body)["call_ids"]
            answer(out, 200, {"calls": [call_body(i) for i in ids], "total_count": len(ids)})
        else:
            orders(request, out)

    with crafted_api(route) as api:
        yield api, valid


def test_a_rotated_key_is_read_again_once(
    rotating_api: tuple[CraftedApi, list[str]], use_api: Callable[..., None]
) -> None:
    api, valid = rotating_api
    use_api(api, key="rvx_old_key_0001")
    with RevoxHook() as hook:
        assert hook.get_call("call_A").id == "call_A"
        valid[0] = "rvx_new_key_0002"
        use_api(api, key="rvx_new_key_0002")
        assert hook.get_call("call_B").id == "call_B"
        assert [r.key for r in api.requests] == ["rvx_old_key_0001", "rvx_old_key_0001", "rvx_new_key_0002"]
        valid[0] = "rvx_other_key_0003"
        with pytest.raises(RevoxAuthError, match="'revox_default'"):
            hook.get_call("call_C")
    # A key that is still refused after the re-read fails at once: one more request, not a loop.
    assert len(api.requests) == 4


async def test_requests_refused_together_all_retry_with_the_rotated_key(
    rotating_api: tuple[CraftedApi, list[str]], use_api: Callable[..., None]
) -> None:
    api, valid = rotating_api
    use_api(api, key="rvx_old_key_0001")
    async with RevoxHook() as hook:
        assert (await hook.aget_call("call_A")).id == "call_A"
        valid[0] = "rvx_new_key_0002"
        use_api(api, key="rvx_new_key_0002")
        calls = await asyncio.gather(*(hook.aget_call(f"call_{n}") for n in range(3)))
    assert [call.id for call in calls] == ["call_0", "call_1", "call_2"]
    assert sorted(r.key for r in api.requests[1:]) == ["rvx_new_key_0002"] * 3 + ["rvx_old_key_0001"] * 3


async def test_the_shared_poller_picks_up_a_rotated_key(
    rotating_api: tuple[CraftedApi, list[str]], use_api: Callable[..., None]
) -> None:
    api, valid = rotating_api
    use_api(api, key="rvx_old_key_0001")
    async with shared_poller("revox_default") as poller:
        assert (await poller.get_call("call_A")).id == "call_A"
        valid[0] = "rvx_new_key_0002"
        use_api(api, key="rvx_new_key_0002")
        assert (await poller.get_call("call_B")).id == "call_B"


# -- 25: a Test names no random id; https at a plain-http server fails fast ----------------------


@pytest.mark.airflow
def test_the_test_button_names_this_connection_not_its_temporary_id(
    monkeypatch: pytest.MonkeyPatch, airflow_db: Any
) -> None:
    from airflow.models.connection import Connection

    with crafted_api(lambda request, out: answer(out, 401, {"error": "unauthorized"})) as api:
        # As Airflow's test endpoint does: a copy of the connection under a random id, in the environment.
        conn = Connection(conn_id="Zvib2Ihx", conn_type="revox", host=api.base_url, password="rvx_wrong_0")
        monkeypatch.setenv("AIRFLOW_CONN_ZVIB2IHX", conn.get_uri())
        ok, message = conn.test_connection()
    assert ok is False
    assert "this connection" in message and "Zvib2Ihx" not in message


@dataclass
class SilentServer:
    """The port of a server that never answers, and the connections it accepted."""

    port: int
    held: list[socket.socket]


def wait_for_abandoned(api: CraftedApi) -> list[str]:
    """The requests the client hung up on; the server notices at its next write, so give it time."""
    for _ in range(3000):
        if api.abandoned:
            break
        time.sleep(0.01)
    return list(api.abandoned)


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A TCP server that accepts and never answers (a plain-http server waiting for a request line)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield SilentServer(server.getsockname()[1], held)
    server.close()
    for connection in held:
        connection.close()


def test_https_at_a_plain_http_server_fails_fast_and_says_why(
    use_api: Callable[..., None], silent_server: SilentServer
) -> None:
    with crafted_api(orders) as api:
        for base_url in (
            api.base_url.replace("http://", "https://"),
            f"https://127.0.0.1:{silent_server.port}/api",
        ):
            use_api(CraftedApi(base_url=base_url), timeout=1)
            with RevoxHook() as hook, pytest.raises(RevoxTransportError, match="may not speak TLS"):
                hook.get_call("call_A")
    # Fails fast: one connection each, not retried (five retries would have waited on each).
    assert api.connection_count == 1
    assert len(silent_server.held) == 1


async def test_async_https_at_a_silent_server_fails_fast(
    use_api: Callable[..., None], silent_server: SilentServer
) -> None:
    use_api(CraftedApi(base_url=f"https://127.0.0.1:{silent_server.port}/api"), timeout=1)
    async with RevoxHook() as hook:
        with pytest.raises(RevoxTransportError, match="may not speak TLS"):
            await hook.aget_call("call_A")
    assert len(silent_server.held) == 1  # one connection: not retried
