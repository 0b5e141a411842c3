"""The simulated API's JSON answers and request bodies, shared by every route module."""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

from airflow_provider_revox._simulator.errors import InvalidOrder


class Reply:
    """A JSON answer, before body faults and headers."""

    __slots__ = ("body", "call_id", "headers", "listed", "retry_after", "status", "wrap_calls")

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
        #: Headers of the answer beyond the simulator's own.
        self.headers: dict[str, str] = {}


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


def body_fields(
    payload: dict[str, Any],
    allowed: Sequence[str],
    target: Callable[..., Any],
    hints: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The fields of ``payload`` among ``allowed``, checked against what ``target`` requires.

    Other keys are ignored, as the API ignores unknown fields. ``hints`` maps a required field to
    what to add to its message (say, the name a client may have used instead).

    Raises:
        InvalidOrder: a field ``target`` requires is absent (answered 422, the field named).
    """
    required = [
        name
        for name, parameter in inspect.signature(target).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is inspect.Parameter.empty
    ]
    missing = [name for name in required if name not in payload]
    if missing:
        extra = "".join(f" ({hints[name]})" for name in missing if hints and name in hints)
        raise InvalidOrder(f"missing required field(s): {', '.join(missing)}{extra}")
    return {key: payload[key] for key in allowed if key in payload}


def first_page_body(body: bytes) -> bytes:
    """A call search body asking for page 0 (the ``repeat_page`` fault); the body as it is if unreadable."""
    with contextlib.suppress(ValueError, TypeError):
        payload = json.loads(body)
        if isinstance(payload, dict) and "page" in payload:
            return json.dumps({**payload, "page": 0}).encode()
    return body


#: Endpoints about no single order that a script may name (after the order or campaign itself).
SCRIPTED_BY_ENDPOINT = ("POST /call", "POST /campaigns", "POST /campaigns/{id}/launch-calls")


def script_keys(endpoint: str, body: bytes) -> tuple[str, ...]:
    """Script keys of a request about no order yet: the recipient of a ``POST /call``, then the endpoint."""
    if endpoint == "POST /call" and body:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            number = json.loads(body).get("phone_number")
            if isinstance(number, str):
                return (number.strip(), endpoint)
    return (endpoint,) if endpoint in SCRIPTED_BY_ENDPOINT else ()


def rate_limited(retry_after: float) -> Reply:
    """The 429 of a request over the account's limit, saying when to come back."""
    reply = error_reply(429, "rate_limited", "too many requests for this account")
    reply.retry_after = retry_after
    return reply
