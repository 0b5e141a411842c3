"""Where an export's call orders come from: ``POST /call/search`` pages, not one GET per call.

A search (filters such as ``campaign_ids``) is read page after page; a list of ids is read in
searches of up to :data:`IDS_PER_SEARCH` ids, and only an id a search does not return (an API
that lags, an order the search hides) is fetched with ``GET /call/{id}``. An export then costs
about one request per hundred calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_revox.client.requests import search_args
from airflow_provider_revox.client.responses import CallPage
from airflow_provider_revox.exceptions import RevoxAuthError, RevoxConfigError, RevoxError, is_transient
from airflow_provider_revox.export.fetch import (
    FETCH_ROUND_PAUSE_SECONDS,
    FETCH_ROUNDS,
    FetchedCall,
    Sleep,
    fetch_call,
)
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.models import Call

#: Ids asked for in one search (the API's page size limit).
IDS_PER_SEARCH = 100
#: Orders per page of a search by filters.
SEARCH_PAGE_SIZE = 100

_T = TypeVar("_T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallSearch:
    """The filters of an export by search; a filter left None does not filter.

    Attributes:
        campaign_ids: campaigns the orders belong to.
        statuses: order statuses, such as ``["completed"]``.
        outcomes: ``interested``, ``not_interested``, ... or ``none``.
        results: the last attempt's result (``human``, ``voicemail``, ..., ``none``).
        assistant_ids: assistants the orders use.
        directions: ``inbound`` / ``outbound``.
        to_phone_number: the recipient, E.164.
        query: free text.
    """

    campaign_ids: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    outcomes: tuple[str, ...] | None = None
    results: tuple[str, ...] | None = None
    assistant_ids: tuple[str, ...] | None = None
    directions: tuple[str, ...] | None = None
    to_phone_number: str | None = None
    query: str | None = None

    def filters(self) -> dict[str, Any]:
        """The filters set, by their API names, as the hook's search takes them."""
        found: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None:
                found[field.name] = list(value) if isinstance(value, tuple) else value
        return found

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, for logs, XCom and the watermark's identity."""
        return self.filters()


SEARCH_FIELDS = tuple(field.name for field in fields(CallSearch))


def check_search(search: CallSearch | Mapping[str, Any]) -> CallSearch:
    """Return ``search`` as a :class:`CallSearch`, checked as the API would check it.

    Raises:
        RevoxConfigError: not a mapping or a CallSearch, an unknown filter (named), or a value
            the API would refuse (named); nothing is sent.
    """
    if isinstance(search, CallSearch):
        values: dict[str, Any] = search.filters()
    elif isinstance(search, Mapping):
        unknown = sorted(str(name) for name in search if name not in SEARCH_FIELDS)
        if unknown:
            raise RevoxConfigError(
                f"search: unknown filter(s) {', '.join(unknown)}; the filters are {', '.join(SEARCH_FIELDS)}"
            )
        values = {name: value for name, value in search.items() if value is not None}
    else:
        raise RevoxConfigError(
            f"search must be a CallSearch or a dict of filters, not {type(search).__name__}"
        )
    try:
        checked = search_args(None, 0, SEARCH_PAGE_SIZE, values)["json"]
    except RevoxConfigError as error:
        raise RevoxConfigError(f"search: {error}") from error
    kept: dict[str, Any] = {
        name: tuple(checked[name]) if isinstance(checked[name], list) else checked[name] for name in values
    }
    return CallSearch(**kept)


#: Answers of an API without the search: an export by ids then GETs each call.
NO_SEARCH_STATUSES = frozenset({404, 405, 501})


def in_rounds(
    what: str,
    request: Callable[[], _T],
    sleep: Sleep,
    rounds: int = FETCH_ROUNDS,
    passthrough: frozenset[int] = frozenset(),
) -> _T:
    """Run ``request``; ask again a few rounds later while it fails transiently (as fetch_call).

    An API error whose status is in ``passthrough`` is raised as it is, for the caller to handle.
    """
    round_number = 1
    while True:
        try:
            return request()
        except RevoxError as error:
            if error.status_code is not None and error.status_code in passthrough:
                raise
            if isinstance(error, RevoxAuthError | RevoxConfigError):
                raise AirflowFailException(f"{what} failed: {error}") from error
            if not is_transient(error) or round_number >= rounds:
                raise AirflowException(f"{what} failed after {round_number} round(s): {error}") from error
            sleep(FETCH_ROUND_PAUSE_SECONDS * round_number)
            round_number += 1


def calls_by_ids(
    hook: RevoxHook, call_ids: Sequence[str], sleep: Sleep = time.sleep
) -> Iterator[FetchedCall]:
    """Every order of ``call_ids``, in that order: searches of up to 100 ids, a GET for the rest.

    An order is only ever handed out under its own id (a search answering another id is ignored).
    """
    searching = True
    for start in range(0, len(call_ids), IDS_PER_SEARCH):
        chunk = list(dict.fromkeys(call_ids[start : start + IDS_PER_SEARCH]))
        found: dict[str, Call] = {}
        if searching:
            try:
                page = in_rounds(
                    f"Revox search of {len(chunk)} call(s)",
                    lambda chunk=chunk: hook.search_calls(chunk, page_size=len(chunk)),  # type: ignore[misc]
                    sleep,
                    passthrough=NO_SEARCH_STATUSES,
                )
                found = {call.id: call for call in page.calls}
            except RevoxError as error:
                log.warning("The Revox API has no call search (%s): fetching each call", error.status_code)
                searching = False
        for call_id in call_ids[start : start + IDS_PER_SEARCH]:
            call = found.get(call_id)
            yield FetchedCall(call_id, call if call is not None else fetch_call(hook, call_id, sleep=sleep))


def calls_by_search(
    hook: RevoxHook,
    filters: Mapping[str, Any],
    sleep: Sleep = time.sleep,
    page_size: int = SEARCH_PAGE_SIZE,
    first_page: CallPage | None = None,
) -> Iterator[Call]:
    """Every order matching ``filters`` (those of :meth:`RevoxHook.search_calls`), page by page,
    each once; a page that fails transiently is asked again a few rounds later.

    ``first_page``: page 0, when the caller already read it.
    """
    seen: set[str] = set()
    page_number = 0
    while True:
        if page_number == 0 and first_page is not None:
            page = first_page
        else:
            page = in_rounds(
                f"Revox search page {page_number}",
                lambda n=page_number: hook.search_calls(page=n, page_size=page_size, **filters),  # type: ignore[misc]
                sleep,
            )
        fresh = [call for call in page.calls if call.id not in seen]
        seen.update(call.id for call in fresh)
        yield from fresh
        page_number += 1
        if len(page.calls) < page_size or not fresh or len(seen) >= page.total_count:
            return


__all__ = [
    "IDS_PER_SEARCH",
    "NO_SEARCH_STATUSES",
    "SEARCH_FIELDS",
    "SEARCH_PAGE_SIZE",
    "CallSearch",
    "calls_by_ids",
    "calls_by_search",
    "check_search",
    "in_rounds",
]
