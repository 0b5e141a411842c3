"""The webhook endpoint: ``POST /revox/webhooks?token=...`` on the Airflow api-server.

The token goes in the query; the older path form ``POST /revox/webhooks/{token}`` is still
served. Either way the app masks the token in the request's ASGI scope once it has read it
(:class:`_MaskTokenInScope`), so the access logs that read the request after the app (Airflow's
``http.access``, which masks a ``token`` query value only from Airflow 3.3, and uvicorn's) write
``***`` in its place.

The handler checks the token (constant time, against the connection's ``webhook_token`` and
``webhook_previous_token``), reads at most :data:`MAX_BODY_BYTES`, takes the call ids the body
names (:mod:`~airflow_provider_revox._internal.core.webhook`) and records one asset event naming
them on the watcher's Asset. It never calls Revox: the consumer reads the calls by id, and the
watcher's poll reconciles whatever no webhook announced. Answers: 202 (recorded, or nothing to
record), 400 (not JSON), 401 (wrong or missing token), 413 (body too large), 503 (the event
could not be stored: the sender retries).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_provider_revox._internal.core.webhook import announced_calls, shape_of, token_matches

#: Largest body read, in bytes (1 MiB); a larger one is refused with 413 before it is read whole.
MAX_BODY_BYTES = 1024 * 1024
#: Seconds the connection's tokens are kept before being read again (a rotation shows within this).
TOKENS_TTL = 10.0

log = logging.getLogger(__name__)

Recorder = Callable[[list[dict[str, Any]]], bool]
TokenSource = Callable[[], Sequence[str]]


class _Once:
    """Log a kind of message once per process: a sender repeating an odd body does not flood the log."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def first(self, kind: str) -> bool:
        with self._lock:
            if kind in self._seen:
                return False
            self._seen.add(kind)
            return True


class CachedTokens:
    """The accepted tokens, read through ``read`` at most once per ``ttl`` seconds."""

    def __init__(
        self, read: TokenSource, ttl: float = TOKENS_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._read, self._ttl, self._clock = read, ttl, clock
        self._tokens: tuple[str, ...] = ()
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self) -> tuple[str, ...]:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._ttl:
                try:
                    self._tokens = tuple(self._read())
                except Exception as error:  # the connection is unreadable: every webhook is refused
                    log.warning("Revox webhooks: cannot read the tokens (%s); refusing", type(error).__name__)
                    self._tokens = ()
                self._read_at = now
            return self._tokens


#: What stands for a token in the request once the app has read it.
MASK = "***"


def _masked_path(path: str) -> str:
    """``path`` with the segment after ``/webhooks/`` (the path form's token) replaced by :data:`MASK`."""
    head, sep, tail = path.rpartition("/webhooks/")
    return head + sep + MASK if sep and tail.strip("/") else path


def _mask_token(scope: Scope) -> None:
    """Put :data:`MASK` for the token in ``scope``'s query (``token=``) and path (``/webhooks/<token>``)."""
    pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    if any(key == "token" for key, _ in pairs):
        masked = [(key, MASK if key == "token" else value) for key, value in pairs]
        scope["query_string"] = urlencode(masked).encode("latin-1")
    scope["path"] = _masked_path(scope.get("path", ""))
    if scope.get("raw_path"):
        scope["raw_path"] = _masked_path(scope["raw_path"].decode("latin-1")).encode("latin-1")


class _MaskTokenInScope:
    """Masks the token in the request's scope once the app has read it, before it answers.

    An ASGI scope is one dict from the server through Airflow's middlewares and mounts down to
    this app: the access logs read its path and query after the app (and uvicorn's when the
    answer starts), so they find the mask. Routing and the handler, which need the token, run
    before.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request; mask the token as the answer starts, and in any case once served."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def masking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                _mask_token(scope)
            await send(message)

        try:
            await self.app(scope, receive, masking_send)
        finally:
            _mask_token(scope)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it passes ``limit`` bytes (the rest is never read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    tokens: TokenSource,
    record: Recorder,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The FastAPI app the plugin mounts under ``/revox``.

    Args:
        tokens: the accepted tokens (the connection's, cached by the caller).
        record: stores one asset event naming the entries; False when it could not (503).
        max_body_bytes: the largest body read.
    """
    app = FastAPI(title="Revox webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_MaskTokenInScope)
    once = _Once()

    def refuse(request: Request) -> JSONResponse:
        # The token is never logged: only that it did not match, and who sent it.
        client = request.client.host if request.client else "unknown"
        log.warning("Revox webhook refused from %s: wrong or missing token", client)
        return JSONResponse({"detail": "unauthorized"}, status_code=401)

    @app.post("/webhooks")
    @app.post("/webhooks/")
    async def by_query(request: Request, token: str | None = None) -> JSONResponse:
        return await webhook(token, request)

    @app.post("/webhooks/{token}")
    async def by_path(token: str, request: Request) -> JSONResponse:
        return await webhook(token, request)

    async def webhook(token: str | None, request: Request) -> JSONResponse:
        # The tokens may be reread from the metadata database: off the event loop.
        if not token or not token_matches(token, await run_in_threadpool(tokens)):
            return refuse(request)
        body = await _read_body(request, max_body_bytes)
        if body is None:
            log.warning("Revox webhook refused: body over %d bytes", max_body_bytes)
            return JSONResponse({"detail": "body too large"}, status_code=413)
        try:
            payload = json.loads(body)
        except ValueError:
            if once.first("not-json"):
                log.warning("Revox webhook with a body that is not JSON (%d bytes): ignored", len(body))
            return JSONResponse({"detail": "body is not JSON"}, status_code=400)
        calls = [call.entry() for call in announced_calls(payload)]
        if not calls:
            if once.first(f"shape:{shape_of(payload)}"):
                log.warning(
                    "Revox webhook naming no call id, shape %s: accepted, nothing recorded (the poll "
                    "reconciles)",
                    shape_of(payload),
                )
            return JSONResponse({"recorded": 0}, status_code=202)
        if not await run_in_threadpool(record, calls):
            return JSONResponse({"detail": "event not stored, retry later"}, status_code=503)
        log.info("Revox webhook: an asset event naming %d call(s)", len(calls))
        return JSONResponse({"recorded": len(calls)}, status_code=202)

    return app
