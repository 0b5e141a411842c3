"""The statuses the simulated API reports: its own table, as the vendor's spec lists them.

The simulator stands for the API, so it does not borrow the provider's table; a test compares the
two, so a drift on either side fails.
"""

from __future__ import annotations

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

#: Order statuses after which an order never changes again.
TERMINAL: Final = frozenset({COMPLETED, CANCELLED, ERRORED})
#: Every order status of the spec.
KNOWN: Final = (
    frozenset({INITIALIZING, SCHEDULED, QUEUED_FOR_CALLING, CALLING, POST_PROCESSING, PAUSED, NOT_LAUNCHED})
    | TERMINAL
)

#: Attempt statuses: while a dial is in progress, then once it is over.
ATTEMPT_QUEUED: Final = "queued"
ATTEMPT_RINGING: Final = "ringing"
ATTEMPT_ONGOING: Final = "ongoing"
ATTEMPT_COMPLETED: Final = "completed"
ATTEMPT_ERROR: Final = "error"


def is_terminal(status: str | None) -> bool:
    """True when an order in ``status`` can never change again."""
    return status in TERMINAL
