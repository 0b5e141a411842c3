"""The simulated API's JSON answers and request bodies, shared by every route module."""

from __future__ import annotations

import json
from typing import Any


class Reply:
    """A JSON answer, before body faults and headers."""

    __slots__ = ("body", "call_id", "listed", "retry_after", "status", "wrap_calls")

    def __init__(
        self,
        status: int,
        body: bytes,
        *,
        call_id: str | None = None,
        wrap_calls: bool = False,
        listed: tuple[str, ...] = (),
    ) -> None:
        self.status, self.body, self.call_id = status, body, call_id
        # Body faults apply to the call of {"call": ...} or to every call of {"calls": [...]}.
        self.wrap_calls = wrap_calls
        #: The orders a search served: each counts as a look at that order in the stats.
        self.listed = listed
        self.retry_after: float | None = None


def json_reply(status: int, payload: Any, **kwargs: Any) -> Reply:
    """A compact JSON answer."""
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode(), **kwargs)


def error_reply(status: int, code: str, message: str) -> Reply:
    """The API's error body: ``{error, message, status_code}``."""
    return json_reply(status, {"error": code, "message": message, "status_code": status})


class BadBody(Exception):
    """The request body is not a JSON object (answered with 400)."""


def json_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        BadBody: empty, not JSON, or not an object.
    """
    if not body:
        raise BadBody("request body is empty: send a JSON object")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadBody(f"request body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise BadBody(f"request body must be a JSON object, not {type(payload).__name__}")
    return payload
