"""Ten processes, each with its own adaptive rate, sharing one account: on invented time, the
fleet settles at the account's limit in fair shares, with few 429s.

Each process paces its requests at its current rate (the arithmetic of
:mod:`airflow_provider_revox._internal.client.adaptive`, the same objects the token bucket uses);
the account is the simulator's own limit (:class:`AccountLimit`) on the same invented clock.
Nothing sleeps: four simulated minutes take a fraction of a second. ``bench/fleet.py`` measures
the same over real HTTP with real processes.
"""

from __future__ import annotations

import heapq
import random

import pytest

from airflow_provider_revox._internal.client.adaptive import AdaptiveRate, SendMeter
from airflow_provider_revox._simulator.quota import AccountLimit

LIMIT = 50.0
PROCESSES = 10
#: Seconds a request takes to be answered on loopback.
ROUND_TRIP = 0.003


class Clock:
    """The invented monotonic clock the account reads."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_fleet(seed: int, seconds: float) -> tuple[list[int], int, int]:
    """Served requests per process, 429s and answers of a fleet calling as fast as it may."""
    rng = random.Random(seed)
    clock = Clock()
    account = AccountLimit(LIMIT, clock=clock)
    rates = [AdaptiveRate(LIMIT) for _ in range(PROCESSES)]
    meters = [SendMeter() for _ in range(PROCESSES)]
    served, refused, answered = [0] * PROCESSES, 0, 0
    # The processes start within the same second, as a fleet does, each at its ceiling.
    queue = [(rng.uniform(0.0, 0.7), index) for index in range(PROCESSES)]
    heapq.heapify(queue)
    while queue:
        sent_at, index = heapq.heappop(queue)
        if sent_at > seconds:
            continue
        clock.now = sent_at
        meters[index].record(sent_at)
        answered += 1
        answer_at = sent_at + ROUND_TRIP
        if account.admit() is None:
            served[index] += 1
            rates[index].accepted(answer_at)
        else:
            refused += 1
            rates[index].throttled(answer_at, sent_at, meters[index].rate(answer_at))
        # The next request waits for the rate's next token (with the jitter of real scheduling),
        # and at least for this answer.
        gap = max(ROUND_TRIP, rng.uniform(0.9, 1.1) / rates[index].rate)
        heapq.heappush(queue, (sent_at + gap, index))
    return served, refused, answered


@pytest.mark.parametrize("seed", range(8))
def test_a_fleet_settles_at_the_accounts_limit_in_fair_shares(seed: int) -> None:
    seconds = 240.0
    served, refused, answered = run_fleet(seed, seconds)
    assert sum(served) / seconds / LIMIT >= 0.95
    assert refused / answered <= 0.02
    assert min(served) / max(served) >= 0.5, served
