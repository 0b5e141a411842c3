"""The Revox API over loopback HTTP: a Starlette app served by uvicorn.

Routes under ``/api`` (bearer auth; faults and the account's rate limit apply; counted in stats):

* ``GET /auth-status`` -> ``{"authenticated": bool}`` (200 even for a bad key);
* ``GET /users/me``;
* ``POST /call`` (``metadata``, ``prompt_variables``, ``scheduled_at``, ``from_phone_number``,
  ``skip_calling_window``, ``concurrency: {key}`` kept and shown), ``GET /call/{id}``;
* ``POST /call/{id}/cancel``, ``/pause``, ``/resume`` -> ``{"success": true, "call": {...}}``;
* ``POST /call/search`` -> ``{"calls": [...], "total_count": int}``: filters (lists, an empty
  one does not filter), ``page`` (0-based) and ``page_size`` (1-1000), which the vendor's spec
  marks required: one left out takes its default (no filter, page 0, 100 calls) and is named in
  the ``x-revox-simulator-defaulted`` header, or is a 422 with ``strict_search``; each call
  is what ``GET /call/{id}`` shows at the same moment, and counts as a look at that call in
  the stats' ``by_call_id``; a bad field is a 422 naming it; ``sort_by`` (``created_at``,
  ``updated_at``, ``ended_at``, ``scheduled_at``, ``id``) and ``sort_direction``, unless the
  engine refuses sorting (422); the search faults of :mod:`.faults` (``repeat_page``, held and
  far-future orders) apply;
* the campaign endpoints of :mod:`.campaign_routes`; ``GET /calls/phone-history`` (:mod:`.history`).

Routes under ``/api/_simulator`` (no auth, no faults, not counted):

* ``GET /stats``, ``POST /stats/reset``, ``GET /calls``;
* ``GET|HEAD /recordings/{attempt_id}.wav?sig=...`` (presigned: a wrong ``sig`` is 403).

``GET /dashboard/calls/{id}`` is a small HTML page about one order: where the "Revox call"
extra link points when the connection's base URL is this simulator. ``GET /`` and
``GET /dashboard`` list the newest orders (each linked to its page) and the campaigns.

Connections are kept alive (HTTP/1.1), so a poller reuses one socket for many requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import socket
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from airflow_provider_revox._simulator.campaign_routes import campaign_routes
from airflow_provider_revox._simulator.dashboard import call_page, engine_index
from airflow_provider_revox._simulator.engine import SimulatorEngine
from airflow_provider_revox._simulator.errors import InvalidSearch, SimulatorError, UnknownCall
from airflow_provider_revox._simulator.faults import DROP_AFTER_COMMIT, Faults, apply_body_faults
from airflow_provider_revox._simulator.history import history_routes
from airflow_provider_revox._simulator.orders import ORDER_FIELDS, ORDER_HINTS, valid_map
from airflow_provider_revox._simulator.recordings import recording_chunks, recording_length
from airflow_provider_revox._simulator.replies import (
    BadBody,
    Reply,
    body_fields,
    error_reply,
    first_page_body,
    json_body,
    json_reply,
    rate_limited,
    script_keys,
)
from airflow_provider_revox._simulator.search import SEARCH_OPTIONAL_FIELDS, SEARCH_REQUIRED_FIELDS
from airflow_provider_revox._simulator.transport import Protocol, drop, is_loopback

MAX_BODY_BYTES = 1024 * 1024
#: Names the search fields the spec marks required that a request left out and the simulator defaulted.
DEFAULTED_HEADER = "x-revox-simulator-defaulted"
#: Idle keep-alive connections stay open this long: pollers come back every few seconds to minutes.
KEEP_ALIVE_SECONDS = 300
Handler = Callable[[Request, str | None, bytes], Reply]


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
        self._stats_lock = threading.Lock()
        self._by_status: Counter[str] = Counter()
        self._by_call: Counter[str] = Counter()
        self._by_endpoint: Counter[str] = Counter()
        self._recordings = 0
        self._recording_bytes = 0
        self._stopping = asyncio.Event()
        # A manual clock reports speed 0 ("stands still until moved"); real time is 1.
        self._clock_speed = f"{float(getattr(engine.clock, 'speed', 0.0)):g}"
        self.app = Starlette(
            routes=self._routes(),
            exception_handlers={404: self._not_found, 405: self._not_found},
        )
        # A trailing slash names the same route (``/call/search/``), with no redirect.
        self.app.router.redirect_slashes = False

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:54321/api``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/api"

    def bind(self) -> socket.socket:
        """Open the listening socket; sets ``port`` when it was 0 and points recording links here.

        Raises:
            OSError: the address is taken or cannot be bound.
        """
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # An explicit IPPROTO_TCP: asyncio turns Nagle off only on sockets that say they are TCP, and
        # with Nagle on, each answer (head and body written apart) waited for a delayed ACK (~40 ms).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self.engine.set_public_url(self.base_url)
        return sock

    def uvicorn_server(self) -> uvicorn.Server:
        """A uvicorn server for the Starlette ``app`` with httptools, long keep-alive and no logging setup."""
        config = uvicorn.Config(
            self._asgi,
            http=Protocol,
            interface="asgi3",
            proxy_headers=False,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=2,
        )
        return uvicorn.Server(config)

    async def _asgi(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        await self.app(scope, receive, send)

    def end_delays(self) -> None:
        """Cut every ``slow`` fault short, so a server that stops answers at once (call on its loop)."""
        self._stopping.set()

    async def _delay(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- stats -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """API requests served, per status code, per call id and per endpoint (``/_simulator`` excluded).

        A ``drop_after_commit`` fault counts under its own name in ``by_status``: the request was
        served and stored, its answer never sent.
        """
        with self._stats_lock:
            return {
                "requests_total": sum(self._by_status.values()),
                "by_status": dict(self._by_status),
                "by_call_id": dict(self._by_call),
                "by_endpoint": dict(self._by_endpoint),
                "recordings_served": self._recordings,
                "recording_bytes": self._recording_bytes,
                "calls": len(self.engine.call_ids()),
                "campaigns": len(self.engine.campaigns.ids()),
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

    # -- routes ----------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        api, engine = self._api_endpoint, self.engine
        return [
            # First: the hot route of every poller.
            Route("/api/call/{call_id}", api("GET /call/{id}", self._get_call), methods=["GET"]),
            Route("/api/auth-status", api("GET /auth-status", self._auth_status), methods=["GET"]),
            Route("/api/users/me", api("GET /users/me", self._user), methods=["GET"]),
            Route("/api/call", api("POST /call", self._place), methods=["POST"]),
            Route("/api/call/search", api("POST /call/search", self._search), methods=["POST"]),
            *(
                Route(
                    f"/api/call/{{call_id}}/{action}",
                    api(f"POST /call/{{id}}/{action}", self._action(action)),
                    methods=["POST"],
                )
                for action in ("cancel", "pause", "resume")
            ),
            *(
                Route(path, api(endpoint, handler), methods=[method])
                for path, endpoint, method, handler in [*campaign_routes(engine), *history_routes(engine)]
            ),
            Route("/api/_simulator/stats", self._stats_route, methods=["GET"]),
            Route("/api/_simulator/stats/reset", self._reset_route, methods=["POST"]),
            Route("/api/_simulator/calls", self._calls_route, methods=["GET"]),
            Route("/api/_simulator/recordings/{name}", self._recording, methods=["GET"]),
            Route("/dashboard/calls/{call_id}", self._dashboard, methods=["GET"]),
            Route("/dashboard", self._index, methods=["GET"]),
            Route("/", self._index, methods=["GET"]),
        ]

    def _headers(self, request: Request | None = None) -> dict[str, str]:
        headers = {
            "server": "revox-simulator",
            # The simulator's clock may run fast or stand still: clients schedule their waits on it.
            "x-revox-simulator-time": self.engine.clock.now().isoformat(),
            "x-revox-simulator-speed": self._clock_speed,
        }
        if request is not None and request.headers.get("connection", "").lower() != "close":
            headers["connection"] = "keep-alive"
        return headers

    def _send(self, request: Request, reply: Reply) -> Response:
        headers = {**self._headers(request), **reply.headers}
        if reply.retry_after is not None:
            headers["retry-after"] = f"{reply.retry_after:g}"
        return Response(reply.body, reply.status, headers, media_type="application/json")

    def _authorised(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._api_key)

    def _api_endpoint(self, endpoint: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            call_id = request.path_params.get("call_id")
            if not self._authorised(request) and endpoint != "GET /auth-status":
                self._count(endpoint, "401", call_id)
                message = "missing or invalid API key: send Authorization: Bearer <key>"
                return self._send(request, error_reply(401, "unauthorized", message))
            try:
                body = await request.body() if request.method in ("POST", "PATCH") else b""
            except ClientDisconnect:
                # The client hung up mid-body (a cancelled wait): nobody is left to answer.
                return Response(status_code=499)
            if (over := self.faults.over_account_limit()) is not None:
                self._count(endpoint, "429", call_id)
                return self._send(request, rate_limited(over))
            subject = self.engine.key_of(call_id) if call_id else request.path_params.get("campaign_id")
            target = endpoint if subject is None else f"{endpoint}:{subject}"
            also = script_keys(endpoint, body) if body else ()
            fault = self.faults.next_fault(target, call_id or subject, also=also)
            if fault.delay:
                await self._delay(fault.delay)
            if fault.replace == "drop":
                self._count(endpoint, "dropped", call_id)
                return await drop(request)
            if fault.replace is not None and fault.replace.isdigit():
                status = int(fault.replace)
                reply = error_reply(status, "simulated_fault", f"simulated HTTP {status}")
                reply.retry_after = fault.retry_after if status == 429 else None
            elif len(body) > MAX_BODY_BYTES:
                reply = error_reply(413, "payload_too_large", "request body is too large")
            else:
                if fault.repeat_page and endpoint == "POST /call/search":
                    body = first_page_body(body)
                reply = self._answer(handler, request, call_id, body)
                if fault.replace == DROP_AFTER_COMMIT:
                    # The change is stored; the client never hears of it (and may send it again).
                    self._count(endpoint, DROP_AFTER_COMMIT, reply.call_id or call_id)
                    return await drop(request)
                if reply.status == 200:
                    reply.body = apply_body_faults(reply.body, fault, calls=reply.wrap_calls)
                    reply.body = self.faults.future_times(reply.body, calls=reply.wrap_calls)
            self._count(endpoint, str(reply.status), reply.call_id or call_id, reply.listed)
            return self._send(request, reply)

        return serve

    @staticmethod
    def _answer(handler: Handler, request: Request, call_id: str | None, body: bytes) -> Reply:
        try:
            return handler(request, call_id, body)
        except BadBody as error:
            return error_reply(400, "bad_request", str(error))
        except SimulatorError as error:
            code = {404: "not_found", 409: "conflict", 422: "invalid_request"}.get(
                error.http_status, "bad_request"
            )
            return error_reply(error.http_status, code, str(error))

    # -- API handlers ----------------------------------------------------------------------

    def _auth_status(self, request: Request, call_id: str | None, body: bytes) -> Reply:
        return json_reply(200, {"authenticated": self._authorised(request)})

    def _user(self, request: Request, call_id: str | None, body: bytes) -> Reply:
        return json_reply(200, {"user": self.engine.user()})

    def _get_call(self, request: Request, call_id: str | None, body: bytes) -> Reply:
        assert call_id is not None
        return Reply(200, self.engine.get_call_json(call_id), call_id=call_id)

    def _search(self, request: Request, call_id: str | None, body: bytes) -> Reply:
        payload = json_body(body)
        missing = [name for name in SEARCH_REQUIRED_FIELDS if name not in payload]
        if missing and self.engine.strict_search:
            raise InvalidSearch(f"missing required field(s): {', '.join(missing)}")
        fields = (*SEARCH_REQUIRED_FIELDS, *SEARCH_OPTIONAL_FIELDS)
        found = self.engine.search_calls(
            **{name: payload[name] for name in fields if name in payload},
            hidden=self.faults.hidden(payload.get("page", 0)),
            far_future=self.faults.far_future_ids,
            index_lag=self.faults.index_lag,
        )
        reply = Reply(200, self.engine.search_json(found), wrap_calls=True, listed=found.call_ids)
        if missing:
            # The spec marks these required: say which were taken as defaults, so a client that
            # relies on them learns it before a stricter API refuses the request.
            reply.headers[DEFAULTED_HEADER] = ",".join(missing)
        return reply

    def _place(self, request: Request, call_id: str | None, body: bytes) -> Reply:
        payload = json_body(body)
        for name in ("metadata", "prompt_variables"):
            valid_map(name, payload.get(name), strings=True)  # the API's maps hold strings only
        fields = body_fields(payload, ORDER_FIELDS, self.engine.place, ORDER_HINTS)
        call = self.engine.place_call(**fields)
        return json_reply(200, {"call": call}, call_id=call["id"])

    def _action(self, action: str) -> Handler:
        def act(request: Request, call_id: str | None, body: bytes) -> Reply:
            assert call_id is not None
            call = getattr(self.engine, action)(call_id)
            # The API answers {"success": true}; the order as it now stands comes along.
            return json_reply(200, {"success": True, "call": call}, call_id=call_id)

        return act

    # -- simulator routes ------------------------------------------------------------------

    async def _stats_route(self, request: Request) -> Response:
        return self._send(request, json_reply(200, self.stats()))

    async def _reset_route(self, request: Request) -> Response:
        self.reset_stats()
        return self._send(request, json_reply(200, {"reset": True}))

    async def _calls_route(self, request: Request) -> Response:
        return self._send(request, json_reply(200, {"call_ids": self.engine.call_ids()}))

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        path, method = request.url.path, request.method
        if path != "/api" and not path.startswith("/api/"):
            return self._send(
                request, error_reply(404, "not_found", f"no route {path}; the API lives under /api")
            )
        if not path.startswith("/api/_simulator"):
            self._count(f"{method} (unknown)", "404", None)
        return self._send(
            request, error_reply(404, "not_found", f"no route {method} {path.removeprefix('/api')}")
        )

    async def _recording(self, request: Request) -> Response:
        attempt_id = request.path_params["name"].removesuffix(".wav")
        sig = request.query_params.get("sig", "")
        if not hmac.compare_digest(sig.encode(), self.engine.recording_signature(attempt_id).encode()):
            return self._send(
                request, error_reply(403, "forbidden", "invalid or missing recording signature")
            )
        found = self.engine.attempt(attempt_id)
        now = self.engine.clock.now()
        if found is None or found[1].answered_at is None or found[1].ended_at > now:
            return self._send(
                request, error_reply(404, "not_found", f"no recording for attempt {attempt_id}")
            )
        attempt = found[1]
        assert attempt.answered_at is not None
        talk = (attempt.ended_at - attempt.answered_at).total_seconds()
        size = recording_length(talk)
        headers = {**self._headers(request), "content-length": str(size)}
        if request.method == "HEAD":
            return Response(b"", 200, headers, media_type="audio/wav")
        return StreamingResponse(
            self._counted(recording_chunks(attempt_id, talk), size), 200, headers, "audio/wav"
        )

    def _counted(self, chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
        yield from chunks
        with self._stats_lock:
            self._recordings += 1
            self._recording_bytes += size

    async def _index(self, request: Request) -> Response:
        return HTMLResponse(engine_index(self.engine, self._clock_speed), 200, self._headers(request))

    async def _dashboard(self, request: Request) -> Response:
        call_id = request.path_params["call_id"]
        try:
            call = self.engine.get_call(call_id)
        except UnknownCall:
            return HTMLResponse(call_page(call_id, None), 404, self._headers(request))
        return HTMLResponse(call_page(call_id, call), 200, self._headers(request))
