"""The one table of call-order and attempt statuses used across the package.

The API keeps adding statuses, so nothing here is an Enum that would reject a
value nobody has seen yet: unknown values are plain strings that are simply not
terminal.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

INITIALIZING: Final = "initializing"
SCHEDULED: Final = "scheduled"
QUEUED_FOR_CALLING: Final = "queued_for_calling"
CALLING: Final = "calling"
POST_PROCESSING: Final = "post_processing"
PAUSED: Final = "paused"
NOT_LAUNCHED: Final = "not_launched"
COMPLETED: Final = "completed"
CANCELLED: Final = "cancelled"
ERRORED: Final = "errored"

#: Statuses after which an order never changes again.
TERMINAL: Final = frozenset({COMPLETED, CANCELLED, ERRORED})

#: Statuses in which the order waits for its next dial (first one or a retry).
WAITING_TO_DIAL: Final = frozenset({INITIALIZING, SCHEDULED, QUEUED_FOR_CALLING, NOT_LAUNCHED})

#: Every order status the current API spec documents.
KNOWN: Final = WAITING_TO_DIAL | {CALLING, POST_PROCESSING, PAUSED} | TERMINAL

#: Attempt statuses while a dial is in progress.
ATTEMPT_QUEUED: Final = "queued"
ATTEMPT_RINGING: Final = "ringing"
ATTEMPT_ONGOING: Final = "ongoing"
ATTEMPT_LIVE: Final = frozenset({ATTEMPT_QUEUED, ATTEMPT_RINGING, ATTEMPT_ONGOING})
#: Attempt statuses once a dial is over.
ATTEMPT_COMPLETED: Final = "completed"
ATTEMPT_ERROR: Final = "error"
ATTEMPT_ENDED: Final = frozenset({ATTEMPT_COMPLETED, ATTEMPT_ERROR})

#: Attempt result meaning a person answered.
RESULT_HUMAN: Final = "human"


def is_terminal(status: str | None) -> bool:
    """Return True when an order in ``status`` can never change again."""
    return status in TERMINAL


def is_known(status: str | None) -> bool:
    """Return True when ``status`` is one the current API spec documents."""
    return status in KNOWN


SUCCESS: Final = "success"
FAILED: Final = "failed"
WAITING: Final = "waiting"

#: What ``fail_on_statuses`` defaults to for every sensor.
DEFAULT_FAIL_ON: Final = (ERRORED, CANCELLED)


def verdict(status: str | None, fail_on: Collection[str] = DEFAULT_FAIL_ON) -> str:
    """Decide what a waiting task does with an order in ``status``.

    Returns:
        ``"failed"`` for a status in ``fail_on``; ``"success"`` for ``completed`` and for any
        other terminal status the caller chose not to fail on; ``"waiting"`` otherwise
        (``post_processing``, ``paused`` and statuses nobody has seen yet included).
    """
    if status in fail_on:
        return FAILED
    if status in TERMINAL:
        return SUCCESS
    return WAITING


def validate_fail_on(fail_on: Iterable[str]) -> tuple[str, ...]:
    """Check ``fail_on_statuses``: every entry must be a status the API documents."""
    if isinstance(fail_on, str):
        fail_on = (fail_on,)
    values = tuple(fail_on)
    unknown = sorted(set(values) - KNOWN)
    if unknown:
        raise ValueError(
            f"fail_on_statuses has unknown status(es) {unknown}; known statuses are {sorted(KNOWN)}"
        )
    if COMPLETED in values:
        raise ValueError("fail_on_statuses cannot contain 'completed': that is the success status")
    return values
