"""The one retry policy of every request: which failures are retried, and how long to wait.

Idempotent requests (GETs, the search) are retried on 429, 5xx, timeouts and dropped
connections. A POST that may have reached the server is never resent: only a refused
connection or a 429 (refused before any work) prove it was not received. Waits follow the
server's ``retry-after-ms`` / ``Retry-After`` when it sends one, else grow exponentially with jitter.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
import tenacity

from airflow_provider_revox._internal.client.settings import DEFAULT_MAX_RETRIES

#: Longest wait honoured from a ``Retry-After`` header.
RETRY_AFTER_CAP = 60.0
#: Exponential backoff without ``Retry-After``: first wait and cap, in seconds.
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 8.0
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})

# Errors after which the request certainly never reached the server: safe to retry a POST.
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout)
# Errors worth retrying for idempotent requests: timeouts and dropped connections.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


def parse_retry_after(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds to wait as the server asks (``retry-after-ms``, ``Retry-After`` seconds or date).

    Args:
        headers: the response headers.
        now: the current time, for an HTTP-date value (defaults to the real clock).

    Returns:
        The wait capped at :data:`RETRY_AFTER_CAP`, or None when no usable header is present.
    """
    value = headers.get("retry-after-ms")
    if value:
        try:
            millis = float(value)
        except ValueError:
            millis = math.nan
        if math.isfinite(millis):
            return min(max(millis / 1000, 0.0), RETRY_AFTER_CAP)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = (moment - (now or datetime.now(timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def backoff_seconds(attempt: int) -> float:
    """Wait after the ``attempt``-th failed try: 0.5 s doubling up to 8 s, plus up to 0.5 s of jitter."""
    exponential = min(BACKOFF_MAX, BACKOFF_INITIAL * float(2 ** min(max(attempt - 1, 0), 32)))
    # Jitter spreads out clients that failed together, so they do not all come back at once.
    return exponential + random.uniform(0, BACKOFF_INITIAL)


class _RetryAfterWait(tenacity.wait.wait_base):
    """Wait as the last response's ``Retry-After`` asks, else exponential backoff with jitter."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed:
            asked = parse_retry_after(outcome.result().headers)
            if asked is not None:
                return asked
        return backoff_seconds(retry_state.attempt_number)


@dataclass(frozen=True)
class RequestRetryPolicy:
    """When and how long to retry a request; the one policy behind sync and async calls.

    Args:
        sleep: sleeps between blocking retries.
        asleep: sleeps between retries on the event loop.
        max_retries: retries after the first try (0 sends each request once).
        on_retry: called before each sleep with ``(retry_state, seconds)``; used for the warning log.
    """

    sleep: Callable[[float], None]
    asleep: Callable[[float], Awaitable[None]]
    max_retries: int = DEFAULT_MAX_RETRIES
    on_retry: Callable[[tenacity.RetryCallState, float], None] | None = None

    def _should_retry(self, idempotent: bool) -> tenacity.retry_base:
        errors = TRANSPORT_ERRORS if idempotent else NOT_SENT_ERRORS
        # A 429 means the request was refused before any work, so even a POST may be resent.
        statuses = RETRYABLE_STATUS if idempotent else frozenset({429})
        return tenacity.retry_if_exception_type(errors) | tenacity.retry_if_result(
            lambda response: response.status_code in statuses
        )

    def _before_sleep(self, retry_state: tenacity.RetryCallState) -> None:
        if self.on_retry is not None:
            wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
            self.on_retry(retry_state, wait)

    def _options(self, idempotent: bool) -> dict[str, Any]:
        return {
            "stop": tenacity.stop_after_attempt(self.max_retries + 1),
            "wait": _RetryAfterWait(),
            "retry": self._should_retry(idempotent),
            "before_sleep": self._before_sleep,
            "reraise": False,
        }

    def sync(self, idempotent: bool = True) -> tenacity.Retrying:
        """A tenacity controller for blocking requests."""
        return tenacity.Retrying(sleep=self.sleep, **self._options(idempotent))

    def asynchronous(self, idempotent: bool = True) -> tenacity.AsyncRetrying:
        """A tenacity controller for requests on the event loop."""
        return tenacity.AsyncRetrying(sleep=self.asleep, **self._options(idempotent))
