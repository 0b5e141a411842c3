"""The provider's dial schedule against the simulator's oracle, over many generated cases.

``waiting.schedule.next_dial_at`` computes the next dial with date arithmetic in the recipient's
wall time; ``simulator.dialing.next_dial`` walks real time minute by minute and asks "is this
local minute inside a window on an allowed day?". They share no code, so agreement over
thousands of cases (daylight-saving changes in Paris and New York, several windows, windows
opening inside a skipped hour, every mix of allowed days) checks the provider against something
it did not write.

One difference is by design and asserted as such: during the hour a clock change repeats, the
oracle treats the second pass of a window's minutes as inside the window; the provider reads
each wall time as its first occurrence, so it waits for the next day's window instead.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_revox._internal.core.call import CallRetryConfig
from airflow_provider_revox._internal.core.retry_policy import RetryPolicy
from airflow_provider_revox._internal.waiting.schedule import next_dial_at
from airflow_provider_revox._simulator.dialing import (
    DAY_NAMES,
    clock_minutes,
    dial_rules,
    next_dial,
    recipient_zone,
)

UTC = timezone.utc
#: Clock changes of 2025 (UTC): Paris on 30 March and 26 October, New York on 9 March and 2 November.
TRANSITIONS = {
    "Europe/Paris": [datetime(2025, 3, 30, 1, tzinfo=UTC), datetime(2025, 10, 26, 1, tzinfo=UTC)],
    "America/New_York": [datetime(2025, 3, 9, 7, tzinfo=UTC), datetime(2025, 11, 2, 6, tzinfo=UTC)],
}
#: Times that open or close windows: the hours clocks skip or repeat, 12-hour forms, midnight.
TIMES = ["00:00", "01:00", "01:30", "02:00", "02:15", "02:30", "03:00", "03:30", "6am", "9:30am", "10:00",
         "12:00", "12pm", "13:45", "5pm", "18:00", "21:00", "23:00", "23:59"]  # fmt: skip


def _provider(config: dict[str, object], zone: ZoneInfo, earliest: datetime) -> datetime:
    policy = RetryPolicy.from_config(CallRetryConfig.model_validate(config))
    return next_dial_at(policy, zone, earliest)


def _random_config(rng: random.Random) -> dict[str, object]:
    windows = []
    while len(windows) < rng.choice([1, 1, 2, 3]):
        start, end = rng.sample(TIMES, 2)
        if clock_minutes(start, "start") < clock_minutes(end, "end"):
            windows.append({"calling_window_start_time": start, "calling_window_end_time": end})
    days = rng.sample(DAY_NAMES, rng.randint(1, 7))
    return {"calling_windows": windows, "allowed_days": days, "max_retry_attempts": 3}


def _overlapping(config: dict[str, object]) -> bool:
    rules = dial_rules(config)
    return any(a[1] > b[0] for a, b in zip(rules.windows, rules.windows[1:], strict=False))


def _in_repeated_hour(moment: datetime, zone: ZoneInfo) -> bool:
    local = moment.astimezone(zone)
    return local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset() and local.fold == 1


def _cases(zone_name: str, count: int, seed: int) -> list[tuple[dict[str, object], datetime]]:
    rng = random.Random(f"{zone_name}/{seed}")
    cases = []
    while len(cases) < count:
        config = _random_config(rng)
        if _overlapping(config):
            continue  # overlapping windows are one longer window to the API; both read them apart
        anchor = rng.choice([*TRANSITIONS[zone_name], datetime(2025, 6, 12, 12, tzinfo=UTC)])
        earliest = anchor + timedelta(
            minutes=rng.randint(-3 * 24 * 60, 3 * 24 * 60), seconds=rng.randint(0, 59)
        )
        cases.append((config, earliest))
    return cases


@pytest.mark.parametrize("zone_name", sorted(TRANSITIONS))
def test_provider_agrees_with_the_oracle(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    repeated_hour_cases = 0
    for config, earliest in _cases(zone_name, 1000, seed=1):
        oracle = next_dial(dial_rules(config), zone, earliest)
        provider = _provider(config, zone, earliest)
        if provider == oracle:
            continue
        # The one difference by design: the oracle dials in the second pass of a repeated hour.
        assert _in_repeated_hour(oracle, zone), (config, earliest, provider, oracle)
        assert provider > oracle
        repeated_hour_cases += 1
    assert repeated_hour_cases < 20


@pytest.mark.parametrize("zone_name", sorted(TRANSITIONS))
def test_every_dial_is_inside_a_window_and_none_is_missed(zone_name: str) -> None:
    """The oracle's own promise, checked by brute force over whole minutes."""
    zone = ZoneInfo(zone_name)
    for config, earliest in _cases(zone_name, 40, seed=2):
        rules = dial_rules(config)
        dial = next_dial(rules, zone, earliest)
        local = dial.astimezone(zone)
        minute = local.hour * 60 + local.minute + local.second / 60
        assert local.weekday() in rules.days
        assert any(start <= minute < end for start, end in rules.windows)
        moment = earliest.replace(second=0) + timedelta(minutes=1)
        while moment < dial:
            here = moment.astimezone(zone)
            open_now = here.weekday() in rules.days and any(
                start <= here.hour * 60 + here.minute < end for start, end in rules.windows
            )
            assert not open_now, (config, earliest, moment)
            moment += timedelta(minutes=1)


def test_window_opening_in_the_skipped_hour_opens_when_the_clock_jumps() -> None:
    paris = ZoneInfo("Europe/Paris")
    config = {"calling_windows": [{"calling_window_start_time": "02:30", "calling_window_end_time": "04:00"}],
              "allowed_days": ["sunday"]}  # fmt: skip
    earliest = datetime(2025, 3, 29, 12, tzinfo=UTC)
    jump = datetime(2025, 3, 30, 1, tzinfo=UTC)  # 02:00 in Paris becomes 03:00
    assert next_dial(dial_rules(config), paris, earliest) == jump == _provider(config, paris, earliest)


def test_the_repeated_hour_is_the_one_difference_by_design() -> None:
    new_york = ZoneInfo("America/New_York")
    config = {"calling_windows": [{"calling_window_start_time": "00:00", "calling_window_end_time": "01:30"}],
              "allowed_days": ["sunday"]}  # fmt: skip
    # 2 November 2025: 01:00-02:00 happens twice; 06:10 UTC is 01:10 on its second pass.
    second_pass = datetime(2025, 11, 2, 6, 10, tzinfo=UTC)
    assert next_dial(dial_rules(config), new_york, second_pass) == second_pass
    assert _provider(config, new_york, second_pass) == datetime(2025, 11, 9, 5, tzinfo=UTC)  # a week on


def test_the_three_config_shapes_and_both_time_formats() -> None:
    flat = {"calling_window_start_time": "9am", "calling_window_end_time": "5pm", "retry_delay_seconds": 60}
    listed = {"calling_windows": [{"calling_window_start_time": "09:00", "calling_window_end_time": "17:00"}],
              "retry_delay_seconds": 60}  # fmt: skip
    current = {**listed, "allowed_days": list(DAY_NAMES[:5]), "call_twice_in_a_row": False}
    assert dial_rules(flat) == dial_rules(listed) == dial_rules(current)
    assert dial_rules(flat).windows == ((9 * 60, 17 * 60),) and dial_rules(flat).retry_delay_seconds == 60
    defaults = dial_rules(None)
    assert defaults.windows == ((600, 1080),) and defaults.days == frozenset(range(5))
    assert (defaults.retry_delay_seconds, defaults.max_attempts) == (7200, 3)


def test_timezone_from_the_config_else_from_the_number() -> None:
    assert recipient_zone(dial_rules({"timezone": "Asia/Tokyo"}), "+33612345678").key == "Asia/Tokyo"
    assert recipient_zone(dial_rules(None), "+33612345678").key == "Europe/Paris"
    assert recipient_zone(dial_rules(None), "+12127363100").key == "America/New_York"
