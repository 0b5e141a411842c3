"""Polling economy: GETs and detection latency of a fixed 60-s poller vs the derived schedule.

1,000 orders from the simulator's engine on a virtual clock, created uniformly at
random over one week, recipients in five timezones, windows 10:00-18:00 Monday to
Friday, 3 attempts 2 h apart; each attempt reaches a person with probability 0.4
(else voicemail or no answer), answered calls (person or voicemail) last 1-5 min,
post-processing 1-3 min.

Each order is followed side by side by

* ``fixed60``: a GET every 60 s from creation until it sees a terminal status
  (the status is read through the engine's cheap status path: millions of polls);
* ``policy``: a GET at creation, then at :func:`next_poll_at` with ``poke_interval=15``;
  every GET renders the full call with the engine and parses it with
  :meth:`Call.from_response`, as the sensor does.

Detection latency is the time of the first GET that sees the terminal status minus
the moment the order became terminal.

The policy runs twice: once with the simulator reporting ``next_call_at`` (the provider
mostly follows it), once with it withheld (``withhold_next_call_at``: the same population, every
``next_call_at`` null), so the provider's own calling-window and retry-delay arithmetic decides
every sleep. Both GET ratios and p95 latencies are reported and held to their targets.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import phonenumbers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.core.retry_policy import timezone_for_number
from airflow_provider_revox._internal.waiting.schedule import DEFAULT_MAX_SLEEP, next_poll_at
from airflow_provider_revox._simulator.profile import HUMAN, NO_ANSWER, VOICEMAIL, Profile
from airflow_provider_revox.testing import SimulatorEngine, VirtualClock
from bench.results import evaluate, merge_results

SEED = 20250303
ORDERS = 1000
WEEK_START = datetime(2025, 3, 3, 0, 0, tzinfo=timezone.utc)  # a Monday
POKE_INTERVAL = 15.0
FIXED_INTERVAL = timedelta(seconds=60)
TARGET_RATIO = 0.03
TARGET_RATIO_WITHOUT_NEXT_CALL_AT = 0.05
TARGET_P95_LATENCY_S = 30.0

#: Number prefix, random digits to append, and the timezone the number must resolve to.
RECIPIENTS = (
    ("+3361234", 4, "Europe/Paris"),
    ("+1212736", 4, "America/New_York"),
    ("+8131234", 4, "Asia/Tokyo"),
    ("+6129123", 4, "Australia/Sydney"),
    ("+4420794", 5, "Europe/London"),
)
RETRY_CONFIG = {
    "calling_windows": [{"calling_window_start_time": "10:00", "calling_window_end_time": "18:00"}],
    "retry_delay_seconds": 7200,
    "max_retry_attempts": 3,
    "allowed_days": ["monday", "tuesday", "wednesday", "thursday", "friday"],
}
PROFILE = Profile(
    outcome_weights={HUMAN: 0.4, VOICEMAIL: 0.3, NO_ANSWER: 0.3},
    human_talk_seconds=(60.0, 180.0, 300.0),
    voicemail_talk_seconds=(60.0, 180.0, 300.0),
    post_processing_seconds=(60.0, 120.0, 180.0),
)


def phone_number(rng: random.Random, prefix: str, digits: int, zone: str) -> str:
    """A valid number made of ``prefix`` and random digits, whose timezone is ``zone``."""
    for _ in range(100):
        number = prefix + "".join(str(rng.randrange(10)) for _ in range(digits))
        if phonenumbers.is_valid_number(phonenumbers.parse(number)) and timezone_for_number(number) == zone:
            return number
    raise RuntimeError(f"no valid number with prefix {prefix} resolves to {zone}")


def place_population(engine: SimulatorEngine, clock: VirtualClock) -> list[str]:
    """Place the fixed population, each order at its own creation time."""
    rng = random.Random(SEED)
    created = sorted(WEEK_START + timedelta(seconds=rng.randrange(7 * 86400)) for _ in range(ORDERS))
    ids = []
    for index, moment in enumerate(created):
        prefix, digits, zone = RECIPIENTS[index % len(RECIPIENTS)]
        clock.set(moment)
        call = engine.place_call(
            phone_number=phone_number(rng, prefix, digits, zone),
            assistant_id="asst_bench",
            call_retry_config=RETRY_CONFIG,
        )
        ids.append(call["id"])
    return ids


def follow_fixed(
    engine: SimulatorEngine, call_id: str, created: datetime, ends: datetime
) -> tuple[int, float]:
    """Poll every 60 s from creation; return (GETs, detection latency in seconds)."""
    moment, gets = created, 0
    while True:
        gets += 1
        if statuses.is_terminal(engine.status(call_id, at=moment)):
            return gets, (moment - ends).total_seconds()
        moment += FIXED_INTERVAL


def follow_policy(
    engine: SimulatorEngine,
    call_id: str,
    created: datetime,
    ends: datetime,
    seen: Counter[str],
    max_sleep: timedelta = DEFAULT_MAX_SLEEP,
) -> tuple[int, float]:
    """Poll at creation, then at ``next_poll_at``; return (GETs, detection latency in seconds)."""
    moment, gets = created, 0
    while True:
        gets += 1
        call = Call.from_response({"call": engine.get_call(call_id, at=moment)})
        seen[call.status] += 1
        if call.is_terminal:
            return gets, (moment - ends).total_seconds()
        following = next_poll_at(call, moment, POKE_INTERVAL, max_sleep)
        if following <= moment:
            raise RuntimeError(f"next_poll_at did not move forward for {call_id} ({call.status} at {moment})")
        moment = following


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


#: Other caps on one sleep, to show what the default costs (cancel noticed later vs fewer GETs).
MAX_SLEEP_VARIANTS = {"4h": timedelta(hours=4), "unlimited": timedelta(days=30)}


def population(withhold_next_call_at: bool) -> tuple[SimulatorEngine, list[tuple[str, datetime, datetime]]]:
    """The seeded population on its own engine: (id, created, terminal moment) of each order."""
    clock = VirtualClock(WEEK_START)
    engine = SimulatorEngine(
        seed=SEED, clock=clock, profile=PROFILE, withhold_next_call_at=withhold_next_call_at
    )
    orders = []
    for call_id in place_population(engine, clock):
        created_at = Call.from_response(engine.get_call(call_id)).created_at
        ends = engine.terminal_at(call_id)
        assert created_at is not None and ends is not None
        orders.append((call_id, created_at, ends))
    return engine, orders


def main() -> int:
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    engine, orders = population(withhold_next_call_at=False)
    ids = [call_id for call_id, _, _ in orders]
    finals: Counter[str] = Counter(engine.status(i, at=e) for i, _, e in orders)

    # Both pollers follow every order through the same engine, one after the other per order.
    fixed_gets: list[float] = []
    fixed_latency: list[float] = []
    policy_gets: list[float] = []
    policy_latency: list[float] = []
    seen: Counter[str] = Counter()
    for call_id, created_at, ends in orders:
        gets, latency = follow_fixed(engine, call_id, created_at, ends)
        fixed_gets.append(gets)
        fixed_latency.append(latency)
        gets, latency = follow_policy(engine, call_id, created_at, ends, seen)
        policy_gets.append(gets)
        policy_latency.append(latency)
    variants = {}
    for name, cap in MAX_SLEEP_VARIANTS.items():
        total = sum(follow_policy(engine, i, c, e, Counter(), cap)[0] for i, c, e in orders)
        variants[name] = round(total / sum(fixed_gets), 5)

    # The same orders (same seed: same windows, outcomes, end times) with next_call_at withheld.
    blind_engine, blind_orders = population(withhold_next_call_at=True)
    if [(c, e) for _, c, e in blind_orders] != [(c, e) for _, c, e in orders]:
        raise RuntimeError("the population without next_call_at is not the same orders")
    blind_seen: Counter[str] = Counter()
    blind = [follow_policy(blind_engine, i, c, e, blind_seen) for i, c, e in blind_orders]
    if any(blind_engine.get_call(i, at=c)["next_call_at"] is not None for i, c, _ in blind_orders):
        raise RuntimeError("the simulator reported next_call_at although it was told to withhold it")
    elapsed = time.perf_counter() - started

    ratio = sum(policy_gets) / sum(fixed_gets)
    p95_latency = percentile(policy_latency, 95)
    blind_gets = [float(g) for g, _ in blind]
    blind_latency = [latency for _, latency in blind]
    figures = {
        "title": (
            f"{ORDERS} orders created over a week, {len(RECIPIENTS)} timezones, windows 10:00-18:00 "
            f"Mon-Fri, 3 attempts 2 h apart; poke_interval {POKE_INTERVAL:g} s (a chosen knob: the "
            "latency follows it), simulated clock"
        ),
        "started_at": started_at,
        "seed": SEED,
        "orders": len(ids),
        "poke_interval_s": POKE_INTERVAL,
        "max_sleep_h": DEFAULT_MAX_SLEEP.total_seconds() / 3600,
        "get_ratio_vs_fixed60": round(ratio, 5),
        "p95_detection_latency_s": round(p95_latency, 3),
        "p50_detection_latency_s": round(percentile(policy_latency, 50), 3),
        "get_ratio_vs_fixed60_without_next_call_at": round(sum(blind_gets) / sum(fixed_gets), 5),
        "p95_detection_latency_s_without_next_call_at": round(percentile(blind_latency, 95), 3),
        "p50_detection_latency_s_without_next_call_at": round(percentile(blind_latency, 50), 3),
        "policy_gets_mean_without_next_call_at": round(sum(blind_gets) / len(blind_gets), 2),
        "policy_gets_by_status_seen_without_next_call_at": dict(sorted(blind_seen.items())),
        "policy_gets_mean": round(sum(policy_gets) / len(policy_gets), 2),
        "policy_gets_p95": percentile(policy_gets, 95),
        "policy_gets_total": int(sum(policy_gets)),
        "fixed60_gets_mean": round(sum(fixed_gets) / len(fixed_gets), 2),
        "fixed60_gets_p95": percentile(fixed_gets, 95),
        "fixed60_gets_total": int(sum(fixed_gets)),
        "fixed60_p50_detection_latency_s": round(percentile(fixed_latency, 50), 3),
        "fixed60_p95_detection_latency_s": round(percentile(fixed_latency, 95), 3),
        "policy_gets_by_status_seen": dict(sorted(seen.items())),
        "get_ratio_by_max_sleep": {f"{DEFAULT_MAX_SLEEP.total_seconds() / 3600:g}h": round(ratio, 5)}
        | variants,
        "final_statuses": dict(sorted(finals.items())),
        "runtime_s": round(elapsed, 1),
        "targets": {
            "get_ratio_vs_fixed60": f"<= {TARGET_RATIO}",
            "p95_detection_latency_s": f"<= {TARGET_P95_LATENCY_S:g}",
            "get_ratio_vs_fixed60_without_next_call_at": f"<= {TARGET_RATIO_WITHOUT_NEXT_CALL_AT}",
            "p95_detection_latency_s_without_next_call_at": f"<= {TARGET_P95_LATENCY_S:g}",
        },
    }
    figures["targets_met"] = evaluate(figures, figures["targets"])

    print(f"{ORDERS} orders over one week, {len(RECIPIENTS)} timezones; final statuses {dict(finals)}")
    print(f"{'poller':<30}{'GETs/order mean':>16}{'latency p50 s':>15}{'p95 s':>9}")
    print(
        f"{'fixed 60 s':<30}{figures['fixed60_gets_mean']:>16.1f}"
        f"{figures['fixed60_p50_detection_latency_s']:>15.1f}{figures['fixed60_p95_detection_latency_s']:>9.1f}"
    )
    print(
        f"{'next_poll_at (15 s)':<30}{figures['policy_gets_mean']:>16.1f}"
        f"{figures['p50_detection_latency_s']:>15.1f}{figures['p95_detection_latency_s']:>9.1f}"
    )
    print(
        f"{'  without next_call_at':<30}{figures['policy_gets_mean_without_next_call_at']:>16.1f}"
        f"{figures['p50_detection_latency_s_without_next_call_at']:>15.1f}"
        f"{figures['p95_detection_latency_s_without_next_call_at']:>9.1f}"
    )
    print(
        f"GET ratio policy/fixed: {ratio:.4f} (target <= {TARGET_RATIO}); without next_call_at: "
        f"{figures['get_ratio_vs_fixed60_without_next_call_at']:.4f} "
        f"(target <= {TARGET_RATIO_WITHOUT_NEXT_CALL_AT}); "
        f"by max_sleep: {figures['get_ratio_by_max_sleep']}"
    )
    print(f"targets met: {figures['targets_met']}")
    print(f"ran in {elapsed:.1f} s")
    merge_results("polling_economy", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
