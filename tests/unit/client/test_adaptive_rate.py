"""The adaptive rate: its arithmetic on invented times, the simulator's account limit, and hooks
that share one account converging over real HTTP."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk import Connection
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_revox._internal.client import ratelimit
from airflow_provider_revox._internal.client.adaptive import (
    ADDITIVE_INCREASE,
    DECREASE_FACTOR,
    MIN_RATE,
    RECOVERED_SHARE,
    RECOVERY_SECONDS,
    AdaptiveRate,
    SendMeter,
)
from airflow_provider_revox._internal.client.ratelimit import TokenBucket
from airflow_provider_revox._internal.client.settings import settings_from_connection
from airflow_provider_revox._simulator.quota import AccountLimit
from airflow_provider_revox.exceptions import RevoxError
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.testing import Faults, running_simulator


class FakeClock:
    """A monotonic clock that only moves when told to; its ``sleep`` moves it."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    ratelimit.reset_buckets()
    yield
    ratelimit.reset_buckets()


# -- the arithmetic -------------------------------------------------------------------------------


def test_the_ceiling_holds_until_the_first_429() -> None:
    rate = AdaptiveRate(50)
    rate.accepted(10.0)
    assert (rate.rate, rate.engaged) == (50, False)


def test_a_429_cuts_what_the_process_was_really_sending() -> None:
    busy = AdaptiveRate(50)
    assert busy.throttled(now=1.0, sent_at=0.9, measured=40.0)
    assert busy.rate == 40.0 * DECREASE_FACTOR
    # A process allowed 50/s that sent 4/s is cut from 4/s, not from 50/s.
    idle = AdaptiveRate(50)
    idle.throttled(now=1.0, sent_at=0.9, measured=4.0)
    assert idle.rate == 4.0 * DECREASE_FACTOR


def test_the_rate_grows_while_accepted_back_past_the_cut_up_to_the_ceiling() -> None:
    rate = AdaptiveRate(30)
    rate.throttled(now=100.0, sent_at=100.0, measured=20.0)
    seen = []
    for elapsed in (0, RECOVERY_SECONDS / 2, RECOVERY_SECONDS, 2 * RECOVERY_SECONDS, 10 * RECOVERY_SECONDS):
        rate.accepted(100.0 + elapsed)
        seen.append(rate.rate)
    # In RECOVERY_SECONDS the rate regains RECOVERED_SHARE of what the cut took (10/s) plus
    # ADDITIVE_INCREASE, and goes on at that slope up to the ceiling.
    regained = RECOVERED_SHARE * 10.0 + ADDITIVE_INCREASE
    assert 10.0 + 2 * regained >= 30.0  # two recovery spans reach the ceiling
    assert seen == pytest.approx([10.0, 10.0 + regained / 2, 10.0 + regained, 30.0, 30.0])


def test_one_overload_cuts_once() -> None:
    rate = AdaptiveRate(50)
    assert rate.throttled(now=2.0, sent_at=1.9, measured=50.0)
    # Requests already in flight when the cut came are refused by the same overload.
    assert not rate.throttled(now=2.01, sent_at=1.95, measured=50.0)
    assert rate.rate == 25.0
    # A request sent after the cut and still refused: the cut was not enough.
    assert rate.throttled(now=2.5, sent_at=2.1, measured=25.0)
    assert rate.rate == 12.5


def test_without_a_ceiling_the_first_cut_starts_from_the_measured_rate() -> None:
    rate = AdaptiveRate(math.inf)
    rate.throttled(now=5.0, sent_at=5.0, measured=300.0)
    assert rate.rate == 150.0
    rate.accepted(5.0 + 1000 * RECOVERY_SECONDS)
    assert math.isfinite(rate.rate) and rate.rate > 300.0


def test_adaptation_off_keeps_the_ceiling() -> None:
    rate = AdaptiveRate(50, adaptive=False)
    assert not rate.throttled(now=1.0, sent_at=1.0, measured=50.0)
    assert rate.rate == 50.0


@given(
    ceiling=st.floats(min_value=0.01, max_value=1000),
    events=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=30),
            st.booleans(),
            st.one_of(st.none(), st.floats(min_value=0, max_value=5000)),
        ),
        max_size=60,
    ),
)
@settings(max_examples=200, deadline=None)
def test_the_rate_stays_between_the_floor_and_the_ceiling(
    ceiling: float, events: list[tuple[float, bool, float | None]]
) -> None:
    rate, now = AdaptiveRate(ceiling), 0.0
    for gap, refused, measured in events:
        now += gap
        if refused:
            rate.throttled(now, now, measured)
        else:
            rate.accepted(now)
        assert min(MIN_RATE, ceiling) <= rate.rate <= ceiling


def test_the_meter_counts_the_sends_of_its_window() -> None:
    meter = SendMeter()
    assert meter.rate(0.0) is None
    for tick in range(40):
        meter.record(10.0 + tick * 0.1)  # 10 per second for 4 s
    assert meter.rate(13.9) == pytest.approx(10.0)
    assert meter.rate(100.0) == 0.0


# -- the bucket on an injected clock -----------------------------------------------------------


def test_an_unlimited_bucket_paces_only_after_a_429_and_honours_retry_after() -> None:
    clock = FakeClock()
    bucket = TokenBucket(math.inf, clock=clock)
    sent_at = clock.now
    for _ in range(20):
        assert bucket.reserve() == 0.0
        sent_at = bucket.sent()
        clock.sleep(0.01)  # 100 requests per second
    bucket.on_throttled(retry_after=1.5, sent_at=sent_at)
    assert bucket.rate == pytest.approx(100.0 * DECREASE_FACTOR)
    # Every caller waits out Retry-After, then goes at the cut rate.
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([1.52, 1.54, 1.56])


def test_adaptive_rate_off_keeps_the_rate_but_still_honours_retry_after() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock, adaptive=False)
    bucket.on_throttled(retry_after=2.0)
    assert bucket.rate == 10.0
    assert bucket.pause_left() == 2.0


@pytest.mark.parametrize(("value", "adaptive"), [(None, True), ("", True), ("false", False), (False, False)])
def test_the_adaptive_rate_extra(value: Any, adaptive: bool) -> None:
    extra = {} if value is None else {"adaptive_rate": value}
    conn = Connection(
        conn_id="revox_a", conn_type="revox", password="sk_live_0123456789", extra=json.dumps(extra)
    )
    assert settings_from_connection(conn).adaptive_rate is adaptive


# -- the simulator's account limit ---------------------------------------------------------------


def test_the_account_limit_admits_a_second_of_requests_then_says_when_to_come_back() -> None:
    clock = FakeClock()
    limit = AccountLimit(50, clock=clock)
    assert [limit.admit() for _ in range(50)] == [None] * 50
    assert limit.admit() == pytest.approx(0.02)
    clock.sleep(0.1)
    assert [limit.admit() for _ in range(6)] == [None] * 5 + [pytest.approx(0.02)]


def test_the_account_limit_is_refused_when_not_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Faults(rate_limit_per_second=-1)


# -- two hooks sharing one account over HTTP ---------------------------------------------------


def _press(
    monkeypatch: pytest.MonkeyPatch,
    base_url: str,
    api_key: str,
    call_id: str,
    adaptive: bool,
    per_hook: int,
    max_retries: int = 10,
) -> list[BaseException]:
    """Two connections (two limiters, as two processes have) sending ``per_hook`` GETs each at once."""
    errors: list[BaseException] = []
    extra = {"max_requests_per_second": 20, "max_retries": max_retries, "adaptive_rate": adaptive}
    names = ("revox_fleet_a", "revox_fleet_b")
    for name in names:
        conn = {"conn_type": "revox", "host": base_url, "password": api_key, "extra": extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", json.dumps(conn))

    def worker(name: str) -> None:
        try:
            with RevoxHook(name) as hook:
                for _ in range(per_hook):
                    assert hook.get_call(call_id).id == call_id
        except (RevoxError, AssertionError) as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return errors


def test_two_limiters_on_one_account_converge_to_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each connection alone may send the account's whole limit; together they are refused far
    less often once their rates adapt than with fixed rates."""
    per_hook, refused = 40, {}
    for adaptive in (True, False):
        # Fixed at the account's whole limit, one connection can take every new token while a GET
        # of the other loses the race for it try after try (5 to 8 tries in a row on a quiet
        # machine, 11 under load): the baseline gets retries enough to outlast the other's whole
        # run, so that its 429s are counted over the same GETs. Adapted, 10 retries hold.
        retries = 10 if adaptive else 2 * per_hook
        ratelimit.reset_buckets()
        with running_simulator(seed=5, rate_limit_per_second=20) as sim:
            call_id = sim.place_call(phone_number="+33612345678", assistant_id="asst_fleet")["id"]
            errors = _press(monkeypatch, sim.base_url, sim.api_key, call_id, adaptive, per_hook, retries)
            stats = sim.stats()
        assert errors == []
        # Every GET was served in the end; the account's limit was pressed on (some 429s).
        assert stats["by_status"]["200"] == 2 * per_hook
        assert stats["by_status"].get("429", 0) >= 1
        refused[adaptive] = stats["by_status"]["429"]
    # Fixed at 20/s each, about every other request of 40/s is refused; adapted, a few are.
    assert refused[True] * 3 < refused[False]
    assert refused[True] <= per_hook // 2
