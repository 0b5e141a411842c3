"""The Revox hook: the API's endpoints over one HTTP client per hook, and recording downloads.

The transport policy lives in :mod:`airflow_provider_revox._internal.client`: the connection's settings
(:mod:`~airflow_provider_revox._internal.client.settings`), the retry policy
(:mod:`~airflow_provider_revox._internal.client.retry`) and the reading of responses
(:mod:`~airflow_provider_revox._internal.client.responses`).

Tests that must not wait can replace :func:`retry_sleep` and :func:`retry_asleep` in this module
(``monkeypatch.setattr(revox_hook_module, "retry_sleep", recorder)``): every retry sleeps through
them, looked up at the moment of sleeping. The waits for the connection's rate limit go through
:func:`rate_sleep` and :func:`rate_asleep`, which call them in turn unless replaced themselves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

import anyio
import httpx
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from airflow_provider_revox._internal.client import responses
from airflow_provider_revox._internal.client.ratelimit import TokenBucket
from airflow_provider_revox._internal.client.requests import (
    AUTH_STATUS_ENDPOINT,
    CALL_ENDPOINT,
    validate_call_id,
)
from airflow_provider_revox._internal.client.responses import CallPage
from airflow_provider_revox._internal.client.servertime import ServerClock
from airflow_provider_revox._internal.client.settings import (
    RevoxSettings,
    check_max_retries,
    check_timeout,
    settings_from_connection,
)
from airflow_provider_revox._internal.client.transport import Transport
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.core.redact import redact_text
from airflow_provider_revox._internal.hooks.campaign import CampaignEndpoints
from airflow_provider_revox._internal.hooks.history import HistoryEndpoints
from airflow_provider_revox._internal.hooks.webhook import WebhookEndpoints
from airflow_provider_revox.exceptions import RevoxConfigError, RevoxError

log = logging.getLogger(__name__)


def retry_sleep(seconds: float) -> None:
    """Sleep between sync retries (replaceable in tests)."""
    time.sleep(seconds)


async def retry_asleep(seconds: float) -> None:
    """Sleep between async retries (replaceable in tests)."""
    await asyncio.sleep(seconds)


def rate_sleep(seconds: float) -> None:
    """Wait for the connection's rate limit in a thread: through :func:`retry_sleep` (replaceable)."""
    retry_sleep(seconds)


async def rate_asleep(seconds: float) -> None:
    """Wait for the connection's rate limit on the event loop: through :func:`retry_asleep` (replaceable)."""
    await retry_asleep(seconds)


class RevoxHook(WebhookEndpoints, CampaignEndpoints, HistoryEndpoints, BaseHook):
    """Talk to the Revox API: fetch, place, cancel, pause, resume and search call orders, run
    campaigns, read the phone history (do-not-contact), download recordings. Every endpoint has
    a blocking method and an async twin named with a leading ``a`` (``get_call`` / ``aget_call``).

    Args:
        revox_conn_id: the Airflow connection holding the API key (password or extra ``api_key``)
            and, optionally, the base URL (host) and extras (``timeout``, ``max_retries``,
            ``max_requests_per_second``, ``adaptive_rate``, ``batch_polls``, ``max_response_mb``,
            ``max_recording_mb``, ``download_timeout``, ``allow_insecure_http``; checked before
            the first request).
        timeout: overall seconds per request (connect: at most 5 s); overrides the extra.
        max_retries: retries on 429, 5xx, timeouts and dropped connections; overrides the extra.
        transport: an httpx transport to use instead of the network (``httpx.MockTransport`` in
            unit tests); a transport that is both sync and async serves both clients.
        logger_name: name of the logger, as for any Airflow hook.
        sleep: sleeps between blocking retries (default: ``time.sleep``); tests pass a recorder.
        asleep: sleeps between async retries (default: ``asyncio.sleep``).
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
        sleep: Callable[[float], None] | None = None,
        asleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(logger_name=logger_name)
        self.revox_conn_id = revox_conn_id
        self._timeout = None if timeout is None else check_timeout(timeout)
        self._max_retries = None if max_retries is None else check_max_retries(max_retries)
        self._settings: RevoxSettings | None = None
        self._secrets: tuple[str, ...] = ()
        #: The API's clock; sensors and triggers schedule their waits on it.
        self.server_clock = ServerClock()
        self._transport = Transport(
            transport,
            clock=self.server_clock,
            secrets=lambda: self._secrets,
            # Looked up when sleeping, so a test's replacement of the module functions is seen.
            sleep=sleep or (lambda seconds: retry_sleep(seconds)),
            asleep=asleep or (lambda seconds: retry_asleep(seconds)),
            rate_sleep=lambda seconds: rate_sleep(seconds),
            rate_asleep=lambda seconds: rate_asleep(seconds),
        )

    def __repr__(self) -> str:
        base = self._settings.base_url if self._settings else "unresolved"
        return f"{type(self).__name__}(revox_conn_id={self.revox_conn_id!r}, base_url={base!r})"

    # -- connection ---------------------------------------------------------------------------

    def _read(self, conn: Any) -> RevoxSettings:
        settings = settings_from_connection(conn, timeout=self._timeout, max_retries=self._max_retries)
        # A webhook token comes back in every call of an assistant pointed at the endpoint
        # (its ``webhook_url``), so it is masked like the key.
        for secret in (settings.api_key, *settings.webhook_tokens):
            if secret and secret not in self._secrets:
                self._secrets += (secret,)
        return settings

    def _resolve(self) -> RevoxSettings:
        if self._settings is None:
            self._settings = self._read(self.get_connection(self.revox_conn_id))
        return self._settings

    async def _aconnection(self) -> Any:
        try:
            return await self.aget_connection(self.revox_conn_id)
        except Exception as error:
            # ``dag.test()`` runs without a supervisor, so the async lookup cannot see
            # connections stored only in the metadata database; the sync one can.
            log.debug("Async lookup of %r failed (%s); using the sync one", self.revox_conn_id, error)
            return await asyncio.to_thread(self.get_connection, self.revox_conn_id)

    async def _aresolve(self) -> RevoxSettings:
        if self._settings is None:
            self._settings = self._read(await self._aconnection())
        return self._settings

    def _take_new_key(self, fresh: RevoxSettings, refused: str | None) -> bool:
        """Adopt the key of a re-read connection; True when it is not the one refused."""
        current = self._resolve()
        refused = current.api_key if refused is None else refused
        if fresh.api_key == refused:
            return False
        if fresh.api_key != current.api_key:
            mask_secret(fresh.api_key)
            self._settings = dataclasses.replace(current, api_key=fresh.api_key)
            log.info("Revox connection %r holds a new API key; retrying with it", self.revox_conn_id)
        return True

    def reread_key(self, refused: str | None = None) -> bool:
        """Re-read the connection after a refused key (the key may have been rotated).

        Args:
            refused: the key the API refused (default: the one in use); requests that were in
                flight together pass theirs, so only the first re-read changes anything.

        Returns:
            True when the connection now holds another key, which later requests use.
        """
        return self._take_new_key(self._read(self.get_connection(self.revox_conn_id)), refused)

    async def areread_key(self, refused: str | None = None) -> bool:
        """Async twin of :meth:`reread_key`."""
        return self._take_new_key(self._read(await self._aconnection()), refused)

    def connection_settings(self) -> RevoxSettings:
        """What the hook read from its connection (read once, on first use)."""
        return self._resolve()

    async def aconnection_settings(self) -> RevoxSettings:
        """Async twin of :meth:`connection_settings`."""
        return await self._aresolve()

    def known_secrets(self) -> tuple[str, ...]:
        """The connection's credentials (each key it held), masked wherever call data might echo them."""
        self._resolve()
        return self._secrets

    def secrets_to_mask(self) -> tuple[str, ...]:
        """:meth:`known_secrets`, or none when the connection cannot be read (no key to mask)."""
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return self.known_secrets()
        except AirflowNotFoundException:
            return ()

    @property
    def base_url(self) -> str:
        """The API base URL, such as ``https://www.getrevox.com/api`` (resolves the connection)."""
        return self._resolve().base_url

    def _clean(self, text: str) -> str:
        return redact_text(text, self._secrets)

    # -- clients ------------------------------------------------------------------------------

    def get_conn(self) -> httpx.Client:
        """The hook's one ``httpx.Client``, created on first use and reused."""
        return self._transport.client(self._resolve())

    async def aget_conn(self) -> httpx.AsyncClient:
        """The hook's ``httpx.AsyncClient`` for the running event loop, created on first use."""
        return self._transport.async_client(await self._aresolve())

    def close(self) -> None:
        """Close the sync client (the hook can be used again: it reopens on demand)."""
        self._transport.close()

    async def aclose(self) -> None:
        """Close both clients."""
        await self._transport.aclose()

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

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        sent = self._resolve()
        response = self._transport.request(sent, method, url, **kwargs)
        if response.status_code in (401, 403) and self.reread_key(sent.api_key):
            # The key may have been rotated since the connection was read: try the new one once.
            response = self._transport.request(self._resolve(), method, url, **kwargs)
        return response

    async def _arequest(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        sent = await self._aresolve()
        response = await self._transport.arequest(sent, method, url, **kwargs)
        if response.status_code in (401, 403) and await self.areread_key(sent.api_key):
            response = await self._transport.arequest(await self._aresolve(), method, url, **kwargs)
        return response

    def rate_bucket(self) -> TokenBucket | None:
        """The rate bucket this hook shares with every hook of its connection in this process.

        None when the connection sets no ``max_requests_per_second`` and turns ``adaptive_rate`` off.
        """
        return self._transport.bucket(self._resolve())

    def _check(self, response: httpx.Response, call_id: str | None = None) -> None:
        responses.raise_for_status(
            response, conn_id=self.revox_conn_id, secrets=self._secrets, call_id=call_id
        )

    def _call_from(self, response: httpx.Response, call_id: str | None = None) -> Call:
        self._check(response, call_id)
        return responses.call_from(response, secrets=self._secrets, call_id=call_id)

    def _page_from(self, response: httpx.Response) -> CallPage:
        self._check(response)
        return responses.page_from(response, self._secrets)

    async def _apage_from(self, response: httpx.Response) -> CallPage:
        self._check(response)
        return await responses.apage_from(response, self._secrets)

    # -- endpoints ------------------------------------------------------------------------

    def get_call(self, call_id: str) -> Call:
        """Fetch a call order (``GET /call/{id}``).

        Raises:
            RevoxInvalidCallIdError: ``call_id`` is not a usable id (nothing is sent).
            RevoxNotFoundError: no such call order.
            RevoxAuthError: the API key was rejected (also after re-reading the connection once).
            RevoxResponseError: the body is not that call order.
        """
        call_id = validate_call_id(call_id)
        return self._call_from(self._request("GET", CALL_ENDPOINT.format(call_id=call_id)), call_id)

    async def aget_call(self, call_id: str) -> Call:
        """Fetch a call order without blocking the event loop; see :meth:`get_call`.

        Cancelling it (``asyncio.timeout`` around the call) cuts the request in flight cleanly.
        """
        call_id = validate_call_id(call_id)
        return self._call_from(await self._arequest("GET", CALL_ENDPOINT.format(call_id=call_id)), call_id)

    def test_connection(self) -> tuple[bool, str]:
        """Prove the API key with ``GET /auth-status``; used by the UI's Test button."""
        try:
            return self._auth_result(self._request("GET", AUTH_STATUS_ENDPOINT))
        except (RevoxError, httpx.HTTPError) as error:
            return False, self._test_message(str(error))

    async def atest_connection(self) -> tuple[bool, str]:
        """Async twin of :meth:`test_connection`."""
        try:
            return self._auth_result(await self._arequest("GET", AUTH_STATUS_ENDPOINT))
        except (RevoxError, httpx.HTTPError) as error:
            return False, self._test_message(str(error))

    def _test_message(self, text: str) -> str:
        # The Test button runs on a copy of the connection under a random id: name none.
        return self._clean(text).replace(f"connection {self.revox_conn_id!r}", "this connection")

    def _auth_result(self, response: httpx.Response) -> tuple[bool, str]:
        self._check(response)
        body = responses.decode_json(response, self._secrets)
        if isinstance(body, dict) and body.get("authenticated") is True:
            return True, f"Authenticated to Revox at {self.base_url}"
        answer = redact_text(str(body)[:65536], self._secrets)[: responses.EXCERPT_LENGTH]
        return False, f"Revox did not accept the API key of this connection (/auth-status answered {answer})"

    # -- downloads ------------------------------------------------------------------------

    def _download_url(self, url: str) -> str:
        if not isinstance(url, str) or not url.strip():
            raise RevoxConfigError("recording URL is empty")
        target = httpx.URL(urljoin(self.base_url + "/", url.strip()))
        if target.scheme not in ("http", "https") or not target.host:
            raise RevoxConfigError(f"recording URL {self._clean(url)!r} is not an http(s) URL")
        return str(target)

    @contextmanager
    def iter_download(self, url: str, chunk_size: int = 65536) -> Iterator[Iterator[bytes]]:
        """Stream a recording: ``with hook.iter_download(url) as chunks: for chunk in chunks: ...``.

        The API key is sent only when ``url`` has the API's own origin. Failures before the first
        byte are retried like any request. The recording must arrive within the extra
        ``download_timeout`` and be at most ``max_recording_mb``.
        """
        response = self._request("GET", self._download_url(url), download=True)
        try:
            self._check(response)
            yield self._transport.limited(self._resolve(), response, chunk_size)
        finally:
            response.close()

    @asynccontextmanager
    async def aiter_download(self, url: str, chunk_size: int = 65536) -> AsyncIterator[AsyncIterator[bytes]]:
        """Async twin of :meth:`iter_download`: ``async with ... as chunks: async for chunk in chunks``."""
        settings = await self._aresolve()
        response = await self._arequest("GET", self._download_url(url), download=True)
        try:
            self._check(response)
            yield self._transport.alimited(settings, response, chunk_size)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
