"""Where an export's call orders come from: ``POST /call/search`` pages, not one GET per call.

A search (filters such as ``campaign_ids``) is read page after page; a list of ids is read in
searches of up to :data:`IDS_PER_SEARCH` ids, and only an id a search does not return (an API
that lags, an order the search hides) is fetched with ``GET /call/{id}``. An export then costs
about one request per hundred calls. A read by page number proves it saw every matching order,
or reads again, or fails naming the gap (:mod:`~airflow_provider_revox._internal.waiting.pages`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_revox._internal.client.requests import search_args
from airflow_provider_revox._internal.client.responses import CallPage
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.core.redact import redact_text
from airflow_provider_revox._internal.export.fetch import (
    FETCH_ROUND_PAUSE_SECONDS,
    FETCH_ROUNDS,
    FetchedCall,
    Sleep,
    fetch_call,
)
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.waiting.ids import (
    NATIVE_HINT,
    holds_template,
    text_form_of_data,
    unrendered,
)
from airflow_provider_revox._internal.waiting.pages import PageWalk
from airflow_provider_revox.exceptions import (
    RevoxAuthError,
    RevoxConfigError,
    RevoxError,
    RevoxIncompleteReadError,
    is_transient,
)

#: Ids asked for in one search.
IDS_PER_SEARCH = 100
#: Orders per page of an export by search: one request per 100 calls, and the pages held at once
#: (this one and the next, fetched ahead) stay a few megabytes.
SEARCH_PAGE_SIZE = 100
#: Orders asked for per page of an incremental read: an hourly run reads its new orders in one
#: request (a page of 1,000 orders holds about 50 MB while it is read, and is not fetched
#: ahead). The API documents no page limit; an API that serves fewer per page is read at its own
#: limit (see :class:`~airflow_provider_revox._internal.waiting.pages.PageWalk`'s ``capped``).
INCREMENTAL_PAGE_SIZE = 1000

_T = TypeVar("_T")


def asked_page_size(page_size: int | None, default: str = "SEARCH_PAGE_SIZE") -> int:
    """``page_size``, or the module's ``default`` (read now, so tests can set it) when None."""
    return int(globals()[default]) if page_size is None else page_size


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

    The next search is sent while the caller works on the orders of the previous one. An order
    is only ever handed out under its own id (a search answering another id is ignored).
    """
    chunks = [call_ids[start : start + IDS_PER_SEARCH] for start in range(0, len(call_ids), IDS_PER_SEARCH)]
    searching = True

    def search(chunk: Sequence[str]) -> dict[str, Call]:
        unique = list(dict.fromkeys(chunk))
        page = in_rounds(
            f"Revox search of {len(unique)} call(s)",
            lambda: hook.search_calls(unique, page_size=len(unique)),
            sleep,
            passthrough=NO_SEARCH_STATUSES,
        )
        return {call.id: call for call in page.calls}

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="revox-search") as pool:
        ahead: Future[dict[str, Call]] | None = pool.submit(search, chunks[0]) if chunks else None
        for index, chunk in enumerate(chunks):
            found: dict[str, Call] = {}
            if searching and ahead is not None:
                try:
                    found = ahead.result()
                except RevoxError as error:
                    log.warning(
                        "The Revox API has no call search (%s): fetching each call", error.status_code
                    )
                    searching = False
            more = searching and index + 1 < len(chunks)
            ahead = pool.submit(search, chunks[index + 1]) if more else None
            for call_id in chunk:
                call = found.get(call_id)
                yield FetchedCall(
                    call_id, call if call is not None else fetch_call(hook, call_id, sleep=sleep)
                )


def calls_by_search(
    hook: RevoxHook,
    filters: Mapping[str, Any],
    sleep: Sleep = time.sleep,
    page_size: int | None = None,
    first_page: CallPage | None = None,
    prefetch: bool = True,
) -> Iterator[Call]:
    """Every order matching ``filters`` (those of :meth:`RevoxHook.search_calls`), page by page,
    each once; a page that fails transiently is asked again a few rounds later.

    The read proves it saw every matching order (see
    :mod:`~airflow_provider_revox._internal.waiting.pages`): when the pages moved under it or hold
    fewer orders than ``total_count``, it reads the results again, handing out only orders not
    handed out yet, and fails rather than end short.

    Args:
        hook: the hook to search with.
        filters: the search filters, by their API names.
        sleep: how to pause between rounds.
        page_size: orders per page to ask for; :data:`SEARCH_PAGE_SIZE` by default.
        first_page: page 0, when the caller already read it (asked with ``page_size``).
        prefetch: ask for the next page while the caller works on this one
            (False for a caller that may stop early: it would cost a request for nothing).

    Raises:
        RevoxIncompleteReadError: no pass of the few allowed proved the read complete; it names
            the gap.
    """
    given = first_page

    def read(number: int) -> CallPage:
        nonlocal given
        if number == 0 and given is not None:
            page, given = given, None
            return page
        return in_rounds(
            f"Revox search page {number}",
            lambda: hook.search_calls(page=number, page_size=walk.page_size, **filters),
            sleep,
        )

    walk = PageWalk(asked_page_size(page_size), full=True, capped=True)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="revox-search") as pool:
        ahead = pool.submit(read, 0)
        while True:
            page = ahead.result()
            fresh = walk.take(page.calls, page.total_count)
            if prefetch and not walk.pass_done:
                ahead = pool.submit(read, walk.page)
            yield from fresh
            if walk.pass_done:
                if walk.proven:
                    return
                if not walk.more_passes:
                    raise RevoxIncompleteReadError(
                        f"Revox search incomplete: {walk.gap()}", read=len(walk.read), total=walk.last_total
                    )
                log.warning("Revox search not proven complete (%s): reading it again", walk.gap())
                walk.next_pass()
                ahead = pool.submit(read, 0)
            elif not prefetch:
                ahead = pool.submit(read, walk.page)


def search_argument(search: CallSearch | Mapping[str, Any] | None) -> Any:
    """``search`` as the operator keeps it, a template field: a dict of filters, checked when it can be.

    A CallSearch becomes its dict so that templates in its values render. Plain filters are
    checked now; filters holding templates have their names checked now, their values once rendered.
    """
    if search is None:
        return None
    raw = search.filters() if isinstance(search, CallSearch) else search
    if not holds_template(raw):
        check_search(raw)
    elif isinstance(raw, Mapping):
        check_search(dict.fromkeys(raw))  # the names; the values are read once rendered
    return raw


def rendered_search(search: Any) -> CallSearch | None:
    """The rendered ``search`` checked, before any request.

    Raises:
        RevoxConfigError: a value still holding a template (named), the text of a list where a
            list belongs (with how to pass the list), or a filter the API would refuse.
    """
    if search is None:
        return None
    leftover = unrendered(search, "search")
    if leftover is not None:
        place, text = leftover
        raise RevoxConfigError(
            f"{place} still holds a template after rendering: {redact_text(text)[:200]!r}; it would be "
            "sent as a filter and match nothing. Nothing was sent."
        )
    values = search.values() if isinstance(search, Mapping) else [search]
    for value in values:
        if isinstance(value, str) and text_form_of_data(value):
            raise RevoxConfigError(
                f"search: got the text {redact_text(value)[:200]!r} where a list or filters belong: "
                + NATIVE_HINT
            )
    return check_search(search)
