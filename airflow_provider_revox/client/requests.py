"""What the hook sends: the endpoints, the call-id check and the shape of a call search.

Everything here runs before a request leaves: an id or a search that cannot be sent fails with a
named error (:class:`~airflow_provider_revox.exceptions.RevoxConfigError`) and nothing is sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from airflow_provider_revox.exceptions import RevoxConfigError, RevoxInvalidCallIdError

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
MAX_CALL_ID_LENGTH = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_call_id(call_id: Any) -> str:
    """Return ``call_id`` when it is safe to put in a URL path.

    Raises:
        RevoxInvalidCallIdError: a ``ValueError`` naming the problem (not a string, empty, too
            long, only dots, or a forbidden character).
    """
    if not isinstance(call_id, str):
        raise RevoxInvalidCallIdError(f"call_id must be a string, not {type(call_id).__name__}")
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


def search_args(call_ids: Sequence[str], page: int, page_size: int | None) -> dict[str, Any]:
    if isinstance(call_ids, str):
        raise RevoxConfigError("call_ids must be a list of ids, not one string")
    ids = [validate_call_id(call_id) for call_id in call_ids]
    if not ids:
        raise RevoxConfigError("call_ids is empty: a search without ids would match every call order")
    size = page_size if page_size is not None else len(ids)
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise RevoxConfigError(f"page must be 0 or more (pages start at 0), not {page!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise RevoxConfigError(f"page_size must be at least 1, not {size!r}")
    return {"json": search_body(ids, page, size)}


__all__ = [
    "AUTH_STATUS_ENDPOINT",
    "CALLS_ENDPOINT",
    "CALL_ENDPOINT",
    "CANCEL_CALL_ENDPOINT",
    "MAX_CALL_ID_LENGTH",
    "SEARCH_CALLS_ENDPOINT",
    "SEARCH_FILTERS",
    "search_args",
    "search_body",
    "validate_call_id",
]
