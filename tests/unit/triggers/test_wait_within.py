"""The deadline cut of the call triggers (``within``): in time, out of time, and a stop that is kept."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_revox._internal.triggers.wait import within


async def test_work_done_in_time_gives_its_result() -> None:
    async def work() -> int:
        return 7

    assert await within(5, work()) == (True, 7)
    assert await within(None, work()) == (True, 7)


async def test_work_still_running_at_the_deadline_is_cut() -> None:
    never: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    assert await within(0.01, never) == (False, None)
    assert never.cancelled()


async def test_a_stop_that_comes_as_the_work_finishes_is_not_swallowed() -> None:
    # asyncio.wait_for before Python 3.12 returned the result here and dropped the cancellation:
    # a trigger the triggerer stopped went on polling.
    answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(within(30, answer))
    await asyncio.sleep(0)  # the task now awaits the answer
    answer.set_result(1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
