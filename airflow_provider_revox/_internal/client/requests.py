"""What the hook sends: the endpoints, the call-id check, the body of a placement and of a search.

Everything here runs before a request leaves (pure: no I/O, no clock): an id, a placement or a
search that cannot be sent fails with a named error
(:class:`~airflow_provider_revox.exceptions.RevoxConfigError`,
:class:`~airflow_provider_revox.exceptions.RevoxInvalidRequestError` naming the field) and nothing
is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import phonenumbers

from airflow_provider_revox.exceptions import (
    RevoxConfigError,
    RevoxInvalidCallIdError,
    RevoxInvalidRequestError,
)

AUTH_STATUS_ENDPOINT = "auth-status"
CALLS_ENDPOINT = "call"
CALL_ENDPOINT = "call/{call_id}"
CANCEL_CALL_ENDPOINT = "call/{call_id}/cancel"
PAUSE_CALL_ENDPOINT = "call/{call_id}/pause"
RESUME_CALL_ENDPOINT = "call/{call_id}/resume"
#: The order actions, each ``POST call/{id}/<action>``.
CALL_ACTIONS = ("cancel", "pause", "resume")
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
#: The optional search fields besides the filter lists.
SEARCH_OPTIONS = ("query", "sort_by", "sort_direction", "to_phone_number")
SORT_DIRECTIONS = ("asc", "desc")
#: Orders per page of a search that names no ids.
DEFAULT_PAGE_SIZE = 100
MAX_CALL_ID_LENGTH = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: An id of these characters, dots only between others, passes every check below: a poll sends
#: every id it waits on, so the common case skips the character-by-character walk.
_PLAIN_ID = re.compile(r"[A-Za-z0-9_\-:@+=~]+(?:\.[A-Za-z0-9_\-:@+=~]+)*")


def validate_call_id(call_id: Any) -> str:
    """Return ``call_id`` when it is safe to put in a URL path.

    Raises:
        RevoxInvalidCallIdError: a ``ValueError`` naming the problem (not a string, empty, too
            long, only dots, or a forbidden character).
    """
    if not isinstance(call_id, str):
        raise RevoxInvalidCallIdError(f"call_id must be a string, not {type(call_id).__name__}")
    if len(call_id) <= MAX_CALL_ID_LENGTH and _PLAIN_ID.fullmatch(call_id):
        return call_id
    if not call_id.strip():
        raise RevoxInvalidCallIdError("call_id is empty")
    if len(call_id) > MAX_CALL_ID_LENGTH:
        raise RevoxInvalidCallIdError(
            f"call_id is {len(call_id)} characters long; the limit is {MAX_CALL_ID_LENGTH}"
        )
    if _CONTROL.search(call_id):
        raise RevoxInvalidCallIdError(f"call_id {call_id!r} contains a control character")
    if any(char.isspace() for char in call_id):
        raise RevoxInvalidCallIdError(f"call_id {call_id!r} contains whitespace")
    if not call_id.strip("."):
        raise RevoxInvalidCallIdError(f"call_id {call_id!r} is only dots, which a URL reads as a path step")
    for forbidden in ("/", "?", "#", "%", ".."):
        if forbidden in call_id:
            raise RevoxInvalidCallIdError(f"call_id {call_id!r} contains {forbidden!r}, which is not allowed")
    return call_id


def search_body(call_ids: Sequence[str], page: int, page_size: int) -> dict[str, Any]:
    """The ``POST /call/search`` body that selects exactly ``call_ids`` (page numbers start at 0)."""
    body: dict[str, Any] = {name: [] for name in SEARCH_FILTERS}
    body.update(call_ids=list(call_ids), page=page, page_size=page_size)
    return body


def _invalid(field: str, problem: str) -> RevoxInvalidRequestError:
    return RevoxInvalidRequestError(f"{field} {problem}", field=field)


def validate_phone_number(value: Any, field: str = "phone_number") -> str:
    """Return ``value`` when it is a valid phone number written in E.164 (``+33612345678``).

    Raises:
        RevoxInvalidRequestError: naming ``field``: not a string, not E.164, or not a number that
            exists (phonenumbers' validity check).
    """
    if not isinstance(value, str):
        raise _invalid(field, f"must be a string in E.164 format such as '+33612345678', not {_kind(value)}")
    if not re.fullmatch(r"\+[1-9][0-9]{6,14}", value):
        raise _invalid(
            field, f"{value!r} is not in E.164 format ('+' then country code and number, no spaces)"
        )
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as error:
        raise _invalid(field, f"{value!r} is not a phone number ({error})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise _invalid(field, f"{value!r} is not a valid phone number for its country code")
    return value


def _kind(value: Any) -> str:
    return type(value).__name__


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        shown = repr(value) if isinstance(value, str) else _kind(value)
        raise _invalid(field, f"must be a non-empty string, not {shown}")
    return value


def string_map(value: Any, field: str) -> dict[str, str]:
    """Return ``value`` as a ``dict[str, str]``; every key and value must already be a string.

    Raises:
        RevoxInvalidRequestError: naming ``field`` and the first entry that is not a string.
    """
    if not isinstance(value, Mapping):
        raise _invalid(field, f"must be a mapping of strings to strings, not {_kind(value)}")
    for key, item in value.items():
        if not isinstance(key, str):
            raise _invalid(field, f"keys must be strings; {key!r} is of type {_kind(key)}")
        if not isinstance(item, str):
            raise _invalid(field, f"values must be strings; {field}[{key!r}] is of type {_kind(item)}")
    return dict(value)


def scheduled_text(value: Any) -> str:
    """``scheduled_at`` as ISO 8601 text: a timezone-aware datetime, or an ISO string with an offset.

    Raises:
        RevoxInvalidRequestError: naive, unreadable, or neither a datetime nor a string.
    """
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _invalid("scheduled_at", f"{value!r} is not an ISO 8601 date and time") from None
    elif isinstance(value, datetime):
        moment = value
    else:
        raise _invalid("scheduled_at", f"must be a datetime or an ISO 8601 string, not {_kind(value)}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _invalid("scheduled_at", f"{value!s} has no timezone; give one (such as +00:00 or Z)")
    return moment.isoformat()


def place_call_body(
    *,
    phone_number: Any,
    assistant_id: Any = None,
    assistant: Any = None,
    metadata: Any = None,
    prompt_variables: Any = None,
    scheduled_at: Any = None,
    from_phone_number: Any = None,
    skip_calling_window: Any = None,
    concurrency_key: Any = None,
) -> dict[str, Any]:
    """The ``POST /call`` body, checked field by field; fields left None are not sent.

    Raises:
        RevoxInvalidRequestError: naming the first field that cannot be sent.
    """
    body: dict[str, Any] = {"phone_number": validate_phone_number(phone_number)}
    if (assistant_id is None) == (assistant is None):
        which = "both were given" if assistant_id is not None else "neither was given"
        raise RevoxInvalidRequestError(
            f"assistant_id / assistant: give exactly one (an assistant id or an inline assistant); {which}",
            field="assistant_id",
        )
    if assistant_id is not None:
        body["assistant_id"] = _text(assistant_id, "assistant_id")
    else:
        if not isinstance(assistant, Mapping) or not assistant:
            raise _invalid(
                "assistant", f"must be a non-empty mapping (an inline assistant), not {assistant!r}"
            )
        body["assistant"] = dict(assistant)
    if metadata is not None:
        body["metadata"] = string_map(metadata, "metadata")
    if prompt_variables is not None:
        body["prompt_variables"] = string_map(prompt_variables, "prompt_variables")
    if scheduled_at is not None:
        body["scheduled_at"] = scheduled_text(scheduled_at)
    if from_phone_number is not None:
        body["from_phone_number"] = validate_phone_number(from_phone_number, "from_phone_number")
    if skip_calling_window is not None:
        if not isinstance(skip_calling_window, bool):
            raise _invalid("skip_calling_window", f"must be True or False, not {skip_calling_window!r}")
        body["skip_calling_window"] = skip_calling_window
    if concurrency_key is not None:
        body["concurrency"] = {"key": _text(concurrency_key, "concurrency_key")}
    return body


def _page_numbers(page: Any, size: Any) -> None:
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise RevoxConfigError(f"page must be 0 or more (pages start at 0), not {page!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise RevoxConfigError(f"page_size must be at least 1, not {size!r}")


def _text_list(value: Any, field: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence | set | frozenset):
        raise _invalid(field, f"must be a list of strings, not {_kind(value)}")
    return [_text(item, f"{field}[{index}]") for index, item in enumerate(value)]


def search_args(
    call_ids: Sequence[str] | None,
    page: int,
    page_size: int | None,
    filters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The request options of one ``POST /call/search`` page, checked.

    Args:
        call_ids: the orders to fetch; None for no id filter. An empty list is refused: it
            would match every order, which is never what a caller with no ids meant.
        page: the page, from 0.
        page_size: orders per page; by default as many as ``call_ids``, else 100.
        filters: the other fields, by their API names: the lists of :data:`SEARCH_FILTERS`
            (None or empty: no filter) and :data:`SEARCH_OPTIONS`.

    Raises:
        RevoxConfigError: an unusable id, page, page size or filter (nothing is sent).
    """
    body: dict[str, Any] = {name: [] for name in SEARCH_FILTERS}
    if call_ids is not None:
        if isinstance(call_ids, str):
            raise RevoxConfigError("call_ids must be a list of ids, not one string")
        ids = [validate_call_id(call_id) for call_id in call_ids]
        if not ids:
            raise RevoxConfigError("call_ids is empty: a search without ids would match every call order")
        body["call_ids"] = ids
    size = page_size if page_size is not None else (len(body["call_ids"]) if call_ids else DEFAULT_PAGE_SIZE)
    _page_numbers(page, size)
    for name, value in (filters or {}).items():
        if value is None:
            continue
        if name in SEARCH_FILTERS:
            body[name] = _text_list(value, name)
        elif name == "to_phone_number":
            body[name] = validate_phone_number(value, name)
        elif name == "sort_direction":
            if value not in SORT_DIRECTIONS:
                raise _invalid(name, f"must be 'asc' or 'desc', not {value!r}")
            body[name] = value
        elif name in SEARCH_OPTIONS:
            body[name] = _text(value, name)
        else:
            raise RevoxConfigError(f"{name!r} is not a call search filter")
    body.update(page=page, page_size=size)
    return {"json": body}
