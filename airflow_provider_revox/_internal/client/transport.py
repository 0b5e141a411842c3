"""Send one request of the hook: its HTTP clients, the rate limit, retries, deadlines and size limits.

Every request has an overall deadline (the connection's ``timeout``), not only a bound on each
read: a server trickling a byte at a time cannot keep a request alive. Bodies are read streamed
and refused past ``max_response_mb``; recordings past ``max_recording_mb`` or
``download_timeout``. Cancelling an async request (``asyncio.timeout`` around a hook call)
closes its connection and leaves the client usable.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import tenacity

from airflow_provider_revox import __version__
from airflow_provider_revox._internal.client import responses
from airflow_provider_revox._internal.client.ratelimit import TokenBucket, bucket_for
from airflow_provider_revox._internal.client.retry import RequestRetryPolicy, parse_retry_after
from airflow_provider_revox._internal.client.servertime import ServerClock
from airflow_provider_revox._internal.client.settings import RevoxSettings
from airflow_provider_revox._internal.core.redact import redact_text
from airflow_provider_revox.exceptions import RevoxError, RevoxRetriesExhaustedError, RevoxTransportError

DEFAULT_CONNECT_TIMEOUT = 5.0
#: How long an idle connection is kept for reuse. httpx's default (5 s) is shorter than any poll
#: interval, so every poll of a sensor or trigger paid a new TCP (and TLS) connection.
KEEPALIVE_EXPIRY = 60.0

# The hook's logger: retry warnings keep the name users filter on.
log = logging.getLogger("airflow_provider_revox._internal.hooks.revox")


@functools.lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """The one TLS context of every client in the process, built on first use.

    Building a context loads the CA bundle: about 20 ms of CPU and 1 MB of memory each time, which
    a triggerer running 1,000 triggers (one client each) would otherwise pay 1,000 times.
    """
    return httpx.create_ssl_context()


def client_options(settings: RevoxSettings) -> dict[str, Any]:
    """What every httpx client of a hook is built with: base URL, timeouts, headers, TLS, keep-alive."""
    return {
        "base_url": settings.base_url + "/",
        # The connect timeout also bounds the TLS handshake, so an https URL pointed at a
        # plain-http server fails within it.
        "timeout": httpx.Timeout(settings.timeout, connect=min(DEFAULT_CONNECT_TIMEOUT, settings.timeout)),
        "headers": {"Accept": "application/json", "User-Agent": f"airflow-provider-revox/{__version__}"},
        "follow_redirects": False,
        "verify": shared_ssl_context(),
        "limits": httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
    }


class _Phase:
    """The last connection step httpcore reported for a request (its ``trace`` extension)."""

    def __init__(self) -> None:
        self.last = ""

    def __call__(self, name: str, info: dict[str, Any]) -> None:
        self.last = name

    async def asynchronous(self, name: str, info: dict[str, Any]) -> None:
        self.last = name

    @property
    def in_tls(self) -> bool:
        return ".start_tls." in self.last


class Transport:
    """The HTTP clients of one hook and the one path every request takes.

    Args:
        transport: an httpx transport to use instead of the network (tests).
        clock: the server clock the responses' headers update.
        secrets: the connection's keys, masked in every message.
        sleep: sleeps between blocking retries.
        asleep: sleeps between retries on the event loop.
        rate_sleep: blocking waits for the rate limit (default ``sleep``).
        rate_asleep: waits for the rate limit on the event loop (default ``asleep``).
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None,
        *,
        clock: ServerClock,
        secrets: Callable[[], Sequence[str]],
        sleep: Callable[[float], None],
        asleep: Callable[[float], Awaitable[None]],
        rate_sleep: Callable[[float], None] | None = None,
        rate_asleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._transport = transport
        self._clock = clock
        self._secrets = secrets
        self._sleep = sleep
        self._asleep = asleep
        self._rate_sleep = rate_sleep or sleep
        self._rate_asleep = rate_asleep or asleep
        self._client: httpx.Client | None = None
        self._async_client: httpx.AsyncClient | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._bucket: TokenBucket | None = None
        self._max_retries = 0

    def _clean(self, text: str) -> str:
        return redact_text(text, self._secrets())

    # -- clients ------------------------------------------------------------------------------

    def client(self, settings: RevoxSettings) -> httpx.Client:
        """The one blocking client, created on first use and reused."""
        if self._client is None or self._client.is_closed:
            transport = self._transport if isinstance(self._transport, httpx.BaseTransport) else None
            self._client = httpx.Client(transport=transport, **client_options(settings))
        return self._client

    def async_client(self, settings: RevoxSettings) -> httpx.AsyncClient:
        """The async client of the running event loop, created on first use."""
        loop = asyncio.get_running_loop()
        client = self._async_client
        if client is None or client.is_closed or self._async_loop is not loop:
            # A client's connections belong to the loop that opened them; a new loop needs a new one.
            transport = self._transport if isinstance(self._transport, httpx.AsyncBaseTransport) else None
            client = self._async_client = httpx.AsyncClient(transport=transport, **client_options(settings))
            self._async_loop = loop
        return client

    def close(self) -> None:
        """Close the blocking client (it reopens on demand)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close both clients."""
        client, self._async_client = self._async_client, None
        if client is not None and self._async_loop is asyncio.get_running_loop():
            await client.aclose()
        self._async_loop = None
        self.close()

    # -- one request --------------------------------------------------------------------------

    def _build(
        self,
        client: httpx.Client | httpx.AsyncClient,
        settings: RevoxSettings,
        method: str,
        url: str,
        **kwargs: Any,
    ) -> tuple[httpx.Request, _Phase]:
        request = client.build_request(method, url, **kwargs)
        if _origin(request.url) == _origin(httpx.URL(settings.base_url)):
            request.headers["Authorization"] = f"Bearer {settings.api_key}"
        phase = _Phase()
        if request.url.scheme == "https":
            is_async = isinstance(client, httpx.AsyncClient)
            request.extensions["trace"] = phase.asynchronous if is_async else phase
        return request, phase

    def bucket(self, settings: RevoxSettings) -> TokenBucket | None:
        """The connection's shared rate bucket; None without a ceiling and with ``adaptive_rate`` off."""
        rate, adaptive = settings.max_requests_per_second, settings.adaptive_rate
        if rate <= 0 and not adaptive:
            return None
        ceiling = rate if rate > 0 else math.inf
        bucket = self._bucket
        if bucket is None or bucket.max_rate != ceiling or bucket.adaptive != adaptive:
            bucket = self._bucket = bucket_for(settings.conn_id, settings.base_url, rate, adaptive)
        return bucket

    def _observe(self, bucket: TokenBucket | None, response: httpx.Response, sent_at: float) -> None:
        if bucket is not None:
            if response.status_code == 429:
                bucket.on_throttled(parse_retry_after(response.headers), sent_at)
            elif response.status_code < 500:
                bucket.on_success()
        self._clock.observe(response.headers)

    @contextmanager
    def _tls_guard(self, request: httpx.Request, phase: _Phase) -> Iterator[None]:
        """A connection that fails during the TLS handshake is not retried: it says why instead."""
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            if phase.in_tls:
                raise self._tls_failed(request, error) from None
            raise

    def _tls_failed(self, request: httpx.Request, error: Exception) -> RevoxTransportError:
        return RevoxTransportError(
            f"Revox request {request.method} {self._clean(request.url.path)}: no TLS handshake with "
            f"{request.url.host}:{request.url.port or 443} "
            f"({type(error).__name__}: {self._clean(str(error))}). "
            "The server may not speak TLS: is the Base URL https:// for a plain http:// server?"
        )

    def _send(
        self, settings: RevoxSettings, request: httpx.Request, phase: _Phase, download: bool
    ) -> httpx.Response:
        bucket = self.bucket(settings)
        sent_at = 0.0
        if bucket is not None:
            bucket.acquire(self._rate_sleep)
            sent_at = bucket.sent()
        deadline = time.monotonic() + settings.timeout
        with self._tls_guard(request, phase):
            response = self.client(settings).send(request, stream=True, follow_redirects=download)
        self._observe(bucket, response, sent_at)
        if download and response.status_code < 400:
            return response
        return responses.read_body(response, settings.max_response_bytes, deadline)

    async def _asend(
        self, settings: RevoxSettings, request: httpx.Request, phase: _Phase, download: bool
    ) -> httpx.Response:
        bucket = self.bucket(settings)
        sent_at = 0.0
        if bucket is not None:
            await bucket.aacquire(self._rate_asleep)
            sent_at = bucket.sent()
        client = self.async_client(settings)
        try:
            with anyio.fail_after(settings.timeout):
                with self._tls_guard(request, phase):
                    response = await client.send(request, stream=True, follow_redirects=download)
                self._observe(bucket, response, sent_at)
                if download and response.status_code < 400:
                    return response
                return await responses.aread_body(response, settings.max_response_bytes)
        except TimeoutError as error:
            if phase.in_tls:
                raise self._tls_failed(request, error) from None
            raise httpx.ReadTimeout(
                f"no complete answer within the timeout of {settings.timeout:g} s", request=request
            ) from None

    def _policy(self, settings: RevoxSettings) -> RequestRetryPolicy:
        self._max_retries = settings.max_retries
        return RequestRetryPolicy(
            sleep=self._sleep, asleep=self._asleep, max_retries=settings.max_retries, on_retry=self.log_retry
        )

    def request(self, settings: RevoxSettings, method: str, url: str, **options: Any) -> httpx.Response:
        """Send a request with retries and return it with its body read.

        Args:
            settings: the connection's settings.
            method: the HTTP method.
            url: relative to the base URL, or absolute.
            options: ``idempotent`` (default True: retried like a GET), ``download`` (default
                False: a successful answer is returned unread, to be streamed), and what
                ``httpx.Client.build_request`` takes (``json``, ``params``).
        """
        idempotent, download = options.pop("idempotent", True), options.pop("download", False)
        request, phase = self._build(self.client(settings), settings, method, url, **options)
        with self._failures(request):
            response: httpx.Response = self._policy(settings).sync(idempotent)(
                self._send, settings, request, phase, download
            )
        return response

    async def arequest(
        self, settings: RevoxSettings, method: str, url: str, **options: Any
    ) -> httpx.Response:
        """Async twin of :meth:`request`."""
        idempotent, download = options.pop("idempotent", True), options.pop("download", False)
        request, phase = self._build(self.async_client(settings), settings, method, url, **options)
        with self._failures(request):
            response: httpx.Response = await self._policy(settings).asynchronous(idempotent)(
                self._asend, settings, request, phase, download
            )
        return response

    # -- download bodies ----------------------------------------------------------------------

    def _download_error(self, response: httpx.Response, error: httpx.HTTPError) -> RevoxError:
        return RevoxTransportError(
            f"Revox download {self._clean(response.request.url.path)} broke off "
            f"({type(error).__name__}: {self._clean(str(error))})"
        )

    def limited(self, settings: RevoxSettings, response: httpx.Response, chunk_size: int) -> Iterator[bytes]:
        """The chunks of a streamed download, within ``max_recording_mb`` and ``download_timeout``."""
        budget = _Budget(settings, response, chunk_size)
        try:
            # Without a chunk size httpx yields bytes as they arrive, so the deadline is checked often.
            for piece in response.iter_bytes():
                yield from budget.take(piece)
        except httpx.HTTPError as error:
            raise self._download_error(response, error) from None

    async def alimited(
        self, settings: RevoxSettings, response: httpx.Response, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """Async twin of :meth:`limited`; a stalled download is cut at its deadline too."""
        budget = _Budget(settings, response, chunk_size)
        pieces = response.aiter_bytes()
        try:
            while True:
                try:
                    with anyio.fail_after(budget.left()):
                        piece = await pieces.__anext__()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise budget.late() from None
                for chunk in budget.take(piece):
                    yield chunk
        except httpx.HTTPError as error:
            raise self._download_error(response, error) from None

    # -- failures -----------------------------------------------------------------------------

    @contextmanager
    def _failures(self, request: httpx.Request) -> Iterator[None]:
        """Turn what the retry policy gave up on into the package's errors."""
        try:
            yield
        except tenacity.RetryError as error:
            raise self.exhausted(error) from None
        except httpx.HTTPError as error:
            raise self._not_retried(request, error) from error

    def _not_retried(self, request: httpx.Request, error: httpx.HTTPError) -> RevoxError:
        # A POST that may have reached the server, or an error retrying cannot fix.
        return RevoxTransportError(
            f"Revox request {request.method} {self._clean(_location(request.url))} failed and was not "
            "retried "
            f"({type(error).__name__}: {self._clean(str(error))})"
        )

    def exhausted(self, error: tenacity.RetryError) -> RevoxRetriesExhaustedError:
        """The error once every try failed, with the last status or transport error."""
        last = error.last_attempt
        tries = last.attempt_number
        request: httpx.Request | None
        if last.failed:
            cause = last.exception()
            detail = f"last error {type(cause).__name__}: {self._clean(str(cause))}"
            status = None
            try:
                request = cause.request if isinstance(cause, httpx.RequestError) else None
            except RuntimeError:  # an httpx error raised without its request
                request = None
        else:
            response = last.result()
            status = response.status_code
            detail = f"last status {status}: {responses.excerpt(response, self._secrets())}"
            request = response.request
        # The server tells a person what did not answer (a wrong host or port is the usual cause); only
        # its origin, so the same outage reads the same for every order.
        where = f" at {_origin_text(request.url)}" if request is not None else ""
        return RevoxRetriesExhaustedError(
            f"Revox API{where} still failing after {tries} tries; {detail}",
            attempts=tries,
            status_code=status,
        )

    def log_retry(self, retry_state: tenacity.RetryCallState, wait: float) -> None:
        """Log each retry at debug level, with the reason (redacted) and the wait.

        Debug, not warning: a wait already says once when its failures start and once when Revox
        answers again; a line per request would flood its log through an outage.
        """
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            error = outcome.exception()
            reason = f"{type(error).__name__}: {self._clean(str(error))}"
        elif outcome is not None:
            reason = f"status {outcome.result().status_code}"
        else:
            reason = "no outcome"
        log.debug(
            "Revox request failed (%s); attempt %d of %d, retrying in %.2f s",
            reason,
            retry_state.attempt_number,
            self._max_retries + 1,
            wait,
        )


class _Budget:
    """What a download may still take: bytes up to ``max_recording_mb``, time up to ``download_timeout``."""

    def __init__(self, settings: RevoxSettings, response: httpx.Response, chunk_size: int) -> None:
        self.limit, self.timeout = settings.max_recording_bytes, settings.download_timeout
        self.deadline = time.monotonic() + self.timeout
        self.response, self.chunk_size, self.size = response, max(1, chunk_size), 0
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            raise responses.too_large(response, self.limit, "max_recording_mb")

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def late(self) -> httpx.ReadTimeout:
        return httpx.ReadTimeout(f"longer than download_timeout ({self.timeout:g} s)")

    def take(self, piece: bytes) -> list[bytes]:
        """Count ``piece`` against the budget; return it cut into chunks of at most the chunk size."""
        self.size += len(piece)
        if self.size > self.limit:
            raise responses.too_large(self.response, self.limit, "max_recording_mb")
        if time.monotonic() > self.deadline:
            raise self.late()
        return [piece[start : start + self.chunk_size] for start in range(0, len(piece), self.chunk_size)]


def _location(url: httpx.URL) -> str:
    """The URL a message may show: without its query, which can carry a credential."""
    return str(url.copy_with(query=None, fragment=None))


def _origin_text(url: httpx.URL) -> str:
    return str(url.copy_with(path="/", query=None, fragment=None)).rstrip("/")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default_port
