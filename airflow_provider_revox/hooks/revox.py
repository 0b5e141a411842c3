"""The Revox hook: one HTTP client per hook, retries with backoff, typed results, no leaked key.

Tests that must not wait can replace :func:`retry_sleep` and :func:`retry_asleep` in this module
(``monkeypatch.setattr(revox_hook_module, "retry_sleep", recorder)``): every retry sleeps through
them, looked up at the moment of sleeping.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
import logging
import math
import random
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

import httpx
import tenacity
from airflow.sdk import BaseHook, Connection
from airflow.sdk.log import mask_secret
from pydantic import ValidationError

from airflow_provider_revox import __version__
from airflow_provider_revox.client.ratelimit import TokenBucket, bucket_for, parse_max_rate
from airflow_provider_revox.client.servertime import ServerClock
from airflow_provider_revox.exceptions import (
    RevoxApiError,
    RevoxAuthError,
    RevoxError,
    RevoxInsecureConnectionError,
    RevoxNotFoundError,
    RevoxResponseError,
    RevoxRetriesExhaustedError,
)
from airflow_provider_revox.get_provider_info import DEFAULT_BASE_URL
from airflow_provider_revox.models import Call
from airflow_provider_revox.redact import redact_text

AUTH_STATUS_ENDPOINT = "auth-status"
CALLS_ENDPOINT = "call"
CALL_ENDPOINT = "call/{call_id}"
CANCEL_CALL_ENDPOINT = "call/{call_id}/cancel"
SEARCH_CALLS_ENDPOINT = "call/search"
#: The filter lists ``POST /call/search`` requires; an empty list does not filter.
SEARCH_FILTERS = (
    "assignee_ids",
    "assistant_ids",
    "campaign_ids",
    "directions",
    "from_phone_numbers",
    "outcomes",
    "results",
    "statuses",
)

DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0
#: How long an idle connection is kept for reuse. httpx's default (5 s) is shorter than any poll
#: interval, so every poll of a sensor or trigger paid a new TCP (and TLS) connection.
KEEPALIVE_EXPIRY = 60.0
DEFAULT_MAX_RETRIES = 5
#: Longest wait honoured from a ``Retry-After`` header.
RETRY_AFTER_CAP = 60.0
#: Exponential backoff without ``Retry-After``: first wait and cap, in seconds.
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 8.0
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_CALL_ID_LENGTH = 128
EXCERPT_LENGTH = 200

# Errors after which the request certainly never reached the server: safe to retry a POST.
_NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout)
# Errors worth retrying for idempotent requests: timeouts and dropped connections.
_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# A plain stdlib logger: Airflow routes it into task and triggerer logs, and tests can capture it.
log = logging.getLogger(__name__)


def retry_sleep(seconds: float) -> None:
    """Sleep between sync retries (replaceable in tests)."""
    time.sleep(seconds)


async def retry_asleep(seconds: float) -> None:
    """Sleep between async retries (replaceable in tests)."""
    await asyncio.sleep(seconds)


@functools.lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """The one TLS context of every client in the process, built on first use.

    Building a context loads the CA bundle: about 20 ms of CPU and 1 MB of memory each time, which
    a triggerer running 1,000 triggers (one client each) would otherwise pay 1,000 times.
    """
    return httpx.create_ssl_context()


def validate_call_id(call_id: Any) -> str:
    """Return ``call_id`` when it is safe to put in a URL path, else raise ``ValueError``.

    Args:
        call_id: the id of a call order, as given by a user or a template.

    Raises:
        ValueError: naming the problem (not a string, empty, too long, or a forbidden character).
    """
    if not isinstance(call_id, str):
        raise ValueError(f"call_id must be a string, not {type(call_id).__name__}")
    if not call_id.strip():
        raise ValueError("call_id is empty")
    if len(call_id) > MAX_CALL_ID_LENGTH:
        raise ValueError(f"call_id is {len(call_id)} characters long; the limit is {MAX_CALL_ID_LENGTH}")
    if _CONTROL.search(call_id):
        raise ValueError(f"call_id {call_id!r} contains a control character")
    if any(char.isspace() for char in call_id):
        raise ValueError(f"call_id {call_id!r} contains whitespace")
    for forbidden in ("/", "?", "#", "%", ".."):
        if forbidden in call_id:
            raise ValueError(f"call_id {call_id!r} contains {forbidden!r}, which is not allowed in an id")
    return call_id


def parse_retry_after(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds to wait as the server asks (``retry-after-ms``, ``Retry-After`` seconds or date).

    Args:
        headers: the response headers.
        now: the current time, for an HTTP-date value (defaults to the real clock).

    Returns:
        The wait capped at :data:`RETRY_AFTER_CAP`, or None when no usable header is present.
    """
    value = headers.get("retry-after-ms")
    if value:
        try:
            millis = float(value)
        except ValueError:
            millis = math.nan
        if math.isfinite(millis):
            return min(max(millis / 1000, 0.0), RETRY_AFTER_CAP)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = (moment - (now or datetime.now(timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


class _RetryAfterWait(tenacity.wait.wait_base):
    """Wait as the last response's ``Retry-After`` asks, else exponential backoff with jitter."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed:
            asked = parse_retry_after(outcome.result().headers)
            if asked is not None:
                return asked
        return backoff_seconds(retry_state.attempt_number)


def backoff_seconds(attempt: int) -> float:
    """Wait after the ``attempt``-th failed try: 0.5 s doubling up to 8 s, plus up to 0.5 s of jitter."""
    exponential = min(BACKOFF_MAX, BACKOFF_INITIAL * float(2 ** min(max(attempt - 1, 0), 32)))
    # Jitter spreads out clients that failed together, so they do not all come back at once.
    return exponential + random.uniform(0, BACKOFF_INITIAL)


@dataclass(frozen=True)
class RequestRetryPolicy:
    """When and how long to retry a request; the one policy behind sync and async calls.

    Args:
        max_retries: retries after the first try (0 sends each request once).
        on_retry: called before each sleep with ``(retry_state, seconds)``; used for the warning log.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    on_retry: Callable[[tenacity.RetryCallState, float], None] | None = None

    def _should_retry(self, idempotent: bool) -> tenacity.retry_base:
        errors = _TRANSIENT_ERRORS if idempotent else _NOT_SENT_ERRORS
        # A 429 means the request was refused before any work, so even a POST may be resent.
        statuses = RETRYABLE_STATUS if idempotent else frozenset({429})
        return tenacity.retry_if_exception_type(errors) | tenacity.retry_if_result(
            lambda response: response.status_code in statuses
        )

    def _before_sleep(self, retry_state: tenacity.RetryCallState) -> None:
        if self.on_retry is not None:
            wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
            self.on_retry(retry_state, wait)

    def _options(self, idempotent: bool) -> dict[str, Any]:
        return {
            "stop": tenacity.stop_after_attempt(self.max_retries + 1),
            "wait": _RetryAfterWait(),
            "retry": self._should_retry(idempotent),
            "before_sleep": self._before_sleep,
            "reraise": False,
        }

    def sync(self, idempotent: bool = True) -> tenacity.Retrying:
        """A tenacity controller for blocking requests."""
        return tenacity.Retrying(sleep=lambda seconds: retry_sleep(seconds), **self._options(idempotent))

    def asynchronous(self, idempotent: bool = True) -> tenacity.AsyncRetrying:
        """A tenacity controller for requests on the event loop."""
        return tenacity.AsyncRetrying(
            sleep=lambda seconds: retry_asleep(seconds), **self._options(idempotent)
        )


@dataclass(frozen=True)
class RevoxSettings:
    """What the hook reads from its Airflow connection (the key never shows in the repr)."""

    conn_id: str
    base_url: str
    api_key: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    allow_insecure_http: bool = False
    #: Requests per second shared by every hook of this connection in the process; 0 = unlimited.
    max_requests_per_second: float = 0.0
    #: Poll many call orders with one ``POST /call/search`` (see :mod:`airflow_provider_revox.client.poller`).
    batch_polls: bool = True


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _base_url_from(conn: Connection) -> str:
    host = (conn.host or "").strip()
    schema = (conn.schema or "").strip().strip("/")
    if not host:
        return DEFAULT_BASE_URL
    if "://" in host:
        url = httpx.URL(host)
    else:
        # A URI connection (revox://:KEY@host/api) lands its path in ``schema``; a UI one may set
        # ``schema`` to http or https.
        scheme = schema.lower() if schema.lower() in ("http", "https") else "https"
        url = httpx.URL(f"{scheme}://{host}")
        if conn.port and url.port is None:
            url = url.copy_with(port=int(conn.port))
        if schema and schema.lower() not in ("http", "https") and url.path in ("", "/"):
            url = url.copy_with(path=f"/{schema}")
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"Revox connection {conn.conn_id!r}: base URL {host!r} is not an http(s) URL")
    return str(url.copy_with(query=None, fragment=None)).rstrip("/")


def _number_extra(conn_id: str, name: str, value: Any, cast: Callable[[Any], Any], minimum: float) -> Any:
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"Revox connection {conn_id!r}: extra {name!r} must be a number, not {value!r}"
        ) from None
    if (isinstance(number, float) and not math.isfinite(number)) or number < minimum:
        raise ValueError(f"Revox connection {conn_id!r}: extra {name!r} must be at least {minimum}")
    return number


def settings_from_connection(
    conn: Connection, *, timeout: float | None = None, max_retries: int | None = None
) -> RevoxSettings:
    """Read base URL, API key, timeout and retries from a connection; arguments win over extras.

    Raises:
        RevoxAuthError: the connection has no API key.
        RevoxInsecureConnectionError: plain http to a host that is not loopback, not allowed.
        ValueError: an unreadable base URL, timeout, max_retries or max_requests_per_second.
    """
    conn_id = conn.conn_id
    extra = conn.extra_dejson or {}
    api_key = (conn.password or extra.get("api_key") or "").strip()
    if not api_key:
        raise RevoxAuthError(
            f"Revox connection {conn_id!r} has no API key: put it in the API key (password) field "
            "or in the extra 'api_key'",
            conn_id=conn_id,
        )
    mask_secret(api_key)
    base_url = _base_url_from(conn)
    allow_insecure = _truthy(extra.get("allow_insecure_http", False))
    url = httpx.URL(base_url)
    if url.scheme == "http" and not _is_loopback(url.host) and not allow_insecure:
        raise RevoxInsecureConnectionError(
            f"Revox connection {conn_id!r} would send the API key over plain http to {url.host}: use "
            "https, or set the extra 'allow_insecure_http' to true if this network is trusted"
        )
    if timeout is None and extra.get("timeout") not in (None, ""):
        timeout = _number_extra(conn_id, "timeout", extra["timeout"], float, 0.001)
    if max_retries is None and extra.get("max_retries") not in (None, ""):
        max_retries = _number_extra(conn_id, "max_retries", extra["max_retries"], int, 0)
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if max_retries is not None and max_retries < 0:
        raise ValueError(f"max_retries must be 0 or more, not {max_retries!r}")
    return RevoxSettings(
        conn_id=conn_id,
        base_url=base_url,
        api_key=api_key,
        timeout=DEFAULT_TIMEOUT if timeout is None else float(timeout),
        max_retries=DEFAULT_MAX_RETRIES if max_retries is None else int(max_retries),
        allow_insecure_http=allow_insecure,
        max_requests_per_second=parse_max_rate(conn_id, extra.get("max_requests_per_second")),
        batch_polls=extra.get("batch_polls") in (None, "") or _truthy(extra["batch_polls"]),
    )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default_port


def validation_problems(error: ValidationError, limit: int) -> str:
    """The first ``limit`` problems of a validation error, as ``field.path: message`` pairs."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()[:limit]
    )


@dataclass(frozen=True)
class CallPage:
    """One page of ``POST /call/search``: the call orders on it and how many match in all."""

    calls: list[Call]
    total_count: int


def search_body(call_ids: Sequence[str], page: int, page_size: int) -> dict[str, Any]:
    """The ``POST /call/search`` body that selects exactly ``call_ids`` (page numbers start at 0)."""
    body: dict[str, Any] = {name: [] for name in SEARCH_FILTERS}
    body.update(call_ids=list(call_ids), page=page, page_size=page_size)
    return body


class RevoxHook(BaseHook):
    """Talk to the Revox API: fetch, place and cancel call orders, download recordings.

    Args:
        revox_conn_id: the Airflow connection holding the API key (password or extra ``api_key``)
            and, optionally, the base URL (host) and extras ``timeout``, ``max_retries``,
            ``allow_insecure_http`` and ``max_requests_per_second`` (see
            :mod:`airflow_provider_revox.client.ratelimit`).
        timeout: seconds per request (connect: at most 5 s); overrides the connection's extra.
        max_retries: retries on 429, 5xx, timeouts and dropped connections; overrides the extra.
        transport: an httpx transport to use instead of the network (``httpx.MockTransport`` in
            unit tests); a transport that is both sync and async serves both clients.
        logger_name: name of the logger, as for any Airflow hook.
    """

    conn_name_attr = "revox_conn_id"
    default_conn_name = "revox_default"
    conn_type = "revox"
    hook_name = "Revox"

    def __init__(
        self,
        revox_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        logger_name: str | None = None,
    ) -> None:
        super().__init__(logger_name=logger_name)
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if max_retries is not None and (isinstance(max_retries, bool) or max_retries < 0):
            raise ValueError(f"max_retries must be 0 or more, not {max_retries!r}")
        self.revox_conn_id = revox_conn_id
        self._timeout = timeout
        self._max_retries = max_retries
        self._transport = transport
        self._settings: RevoxSettings | None = None
        self._client: httpx.Client | None = None
        self._async_client: httpx.AsyncClient | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._bucket: TokenBucket | None = None
        #: The API's clock; sensors and triggers schedule their waits on it.
        self.server_clock = ServerClock()

    def __repr__(self) -> str:
        base = self._settings.base_url if self._settings else "unresolved"
        return f"{type(self).__name__}(revox_conn_id={self.revox_conn_id!r}, base_url={base!r})"

    # -- connection and clients -------------------------------------------------------------

    def _resolve(self) -> RevoxSettings:
        if self._settings is None:
            conn = self.get_connection(self.revox_conn_id)
            self._settings = settings_from_connection(
                conn, timeout=self._timeout, max_retries=self._max_retries
            )
        return self._settings

    async def _aresolve(self) -> RevoxSettings:
        if self._settings is None:
            try:
                conn = await self.aget_connection(self.revox_conn_id)
            except Exception as error:
                # ``dag.test()`` runs without a supervisor, so the async lookup cannot see
                # connections stored only in the metadata database; the sync one can.
                log.debug("Async lookup of %r failed (%s); using the sync one", self.revox_conn_id, error)
                conn = await asyncio.to_thread(self.get_connection, self.revox_conn_id)
            self._settings = settings_from_connection(
                conn, timeout=self._timeout, max_retries=self._max_retries
            )
        return self._settings

    def connection_settings(self) -> RevoxSettings:
        """What the hook read from its connection (read once, on first use)."""
        return self._resolve()

    async def aconnection_settings(self) -> RevoxSettings:
        """Async twin of :meth:`connection_settings`."""
        return await self._aresolve()

    def known_secrets(self) -> tuple[str, ...]:
        """The connection's credentials, to be masked wherever call data might echo them."""
        return (self._resolve().api_key,)

    @property
    def base_url(self) -> str:
        """The API base URL, such as ``https://www.getrevox.com/api`` (resolves the connection)."""
        return self._resolve().base_url

    def _client_options(self, settings: RevoxSettings) -> dict[str, Any]:
        return {
            "base_url": settings.base_url + "/",
            "timeout": httpx.Timeout(
                settings.timeout, connect=min(DEFAULT_CONNECT_TIMEOUT, settings.timeout)
            ),
            "headers": {"Accept": "application/json", "User-Agent": f"airflow-provider-revox/{__version__}"},
            "follow_redirects": False,
            "verify": shared_ssl_context(),
            "limits": httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
        }

    def get_conn(self) -> httpx.Client:
        """The hook's one ``httpx.Client``, created on first use and reused."""
        if self._client is None or self._client.is_closed:
            transport = self._transport if isinstance(self._transport, httpx.BaseTransport) else None
            self._client = httpx.Client(transport=transport, **self._client_options(self._resolve()))
        return self._client

    async def aget_conn(self) -> httpx.AsyncClient:
        """The hook's ``httpx.AsyncClient`` for the running event loop, created on first use."""
        loop = asyncio.get_running_loop()
        client = self._async_client
        if client is None or client.is_closed or self._async_loop is not loop:
            # A client's connections belong to the loop that opened them; a new loop needs a new one.
            settings = await self._aresolve()
            transport = self._transport if isinstance(self._transport, httpx.AsyncBaseTransport) else None
            self._async_client = httpx.AsyncClient(transport=transport, **self._client_options(settings))
            self._async_loop = loop
        return self._async_client  # type: ignore[return-value]

    def close(self) -> None:
        """Close the sync client (the hook can be used again: it reopens on demand)."""
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

    def __enter__(self) -> RevoxHook:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> RevoxHook:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- requests -------------------------------------------------------------------------

    def _policy(self, settings: RevoxSettings) -> RequestRetryPolicy:
        return RequestRetryPolicy(max_retries=settings.max_retries, on_retry=self._log_retry)

    def _log_retry(self, retry_state: tenacity.RetryCallState, wait: float) -> None:
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            error = outcome.exception()
            reason = f"{type(error).__name__}: {self._clean(str(error))}"
        elif outcome is not None:
            reason = f"status {outcome.result().status_code}"
        else:
            reason = "no outcome"
        total = (self._settings.max_retries if self._settings else 0) + 1
        log.warning(
            "Revox request failed (%s); attempt %d of %d, retrying in %.2f s",
            reason,
            retry_state.attempt_number,
            total,
            wait,
        )

    def _build_request(
        self,
        client: httpx.Client | httpx.AsyncClient,
        settings: RevoxSettings,
        method: str,
        url: str,
        **kwargs: Any,
    ) -> httpx.Request:
        request = client.build_request(method, url, **kwargs)
        if _origin(request.url) == _origin(httpx.URL(settings.base_url)):
            request.headers["Authorization"] = f"Bearer {settings.api_key}"
        return request

    def _rate_bucket(self) -> TokenBucket | None:
        """The connection's shared rate bucket, or None when the connection sets no limit."""
        settings = self._settings
        if settings is None or settings.max_requests_per_second <= 0:
            return None
        if self._bucket is None:
            self._bucket = bucket_for(settings.conn_id, settings.base_url, settings.max_requests_per_second)
        return self._bucket

    @staticmethod
    def _report(bucket: TokenBucket | None, response: httpx.Response) -> None:
        if bucket is None:
            return
        if response.status_code == 429:
            bucket.on_throttled(parse_retry_after(response.headers))
        elif response.status_code < 500:
            bucket.on_success()

    def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """Send one request; every sync request of the hook passes here (the rate-limit point)."""
        bucket = self._rate_bucket()
        if bucket is not None:
            bucket.acquire()
        response = self.get_conn().send(request, stream=stream, follow_redirects=stream)
        self._report(bucket, response)
        self.server_clock.observe(response.headers)
        if stream and response.status_code >= 400:
            # Error bodies are small: read them now so the stream never leaks across retries.
            response.read()
            response.close()
        return response

    async def _asend(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """Send one request; every async request of the hook passes here (the rate-limit point)."""
        client = await self.aget_conn()
        bucket = self._rate_bucket()
        if bucket is not None:
            await bucket.aacquire()
        response = await client.send(request, stream=stream, follow_redirects=stream)
        self._report(bucket, response)
        self.server_clock.observe(response.headers)
        if stream and response.status_code >= 400:
            await response.aread()
            await response.aclose()
        return response

    def _request(
        self, method: str, url: str, *, idempotent: bool = True, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        settings = self._resolve()
        request = self._build_request(self.get_conn(), settings, method, url, **kwargs)
        try:
            response: httpx.Response = self._policy(settings).sync(idempotent)(
                self._send, request, stream=stream
            )
        except tenacity.RetryError as error:
            raise self._exhausted(error) from None
        except httpx.HTTPError as error:
            raise self._transport_failed(request, error) from error
        return response

    async def _arequest(
        self, method: str, url: str, *, idempotent: bool = True, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        settings = await self._aresolve()
        request = self._build_request(await self.aget_conn(), settings, method, url, **kwargs)
        try:
            response: httpx.Response = await self._policy(settings).asynchronous(idempotent)(
                self._asend, request, stream=stream
            )
        except tenacity.RetryError as error:
            raise self._exhausted(error) from None
        except httpx.HTTPError as error:
            raise self._transport_failed(request, error) from error
        return response

    def _transport_failed(self, request: httpx.Request, error: httpx.HTTPError) -> RevoxError:
        # Not retried: a POST that may have reached the server, or an error retrying cannot fix.
        return RevoxError(
            f"Revox request {request.method} {self._clean(request.url.path)} failed and was not retried "
            f"({type(error).__name__}: {self._clean(str(error))})"
        )

    def _clean(self, text: str) -> str:
        secrets = (self._settings.api_key,) if self._settings else ()
        return redact_text(text, secrets)

    def _excerpt(self, response: httpx.Response) -> str:
        text = response.text if not response.is_stream_consumed or response.is_closed else ""
        return self._clean(text[:EXCERPT_LENGTH]) or "(empty body)"

    def _exhausted(self, error: tenacity.RetryError) -> RevoxRetriesExhaustedError:
        last = error.last_attempt
        tries = last.attempt_number
        if last.failed:
            cause = last.exception()
            detail = f"last error {type(cause).__name__}: {self._clean(str(cause))}"
            status = None
        else:
            response = last.result()
            status = response.status_code
            detail = f"last status {status}: {self._excerpt(response)}"
        return RevoxRetriesExhaustedError(
            f"Revox API still failing after {tries} tries; {detail}", attempts=tries, status_code=status
        )

    def _raise_for_status(self, response: httpx.Response, *, call_id: str | None = None) -> None:
        """The one table from an error status to the exception a user can act on."""
        status = response.status_code
        if status < 400:
            return
        if status in (401, 403):
            raise RevoxAuthError(
                f"Revox rejected the API key of connection {self.revox_conn_id!r} (HTTP {status}): "
                "check the key in that connection",
                conn_id=self.revox_conn_id,
                status_code=status,
            )
        if status == 404:
            what = f"call order {call_id!r}" if call_id else self._clean(str(response.request.url))
            raise RevoxNotFoundError(
                f"Revox has no {what} for connection {self.revox_conn_id!r} (HTTP 404)",
                call_id=call_id,
                status_code=status,
            )
        raise RevoxApiError(
            f"Revox API answered HTTP {status} to {response.request.method} "
            f"{self._clean(response.request.url.path)}: {self._excerpt(response)}",
            status_code=status,
        )

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise RevoxResponseError(
                f"Revox API answered HTTP {response.status_code} with a body that is not JSON: "
                f"{self._excerpt(response)}",
                status_code=response.status_code,
            ) from None

    def _call_from(self, response: httpx.Response, *, call_id: str | None = None) -> Call:
        self._raise_for_status(response, call_id=call_id)
        payload = self._json(response)
        try:
            return Call.from_response(payload)
        except ValidationError as error:
            problems = validation_problems(error, 3)
            raise RevoxResponseError(
                f"Revox API answered HTTP {response.status_code} with a body that is not a call order "
                f"({problems}): {self._excerpt(response)}",
                status_code=response.status_code,
            ) from None

    def _page_from(self, response: httpx.Response) -> CallPage:
        self._raise_for_status(response)
        payload = self._json(response)
        items = payload.get("calls") if isinstance(payload, dict) else None
        if not isinstance(items, list):
            raise RevoxResponseError(
                f"Revox API answered HTTP {response.status_code} to a call search with a body that has "
                f"no 'calls' list: {self._excerpt(response)}",
                status_code=response.status_code,
            )
        calls = []
        for index, item in enumerate(items):
            try:
                calls.append(Call.from_response(item))
            except ValidationError as error:
                raise RevoxResponseError(
                    f"Revox API answered a call search with calls[{index}] that is not a call order "
                    f"({validation_problems(error, 1)})",
                    status_code=response.status_code,
                ) from None
        total = payload.get("total_count")
        counted = isinstance(total, int | float) and not isinstance(total, bool)
        total_count = int(total) if counted else len(calls)
        return CallPage(calls=calls, total_count=total_count)

    @staticmethod
    def _search_args(call_ids: Sequence[str], page: int, page_size: int | None) -> dict[str, Any]:
        ids = [validate_call_id(call_id) for call_id in call_ids]
        size = page_size if page_size is not None else max(len(ids), 1)
        if isinstance(page, bool) or not isinstance(page, int) or page < 0:
            raise ValueError(f"page must be 0 or more (pages start at 0), not {page!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"page_size must be at least 1, not {size!r}")
        return {"json": search_body(ids, page, size)}

    # -- endpoints ------------------------------------------------------------------------

    def get_call(self, call_id: str) -> Call:
        """Fetch a call order (``GET /call/{id}``).

        Raises:
            ValueError: ``call_id`` is not a usable id (nothing is sent).
            RevoxNotFoundError: no such call order.
            RevoxAuthError: the API key was rejected.
        """
        call_id = validate_call_id(call_id)
        response = self._request("GET", CALL_ENDPOINT.format(call_id=call_id))
        return self._call_from(response, call_id=call_id)

    async def aget_call(self, call_id: str) -> Call:
        """Fetch a call order without blocking the event loop; see :meth:`get_call`."""
        call_id = validate_call_id(call_id)
        response = await self._arequest("GET", CALL_ENDPOINT.format(call_id=call_id))
        return self._call_from(response, call_id=call_id)

    def search_calls(
        self, call_ids: Sequence[str], *, page: int = 0, page_size: int | None = None
    ) -> CallPage:
        """Fetch many call orders in one request (``POST /call/search`` filtered by ``call_ids``).

        Ids the API does not know are simply absent from the page. The search only reads, so it
        is retried like a GET.

        Args:
            call_ids: the orders to fetch.
            page: the page, starting at 0.
            page_size: orders per page; by default as many as ``call_ids``.

        Raises:
            ValueError: an unusable id, page or page size (nothing is sent).
            RevoxAuthError: the API key was rejected.
            RevoxApiError: the API refused the search (an API without it answers 404 or 405).
            RevoxResponseError: the body is not a page of call orders.
        """
        kwargs = self._search_args(call_ids, page, page_size)
        response = self._request("POST", SEARCH_CALLS_ENDPOINT, **kwargs)
        return self._page_from(response)

    async def asearch_calls(
        self, call_ids: Sequence[str], *, page: int = 0, page_size: int | None = None
    ) -> CallPage:
        """Fetch many call orders in one request without blocking; see :meth:`search_calls`."""
        kwargs = self._search_args(call_ids, page, page_size)
        response = await self._arequest("POST", SEARCH_CALLS_ENDPOINT, **kwargs)
        return self._page_from(response)

    def place_call(self, **payload: Any) -> Call:
        """Place a call order (``POST /call`` with ``payload`` as the JSON body).

        Only failures that prove the order was not received (connection refused, 429) are retried,
        so a timeout never places the same order twice.
        """
        response = self._request("POST", CALLS_ENDPOINT, json=payload, idempotent=False)
        return self._call_from(response)

    def cancel_call(self, call_id: str) -> Call:
        """Cancel a call order (``POST /call/{id}/cancel``) and return it as it now stands."""
        call_id = validate_call_id(call_id)
        response = self._request("POST", CANCEL_CALL_ENDPOINT.format(call_id=call_id))
        self._raise_for_status(response, call_id=call_id)
        try:
            return self._call_from(response, call_id=call_id)
        except RevoxResponseError:
            # Some API versions answer a cancel with a bare acknowledgement, not the order.
            return self.get_call(call_id)

    def test_connection(self) -> tuple[bool, str]:
        """Prove the API key with ``GET /auth-status``; used by the UI's Test button."""
        try:
            response = self._request("GET", AUTH_STATUS_ENDPOINT)
            return self._auth_result(response)
        except (RevoxError, ValueError, httpx.HTTPError) as error:
            return False, self._clean(str(error))

    async def atest_connection(self) -> tuple[bool, str]:
        """Async twin of :meth:`test_connection`."""
        try:
            response = await self._arequest("GET", AUTH_STATUS_ENDPOINT)
            return self._auth_result(response)
        except (RevoxError, ValueError, httpx.HTTPError) as error:
            return False, self._clean(str(error))

    def _auth_result(self, response: httpx.Response) -> tuple[bool, str]:
        self._raise_for_status(response)
        body = self._json(response)
        if isinstance(body, dict) and body.get("authenticated") is True:
            return True, f"Authenticated to Revox at {self._resolve_base_url()}"
        return False, (
            f"Revox did not accept the API key of connection {self.revox_conn_id!r} "
            f"(/auth-status answered {self._clean(str(body))[:EXCERPT_LENGTH]})"
        )

    def _resolve_base_url(self) -> str:
        return self._settings.base_url if self._settings else "?"

    # -- downloads ------------------------------------------------------------------------

    def _download_url(self, url: str) -> str:
        if not isinstance(url, str) or not url.strip():
            raise ValueError("recording URL is empty")
        target = httpx.URL(urljoin(self._resolve_base_url() + "/", url.strip()))
        if target.scheme not in ("http", "https") or not target.host:
            raise ValueError(f"recording URL {self._clean(url)!r} is not an http(s) URL")
        return str(target)

    @contextmanager
    def iter_download(self, url: str, chunk_size: int = 65536) -> Iterator[Iterator[bytes]]:
        """Stream a recording: ``with hook.iter_download(url) as chunks: for chunk in chunks: ...``.

        The API key is sent only when ``url`` has the API's own origin. Failures before the first
        byte are retried like any request.
        """
        self._resolve()
        response = self._request("GET", self._download_url(url), stream=True)
        try:
            self._raise_for_status(response)
            yield response.iter_bytes(chunk_size)
        finally:
            response.close()

    @asynccontextmanager
    async def aiter_download(self, url: str, chunk_size: int = 65536) -> AsyncIterator[AsyncIterator[bytes]]:
        """Async twin of :meth:`iter_download`: ``async with ... as chunks: async for chunk in chunks``."""
        await self._aresolve()
        response = await self._arequest("GET", self._download_url(url), stream=True)
        try:
            self._raise_for_status(response)
            yield response.aiter_bytes(chunk_size)
        finally:
            await response.aclose()


__all__ = [
    "AUTH_STATUS_ENDPOINT",
    "CALLS_ENDPOINT",
    "CALL_ENDPOINT",
    "CANCEL_CALL_ENDPOINT",
    "SEARCH_CALLS_ENDPOINT",
    "CallPage",
    "RequestRetryPolicy",
    "RevoxHook",
    "RevoxSettings",
    "backoff_seconds",
    "parse_retry_after",
    "retry_asleep",
    "retry_sleep",
    "settings_from_connection",
    "shared_ssl_context",
    "validate_call_id",
]
