"""From an HTTP response to a result or the exception a user can act on.

One table maps error statuses to exceptions; every body is read with a size limit and an
overall deadline, decoded here, and shown in messages only as a redacted excerpt.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from pydantic import ValidationError
from pydantic_core import from_json

from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.core.redact import redact_text
from airflow_provider_revox.exceptions import (
    RevoxApiError,
    RevoxAuthError,
    RevoxNotFoundError,
    RevoxResponseError,
    RevoxResponseTooLargeError,
)

#: Orders of a search page validated between two hand-backs of the event loop (async reads).
PAGE_SLICE = 10
#: Characters of a body quoted in an error message.
EXCERPT_LENGTH = 200
#: Characters of a body redacted before the excerpt is cut from it.
_EXCERPT_SOURCE = 65536


@dataclass(frozen=True)
class CallPage:
    """One page of ``POST /call/search``: the call orders on it and how many match in all."""

    calls: list[Call]
    total_count: int


def excerpt(response: httpx.Response, secrets: Sequence[str]) -> str:
    """The start of a read body, redacted as a whole and then cut (a key never shows in part)."""
    text = response.text[:_EXCERPT_SOURCE] if not response.is_stream_consumed or response.is_closed else ""
    return redact_text(text, secrets)[:EXCERPT_LENGTH] or "(empty body)"


def too_large(response: httpx.Response, limit: int, extra: str) -> RevoxResponseTooLargeError:
    """The error for a body over ``limit`` bytes, naming the extra that raises the limit."""
    return RevoxResponseTooLargeError(
        f"Revox API answered {response.request.method} {response.request.url.path} with a body of "
        f"more than {limit:,} bytes; raise the connection extra {extra!r} (in MiB) if that is expected",
        status_code=response.status_code,
    )


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _body_response(response: httpx.Response, chunks: list[bytes]) -> httpx.Response:
    # The chunks are already decoded: drop the encoding so the copy is not decoded twice.
    headers = [(name, value) for name, value in response.headers.multi_items() if name != "content-encoding"]
    return httpx.Response(
        response.status_code, headers=headers, content=b"".join(chunks), request=response.request
    )


def read_body(response: httpx.Response, limit: int, deadline: float) -> httpx.Response:
    """Read a streamed response into memory: at most ``limit`` bytes, done by ``deadline`` (monotonic).

    Raises:
        RevoxResponseTooLargeError: the body is larger than ``limit``.
        httpx.ReadTimeout: the body was still arriving at the deadline.
    """
    try:
        if (_content_length(response) or 0) > limit:
            raise too_large(response, limit, "max_response_mb")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise too_large(response, limit, "max_response_mb")
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("the response took longer than the timeout", request=response.request)
            chunks.append(chunk)
    finally:
        response.close()
    return _body_response(response, chunks)


async def aread_body(response: httpx.Response, limit: int) -> httpx.Response:
    """Async twin of :func:`read_body`; the caller bounds it in time (the whole attempt has a deadline)."""
    try:
        if (_content_length(response) or 0) > limit:
            raise too_large(response, limit, "max_response_mb")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise too_large(response, limit, "max_response_mb")
            chunks.append(chunk)
    finally:
        with anyio.CancelScope(shield=True):
            await response.aclose()
    return _body_response(response, chunks)


def raise_for_status(
    response: httpx.Response, *, conn_id: str, secrets: Sequence[str], call_id: str | None = None
) -> None:
    """The one table from an error status to the exception a user can act on."""
    status = response.status_code
    if status < 400:
        return
    if status in (401, 403):
        raise RevoxAuthError(
            f"Revox rejected the API key of connection {conn_id!r} (HTTP {status}): check the key in "
            "the connection",
            conn_id=conn_id,
            status_code=status,
        )
    if status == 404:
        what = f"call order {call_id!r}" if call_id else redact_text(str(response.request.url), secrets)
        raise RevoxNotFoundError(
            f"Revox has no {what} for connection {conn_id!r} (HTTP 404)", call_id=call_id, status_code=status
        )
    raise RevoxApiError(
        f"Revox API answered HTTP {status} to {response.request.method} "
        f"{redact_text(response.request.url.path, secrets)}: {excerpt(response, secrets)}",
        status_code=status,
    )


def decode_json(response: httpx.Response, secrets: Sequence[str]) -> Any:
    """The JSON body; any decoding failure (not JSON, bad text, nesting too deep) is a RevoxResponseError."""
    try:
        # pydantic's parser reads a page of orders in half the time of the json module and
        # shares its repeated strings (keys, statuses) instead of allocating each one again.
        return from_json(response.content)
    except ValueError:
        pass  # what it refuses (another encoding, lone surrogates, deep nesting), json decides
    try:
        return response.json()
    except (ValueError, RecursionError):
        raise RevoxResponseError(
            f"Revox API answered HTTP {response.status_code} with a body that is not JSON (or is nested "
            f"too deeply to read): {excerpt(response, secrets)}",
            status_code=response.status_code,
        ) from None


def validation_problems(error: ValidationError, limit: int) -> str:
    """The first ``limit`` problems of a validation error, as ``field.path: message`` pairs."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()[:limit]
    )


def _call_of(payload: Any) -> Call:
    """A call order from decoded JSON; raises ``ValueError`` (with the problems) when it is not one."""
    try:
        return Call.from_response(payload)
    except ValidationError as error:
        raise ValueError(validation_problems(error, 3)) from None
    except (RecursionError, TypeError, ValueError):
        raise ValueError("unreadable") from None


def call_from(response: httpx.Response, *, secrets: Sequence[str], call_id: str | None = None) -> Call:
    """The call order of a successful response; when ``call_id`` is given, it must be that order.

    Raises:
        RevoxResponseError: not a call order, or another order than the one asked for.
    """
    payload = decode_json(response, secrets)
    try:
        call = _call_of(payload)
    except ValueError as error:
        raise RevoxResponseError(
            f"Revox API answered HTTP {response.status_code} with a body that is not a call order "
            f"({error}): {excerpt(response, secrets)}",
            status_code=response.status_code,
        ) from None
    if call_id is not None and call.id != call_id:
        # Accepting it would report (and export) another order's result as this one's.
        raise RevoxResponseError(
            f"Revox API answered a request for call order {call_id!r} with order "
            f"{redact_text(str(call.id), secrets)[:EXCERPT_LENGTH]!r}",
            status_code=response.status_code,
        )
    return call


#: Set by :func:`collector_held` in the current task: the pause a page read begins is ended by
#: the holder, once the page is handled and dropped, not when the page is read.
_HOLDER: ContextVar[list[bool] | None] = ContextVar("revox_collector_holder", default=None)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector for a short synchronous burst of allocations.

    A page of a hundred full orders is some five thousand dicts and models, alive until the
    page is handled, then freed by reference counting. A collection that runs while they are
    alive promotes them towards the oldest generation, whose growth starts full collections:
    in a triggerer (a process holding all of Airflow) each one stops the event loop for about
    a tenth of a second. Paused, they are freed where they were made. A collector someone else
    disabled stays disabled.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    holder = _HOLDER.get()
    try:
        yield
    finally:
        if holder is None:
            gc.enable()
        else:
            holder.append(True)


@contextmanager
def collector_held() -> Iterator[None]:
    """Keep a pause begun by a page read inside this block until the block ends.

    For a caller that handles the page and drops it right after reading it, with no ``await``
    in between: the page never meets a collection.
    """
    holder: list[bool] = []
    token = _HOLDER.set(holder)
    try:
        yield
    finally:
        _HOLDER.reset(token)
        if holder:
            gc.enable()


def page_from(response: httpx.Response, secrets: Sequence[str]) -> CallPage:
    """The page of a successful ``POST /call/search`` response.

    Raises:
        RevoxResponseError: the body is not a page of call orders.
    """
    with collector_paused():
        payload, items = _page_items(response, secrets)
        return _page(payload, [_page_call(response, index, item) for index, item in enumerate(items)])


async def apage_from(response: httpx.Response, secrets: Sequence[str]) -> CallPage:
    """:func:`page_from` on an event loop: the loop is handed back every :data:`PAGE_SLICE` orders.

    Validating a page of a hundred full orders at once held a triggerer's loop for tens of
    milliseconds (far more on a busy machine), delaying every other trigger by as much.

    Raises:
        RevoxResponseError: the body is not a page of call orders.
    """
    lock, holder = digest_turn(), _TURN_HOLDER.get()
    held = holder is not None and lock in holder
    if not held:
        await lock.acquire()
    try:
        with collector_paused():
            payload, items = _page_items(response, secrets)
            calls = []
            for index, item in enumerate(items):
                calls.append(_page_call(response, index, item))
                if index % PAGE_SLICE == PAGE_SLICE - 1:
                    await asyncio.sleep(0)
            return _page(payload, calls)
    finally:
        if holder is None:
            lock.release()
        elif not held:
            holder.append(lock)


#: Set by :func:`turn_held` in the current task: the turn a page read takes is given back by the
#: holder, once the page's orders are handed over, not when the page is read.
_TURN_HOLDER: ContextVar[list[asyncio.Lock] | None] = ContextVar("revox_turn_holder", default=None)

_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def digest_turn() -> asyncio.Lock:
    """The lock by which one task at a time of the running event loop digests a page of orders.

    Handing the loop back between slices is not enough on its own: sixteen searches answered
    together would each run a slice in every turn of the loop, and a timer waits for all of
    them. Holding this lock across its slices, one page is read at a time, so a turn of the
    loop runs one slice of a page read, whatever the number of requests in flight. Not
    reentrant: a holder must not read another page inside.
    """
    loop = asyncio.get_running_loop()
    lock = _turns.get(loop)
    if lock is None:
        lock = _turns[loop] = asyncio.Lock()
    return lock


@contextmanager
def turn_held() -> Iterator[None]:
    """Keep the turn a page read takes (:func:`digest_turn`) inside this block until it ends.

    For a caller that hands the page's orders over right after reading it: no other page is read
    in between, so pages read do not pile up waiting for their turn while holding their orders.
    """
    holder: list[asyncio.Lock] = []
    token = _TURN_HOLDER.set(holder)
    try:
        yield
    finally:
        _TURN_HOLDER.reset(token)
        for lock in holder:
            lock.release()


def _page_items(response: httpx.Response, secrets: Sequence[str]) -> tuple[dict[str, Any], list[Any]]:
    payload = decode_json(response, secrets)
    items = payload.get("calls") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise RevoxResponseError(
            f"Revox API answered HTTP {response.status_code} to a call search with a body that has "
            f"no 'calls' list: {excerpt(response, secrets)}",
            status_code=response.status_code,
        )
    return payload, items


def _page_call(response: httpx.Response, index: int, item: Any) -> Call:
    try:
        return _call_of(item)
    except ValueError as error:
        raise RevoxResponseError(
            f"Revox API answered a call search with calls[{index}] that is not a call order ({error})",
            status_code=response.status_code,
        ) from None


def _page(payload: dict[str, Any], calls: list[Call]) -> CallPage:
    total: Any = payload.get("total_count")
    counted = isinstance(total, int | float) and not isinstance(total, bool) and math.isfinite(total)
    return CallPage(calls=calls, total_count=int(total) if counted else len(calls))
