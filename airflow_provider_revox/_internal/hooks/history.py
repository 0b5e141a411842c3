"""The phone-history endpoint of :class:`~airflow_provider_revox._internal.hooks.revox.RevoxHook`.

``GET /calls/phone-history`` takes no parameters and answers the whole organisation's history
in one body (vendor SDK 0.5.0): it is read streamed, one entry decoded at a time
(:class:`~airflow_provider_revox._internal.core.phone_history.HistoryScanner`), and only the
entries of the numbers asked about are kept. A history that cannot be read whole is an error,
never a partial answer: the numbers not read may be the ones that asked not to be called.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable

import httpx

from airflow_provider_revox._internal.core.phone_history import (
    HistoryFormatError,
    HistoryScanner,
    PhoneHistory,
    history_from,
)
from airflow_provider_revox._internal.hooks.base import HookCore
from airflow_provider_revox.exceptions import (
    RevoxAuthError,
    RevoxConfigError,
    RevoxError,
    RevoxPhoneHistoryError,
)

PHONE_HISTORY_ENDPOINT = "calls/phone-history"


def _wanted(numbers: Iterable[str]) -> frozenset[str]:
    if isinstance(numbers, str | bytes):
        raise RevoxConfigError("numbers must be a collection of phone numbers, not one string")
    wanted = frozenset(numbers)
    bad = next((number for number in wanted if not isinstance(number, str)), None)
    if bad is not None:
        raise RevoxConfigError(f"numbers must be strings (E.164), not {type(bad).__name__}")
    return wanted


def _failed(error: BaseException) -> RevoxPhoneHistoryError:
    return RevoxPhoneHistoryError(
        f"The phone history (GET /calls/phone-history) could not be read whole ({error}); nobody "
        "is dialled, since a number that asked not to be called may be in the part not read"
    )


class _Reading:
    """One streamed read: the scanner, the text decoder and the byte count."""

    def __init__(self, numbers: Iterable[str]) -> None:
        self.scanner = HistoryScanner(_wanted(numbers))
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.size = 0

    def take(self, piece: bytes) -> None:
        self.size += len(piece)
        text = self.decoder.decode(piece)
        if text:
            self.scanner.feed(text)

    def done(self) -> PhoneHistory:
        tail = self.decoder.decode(b"", final=True)
        if tail:
            self.scanner.feed(tail)
        self.scanner.finish()
        return history_from(self.scanner, self.size)


class HistoryEndpoints(HookCore):
    """``GET /calls/phone-history``, sync and async (a mixin of ``RevoxHook``)."""

    def phone_history(self, numbers: Iterable[str]) -> PhoneHistory:
        """The history of ``numbers`` (E.164), read from the organisation's whole phone history.

        The body is streamed: memory holds one entry at a time and the entries of ``numbers``,
        whatever the history's size. A number missing from ``entries`` has never been called.

        Raises:
            RevoxPhoneHistoryError: the history could not be read whole (an error answer after
                the retries, a dropped or cut-off body, a body that is not a history).
            RevoxAuthError: the API key was refused.
        """
        reading = _Reading(numbers)
        try:
            response = self._request("GET", PHONE_HISTORY_ENDPOINT, download=True)
        except (RevoxAuthError, RevoxConfigError):
            raise
        except RevoxError as error:
            raise _failed(error) from error
        try:
            self._check(response)
            for piece in response.iter_bytes():
                reading.take(piece)
            return reading.done()
        except (RevoxAuthError, RevoxConfigError):
            raise
        except (RevoxError, HistoryFormatError, UnicodeDecodeError, httpx.HTTPError) as error:
            raise _failed(error) from error
        finally:
            response.close()

    async def aphone_history(self, numbers: Iterable[str]) -> PhoneHistory:
        """Async twin of :meth:`phone_history`."""
        reading = _Reading(numbers)
        try:
            response = await self._arequest("GET", PHONE_HISTORY_ENDPOINT, download=True)
        except (RevoxAuthError, RevoxConfigError):
            raise
        except RevoxError as error:
            raise _failed(error) from error
        try:
            self._check(response)
            async for piece in response.aiter_bytes():
                reading.take(piece)
            return reading.done()
        except (RevoxAuthError, RevoxConfigError):
            raise
        except (RevoxError, HistoryFormatError, UnicodeDecodeError, httpx.HTTPError) as error:
            raise _failed(error) from error
        finally:
            await response.aclose()
