"""Errors a user can act on, one class per cause, all under :class:`RevoxError`.

Every message is built from data already cleaned by the hook: response excerpts are
redacted and the connection's API key is masked before they reach these classes.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException


def _rebuild(cls: type[RevoxError], message: str, details: dict[str, Any]) -> RevoxError:
    return cls(message, **details)


class RevoxError(AirflowException):
    """Base class of every error raised by the Revox provider.

    Args:
        message: the full, human-readable message (already free of secrets).
        status_code: the HTTP status code the API answered, when there was one.
    """

    status_code: int | None  # type: ignore[assignment]  # AirflowException declares an HTTPStatus

    #: Whether waiting can fix this error: a wait (sensor, trigger, export round) retries a
    #: transient error until its deadline and ends at once on any other. Each class decides
    #: here, so no caller keeps its own list.
    transient: bool = False

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code

    def _details(self) -> dict[str, Any]:
        return {"status_code": self.status_code}

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only details would be lost by the default Exception pickling.
        return (_rebuild, (type(self), str(self), self._details()))

    def serialize(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """Return what Airflow needs to rebuild this error in another process."""
        cls = type(self)
        return f"{cls.__module__}.{cls.__name__}", (str(self),), self._details()


class RevoxAuthError(RevoxError):
    """The API rejected the connection's API key (401 or 403), or the connection has none.

    Args:
        message: the full message; it names the connection id.
        conn_id: the Airflow connection whose key was rejected.
        status_code: 401 or 403, or None when the key is missing.
    """

    def __init__(self, message: str, *, conn_id: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.conn_id = conn_id

    def _details(self) -> dict[str, Any]:
        return {**super()._details(), "conn_id": self.conn_id}


class RevoxNotFoundError(RevoxError):
    """The call order (or recording) does not exist for this API key (404).

    Args:
        message: the full message; it names the call id.
        call_id: the call order that was not found, if the request was about one.
        status_code: normally 404.
    """

    def __init__(self, message: str, *, call_id: str | None = None, status_code: int | None = 404) -> None:
        super().__init__(message, status_code=status_code)
        self.call_id = call_id

    def _details(self) -> dict[str, Any]:
        return {**super()._details(), "call_id": self.call_id}


class RevoxResponseError(RevoxError):
    """The API answered with a body that is not JSON, or not the object expected.

    Transient: a garbled or truncated body is usually a passing fault.

    Args:
        message: the full message, with the status code and a redacted excerpt of the body.
        status_code: the HTTP status of the response.
    """

    transient = True


class RevoxApiError(RevoxError):
    """Any other 4xx/5xx answer that retrying will not fix.

    Args:
        message: the full message, with the status code and a redacted excerpt of the body.
        status_code: the HTTP status of the response.
    """


class RevoxRetriesExhaustedError(RevoxError):
    """Every try failed with a retryable status or a transport error.

    Args:
        message: the full message, with the number of tries and the last status or error.
        attempts: how many requests were sent.
        status_code: the last status code, or None when the last try failed in transport.
    """

    transient = True

    def __init__(self, message: str, *, attempts: int = 0, status_code: int | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.attempts = attempts

    def _details(self) -> dict[str, Any]:
        return {**super()._details(), "attempts": self.attempts}


class RevoxResponseTooLargeError(RevoxResponseError):
    """A response body or recording is larger than the connection allows (``max_response_mb``,
    ``max_recording_mb``). Not transient: the same order would be just as large on the next poll.

    Args:
        message: the full message, naming the limit and the extra that sets it.
        status_code: the HTTP status of the response.
    """

    transient = False


class RevoxTransportError(RevoxError):
    """A request failed in transport and was not retried: a POST that may have reached the
    server, or a server that does not complete a TLS handshake (it may not speak TLS)."""


class RevoxConfigError(RevoxError, ValueError):
    """A connection or an argument that cannot be used, found before any request is sent
    (an unreadable extra, a base URL holding a password, an empty list of ids). Also a
    ``ValueError``.

    Args:
        message: the full message, naming the connection and the field (never its secret value).
    """


class RevoxInsecureConnectionError(RevoxConfigError):
    """The connection would send the API key over plain ``http://`` to a host that is not loopback."""


class RevoxInvalidCallIdError(RevoxConfigError):
    """A call id that cannot be sent: not a string, empty, too long, or with a character that
    would change the URL. Raised before any request; also a ``ValueError``.

    Args:
        message: the full message, naming the problem.
    """


class RevoxInvalidRequestError(RevoxConfigError):
    """A request that cannot be sent as given (a phone number that is not E.164, both or neither
    of ``assistant_id`` / ``assistant``, a metadata value that is not a string, ...). Raised
    before any request; also a ``ValueError``.

    Args:
        message: the full message, naming the field and the problem.
        field: the request field at fault, such as ``phone_number`` or ``metadata``.
    """

    def __init__(self, message: str, *, field: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message, status_code=status_code)
        self.field = field

    def _details(self) -> dict[str, Any]:
        return {**super()._details(), "field": self.field}


class RevoxIdsFileError(RevoxConfigError):
    """The file holding a batch wait's call ids (``RevoxCallsSensor``'s ``ids_path``) is missing,
    unreadable, or not the one the wait's result names. Raised before any request; also a
    ``ValueError``.
    """


class RevoxPlacementUnknownError(RevoxError):
    """Whether a call order was already placed cannot be told, so none is placed: the search for
    an earlier placement failed, or a placement failed after it may have reached Revox. A later
    try searches again before placing anything."""


class RevoxPhoneHistoryError(RevoxError):
    """The organisation's phone history (``GET /calls/phone-history``) could not be read whole:
    an error answer, a dropped or cut-off body, or a body that is not the history. Nobody is
    dialled: a number that asked not to be called may be in the part that was not read. Transient:
    a later try reads it again.
    """

    transient = True


class RevoxIncompleteReadError(RevoxError):
    """A paged ``POST /call/search`` could not be proven complete: the pages read hold fewer
    orders than the API says match, or never reached the end of the results (an API that repeats
    a page), after the rereads allowed. Nothing is published and no watermark moves. Transient: a
    later read, once the results stop moving, can succeed.

    Args:
        message: the full message; it names the gap.
        read: distinct orders read.
        total: orders the API said match (its last ``total_count``), when known.
    """

    transient = True

    def __init__(self, message: str, *, read: int = 0, total: int | None = None) -> None:
        super().__init__(message)
        self.read = read
        self.total = total

    def _details(self) -> dict[str, Any]:
        return {"read": self.read, "total": self.total}


def is_transient(error: BaseException) -> bool:
    """Whether waiting can fix ``error``: the one answer every wait uses (see ``RevoxError.transient``)."""
    return isinstance(error, RevoxError) and error.transient


__all__ = [
    "RevoxApiError",
    "RevoxAuthError",
    "RevoxConfigError",
    "RevoxError",
    "RevoxIdsFileError",
    "RevoxIncompleteReadError",
    "RevoxInsecureConnectionError",
    "RevoxInvalidCallIdError",
    "RevoxInvalidRequestError",
    "RevoxNotFoundError",
    "RevoxPhoneHistoryError",
    "RevoxPlacementUnknownError",
    "RevoxResponseError",
    "RevoxResponseTooLargeError",
    "RevoxRetriesExhaustedError",
    "RevoxTransportError",
    "is_transient",
]
