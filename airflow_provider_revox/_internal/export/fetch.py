"""Fetching the call orders of an export: rounds of retries, a bounded pool, recordings streamed.

A call that still fails transiently after the hook's own retries is asked again a few rounds
later, so one unlucky call does not fail a ten-thousand-call export. Whether a failure is
worth another round is the error's own answer (:func:`~airflow_provider_revox.exceptions.is_transient`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_revox._internal.core.call import Call, CallAttempt
from airflow_provider_revox._internal.core.redact import redact_text
from airflow_provider_revox._internal.export.recordings import recording_path
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox.exceptions import RevoxAuthError, RevoxError, RevoxNotFoundError, is_transient

#: Rounds of the hook's own retries a call gets before an export gives up on it.
FETCH_ROUNDS = 3
#: Pause before the second round; the third waits twice as long.
FETCH_ROUND_PAUSE_SECONDS = 5.0

Sleep = Callable[[float], None]
_T = TypeVar("_T")
_I = TypeVar("_I")
log = logging.getLogger(__name__)


def fetch_call(
    hook: RevoxHook,
    call_id: str,
    *,
    sleep: Sleep = time.sleep,
    rounds: int = FETCH_ROUNDS,
    pause: float = FETCH_ROUND_PAUSE_SECONDS,
) -> Call:
    """Fetch a call; a failure names the call, and fails for good when no retry can help.

    Args:
        hook: the hook to fetch with (it retries each request on its own).
        call_id: the call order.
        sleep: how to pause between rounds (tests pass a no-op).
        rounds: how many times a transient failure is tried again, at most.
        pause: seconds before the second round; each later round waits one more ``pause``.

    Raises:
        AirflowFailException: the order does not exist or the key was rejected.
        AirflowException: any other failure, after ``rounds`` rounds when it was transient.
    """
    round_number = 1
    while True:
        try:
            return hook.get_call(call_id)
        except RevoxError as error:
            if isinstance(error, RevoxNotFoundError | RevoxAuthError):
                raise AirflowFailException(f"Revox call {call_id!r} could not be fetched: {error}") from error
            if not is_transient(error):
                raise AirflowException(f"Revox call {call_id!r} could not be fetched: {error}") from error
            if round_number >= rounds:
                raise AirflowException(
                    f"Revox call {call_id!r} could not be fetched in {rounds} rounds: {error}"
                ) from error
            wait = pause * round_number
            log.warning("Revox call %s: %s; asking again in %.0f s", call_id, error, wait)
            sleep(wait)
            round_number += 1


@dataclass(frozen=True)
class FetchedCall:
    """A fetched call order, under the id it was asked for."""

    call_id: str
    call: Call


def download_recording(
    hook: RevoxHook, call_id: str, attempt: CallAttempt, stage: Callable[[str], Path]
) -> str:
    """Stream an attempt's recording to ``stage(relative path)``; return that relative path.

    Raises:
        AirflowFailException: the recording is gone, or retrying cannot help.
        AirflowException: the download broke off, or the local disk failed.
    """
    url = attempt.recording_url or ""
    try:
        with hook.iter_download(url) as chunks:
            iterator = iter(chunks)
            first = next(iterator, b"")
            relative = recording_path(call_id, attempt.id, url, first)
            with stage(relative).open("wb") as file:
                file.write(first)
                for chunk in iterator:
                    file.write(chunk)
    except (RevoxError, ValueError, OSError, httpx.HTTPError) as error:
        broke_off = isinstance(error, OSError | httpx.HTTPError) or is_transient(error)
        fail = AirflowException if broke_off else AirflowFailException
        raise fail(
            f"Revox call {call_id!r}: recording of attempt {attempt.id!r} "
            f"({redact_text(url)}) could not be downloaded: {redact_text(str(error))}"
        ) from error
    return relative


def fetch_in_order(
    items: Iterable[_I], fetch: Callable[[_I], _T], max_concurrency: int
) -> Generator[_T, None, None]:
    """Run ``fetch`` for each item in a bounded pool; yield the results in input order.

    A thread pool rather than an event loop: the rows are written by blocking file and
    Parquet writers in the caller's thread while the network work overlaps in the pool,
    sharing the hook's one pooled ``httpx.Client``. At most ``max_concurrency`` items are in
    flight or waiting to be written, so memory does not grow with the number of calls.
    """
    pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="revox-export")
    window: deque[Future[_T]] = deque()
    remaining = iter(items)
    try:
        for item in remaining:
            window.append(pool.submit(fetch, item))
            if len(window) >= max_concurrency:
                break
        while window:
            fetched = window.popleft().result()
            for item in remaining:
                window.append(pool.submit(fetch, item))
                break
            yield fetched
    finally:
        # Wait for running downloads before the staging area is discarded or published.
        pool.shutdown(wait=True, cancel_futures=True)
