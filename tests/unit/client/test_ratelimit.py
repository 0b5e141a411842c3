"""The shared rate limit: the bucket on a virtual clock, its registry, real hooks against the simulator."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk import Connection
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_revox._internal.client import adaptive, ratelimit
from airflow_provider_revox._internal.client.ratelimit import TokenBucket, bucket_for
from airflow_provider_revox._internal.client.settings import settings_from_connection
from airflow_provider_revox._internal.hooks import revox as hook_module
from airflow_provider_revox.exceptions import RevoxConfigError, RevoxRetriesExhaustedError
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.testing import SimulatorHandle, running_simulator

EPSILON = 1e-9


class FakeClock:
    """A monotonic clock that only moves when told to; its ``sleep`` moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    ratelimit.reset_buckets()
    yield
    ratelimit.reset_buckets()


def assert_rate_held(spans: list[tuple[float, float]], rate: float, burst: float) -> None:
    """No interval of the real clock holds more of ``spans`` than the bucket allows in it.

    Each span is (called, returned) around one acquire or request, read on the same clock, so
    whatever the bucket granted it granted inside it. The spans wholly inside [s, e] were granted
    in [s, e]: at most ``rate * (e - s) + burst`` of them. A slow or loaded machine only widens the
    spans, which can only make the check easier: it cannot fail for want of speed.
    """
    starts = sorted({called for called, _ in spans})
    for start in starts:
        inside = sorted(returned for called, returned in spans if called >= start)
        for count, end in enumerate(inside, 1):
            assert count <= rate * (end - start) + burst + 1e-6, (start, end, count)
    assert spans


def max_in_window(times: list[float], window: float) -> int:
    """The most events inside any closed interval of length ``window``."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] > window + EPSILON:
            start += 1
        best = max(best, end - start + 1)
    return best


# -- the bucket on a virtual clock ------------------------------------------------------------


def test_sequential_callers_get_the_rate_after_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5, clock=clock)
    began = clock.now
    sent = []
    for _ in range(1000):
        bucket.acquire(sleep=clock.sleep)
        sent.append(clock.now)
    # 5 tokens in hand, then one every 0.2 s.
    assert clock.now - began == pytest.approx((1000 - 5) / 5)
    assert max_in_window(sent, 10.0) <= 5 * 10 + 5
    assert max_in_window(sent, 1.0) <= 5 + 5


def test_burst_goes_out_at_once_then_callers_queue() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4, burst=3, clock=clock)
    waits = [bucket.reserve() for _ in range(6)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.25, 0.5, 0.75])
    clock.sleep(60)
    # A long quiet spell refills the bucket to its capacity, not beyond.
    assert [bucket.reserve() for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.25])


@pytest.mark.parametrize(("rate", "burst"), [(0.5, 1.0), (1, 1.0), (2.5, 3.0), (5, 5.0), (100, 100.0)])
def test_default_burst_is_the_rate_rounded_up_and_at_least_one(rate: float, burst: float) -> None:
    assert TokenBucket(rate).burst == burst


@given(
    rate=st.floats(min_value=0.1, max_value=50),
    burst=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200),
)
@settings(max_examples=100, deadline=None)
def test_no_window_ever_holds_more_than_rate_times_length_plus_burst(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """Callers arriving at any moments, several at once included, never exceed the rate."""
    clock = FakeClock()
    bucket = TokenBucket(rate, burst=burst, clock=clock)
    sent = []
    for gap in gaps:
        clock.now += gap
        sent.append(clock.now + bucket.reserve())
    for window in (0.0, 1.0, 5.0, 60.0):
        assert max_in_window(sent, window) <= math.floor(rate * window + burst + 1e-6)


def test_a_429_halves_the_rate_and_pauses_every_caller() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock)
    bucket.on_throttled(retry_after=2.0)
    assert bucket.rate == 5.0
    assert bucket.pause_left() == 2.0
    # Another caller, with a full bucket a moment ago, now waits out the pause and the halved rate.
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([2.2, 2.4, 2.6])


def test_a_429_without_retry_after_only_slows_and_drops_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock)
    bucket.on_throttled(None)
    assert bucket.pause_left() == 0.0
    assert [bucket.reserve() for _ in range(2)] == pytest.approx([0.2, 0.4])


def test_no_tokens_are_earned_during_a_pause() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock)
    bucket.on_throttled(retry_after=5.0)
    clock.sleep(5.0)
    assert bucket.reserve() == pytest.approx(0.2)


def test_repeated_429s_stop_at_the_floor() -> None:
    bucket = TokenBucket(32, clock=FakeClock())
    for _ in range(20):
        bucket.on_throttled(None)
    assert bucket.rate == adaptive.MIN_RATE


def test_the_rate_grows_back_with_time_while_answers_are_accepted() -> None:
    clock = FakeClock()
    bucket = TokenBucket(20, clock=clock)
    bucket.on_throttled(None)
    assert bucket.rate == 10.0
    seen = []
    for _ in range(5):
        clock.sleep(adaptive.RECOVERY_SECONDS / 2)
        bucket.on_success()
        seen.append(bucket.rate)
    # In RECOVERY_SECONDS the rate regains RECOVERED_SHARE of what the cut took plus
    # ADDITIVE_INCREASE, never passing the ceiling.
    half_way = 10.0 + (adaptive.RECOVERED_SHARE * 10.0 + adaptive.ADDITIVE_INCREASE) / 2
    assert half_way < 20.0
    assert seen == pytest.approx([half_way, 20.0, 20.0, 20.0, 20.0])


def test_a_pause_reaches_callers_already_waiting() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, clock=clock)
    bucket.reserve()  # the one token in hand goes to someone else

    def sleep_while_another_caller_is_refused(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now < 1003:
            bucket.on_throttled(retry_after=3.0)

    waited = bucket.acquire(sleep=sleep_while_another_caller_is_refused)
    # 1 s for its slot, then the 3 s pause announced while it slept.
    assert waited == pytest.approx(4.0)
    assert clock.now == pytest.approx(1004.0)


def test_retry_after_longer_than_the_cap_is_cut() -> None:
    bucket = TokenBucket(1, clock=FakeClock())
    bucket.on_throttled(retry_after=3600)
    assert bucket.pause_left() == ratelimit.MAX_PAUSE_SECONDS


@pytest.mark.parametrize("rate", [0, -1, math.nan, -math.inf, "5"])
def test_bucket_rejects_a_rate_that_is_not_positive(rate: Any) -> None:
    with pytest.raises(ValueError, match="rate must be a positive number"):
        TokenBucket(rate)


def test_bucket_rejects_a_burst_below_one() -> None:
    with pytest.raises(ValueError, match="burst must be"):
        TokenBucket(5, burst=0.5)


def test_reconfigure_caps_rate_and_tokens() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock)
    bucket.reconfigure(2)
    assert (bucket.max_rate, bucket.rate, bucket.burst) == (2.0, 2.0, 2.0)
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.5])


# -- the connection extra and the registry ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rate"), [(None, 0.0), ("", 0.0), (0, 0.0), ("0", 0.0), (2.5, 2.5), ("7", 7.0)]
)
def test_extra_values_that_are_accepted(value: Any, rate: float) -> None:
    assert _rate_of(value) == rate


def _rate_of(value: Any) -> float:
    extra = json.dumps({"max_requests_per_second": value})
    conn = Connection(conn_id="revox_prod", conn_type="revox", password="sk_live_0123456789", extra=extra)
    return settings_from_connection(conn).max_requests_per_second


@pytest.mark.parametrize(
    "value", [-1, "-0.5", "fast", True, "nan", math.inf, [5], {"rate": 5}, 1e-300, 1e300]
)
def test_extra_values_that_are_refused_name_the_connection_and_the_extra(value: Any) -> None:
    with pytest.raises(RevoxConfigError) as error:
        _rate_of(value)
    assert "'revox_prod'" in str(error.value)
    assert "'max_requests_per_second'" in str(error.value)
    assert repr(value) in str(error.value)


def test_settings_read_the_extra_and_refuse_a_bad_one() -> None:
    good = Connection(
        conn_id="revox_prod",
        conn_type="revox",
        password="sk_live_0123456789",
        extra=json.dumps({"max_requests_per_second": 3}),
    )
    assert settings_from_connection(good).max_requests_per_second == 3.0
    plain = Connection(conn_id="revox_prod", conn_type="revox", password="sk_live_0123456789")
    assert settings_from_connection(plain).max_requests_per_second == 0.0
    bad = Connection(
        conn_id="revox_prod",
        conn_type="revox",
        password="sk_live_0123456789",
        extra=json.dumps({"max_requests_per_second": -2}),
    )
    with pytest.raises(ValueError, match=r"'revox_prod'.*'max_requests_per_second'") as error:
        settings_from_connection(bad)
    assert "sk_live_0123456789" not in str(error.value)


def test_registry_shares_one_bucket_per_connection_and_base_url() -> None:
    first = bucket_for("revox_a", "https://api.example/api", 5)
    assert first is not None
    assert bucket_for("revox_a", "https://api.example/api/", 5) is first
    assert bucket_for("revox_b", "https://api.example/api", 5) is not first
    assert bucket_for("revox_a", "https://other.example/api", 5) is not first
    assert bucket_for("revox_a", "https://api.example/api", 0, adaptive=False) is None
    # No ceiling, adaptive: a bucket that lets everything through until a 429.
    free = bucket_for("revox_c", "https://api.example/api", 0)
    assert free is not None and free.max_rate == math.inf and free.adaptive
    # An edited connection changes the shared bucket rather than forking a second one.
    assert bucket_for("revox_a", "https://api.example/api", 2) is first
    assert first.max_rate == 2.0


def _conn_env(
    monkeypatch: pytest.MonkeyPatch, conn_id: str, base_url: str, api_key: str, **extra: Any
) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps({"conn_type": "revox", "host": base_url, "password": api_key, "extra": extra}),
    )


def test_hooks_of_one_connection_share_its_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    _conn_env(
        monkeypatch, "revox_limited", "http://127.0.0.1:9/api", "sk_x_0123456789", max_requests_per_second=4
    )
    _conn_env(
        monkeypatch, "revox_other", "http://127.0.0.1:9/api", "sk_x_0123456789", max_requests_per_second=4
    )
    _conn_env(monkeypatch, "revox_free", "http://127.0.0.1:9/api", "sk_x_0123456789")
    _conn_env(monkeypatch, "revox_fixed", "http://127.0.0.1:9/api", "sk_x_0123456789", adaptive_rate="false")
    buckets = []
    for conn_id in ("revox_limited", "revox_limited", "revox_other", "revox_free", "revox_fixed"):
        hook = RevoxHook(conn_id)
        hook.get_conn()
        buckets.append(hook.rate_bucket())
    assert buckets[0] is not None
    assert buckets[0] is buckets[1]
    assert buckets[2] is not None and buckets[2] is not buckets[0]
    # Adaptive by default: a bucket even without a ceiling, none with neither.
    assert buckets[3] is not None and buckets[3].max_rate == math.inf
    assert buckets[4] is None


# -- one bucket, many threads and event loops (real clock, no network) -------------------------


def test_threads_and_event_loops_share_one_bucket() -> None:
    rate, per_caller = 100.0, 10
    bucket = TokenBucket(rate, burst=5)
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def record(called: float) -> None:
        returned = time.monotonic()
        with lock:
            spans.append((called, returned))

    def sync_caller() -> None:
        for _ in range(per_caller):
            called = time.monotonic()
            bucket.acquire()
            record(called)

    async def async_caller() -> None:
        for _ in range(per_caller):
            called = time.monotonic()
            await bucket.aacquire()
            record(called)

    def loop_with_tasks() -> None:
        async def main() -> None:
            await asyncio.gather(*(async_caller() for _ in range(3)))

        asyncio.run(main())

    workers = [threading.Thread(target=sync_caller) for _ in range(3)]
    workers += [threading.Thread(target=loop_with_tasks) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    total = 3 * per_caller + 2 * 3 * per_caller
    assert len(spans) == total
    # After the burst, one every 10 ms, across every thread and loop: the whole lot included.
    assert_rate_held(spans, rate, burst=5)


# -- real hooks against the simulator ----------------------------------------------------------


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorHandle]:
    with running_simulator(seed=11) as handle:
        yield handle


def _place(sim: SimulatorHandle, count: int) -> list[str]:
    return [sim.place_call(phone_number="+33612345678", assistant_id="asst_rate")["id"] for _ in range(count)]


def test_hooks_in_threads_and_tasks_hold_the_rate_over_http(
    sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    rate, per_caller = 20, 10
    _conn_env(monkeypatch, "revox_default", sim.base_url, sim.api_key, max_requests_per_second=rate)
    ids = _place(sim, 6)
    errors: list[BaseException] = []
    # (called, returned) around each request: the server saw it in between.
    spans: list[tuple[float, float]] = []

    def sync_caller(call_id: str) -> None:
        try:
            with RevoxHook() as hook:
                for _ in range(per_caller):
                    called = time.monotonic()
                    assert hook.get_call(call_id).id == call_id
                    spans.append((called, time.monotonic()))
        except BaseException as error:
            errors.append(error)

    async def async_caller(call_id: str) -> None:
        async with RevoxHook() as hook:
            for _ in range(per_caller):
                called = time.monotonic()
                assert (await hook.aget_call(call_id)).id == call_id
                spans.append((called, time.monotonic()))

    def loop_of_tasks() -> None:
        async def main() -> None:
            await asyncio.gather(*(async_caller(call_id) for call_id in ids[3:]))

        try:
            asyncio.run(main())
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=sync_caller, args=(call_id,)) for call_id in ids[:3]]
    workers.append(threading.Thread(target=loop_of_tasks))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    stats = sim.stats()
    total = 6 * per_caller
    assert stats["requests_total"] == total
    assert stats["by_status"] == {"200": total}
    assert all(stats["by_call_id"][call_id] == per_caller for call_id in ids)
    assert len(spans) == total
    # 60 requests at 20/s with 20 in hand, in every interval of the run and over the whole of it.
    assert_rate_held(spans, rate, burst=rate)


async def test_a_429_storm_on_one_call_slows_the_other_callers(
    sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    rate = 16
    _conn_env(
        monkeypatch, "revox_default", sim.base_url, sim.api_key, max_requests_per_second=rate, max_retries=2
    )
    slept: list[float] = []
    # The hook's own retry sleep is skipped: the bucket's pause alone holds the retries back.
    monkeypatch.setattr(hook_module, "retry_sleep", slept.append)
    storm, calm = _place(sim, 2)
    sim.faults.script(storm, ["429:0.3"] * 3)

    def refused() -> None:
        with RevoxHook() as hook, pytest.raises(RevoxRetriesExhaustedError):
            hook.get_call(storm)

    await asyncio.to_thread(refused)
    # The two retries waited as the server asked (the rate limit's own waits sleep through the
    # same function, each a little longer: the pause, then a token at the cut rate).
    assert [seconds for seconds in slept if seconds == 0.3] == [0.3, 0.3]
    assert sim.stats()["by_status"] == {"429": 3}

    async with RevoxHook() as other:
        await other.aget_call(calm)
        bucket = other.rate_bucket()
        assert bucket is not None
        # Each 429 cut the shared rate (to half of what this process was sending, at most the
        # ceiling): the other caller now goes out at a fraction of the ceiling.
        assert bucket.rate <= rate / 4
        for _ in range(5):
            await other.aget_call(calm)
    assert sim.stats()["by_call_id"][calm] == 6
