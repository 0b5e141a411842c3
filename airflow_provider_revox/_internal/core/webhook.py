"""What a Revox webhook tells: the call ids (and statuses) in a body of any shape, and its token (pure).

Revox publishes neither the body's schema nor a signature, so a webhook is a hint, not the
truth: the receiver takes the ids that look like call ids and the consumer reads those calls
from the API. The body is walked whole; an id is taken from a ``call_id`` / ``callId`` key, a
``call_ids`` list, or the ``id`` of an object that is the body itself, an element of a list, or
the value of a ``call`` / ``calls`` / ``data`` / ``object`` / ``payload`` key. A ``status`` next
to it is kept. Nothing here raises on a shape: an unknown one gives no ids.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

#: Most ids one webhook may name; beyond, the rest are ignored (the poll reconciles them).
MAX_IDS = 1_000
#: Deepest nesting walked.
MAX_DEPTH = 32
#: Bytes of randomness in a generated token (a 43-character URL-safe string).
TOKEN_BYTES = 32
#: Shortest token accepted in a connection: a short one could be guessed.
MIN_TOKEN_LENGTH = 32

_ID = re.compile(r"[A-Za-z0-9_\-:@+=~]+(?:\.[A-Za-z0-9_\-:@+=~]+)*")
_ID_KEYS = ("call_id", "callId", "callID")
_LIST_KEYS = ("call_ids", "callIds")
_HOLDERS = frozenset({"call", "calls", "data", "object", "payload", "result", "results", "items"})


@dataclass(frozen=True)
class Announced:
    """One call a webhook names: its id, and the status it claims (None when it gives none)."""

    id: str
    status: str | None = None

    def entry(self) -> dict[str, Any]:
        """The asset event's entry: ``{"id", "announced": true}`` (and ``"status"`` when given)."""
        out: dict[str, Any] = {"id": self.id, "announced": True}
        if self.status is not None:
            out["status"] = self.status
        return out


def _call_id(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= 128 and _ID.fullmatch(value):
        return value
    return None


def _status(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= 64 and value.replace("_", "").isalnum():
        return value.lower()
    return None


def _walk(node: Any, holds_call: bool, depth: int) -> Iterator[Announced]:
    if depth > MAX_DEPTH:
        return
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, True, depth + 1)
        return
    if not isinstance(node, dict):
        return
    status = _status(node.get("status"))
    for key in _ID_KEYS:
        found = _call_id(node.get(key))
        if found is not None:
            yield Announced(found, status)
    for key in _LIST_KEYS:
        listed = node.get(key)
        if isinstance(listed, list):
            for item in listed:
                found = _call_id(item)
                if found is not None:
                    yield Announced(found)
    if holds_call and not any(key in node for key in _ID_KEYS):
        found = _call_id(node.get("id"))
        if found is not None:
            yield Announced(found, status)
    for key, value in node.items():
        if isinstance(value, dict | list):
            yield from _walk(value, key in _HOLDERS, depth + 1)


def announced_calls(body: Any) -> list[Announced]:
    """The calls a webhook body names, each once (first status given wins), at most :data:`MAX_IDS`."""
    seen: dict[str, Announced] = {}
    for found in _walk(body, True, 0):
        known = seen.get(found.id)
        if known is None:
            if len(seen) >= MAX_IDS:
                break
            seen[found.id] = found
        elif known.status is None and found.status is not None:
            seen[found.id] = found
    return list(seen.values())


def shape_of(body: Any, depth: int = 0) -> str:
    """A short description of a body's shape (keys and types, no values), for a log line."""
    if depth > 2:
        return "..."
    if isinstance(body, dict):
        keys = sorted(str(key)[:32] for key in body)[:12]
        return "{" + ", ".join(f"{key}: {shape_of(body[key], depth + 1)}" for key in keys) + "}"
    if isinstance(body, list):
        return f"[{shape_of(body[0], depth + 1)}...]" if body else "[]"
    return type(body).__name__


def new_token() -> str:
    """A fresh webhook token: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_matches(given: str | None, accepted: Sequence[str]) -> bool:
    """Whether ``given`` is one of the ``accepted`` tokens, compared in constant time.

    Every accepted token is compared (no early exit), and an empty or short accepted token
    matches nothing: a connection without a usable token refuses every webhook.
    """
    if not given:
        return False
    candidate = given.encode()
    matched = False
    for token in accepted:
        if token and len(token) >= MIN_TOKEN_LENGTH:
            matched = hmac.compare_digest(candidate, token.encode()) or matched
    return matched
