"""The call-order endpoints of :class:`~airflow_provider_revox._internal.hooks.revox.RevoxHook`: place,
cancel, pause, resume and search, sync and async, each returning models.

A mixin: ``RevoxHook`` inherits it and supplies the requests (connection, retries, errors).
Every body is built and checked by :mod:`airflow_provider_revox._internal.client.requests` before it is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from typing_extensions import Required, TypedDict, Unpack

from airflow_provider_revox._internal.client import responses
from airflow_provider_revox._internal.client.requests import (
    CALL_ACTIONS,
    CALLS_ENDPOINT,
    SEARCH_CALLS_ENDPOINT,
    place_call_body,
    search_args,
    validate_call_id,
)
from airflow_provider_revox._internal.client.responses import CallPage
from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.hooks.base import HookCore
from airflow_provider_revox._internal.waiting.pages import PageWalk
from airflow_provider_revox.exceptions import RevoxApiError, RevoxIncompleteReadError, RevoxResponseError


class CallPlacement(TypedDict, total=False):
    """What :meth:`CallEndpoints.place_call` takes (checked by
    :func:`~airflow_provider_revox._internal.client.requests.place_call_body`).

    ``phone_number``: the recipient, a valid E.164 number such as ``+33612345678``;
    ``assistant_id`` or ``assistant`` (an inline configuration): exactly one; ``metadata`` and
    ``prompt_variables``: string maps; ``scheduled_at``: a timezone-aware datetime or ISO 8601
    string; ``from_phone_number``: the caller id, E.164; ``skip_calling_window``: dial even
    outside the calling window; ``concurrency_key``: orders sharing it share a concurrency limit.
    """

    phone_number: Required[str]
    assistant_id: str | None
    assistant: Mapping[str, Any] | None
    metadata: Mapping[str, str] | None
    prompt_variables: Mapping[str, str] | None
    scheduled_at: datetime | str | None
    from_phone_number: str | None
    skip_calling_window: bool | None
    concurrency_key: str | None


class CallFilters(TypedDict, total=False):
    """The filters and sort of ``POST /call/search``, by their API names; None or empty: no filter.

    ``statuses``; ``campaign_ids``; ``assistant_ids``; ``to_phone_number`` (E.164);
    ``from_phone_numbers``; ``outcomes`` (``interested``, ..., ``none``); ``results`` (``human``,
    ``voicemail``, ..., ``none``); ``directions`` (``inbound`` / ``outbound``); ``assignee_ids``;
    ``query`` (free text); ``sort_by`` (``created_at``, ``updated_at``, ...);
    ``sort_direction`` (``asc`` / ``desc``).
    """

    statuses: Sequence[str] | None
    campaign_ids: Sequence[str] | None
    assistant_ids: Sequence[str] | None
    to_phone_number: str | None
    from_phone_numbers: Sequence[str] | None
    outcomes: Sequence[str] | None
    results: Sequence[str] | None
    directions: Sequence[str] | None
    assignee_ids: Sequence[str] | None
    query: str | None
    sort_by: str | None
    sort_direction: str | None


def reached(action: str, status: str) -> bool:
    """Whether an order in ``status`` already is where ``action`` would bring it.

    An action resent after a dropped answer finds its work done and may be refused (409): the
    order is then fetched, and this says whether the refusal only means "already done".
    """
    if action == "cancel":
        return status == statuses.CANCELLED
    if action == "pause":
        return status == statuses.PAUSED
    return status != statuses.PAUSED and not statuses.is_terminal(status)


def _acted(response: httpx.Response, call_id: str, action: str, secrets: Sequence[str]) -> Call | None:
    """The order an action answered with; None when the answer is a bare acknowledgement."""
    body = responses.decode_json(response, secrets)
    if isinstance(body, dict) and body.get("success") is False:
        raise RevoxApiError(
            f"Revox refused to {action} call order {call_id!r} (success: false)",
            status_code=response.status_code,
        )
    try:
        return responses.call_from(response, secrets=secrets, call_id=call_id)
    except RevoxResponseError:
        # The current API answers ``{"success": true}`` only; the order is then fetched.
        return None


class _Pages:
    """Walks the pages of one search and proves it saw every order (see
    :mod:`~airflow_provider_revox._internal.waiting.pages`): an order met twice (orders placed
    while the listing runs shift the pages) is yielded once; a listing whose pages moved or hold
    fewer orders than ``total_count`` is read again, and one never proven complete (an API that
    ignores ``page``) raises rather than end short.
    """

    def __init__(self, page_size: int) -> None:
        self.walk = PageWalk(page_size, full=True)

    @property
    def page(self) -> int:
        return self.walk.page

    @property
    def done(self) -> bool:
        return self.walk.pass_done and self.walk.proven

    def take(self, found: CallPage) -> list[Call]:
        fresh = self.walk.take(found.calls, found.total_count)
        if self.walk.pass_done and not self.walk.proven:
            if not self.walk.more_passes:
                raise RevoxIncompleteReadError(
                    f"Revox call listing incomplete: {self.walk.gap()}",
                    read=len(self.walk.read),
                    total=self.walk.last_total,
                )
            self.walk.next_pass()
        return fresh


class CallEndpoints(HookCore):
    """Place, cancel, pause, resume and search call orders (mixed into ``RevoxHook``)."""

    if TYPE_CHECKING:

        def _call_from(self, response: httpx.Response, call_id: str | None = None) -> Call: ...
        def _page_from(self, response: httpx.Response) -> CallPage: ...

        async def _apage_from(self, response: httpx.Response) -> CallPage: ...
        def get_call(self, call_id: str) -> Call: ...
        async def aget_call(self, call_id: str) -> Call: ...

    # -- placing ------------------------------------------------------------------------------

    def place_call(self, **placement: Unpack[CallPlacement]) -> Call:
        """Place a call order (``POST /call``) and return it.

        Only failures that prove the order was not received (connection refused, 429) are
        retried: after a timeout or a dropped connection the order may exist, so it is never
        sent again blindly (:class:`~airflow_provider_revox.exceptions.RevoxTransportError`).

        Args:
            **placement: the fields of a placement: ``phone_number`` (required,
                E.164), exactly one of ``assistant_id`` / ``assistant``, and optionally
                ``metadata``, ``prompt_variables``, ``scheduled_at``, ``from_phone_number``,
                ``skip_calling_window``, ``concurrency_key``.

        Raises:
            RevoxInvalidRequestError: a field that cannot be sent, named (nothing is sent).
            RevoxTransportError: the request may have reached Revox but no answer came.
        """
        body = place_call_body(**placement)
        return self._call_from(self._request("POST", CALLS_ENDPOINT, json=body, idempotent=False))

    async def aplace_call(self, **placement: Unpack[CallPlacement]) -> Call:
        """Async twin of :meth:`place_call`, with the same checks and the same no-resend rule."""
        body = place_call_body(**placement)
        response = await self._arequest("POST", CALLS_ENDPOINT, json=body, idempotent=False)
        return self._call_from(response)

    # -- actions ------------------------------------------------------------------------------

    # The actions are idempotent in effect (a second cancel leaves the order cancelled), so they
    # are retried like a GET after a timeout or a dropped connection. A resent action that finds
    # its work done may be refused with a 409: the order is then fetched, and the refusal stands
    # only if the order is not where the action would have brought it.

    def _act(self, call_id: str, action: str) -> Call:
        call_id = validate_call_id(call_id)
        response = self._request("POST", f"call/{call_id}/{action}")
        if response.status_code != 409:
            self._check(response, call_id)
            call = _acted(response, call_id, action, self._secrets)
            if call is not None:
                return call
        call = self.get_call(call_id)
        if response.status_code == 409 and not reached(action, call.status):
            self._check(response, call_id)
        return call

    async def _aact(self, call_id: str, action: str) -> Call:
        call_id = validate_call_id(call_id)
        response = await self._arequest("POST", f"call/{call_id}/{action}")
        if response.status_code != 409:
            self._check(response, call_id)
            call = _acted(response, call_id, action, self._secrets)
            if call is not None:
                return call
        call = await self.aget_call(call_id)
        if response.status_code == 409 and not reached(action, call.status):
            self._check(response, call_id)
        return call

    def cancel_call(self, call_id: str) -> Call:
        """Cancel a call order (``POST /call/{id}/cancel``) and return it as it now stands.

        Raises:
            RevoxInvalidCallIdError: an unusable id (nothing is sent).
            RevoxApiError: Revox refused (e.g. 409: the order already ended otherwise).
        """
        return self._act(call_id, CALL_ACTIONS[0])

    async def acancel_call(self, call_id: str) -> Call:
        """Async twin of :meth:`cancel_call`."""
        return await self._aact(call_id, CALL_ACTIONS[0])

    def pause_call(self, call_id: str) -> Call:
        """Pause an order's retry loop (``POST /call/{id}/pause``); return the order.

        Raises:
            RevoxApiError: Revox refused (e.g. 409: the order is post-processing or over).
        """
        return self._act(call_id, CALL_ACTIONS[1])

    async def apause_call(self, call_id: str) -> Call:
        """Async twin of :meth:`pause_call`."""
        return await self._aact(call_id, CALL_ACTIONS[1])

    def resume_call(self, call_id: str) -> Call:
        """Resume a paused order (``POST /call/{id}/resume``); return the order.

        Raises:
            RevoxApiError: Revox refused (e.g. 409: the order is not paused and is over).
        """
        return self._act(call_id, CALL_ACTIONS[2])

    async def aresume_call(self, call_id: str) -> Call:
        """Async twin of :meth:`resume_call`."""
        return await self._aact(call_id, CALL_ACTIONS[2])

    # -- search -------------------------------------------------------------------------------

    def search_calls(
        self,
        call_ids: Sequence[str] | None = None,
        *,
        page: int = 0,
        page_size: int | None = None,
        **filters: Unpack[CallFilters],
    ) -> CallPage:
        """One page of ``POST /call/search``; the search only reads, so it is retried like a GET.

        Ids the API does not know are simply absent from the page.

        Args:
            call_ids: the orders to fetch; None for no id filter (an empty list is refused).
            page: the page, starting at 0.
            page_size: orders per page; by default as many as ``call_ids``, else 100.
            **filters: the filters and sort of ``POST /call/search``, by their API names:
                ``statuses``; ``campaign_ids``; ``assistant_ids``; ``to_phone_number`` (E.164);
                ``from_phone_numbers``; ``outcomes``; ``results``; ``directions``
                (``inbound`` / ``outbound``); ``assignee_ids``; ``query`` (free text);
                ``sort_by`` (``created_at``, ``updated_at``, ...); ``sort_direction``
                (``asc`` / ``desc``). One left None or empty does not filter.

        Raises:
            RevoxConfigError: an unusable id, filter, page or page size (nothing is sent).
            RevoxApiError: the API refused the search (an API without it answers 404 or 405).
            RevoxResponseError: the body is not a page of call orders.
        """
        kwargs = search_args(call_ids, page, page_size, filters)
        return self._page_from(self._request("POST", SEARCH_CALLS_ENDPOINT, **kwargs))

    async def asearch_calls(
        self,
        call_ids: Sequence[str] | None = None,
        *,
        page: int = 0,
        page_size: int | None = None,
        **filters: Unpack[CallFilters],
    ) -> CallPage:
        """Async twin of :meth:`search_calls`."""
        kwargs = search_args(call_ids, page, page_size, filters)
        return await self._apage_from(await self._arequest("POST", SEARCH_CALLS_ENDPOINT, **kwargs))

    def iter_calls(
        self, call_ids: Sequence[str] | None = None, *, page_size: int = 100, **filters: Unpack[CallFilters]
    ) -> Iterator[Call]:
        """Every order matching the filters of :meth:`search_calls`, page after page, each once.

        The filters are checked before the first request. Pages that move while they are read
        are read again.

        Raises:
            RevoxIncompleteReadError: the listing could not be proven complete (an API that
                ignores ``page``, results that kept moving); it names the gap.
        """
        search_args(call_ids, 0, page_size, filters)
        pages = _Pages(page_size)
        while not pages.done:
            found = self.search_calls(call_ids, page=pages.page, page_size=page_size, **filters)
            yield from pages.take(found)

    async def aiter_calls(
        self, call_ids: Sequence[str] | None = None, *, page_size: int = 100, **filters: Unpack[CallFilters]
    ) -> AsyncIterator[Call]:
        """Async twin of :meth:`iter_calls`: ``async for call in hook.aiter_calls(...)``."""
        search_args(call_ids, 0, page_size, filters)
        pages = _Pages(page_size)
        while not pages.done:
            found = await self.asearch_calls(call_ids, page=pages.page, page_size=page_size, **filters)
            for call in pages.take(found):
                yield call
