"""When to look at a call order again, and when to stop waiting for it.

An order is dialled over up to a few days, inside calling windows on allowed
days in the recipient's timezone. Polling it every minute wastes thousands of
requests while nothing can change, and a fixed timeout either kills a live
order or hangs on a dead one. The functions here derive both the next poll and
the deadline from the order itself. They are pure (no I/O, no clock): the
sensor, the trigger and the benchmark all make the same decisions.

Every datetime taken or returned is timezone-aware; results are in UTC.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.core.call import Call
from airflow_provider_revox._internal.core.retry_policy import RetryPolicy

#: Upper bound of one attempt when the assistant gives no ``max_call_duration_secs``.
DEFAULT_MAX_CALL_DURATION = timedelta(minutes=30)
#: Time an attempt may ring (queued, ringing) before the conversation starts or the dial fails.
RING_TIME = timedelta(minutes=2)
#: Time the transcript analysis may take after the last attempt, before the order is terminal.
POST_PROCESSING_GRACE = timedelta(minutes=30)
#: How long past :func:`deadline` a sensor without an explicit timeout keeps waiting.
DEADLINE_MARGIN = timedelta(hours=1)
#: Longest single sleep, so a cancel or a pause during a long wait is noticed. Four polls a
#: day cost next to nothing; a shorter cap notices a cancel sooner but adds a GET every few hours
#: of every overnight or weekend wait (bench/polling_economy.py shows the effect).
DEFAULT_MAX_SLEEP = timedelta(hours=6)
#: Slowest cadence for a paused order: a person may resume it at any time.
PAUSED_POLL_INTERVAL = timedelta(minutes=5)

_UTC = timezone.utc
# Bounds the search for a window: a week holds every weekday, and a window swallowed
# whole by a DST gap on its only allowed day reopens a week later.
_SEARCH_DAYS = 15


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value.isoformat()}")


def _to_utc(wall: datetime) -> datetime:
    """Convert a local wall time (with a ZoneInfo tzinfo) to UTC.

    A wall time skipped by a DST gap resolves to the first real instant after
    it (the transition itself); a repeated wall time resolves to its first
    occurrence.
    """
    early = wall.replace(fold=0).astimezone(_UTC)
    late = wall.replace(fold=1).astimezone(_UTC)
    if late >= early:
        # Normal or repeated (fold) wall time: the first occurrence is fold=0.
        return early
    # In a gap, fold=1 lands before the transition and fold=0 after it: find the
    # transition, the first instant whose wall clock reads past ``wall``.
    zone = wall.tzinfo
    low, high = late, early
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == early.astimezone(zone).utcoffset():
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _local_instant(day: date, moment: time, zone: ZoneInfo) -> datetime:
    return _to_utc(datetime.combine(day, moment, tzinfo=zone))


def next_dial_at(policy: RetryPolicy, zone: ZoneInfo, earliest: datetime) -> datetime:
    """First instant at or after ``earliest`` inside a calling window on an allowed day.

    The arithmetic runs in the recipient's wall time and is converted to UTC, so
    windows keep their local hours across DST changes. A window start that falls
    in a DST gap opens at the end of the gap.

    Args:
        policy: The order's normalised retry policy.
        zone: The recipient's timezone.
        earliest: Timezone-aware lower bound.

    Returns:
        The dial instant, in UTC.

    Raises:
        ValueError: If ``earliest`` is naive or the policy allows no dial at all.
    """
    _require_aware(earliest, "earliest")
    earliest = earliest.astimezone(_UTC)
    first_day = earliest.astimezone(zone).date()
    for offset in range(_SEARCH_DAYS):
        day = first_day + timedelta(days=offset)
        if day.weekday() not in policy.allowed_days:
            continue
        for window in policy.windows:
            opens = _local_instant(day, window.start, zone)
            closes = _local_instant(day, window.end, zone)
            if earliest < closes and opens < closes:
                return max(opens, earliest)
    raise ValueError(f"retry policy allows no calling window: {policy!r}")


def attempt_bound(call: Call) -> timedelta:
    """Longest one attempt can last: ring time plus the assistant's maximum call duration."""
    seconds = call.assistant.max_call_duration_secs if call.assistant else None
    duration = timedelta(seconds=seconds) if seconds and seconds > 0 else DEFAULT_MAX_CALL_DURATION
    return RING_TIME + duration


def _attempt_live(call: Call) -> bool:
    last = call.last_attempt
    return call.status == statuses.CALLING or (last is not None and last.is_live)


def _last_ended(call: Call, now: datetime) -> datetime:
    """When the last attempt ended, falling back to what the payload does say."""
    last = call.last_attempt
    if last is not None:
        if last.ended_at is not None:
            return last.ended_at
        if last.started_at is not None:
            return last.started_at
    return call.updated_at or now


def _retry_earliest(policy: RetryPolicy, ended: datetime, attempts_made: int) -> datetime:
    """Earliest moment the next attempt may be dialled after attempt ``attempts_made`` ended at ``ended``.

    Only an attempt that missed the person is ever retried, so ``call_twice_in_a_row``
    always lets attempt 2 follow attempt 1 at once.
    """
    if attempts_made == 1 and policy.call_twice_in_a_row:
        return ended
    return ended + timedelta(seconds=policy.retry_delay_seconds)


def _api_plan(call: Call) -> datetime | None:
    """The API's own ``next_call_at``, unless the last attempt started at or after it (stale)."""
    planned = call.next_call_at
    if planned is None:
        return None
    last = call.last_attempt
    if last is not None and last.started_at is not None and last.started_at >= planned:
        return None
    return planned.astimezone(_UTC)


def planned_dial_at(call: Call, now: datetime) -> datetime | None:
    """When the order's next attempt can first be dialled, or None when no attempt is left.

    Uses ``next_call_at`` when the API gives one (unless the last attempt already
    started at or after it, which makes it stale); a planned dial still ahead wins even when
    the derived plan has no attempt left, since the API may count retries differently.
    Otherwise derives the time from ``scheduled_at`` (first attempt) or the last attempt's end
    plus the retry delay (``call_twice_in_a_row`` lets attempt 2 follow at once), then
    moves it into the next calling window. Never before ``now``.

    Args:
        call: The order as last fetched.
        now: Timezone-aware current time.

    Returns:
        The UTC dial instant, or None when every attempt has been made.
    """
    _require_aware(now, "now")
    now = now.astimezone(_UTC)
    policy = call.retry_policy
    made = call.attempts_made
    planned = _api_plan(call)
    if planned is not None and planned > now:
        return planned
    if made >= policy.max_retry_attempts:
        return None
    if planned is not None:
        # A planned dial in the past is overdue: it can happen any moment now.
        return now
    if made == 0:
        earliest = call.scheduled_at or now
    else:
        earliest = _retry_earliest(policy, _last_ended(call, now), made)
    return next_dial_at(policy, policy.zone_for(call.to_phone_number), max(earliest, now))


def _overdue_dial(call: Call, now: datetime) -> datetime | None:
    """The next dial as the order's own times place it, when that is already past; else None.

    An order stuck before its dial (``scheduled`` for months, ``not_launched``,
    ``initializing``) would otherwise have its deadline recomputed from ``now`` for ever.
    """
    policy = call.retry_policy
    made = call.attempts_made
    if made >= policy.max_retry_attempts:
        return None
    due = _api_plan(call)
    if due is None:
        if made == 0:
            since = call.scheduled_at or call.created_at
            if since is None:
                return None
        else:
            since = _retry_earliest(policy, _last_ended(call, now), made)
        due = next_dial_at(policy, policy.zone_for(call.to_phone_number), since)
    return due if due < now else None


def deadline(call: Call, now: datetime) -> datetime:
    """Latest time by which the order can plausibly end, from its current state.

    Walks the attempts still to come as if none reaches a person and each lasts
    :func:`attempt_bound`, each dialled at the first allowed moment (window,
    allowed day, retry delay, ``call_twice_in_a_row``), then adds
    :data:`POST_PROCESSING_GRACE`. Attempts already made count. A paused order
    is treated as if resumed now, so its deadline moves with the pause. A
    sensor without a timeout gives up at this deadline plus :data:`DEADLINE_MARGIN`.

    Args:
        call: The order as last fetched.
        now: Timezone-aware current time.

    Returns:
        The UTC deadline; for a terminal order, when it ended (never after ``now``).

    Raises:
        ValueError: If ``now`` is naive.
    """
    _require_aware(now, "now")
    now = now.astimezone(_UTC)
    if call.is_terminal:
        ended = call.ended_at
        return min(ended.astimezone(_UTC), now) if ended is not None else now
    policy = call.retry_policy
    zone = policy.zone_for(call.to_phone_number)
    bound = attempt_bound(call)
    made = call.attempts_made
    last = call.last_attempt

    if call.status == statuses.POST_PROCESSING:
        return _last_ended(call, now).astimezone(_UTC) + POST_PROCESSING_GRACE
    if _attempt_live(call) and call.status != statuses.PAUSED:
        started = (last.started_at if last is not None else None) or call.updated_at or now
        if last is not None and last.reached_human:
            # A person answered: this attempt is the last one.
            return started.astimezone(_UTC) + bound + POST_PROCESSING_GRACE
        made = max(made, 1)
        ends = started.astimezone(_UTC) + bound
    elif call.status == statuses.PAUSED:
        dial = next_dial_at(policy, zone, now) if made < policy.max_retry_attempts else None
        if dial is None:
            return now + POST_PROCESSING_GRACE
        made += 1
        ends = dial + bound
    else:
        # An overdue dial anchors the deadline where it fell due, so it stops receding.
        dial = _overdue_dial(call, now) or planned_dial_at(call, now)
        if dial is None:
            return _last_ended(call, now).astimezone(_UTC) + POST_PROCESSING_GRACE
        made += 1
        ends = dial + bound

    while made < policy.max_retry_attempts:
        ends = next_dial_at(policy, zone, _retry_earliest(policy, ends, made)) + bound
        made += 1
    planned = _api_plan(call)
    if planned is not None and call.status in statuses.WAITING_TO_DIAL:
        # While the API shows a dial to come, the order is alive at least until that dial ends.
        ends = max(ends, planned + bound)
    return ends + POST_PROCESSING_GRACE


def next_poll_at(
    call: Call,
    now: datetime,
    poke_interval: float,
    max_sleep: timedelta = DEFAULT_MAX_SLEEP,
    *,
    known_deadline: datetime | None = None,
) -> datetime:
    """When the order's state can next change, i.e. when to fetch it again.

    * terminal: ``now`` (nothing to wait for);
    * an attempt live, post-processing, or a status nobody documented: ``now + poke_interval``;
    * waiting to dial (``scheduled``, ``initializing``, ``not_launched``): the planned dial
      (:func:`planned_dial_at`); ``queued_for_calling`` means the dial is due, so ``poke_interval``;
    * ``paused``: ``max(poke_interval, PAUSED_POLL_INTERVAL)``.

    The result is capped at ``now + max_sleep`` and at :func:`deadline`, and is never
    before ``now``. Once the deadline has passed the order is overdue and is polled
    every ``poke_interval`` until the caller gives up.

    Args:
        call: The order as last fetched.
        now: Timezone-aware current time.
        poke_interval: Seconds between polls while something can happen at any moment.
        max_sleep: Longest sleep, so a cancel or pause during a long wait is noticed.
        known_deadline: :func:`deadline` of the same ``call`` and ``now``, when the caller
            has it already (it walks every attempt to come: a batch wait computes it once).

    Returns:
        The UTC time of the next poll.

    Raises:
        ValueError: If ``now`` is naive, or ``poke_interval`` or ``max_sleep`` is not positive.
    """
    return next_poll(call, now, poke_interval, max_sleep, known_deadline=known_deadline)[0]


def next_poll(
    call: Call,
    now: datetime,
    poke_interval: float,
    max_sleep: timedelta = DEFAULT_MAX_SLEEP,
    *,
    known_deadline: datetime | None = None,
) -> tuple[datetime, str]:
    """:func:`next_poll_at` and why, in words a person reads in the task log.

    The reason names what the time comes from: the planned dial (with the calling window), a
    live attempt, post-processing, a pause, the longest sleep or the deadline.
    """
    _require_aware(now, "now")
    if not poke_interval > 0:
        raise ValueError(f"poke_interval must be a positive number of seconds, got {poke_interval!r}")
    if max_sleep <= timedelta(0):
        raise ValueError(f"max_sleep must be positive, got {max_sleep!r}")
    now = now.astimezone(_UTC)
    if call.is_terminal:
        return now, "the order has ended"
    poke = now + timedelta(seconds=poke_interval)
    status = call.status
    if status == statuses.PAUSED:
        wake = now + max(timedelta(seconds=poke_interval), PAUSED_POLL_INTERVAL)
        why = "the order is paused: a person may resume it at any time"
    elif (
        status in statuses.WAITING_TO_DIAL
        and status != statuses.QUEUED_FOR_CALLING
        and not _attempt_live(call)
    ):
        dial = planned_dial_at(call, now)
        # No attempt left yet still waiting: post-processing is about to start.
        wake = poke if dial is None else max(dial, poke)
        if dial is None:
            why = "every attempt is made: the analysis starts any moment"
        elif dial <= poke:
            why = "the next attempt is due"
        elif _api_plan(call) == dial:
            why = f"the API plans the next attempt at {_utc(dial)}"
        else:
            why = f"the next attempt can be dialled at {_utc(dial)} (calling window and retry delay)"
    else:
        wake = poke
        why = {
            statuses.POST_PROCESSING: "the analysis of the call is running",
            statuses.QUEUED_FOR_CALLING: "the order is queued for calling",
        }.get(status, "an attempt is live" if _attempt_live(call) else f"status {status!r} can change")
    limit = deadline(call, now) if known_deadline is None else known_deadline
    if limit <= now:
        return poke, f"past its deadline of {_utc(limit)}: checked every poke_interval"
    if wake > now + max_sleep and now + max_sleep <= limit:
        return now + max_sleep, f"{why}; sleeping at most {max_sleep} at a time"
    if wake > limit:
        return limit, f"{why}; not past the deadline {_utc(limit)}"
    return max(now, wake), why


def _utc(moment: datetime) -> str:
    return moment.astimezone(_UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
