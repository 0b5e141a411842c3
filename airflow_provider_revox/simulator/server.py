"""A small asyncio HTTP/1.1 server that speaks the Revox API on loopback.

Routes under ``/api`` (bearer auth, faults apply, counted in the stats):

* ``GET /auth-status`` -> ``{"authenticated": bool}`` (200 even for a bad key);
* ``GET /users/me``;
* ``POST /call``, ``GET /call/{id}``, ``POST /call/{id}/cancel``, ``/pause``, ``/resume``;
* ``POST /call/search`` -> ``{"calls": [...], "total_count": int}``: filters (lists, an empty
  one does not filter), ``page`` (0-based) and ``page_size`` (1-1000) are required; each call
  is what ``GET /call/{id}`` shows at the same moment, and counts as a look at that call in
  the stats' ``by_call_id``; a bad field is a 422 naming it.

Routes under ``/api/_simulator`` (no auth, no faults, not counted):

* ``GET /stats``, ``POST /stats/reset``, ``GET /calls``;
* ``GET|HEAD /recordings/{attempt_id}.wav?sig=...`` (presigned: a wrong ``sig`` is 403).

Connections are kept alive (HTTP/1.1) so a poller reuses one socket for many requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import threading
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, unquote

from airflow_provider_revox.simulator.engine import (
    SEARCH_OPTIONAL_FIELDS,
    SEARCH_REQUIRED_FIELDS,
    InvalidSearch,
    SimulatorEngine,
    SimulatorError,
)
from airflow_provider_revox.simulator.faults import NO_FAULT, UNKNOWN_STATUS_VALUE, Fault, Faults
from airflow_provider_revox.simulator.recordings import recording_chunks, recording_length

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Request:
    __slots__ = ("body", "headers", "keep_alive", "method", "path", "query")

    def __init__(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes, keep_alive: bool
    ) -> None:
        self.method, self.path, self.query = method, path, query
        self.headers, self.body, self.keep_alive = headers, body, keep_alive


class _Reply:
    __slots__ = (
        "body",
        "call_id",
        "content_type",
        "extra_headers",
        "fault",
        "listed",
        "status",
        "wrap_call",
        "wrap_calls",
    )

    def __init__(
        self,
        status: int,
        body: bytes,
        *,
        call_id: str | None = None,
        wrap_call: bool = False,
        wrap_calls: bool = False,
        listed: tuple[str, ...] = (),
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.status, self.body, self.call_id, self.wrap_call = status, body, call_id, wrap_call
        # A {"calls": [...]} body (a search): body faults apply to every call in it.
        self.wrap_calls = wrap_calls
        #: The orders a search served: each counts as a look at that order in the stats.
        self.listed = listed
        self.content_type = "application/json"
        self.extra_headers = extra_headers
        self.fault: Fault = NO_FAULT


def _json(status: int, payload: Any, **kwargs: Any) -> _Reply:
    return _Reply(status, json.dumps(payload, separators=(",", ":")).encode(), **kwargs)


def _error(status: int, code: str, message: str, **kwargs: Any) -> _Reply:
    return _json(status, {"error": code, "message": message, "status_code": status}, **kwargs)


class SimulatorServer:
    """Serves a :class:`SimulatorEngine` over HTTP.

    Args:
        engine: the lifecycle engine to serve.
        api_key: the only bearer token accepted.
        faults: the fault plan; none by default.
        host: address to bind; loopback unless ``allow_remote``.
        port: TCP port; 0 picks a free one.
        allow_remote: permit binding a non-loopback address.

    Raises:
        ValueError: a non-loopback ``host`` without ``allow_remote``, or an empty ``api_key``.
    """

    def __init__(
        self,
        engine: SimulatorEngine,
        *,
        api_key: str,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must be a non-empty string")
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"refusing to bind {host!r}: the simulator only listens on loopback unless remote access "
                "is allowed explicitly (--allow-remote)"
            )
        self.engine = engine
        self.faults = faults if faults is not None else Faults(seed=engine.seed)
        self.host, self.port = host, port
        self._api_key = api_key.encode()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._stats_lock = threading.Lock()
        self._by_status: Counter[str] = Counter()
        self._by_call: Counter[str] = Counter()
        self._by_endpoint: Counter[str] = Counter()
        self._recordings = 0
        self._recording_bytes = 0
        # A manual clock reports speed 0 ("stands still until moved"); real time is 1.
        self._clock_speed = float(getattr(engine.clock, "speed", 0.0))

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:54321/api``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/api"

    async def start(self) -> None:
        """Bind and start accepting connections; sets :attr:`port` when it was 0."""
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self.port, limit=MAX_HEADER_BYTES, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.engine.set_public_url(self.base_url)

    async def stop(self) -> None:
        """Stop accepting, close open connections and wait for the server to close."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=2)
        self._server = None

    # -- stats -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """API requests served, per status code, per call id and per endpoint (``/_simulator`` excluded)."""
        with self._stats_lock:
            return {
                "requests_total": sum(self._by_status.values()),
                "by_status": dict(self._by_status),
                "by_call_id": dict(self._by_call),
                "by_endpoint": dict(self._by_endpoint),
                "recordings_served": self._recordings,
                "recording_bytes": self._recording_bytes,
                "calls": len(self.engine.call_ids()),
            }

    def reset_stats(self) -> None:
        """Zero every counter."""
        with self._stats_lock:
            self._by_status.clear()
            self._by_call.clear()
            self._by_endpoint.clear()
            self._recordings = self._recording_bytes = 0

    def _count(self, endpoint: str, status: str, call_id: str | None, listed: tuple[str, ...] = ()) -> None:
        with self._stats_lock:
            self._by_status[status] += 1
            self._by_endpoint[endpoint] += 1
            if call_id is not None:
                self._by_call[call_id] += 1
            for listed_id in listed:
                self._by_call[listed_id] += 1

    # -- connection loop -------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await self._read_request(reader, writer)
                if request is None:
                    break
                if not await self._answer(request, writer):
                    break
                if not request.keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            await self._write(
                writer, _error(431, "headers_too_large", "request headers are too large"), False
            )
            return None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await self._write(writer, _error(400, "bad_request", "malformed request line"), False)
            return None
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = b""
        if "transfer-encoding" in headers:
            await self._write(writer, _error(411, "length_required", "send a Content-Length body"), False)
            return None
        if length_text := headers.get("content-length"):
            length = int(length_text) if length_text.isdigit() else -1
            if length < 0 or length > MAX_BODY_BYTES:
                await self._write(
                    writer, _error(413, "payload_too_large", "body too large or bad length"), False
                )
                return None
            body = await reader.readexactly(length)
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        path, _, query = target.partition("?")
        return _Request(method.upper(), unquote(path), query, headers, body, keep_alive)

    async def _answer(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        path = request.path
        if path != "/api" and not path.startswith("/api/"):
            await self._write(
                writer,
                _error(404, "not_found", f"no route {path}; the API lives under /api"),
                request.keep_alive,
            )
            return True
        route = path[4:].rstrip("/") or "/"
        if route.startswith("/_simulator/") or route == "/_simulator":
            return await self._simulator_route(request, route, writer)
        return await self._api_route(request, route, writer)

    async def _write(self, writer: asyncio.StreamWriter, reply: _Reply, keep_alive: bool) -> None:
        head = [
            f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
            "Server: revox-simulator",
            "Connection: keep-alive" if keep_alive else "Connection: close",
            # The simulator's clock may run fast or stand still: clients schedule their waits on it.
            f"X-Revox-Simulator-Time: {self.engine.clock.now().isoformat()}",
            f"X-Revox-Simulator-Speed: {self._clock_speed:g}",
        ]
        head += [f"{name}: {value}" for name, value in reply.extra_headers]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
        await writer.drain()

    # -- API -------------------------------------------------------------------------------

    def _authorised(self, request: _Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._api_key)

    async def _api_route(self, request: _Request, route: str, writer: asyncio.StreamWriter) -> bool:
        endpoint, call_id, action = _classify(request.method, route)
        if endpoint is None:
            reply = _error(404, "not_found", f"no API route {request.method} {route}")
            self._count(f"{request.method} (unknown)", "404", None)
            await self._write(writer, reply, request.keep_alive)
            return True
        if not self._authorised(request) and endpoint != "GET /auth-status":
            self._count(endpoint, "401", call_id)
            await self._write(
                writer,
                _error(401, "unauthorized", "missing or invalid API key: send Authorization: Bearer <key>"),
                request.keep_alive,
            )
            return True
        fault = self.faults.next_fault(endpoint if call_id is None else f"{endpoint}:{call_id}", call_id)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.replace == "drop":
            self._count(endpoint, "dropped", call_id)
            return False
        if fault.replace is not None and fault.replace.isdigit():
            status = int(fault.replace)
            headers: tuple[tuple[str, str], ...] = ()
            if status == 429:
                headers = (("Retry-After", f"{fault.retry_after:g}"),)
            reply = _error(status, "simulated_fault", f"simulated HTTP {status}", extra_headers=headers)
        else:
            reply = self._handle_api(request, endpoint, call_id, action)
            reply = _apply_body_faults(reply, fault)
        self._count(endpoint, str(reply.status), reply.call_id or call_id, reply.listed)
        await self._write(writer, reply, request.keep_alive)
        return True

    def _handle_api(
        self, request: _Request, endpoint: str, call_id: str | None, action: str | None
    ) -> _Reply:
        engine = self.engine
        try:
            if endpoint == "GET /auth-status":
                return _json(200, {"authenticated": self._authorised(request)})
            if endpoint == "GET /users/me":
                return _json(200, {"user": {"id": "user_simulator", "email": "developer@example.com"}})
            if endpoint == "GET /call/{id}":
                assert call_id is not None
                return _Reply(200, engine.get_call_json(call_id), call_id=call_id, wrap_call=True)
            if endpoint == "POST /call/search":
                payload = _json_body(request)
                missing = [name for name in SEARCH_REQUIRED_FIELDS if name not in payload]
                if missing:
                    raise InvalidSearch(f"missing required field(s): {', '.join(missing)}")
                fields = (*SEARCH_REQUIRED_FIELDS, *SEARCH_OPTIONAL_FIELDS)
                found = engine.search_calls(**{name: payload[name] for name in fields if name in payload})
                return _Reply(200, engine.search_json(found), wrap_calls=True, listed=found.call_ids)
            if endpoint == "POST /call":
                payload = _json_body(request)
                allowed = {
                    "phone_number",
                    "assistant",
                    "assistant_id",
                    "scheduled_at",
                    "metadata",
                    "prompt_variables",
                    "call_retry_config",
                }
                call = engine.place_call(**{key: payload[key] for key in allowed if key in payload})
                return _json(200, {"call": call}, call_id=call["id"], wrap_call=True)
            assert call_id is not None and action is not None
            call = getattr(engine, action)(call_id)
            return _json(200, {"call": call}, call_id=call_id, wrap_call=True)
        except _BadBody as error:
            return _error(400, "bad_request", str(error))
        except SimulatorError as error:
            code = {404: "not_found", 409: "conflict", 422: "invalid_request"}.get(
                error.http_status, "bad_request"
            )
            return _error(error.http_status, code, str(error))

    # -- simulator routes ------------------------------------------------------------------

    async def _simulator_route(self, request: _Request, route: str, writer: asyncio.StreamWriter) -> bool:
        method, keep = request.method, request.keep_alive
        if route == "/_simulator/stats" and method == "GET":
            await self._write(writer, _json(200, self.stats()), keep)
        elif route == "/_simulator/stats/reset" and method == "POST":
            self.reset_stats()
            await self._write(writer, _json(200, {"reset": True}), keep)
        elif route == "/_simulator/calls" and method == "GET":
            await self._write(writer, _json(200, {"call_ids": self.engine.call_ids()}), keep)
        elif route.startswith("/_simulator/recordings/") and method in ("GET", "HEAD"):
            await self._recording(request, route.rsplit("/", 1)[-1], writer)
        else:
            await self._write(writer, _error(404, "not_found", f"no simulator route {method} {route}"), keep)
        return True

    async def _recording(self, request: _Request, name: str, writer: asyncio.StreamWriter) -> None:
        keep = request.keep_alive
        attempt_id = name.removesuffix(".wav")
        sig = parse_qs(request.query).get("sig", [""])[0]
        if not hmac.compare_digest(sig.encode(), self.engine.recording_signature(attempt_id).encode()):
            await self._write(
                writer, _error(403, "forbidden", "invalid or missing recording signature"), keep
            )
            return
        found = self.engine.attempt(attempt_id)
        now = self.engine.clock.now()
        if found is None or found[1].answered_at is None or found[1].ended_at > now:
            await self._write(
                writer, _error(404, "not_found", f"no recording for attempt {attempt_id}"), keep
            )
            return
        attempt = found[1]
        assert attempt.answered_at is not None
        talk = (attempt.ended_at - attempt.answered_at).total_seconds()
        size = recording_length(talk)
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\n"
            f"Content-Length: {size}\r\nServer: revox-simulator\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        )
        writer.write(head.encode("latin-1"))
        if request.method == "GET":
            for chunk in recording_chunks(attempt_id, talk):
                writer.write(chunk)
                await writer.drain()
            with self._stats_lock:
                self._recordings += 1
                self._recording_bytes += size
        await writer.drain()


class _BadBody(Exception):
    pass


def _json_body(request: _Request) -> dict[str, Any]:
    if not request.body:
        raise _BadBody("request body is empty: send a JSON object")
    try:
        payload = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _BadBody(f"request body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise _BadBody(f"request body must be a JSON object, not {type(payload).__name__}")
    return payload


_ACTIONS = {"cancel": "cancel", "pause": "pause", "resume": "resume"}


def _classify(method: str, route: str) -> tuple[str | None, str | None, str | None]:
    """Map a request to ``(endpoint template, call id, engine action)``; endpoint None when unknown."""
    if route == "/auth-status" and method == "GET":
        return "GET /auth-status", None, None
    if route == "/users/me" and method == "GET":
        return "GET /users/me", None, None
    if route == "/call" and method == "POST":
        return "POST /call", None, None
    # Before the id patterns, so "search" is never read as a call id.
    if route == "/call/search" and method == "POST":
        return "POST /call/search", None, None
    parts = route.split("/")
    if len(parts) == 3 and parts[1] == "call" and parts[2] and method == "GET":
        return "GET /call/{id}", parts[2], None
    if len(parts) == 4 and parts[1] == "call" and parts[3] in _ACTIONS and method == "POST":
        return f"POST /call/{{id}}/{parts[3]}", parts[2], _ACTIONS[parts[3]]
    return None, None, None


def _apply_body_faults(reply: _Reply, fault: Fault) -> _Reply:
    if fault is NO_FAULT or reply.status != 200:
        return reply
    body = reply.body
    if (reply.wrap_call or reply.wrap_calls) and (fault.unknown_status or fault.extra_fields):
        payload = json.loads(body)
        calls = payload["calls"] if reply.wrap_calls else [payload["call"]]
        if fault.extra_fields:
            payload["request_id"] = "req_simulated"
        for call in calls:
            _modify_call(call, fault)
        body = json.dumps(payload, separators=(",", ":")).encode()
    if fault.replace == "truncate":
        body = body[: max(1, len(body) // 2)]
    if body is reply.body:
        return reply
    changed = _Reply(
        reply.status, body, call_id=reply.call_id, wrap_call=reply.wrap_call, wrap_calls=reply.wrap_calls
    )
    changed.extra_headers = reply.extra_headers
    changed.listed = reply.listed
    return changed


def _modify_call(call: dict[str, Any], fault: Fault) -> None:
    if fault.unknown_status:
        call["status"] = UNKNOWN_STATUS_VALUE
    if fault.extra_fields:
        call["sentiment"] = {"label": "neutral", "score": 0.51}
        call["x_billing"] = {"units": 3, "currency": "EUR"}
        for attempt in call.get("call_attempts") or []:
            attempt["carrier"] = {"name": "sim-telecom", "sip_code": 200}
        if call.get("last_call_attempt"):
            call["last_call_attempt"]["carrier"] = {"name": "sim-telecom", "sip_code": 200}


__all__ = ["SimulatorServer", "is_loopback"]
