"""Precomputed order timelines: every dial of an order placed on the time axis at placement.

An order's future is fixed when it is placed (deterministic from the seed and
the call id), so its state at any moment is a pure function of time (see
:mod:`.render`). Cancel, pause and resume replace the plan from a given moment
on; the part before that moment never changes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from airflow_provider_revox._simulator import statuses
from airflow_provider_revox._simulator.assistant import OutputField
from airflow_provider_revox._simulator.dialing import DialRules, next_dial
from airflow_provider_revox._simulator.profile import (
    CONNECTED_KINDS,
    HUMAN,
    AttemptDraw,
    Profile,
    structured_output_for,
    transcript_for,
)


@dataclass(frozen=True)
class OrderScript:
    """A scripted lifecycle that replaces the random draws of an order.

    Attributes:
        attempts: the dials, in order; the order makes exactly these (stopping at the first
            human), whatever ``max_retry_attempts`` says.
        post_processing_seconds: post-processing time, when fixed.
        final_status: the terminal status to report instead of the derived one.
        outcome: the ``outcome`` to report.
        structured_output: the ``structured_output`` to report.
    """

    attempts: tuple[AttemptDraw, ...] = ()
    post_processing_seconds: float | None = None
    final_status: str | None = None
    outcome: str | None = None
    structured_output: dict[str, Any] | None = None


@dataclass(frozen=True)
class OrderSpec:
    """Everything fixed when an order is placed.

    ``key`` seeds the order's random draws: the placement number for a generated id (which
    changes from one start to the next), the id itself for an id a scenario fixes.
    """

    call_id: str
    key: str
    seed: int
    phone_number: str
    assistant: dict[str, Any]
    call_retry_config: dict[str, Any] | None
    metadata: dict[str, Any]
    prompt_variables: dict[str, Any]
    created_at: datetime
    scheduled_at: datetime | None
    rules: DialRules
    zone: ZoneInfo
    max_call_duration_secs: float | None
    output_fields: tuple[OutputField, ...]
    voicemail_message: str | None = None
    script: OrderScript | None = None
    #: ``(id, name)`` of the campaign the order belongs to; such an order waits for a launch.
    campaign: tuple[str, str] | None = None
    #: When the campaign launched the order (None: not launched yet, or not a campaign order).
    launched_at: datetime | None = None
    from_phone_number: str | None = None
    skip_calling_window: bool = False
    concurrency_key: str | None = None

    @property
    def waiting_for_launch(self) -> bool:
        """True for a campaign order nobody has launched."""
        return self.campaign is not None and self.launched_at is None

    @property
    def max_attempts(self) -> int:
        """Attempts the order may make: the script's length, else the policy's maximum."""
        return len(self.script.attempts) if self.script and self.script.attempts else self.rules.max_attempts

    def rng(self, *parts: object) -> random.Random:
        """A generator seeded by the simulator seed, the order's key and ``parts``: stable across runs."""
        return random.Random("/".join(str(p) for p in (self.seed, self.key, *parts)))


@dataclass(frozen=True)
class AttemptPlan:
    """One dial placed on the time axis."""

    id: str
    number: int
    draw: AttemptDraw
    dial_due: datetime
    started_at: datetime
    ringing_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    ended_by: str | None
    end_reason: str | None
    transcript: tuple[dict[str, Any], ...] = ()
    interrupted: bool = False

    @property
    def reached_human(self) -> bool:
        """True when a person answered."""
        return self.draw.kind == HUMAN and self.answered_at is not None

    @property
    def connected(self) -> bool:
        """True when the dial was answered (person, voicemail or IVR)."""
        return self.answered_at is not None

    def status_at(self, moment: datetime) -> str:
        """The attempt status at ``moment`` (which must be at or after ``started_at``)."""
        if moment >= self.ended_at:
            return statuses.ATTEMPT_COMPLETED if self.connected else statuses.ATTEMPT_ERROR
        if self.answered_at is not None and moment >= self.answered_at:
            return statuses.ATTEMPT_ONGOING
        if moment >= self.ringing_at:
            return statuses.ATTEMPT_RINGING
        return statuses.ATTEMPT_QUEUED

    def cut(self, moment: datetime, reason: str) -> AttemptPlan:
        """End a live attempt at ``moment`` because the order was cancelled or paused."""
        answered = self.answered_at if self.answered_at is not None and self.answered_at <= moment else None
        return replace(
            self,
            answered_at=answered,
            ringing_at=min(self.ringing_at, moment),
            ended_at=moment,
            ended_by="system",
            end_reason=reason,
            transcript=self.transcript[:1] if answered is not None else (),
            interrupted=True,
        )


@dataclass
class OrderPlan:
    """The whole planned life of an order; replaced (never edited in place) by cancel/pause/resume."""

    spec: OrderSpec
    attempts: tuple[AttemptPlan, ...]
    post_start: datetime | None
    final_at: datetime | None
    final_status: str | None
    outcome: str | None = None
    structured_output: dict[str, Any] | None = None
    pauses: tuple[tuple[datetime, datetime | None], ...] = ()
    events: tuple[datetime, ...] = ()
    render_cache: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)
    json_cache: dict[int, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.events:
            self.events = tuple(sorted(self._event_times()))

    def _event_times(self) -> list[datetime]:
        times = [self.spec.created_at]
        if self.spec.launched_at is not None:
            times.append(self.spec.launched_at)
        for attempt in self.attempts:
            times += [attempt.dial_due, attempt.started_at, attempt.ringing_at, attempt.ended_at]
            if attempt.answered_at is not None:
                times.append(attempt.answered_at)
        for start, end in self.pauses:
            times.append(start)
            if end is not None:
                times.append(end)
        times += [t for t in (self.post_start, self.final_at) if t is not None]
        return times

    @property
    def terminal_at(self) -> datetime | None:
        """When the order reaches its terminal status, or None while that is not planned."""
        return self.final_at


#: The ``end_reason`` of an attempt hung up by a cancel or a pause: the API's own value for an
#: ending the customer asked for (the spec has no "cancelled" or "paused" reason).
CUT_REASON = "client_initiated"


def attempt_id(spec: OrderSpec, number: int) -> str:
    """A stable attempt id derived from the call id and the attempt number."""
    digest = hashlib.sha256(f"{spec.seed}/{spec.call_id}/attempt/{number}".encode()).hexdigest()
    return f"att_{digest[:24]}"


#: Finds the dial time of an attempt of a given length, at or after a window-respecting time;
#: a campaign uses it to keep at most ``max_concurrent_calls`` attempts live at once.
Slot = Callable[[datetime, timedelta], datetime]


def plan_attempts(
    spec: OrderSpec,
    profile: Profile,
    start: datetime,
    first_number: int,
    previous: AttemptPlan | None,
    slot: Slot | None = None,
) -> list[AttemptPlan]:
    """Place the dials numbered ``first_number`` onwards, the first not before ``start``.

    Attempt 1 waits for ``scheduled_at`` and a window; later ones wait for the retry delay
    and a window, except attempt 2 under ``call_twice_in_a_row``, which follows attempt 1
    at once (within a window) when attempt 1 did not reach a person. Dialling stops at the
    first attempt that reaches a person.
    """
    planned: list[AttemptPlan] = []
    rules = spec.rules
    for number in range(first_number, spec.max_attempts + 1):
        before = planned[-1] if planned else previous
        if before is not None and before.reached_human:
            break
        if number == first_number:
            earliest = start
            if before is not None:
                earliest = max(start, before.ended_at + timedelta(seconds=rules.retry_delay_seconds))
        elif number == 2 and rules.call_twice_in_a_row:
            earliest = before.ended_at if before else start
        else:
            assert before is not None
            earliest = before.ended_at + timedelta(seconds=rules.retry_delay_seconds)
        rng = spec.rng("attempt", number)
        draw = _draw_for(spec, profile, number, rng)
        due = next_dial(rules, spec.zone, earliest)
        attempt = _place(spec, number, draw, due, rng)
        if slot is not None:
            attempt = _shifted(attempt, slot(due, attempt.ended_at - due) - due)
        planned.append(attempt)
    return planned


def _shifted(attempt: AttemptPlan, delta: timedelta) -> AttemptPlan:
    if not delta:
        return attempt
    answered = attempt.answered_at + delta if attempt.answered_at is not None else None
    return replace(
        attempt,
        dial_due=attempt.dial_due + delta,
        started_at=attempt.started_at + delta,
        ringing_at=attempt.ringing_at + delta,
        answered_at=answered,
        ended_at=attempt.ended_at + delta,
    )


def _draw_for(spec: OrderSpec, profile: Profile, number: int, rng: random.Random) -> AttemptDraw:
    if spec.script is not None and spec.script.attempts:
        return spec.script.attempts[number - 1]
    return profile.draw_attempt(rng)


def _place(
    spec: OrderSpec, number: int, draw: AttemptDraw, dial_due: datetime, rng: random.Random
) -> AttemptPlan:
    started = dial_due + timedelta(seconds=draw.queue_seconds)
    ringing = started + timedelta(seconds=draw.setup_seconds)
    ended_by, end_reason = draw.ended_by, draw.end_reason
    answered: datetime | None = None
    if draw.kind in CONNECTED_KINDS:
        answered = ringing + timedelta(seconds=draw.ring_seconds)
        talk = draw.talk_seconds
        cap = spec.max_call_duration_secs
        if cap is not None and cap > 0 and talk > cap:
            talk, ended_by, end_reason = cap, "system", "max_duration"
        ended = answered + timedelta(seconds=talk)
        transcript = transcript_for(draw.kind, rng, spec.prompt_variables, spec.voicemail_message)
    else:
        ended = ringing + timedelta(seconds=draw.ring_seconds)
        transcript = []
    return AttemptPlan(
        id=attempt_id(spec, number),
        number=number,
        draw=draw,
        dial_due=dial_due,
        started_at=started,
        ringing_at=ringing,
        answered_at=answered,
        ended_at=ended,
        ended_by=ended_by,
        end_reason=end_reason,
        transcript=tuple(transcript),
    )


def finish(
    spec: OrderSpec,
    profile: Profile,
    attempts: tuple[AttemptPlan, ...],
    pauses: tuple[tuple[datetime, datetime | None], ...] = (),
) -> OrderPlan:
    """Close a plan once its attempts are known.

    * A person was reached: ``post_processing`` after that attempt, then ``completed`` with an
      ``outcome`` and a typed ``structured_output``.
    * Only voicemail or IVR answered: ``post_processing``, then ``completed`` with ``outcome``
      and ``structured_output`` null, which is how the real API reports voicemail-only orders.
    * Every attempt failed to dial: ``errored`` as soon as the last attempt ends (there is
      nothing to analyse, so no post-processing).

    A script's ``final_status``, ``outcome`` and ``structured_output`` override the derived ones.
    """
    script = spec.script
    if not attempts:
        return OrderPlan(
            spec=spec, attempts=attempts, post_start=None, final_at=None, final_status=None, pauses=pauses
        )
    last = attempts[-1]
    human = any(a.reached_human for a in attempts)
    outcome: str | None = None
    output: dict[str, Any] | None = None
    post_start: datetime | None = None
    if any(a.connected for a in attempts):
        rng = spec.rng("post")
        seconds = profile.draw_post_processing(rng)
        if script is not None and script.post_processing_seconds is not None:
            seconds = script.post_processing_seconds
        post_start = last.ended_at
        final_at = post_start + timedelta(seconds=seconds)
        final_status: str = statuses.COMPLETED
        if human:
            outcome = profile.draw_outcome(rng)
            output = structured_output_for(spec.output_fields, rng, final_at)
    else:
        final_at = last.ended_at
        final_status = statuses.ERRORED
    if script is not None:
        final_status = script.final_status or final_status
        outcome = script.outcome if script.outcome is not None else outcome
        output = script.structured_output if script.structured_output is not None else output
    return OrderPlan(
        spec=spec,
        attempts=attempts,
        post_start=post_start,
        final_at=final_at,
        final_status=final_status,
        outcome=outcome,
        structured_output=output,
        pauses=pauses,
    )


def initial_plan(spec: OrderSpec, profile: Profile, slot: Slot | None = None) -> OrderPlan:
    """The plan of a freshly placed (or launched) order; a campaign order waits for its launch."""
    if spec.waiting_for_launch:
        return finish(spec, profile, ())
    begin = spec.launched_at or spec.created_at
    start = max(begin, spec.scheduled_at or begin)
    return finish(spec, profile, tuple(plan_attempts(spec, profile, start, 1, None, slot)))


def cut_plan(plan: OrderPlan, moment: datetime, reason: str) -> tuple[AttemptPlan, ...]:
    """The attempts that happened before ``moment``, a live one ended at ``moment``."""
    kept = []
    for attempt in plan.attempts:
        if attempt.started_at > moment:
            break
        kept.append(attempt if attempt.ended_at <= moment else attempt.cut(moment, reason))
    return tuple(kept)


def cancelled_plan(plan: OrderPlan, moment: datetime) -> OrderPlan:
    """The plan of an order cancelled at ``moment``: a live attempt hung up, a pause ended."""
    pauses = tuple((start, end if end is not None else moment) for start, end in plan.pauses)
    return OrderPlan(
        spec=plan.spec,
        attempts=cut_plan(plan, moment, CUT_REASON),
        post_start=plan.post_start if plan.post_start and plan.post_start <= moment else None,
        final_at=moment,
        final_status=statuses.CANCELLED,
        pauses=pauses,
    )


def paused_plan(plan: OrderPlan, moment: datetime) -> OrderPlan:
    """The plan of an order paused at ``moment``: a live attempt hung up, nothing planned after."""
    return OrderPlan(
        spec=plan.spec,
        attempts=cut_plan(plan, moment, CUT_REASON),
        post_start=None,
        final_at=None,
        final_status=None,
        pauses=(*plan.pauses, (moment, None)),
    )


def resumed_plan(plan: OrderPlan, profile: Profile, moment: datetime, slot: Slot | None = None) -> OrderPlan:
    """The plan of a paused order resumed at ``moment``: the remaining attempts planned from then."""
    pauses = (*plan.pauses[:-1], (plan.pauses[-1][0], moment))
    spec = plan.spec
    previous = plan.attempts[-1] if plan.attempts else None
    start = max(moment, spec.scheduled_at or moment)
    more = plan_attempts(spec, profile, start, len(plan.attempts) + 1, previous, slot)
    resumed = finish(spec, profile, (*plan.attempts, *more), pauses)
    if resumed.post_start is not None and resumed.post_start < moment and resumed.final_at:
        # Every attempt was made before the pause: the analysis starts again at the resume.
        shift = moment - resumed.post_start
        return replace(
            resumed,
            post_start=moment,
            final_at=resumed.final_at + shift,
            events=(),
            render_cache={},
            json_cache={},
        )
    if resumed.final_at is not None and resumed.final_at < moment:
        return OrderPlan(
            spec=spec,
            attempts=resumed.attempts,
            post_start=None,
            final_at=moment,
            final_status=resumed.final_status,
            pauses=pauses,
        )
    return resumed
