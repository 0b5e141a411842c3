"""The call search of the simulated API (``POST /call/search``): its fields, checked and read."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_revox._simulator import statuses
from airflow_provider_revox._simulator.errors import InvalidSearch
from airflow_provider_revox._simulator.render import FROM_PHONE_NUMBER, status_at
from airflow_provider_revox._simulator.timeline import OrderPlan

#: The filter lists a search must carry (the hook's list: its module imports Airflow, this one must not).
SEARCH_FILTERS = ("assignee_ids", "assistant_ids", "campaign_ids", "directions",
                  "from_phone_numbers", "outcomes", "results", "statuses")  # fmt: skip
#: Every field a call search request must carry.
SEARCH_REQUIRED_FIELDS = (*SEARCH_FILTERS, "page", "page_size")
#: The fields a call search request may carry.
SEARCH_OPTIONAL_FIELDS = ("call_ids", "query", "sort_by", "sort_direction", "to_phone_number")
#: What a search can sort on; ``created_at`` by default.
SEARCH_SORT_FIELDS = ("created_at", "ended_at", "id", "scheduled_at", "updated_at")
SEARCH_DIRECTIONS = ("inbound", "outbound")
MAX_SEARCH_PAGE_SIZE = 1000
#: The filter value of ``outcomes`` and ``results`` that matches a null field.
SEARCH_NONE = "none"


@dataclass(frozen=True)
class CallSearch:
    """One page of a call search.

    Attributes:
        call_ids: the ids on the page, in the requested order.
        total_count: how many orders matched, over every page.
        at: the moment the search was read at; the page's calls must be read at it too.
    """

    call_ids: tuple[str, ...]
    total_count: int
    at: datetime


@dataclass(frozen=True)
class SearchFilter:
    call_ids: tuple[str, ...] | None
    statuses: frozenset[str]
    assistant_ids: frozenset[str]
    directions: frozenset[str]
    outcomes: frozenset[str]
    results: frozenset[str]
    campaign_ids: frozenset[str]
    assignee_ids: frozenset[str]
    from_phone_numbers: frozenset[str]
    to_phone_number: str | None
    query: str | None
    sort_by: str
    descending: bool
    page: int
    page_size: int


def or_none(value: Any) -> str:
    return SEARCH_NONE if value is None else str(value)


def _json_type(value: Any) -> str:
    # Errors speak JSON: a client sent null or an object, not NoneType or dict.
    names = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", list: "list"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _search_list(name: str, value: Any, allowed: frozenset[str] | None = None) -> frozenset[str]:
    if not isinstance(value, (list, tuple)):
        raise InvalidSearch(f"{name} must be a list of strings, not {_json_type(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidSearch(f"{name}[{index}] must be a string, not {_json_type(item)}")
        if allowed is not None and item not in allowed:
            raise InvalidSearch(f"{name}[{index}] {item!r} is not one of {', '.join(sorted(allowed))}")
    return frozenset(value)


def _search_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidSearch(f"{name} must be a string, not {_json_type(value)}")
    return value or None


def _search_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    # bool is an int subclass in Python, but true is not a page number.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSearch(f"{name} must be an integer, not {_json_type(value)}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidSearch(f"{name} must be {bounds}, not {value}")
    return value


def valid_search(**fields: Any) -> SearchFilter:
    call_ids = fields["call_ids"]
    ids = None
    if call_ids is not None:
        _search_list("call_ids", call_ids)
        # An empty list does not filter, like every other list of the search.
        ids = tuple(dict.fromkeys(call_ids)) or None
    sort_by = _search_text("sort_by", fields["sort_by"]) or "created_at"
    if sort_by not in SEARCH_SORT_FIELDS:
        raise InvalidSearch(f"sort_by {sort_by!r} is not one of {', '.join(SEARCH_SORT_FIELDS)}")
    direction = _search_text("sort_direction", fields["sort_direction"]) or "desc"
    if direction not in ("asc", "desc"):
        raise InvalidSearch(f"sort_direction {direction!r} is not one of asc, desc")
    query = _search_text("query", fields["query"])
    return SearchFilter(
        call_ids=ids,
        statuses=_search_list("statuses", fields["statuses"], statuses.KNOWN),
        assistant_ids=_search_list("assistant_ids", fields["assistant_ids"]),
        directions=_search_list("directions", fields["directions"], frozenset(SEARCH_DIRECTIONS)),
        outcomes=_search_list("outcomes", fields["outcomes"]),
        results=_search_list("results", fields["results"]),
        campaign_ids=_search_list("campaign_ids", fields["campaign_ids"]),
        assignee_ids=_search_list("assignee_ids", fields["assignee_ids"]),
        from_phone_numbers=_search_list("from_phone_numbers", fields["from_phone_numbers"]),
        to_phone_number=_search_text("to_phone_number", fields["to_phone_number"]),
        query=query.lower() if query else None,
        sort_by=sort_by,
        descending=direction == "desc",
        page=_search_int("page", fields["page"], 0),
        page_size=_search_int("page_size", fields["page_size"], 1, MAX_SEARCH_PAGE_SIZE),
    )


def matches(
    plan: OrderPlan,
    moment: datetime,
    search: SearchFilter,
    rendered: Callable[[OrderPlan, int], dict[str, Any]],
) -> bool:
    """True when the order, read at ``moment``, passes every filter of ``search``.

    ``rendered(plan, phase)`` gives the call object of a phase (cached by the engine).
    """
    # Cheapest tests first; rendering (cached per phase) only for outcome and result.
    phase = bisect_right(plan.events, moment)
    if phase == 0:
        return False
    spec = plan.spec
    if search.statuses and status_at(plan, moment) not in search.statuses:
        return False
    if search.assistant_ids and spec.assistant.get("id") not in search.assistant_ids:
        return False
    # Every simulated order is outbound and has no assignee.
    if search.directions and "outbound" not in search.directions:
        return False
    if search.assignee_ids:
        return False
    if search.campaign_ids and (spec.campaign is None or spec.campaign[0] not in search.campaign_ids):
        return False
    line = spec.from_phone_number or FROM_PHONE_NUMBER
    if search.from_phone_numbers and line not in search.from_phone_numbers:
        return False
    if search.to_phone_number and search.to_phone_number not in spec.phone_number:
        return False
    if search.query and not (
        search.query in spec.call_id.lower() or search.query in spec.phone_number.lower()
    ):
        return False
    if search.outcomes or search.results:
        call = rendered(plan, phase)
        if search.outcomes and or_none(call.get("outcome")) not in search.outcomes:
            return False
        last = call.get("last_call_attempt")
        if search.results and or_none(last.get("result") if last else None) not in search.results:
            return False
    return True


def sort_key(
    plan: OrderPlan, search: SearchFilter, rank: dict[str, int], moment: datetime
) -> tuple[Any, ...]:
    """Where the order sorts in a search read at ``moment``: by id, or by a time then placement.

    ``updated_at`` is the order's last change at or before ``moment``; ``ended_at`` its terminal
    time, and orders not yet ended sort as if they ended at ``moment`` (newest).
    """
    spec = plan.spec
    if search.sort_by == "id":
        return (spec.call_id,)
    when = spec.created_at
    if search.sort_by == "scheduled_at" and spec.scheduled_at is not None:
        when = spec.scheduled_at
    elif search.sort_by == "updated_at":
        when = plan.events[max(0, bisect_right(plan.events, moment) - 1)]
    elif search.sort_by == "ended_at":
        ended = plan.final_at
        when = ended if ended is not None and ended <= moment else moment
    return (when, rank[spec.call_id])
