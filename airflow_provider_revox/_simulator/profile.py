"""Distributions behind a simulated order: who picks up, for how long, and what they say.

A :class:`Profile` turns a seeded ``random.Random`` into :class:`AttemptDraw`
values (the outcome and durations of one dial) and into call content
(transcripts, ``structured_output``, ``outcome``). The defaults aim at what an
outbound campaign sees in practice; every number can be overridden.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from airflow_provider_revox._simulator.assistant import OutputField

#: Outcome kinds of one dial. The first three connect (recording, transcript); the others fail to dial.
HUMAN = "human"
VOICEMAIL = "voicemail"
IVR = "ivr"
NO_ANSWER = "no_answer"
BUSY = "busy"
FAILED = "failed"
KINDS = (HUMAN, VOICEMAIL, IVR, NO_ANSWER, BUSY, FAILED)
CONNECTED_KINDS = frozenset({HUMAN, VOICEMAIL, IVR})

#: Dial errors the API documents besides ``busy`` and ``no_answer``; ``failed`` draws one of them.
OTHER_DIAL_ERRORS = (
    "temporarily_unavailable",
    "number_non_attributed",
    "too_many_calls",
    "precondition_failed",
    "non_classified_error",
)

#: Order outcomes the current spec documents.
OUTCOMES = ("interested", "not_interested", "completed", "requested_callback_later")

Triangle = tuple[float, float, float]
"""A triangular distribution as ``(low, mode, high)`` in seconds."""


@dataclass(frozen=True)
class AttemptDraw:
    """What happens on one dial, before it is placed on the time axis.

    Attributes:
        kind: one of ``human``, ``voicemail``, ``ivr``, ``no_answer``, ``busy``, ``failed``.
        queue_seconds: time spent ``queued_for_calling`` waiting for a line.
        setup_seconds: time the attempt stays ``queued`` before it rings.
        ring_seconds: ringing time before answer or dial failure.
        talk_seconds: time from answer to hang-up (0 when not answered).
        dial_error: the SIP reason when the dial failed.
        ended_by: ``agent``, ``user`` or ``system``.
        end_reason: why the agent or the system ended the call.
    """

    kind: str
    queue_seconds: float = 2.0
    setup_seconds: float = 1.0
    ring_seconds: float = 8.0
    talk_seconds: float = 0.0
    dial_error: str | None = None
    ended_by: str | None = None
    end_reason: str | None = None

    @property
    def connected(self) -> bool:
        """True when somebody or something answered (human, voicemail, IVR)."""
        return self.kind in CONNECTED_KINDS

    @property
    def result(self) -> str | None:
        """The attempt ``result`` the API reports."""
        return {HUMAN: "human", VOICEMAIL: "voicemail", IVR: "IVR"}.get(self.kind)


def _default_weights() -> dict[str, float]:
    return {HUMAN: 0.45, VOICEMAIL: 0.2, NO_ANSWER: 0.15, BUSY: 0.08, IVR: 0.07, FAILED: 0.05}


def _default_outcome_weights() -> dict[str, float]:
    return {"interested": 0.35, "not_interested": 0.3, "completed": 0.25, "requested_callback_later": 0.1}


@dataclass(frozen=True)
class Profile:
    """Configurable distributions with realistic defaults (all durations in seconds).

    Attributes:
        outcome_weights: relative weight of each dial outcome kind.
        queue_seconds: wait for a free line once a dial is due.
        ring_seconds: ringing before a person, voicemail or IVR answers.
        no_answer_ring_seconds: ringing before the network gives up.
        busy_ring_seconds: time before a busy signal.
        human_talk_seconds: conversation length with a person.
        voicemail_talk_seconds: time to leave a voicemail message.
        ivr_talk_seconds: time spent in a phone menu before hanging up.
        post_processing_seconds: transcript analysis after the last attempt.
        order_outcome_weights: relative weight of each order ``outcome`` when a person was reached.
        user_hangup_rate: share of human calls the recipient ends (the agent ends the rest).
    """

    outcome_weights: Mapping[str, float] = field(default_factory=_default_weights)
    queue_seconds: Triangle = (1.0, 2.0, 6.0)
    ring_seconds: Triangle = (3.0, 8.0, 20.0)
    no_answer_ring_seconds: Triangle = (25.0, 30.0, 45.0)
    busy_ring_seconds: Triangle = (1.0, 2.0, 4.0)
    human_talk_seconds: Triangle = (30.0, 95.0, 420.0)
    voicemail_talk_seconds: Triangle = (12.0, 20.0, 35.0)
    ivr_talk_seconds: Triangle = (20.0, 40.0, 90.0)
    post_processing_seconds: Triangle = (5.0, 20.0, 90.0)
    order_outcome_weights: Mapping[str, float] = field(default_factory=_default_outcome_weights)
    user_hangup_rate: float = 0.3

    def __post_init__(self) -> None:
        unknown = set(self.outcome_weights) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown outcome kinds {sorted(unknown)}; expected some of {list(KINDS)}")
        if any(w < 0 for w in self.outcome_weights.values()) or sum(self.outcome_weights.values()) <= 0:
            raise ValueError("outcome_weights must be non-negative and not all zero")
        bad = set(self.order_outcome_weights) - set(OUTCOMES)
        if bad:
            raise ValueError(f"unknown order outcomes {sorted(bad)}; expected some of {list(OUTCOMES)}")
        for name in (
            "queue_seconds",
            "ring_seconds",
            "no_answer_ring_seconds",
            "busy_ring_seconds",
            "human_talk_seconds",
            "voicemail_talk_seconds",
            "ivr_talk_seconds",
            "post_processing_seconds",
        ):
            low, mode, high = getattr(self, name)
            if not 0 <= low <= mode <= high:
                raise ValueError(f"{name} must be (low, mode, high) with 0 <= low <= mode <= high")

    def draw_attempt(self, rng: random.Random) -> AttemptDraw:
        """Draw the outcome and durations of one dial."""
        kinds = list(self.outcome_weights)
        kind = rng.choices(kinds, weights=[self.outcome_weights[k] for k in kinds])[0]
        return self.attempt_of_kind(kind, rng)

    def attempt_of_kind(self, kind: str, rng: random.Random, **overrides: Any) -> AttemptDraw:
        """Build a draw of a given kind, drawing every duration not given in ``overrides``.

        Raises:
            ValueError: when ``kind`` is not one of ``human``, ``voicemail``, ``ivr``, ``no_answer``,
                ``busy``, ``failed``.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown attempt kind {kind!r}; expected one of {list(KINDS)}")
        values: dict[str, Any] = {
            "queue_seconds": _tri(rng, self.queue_seconds),
            "setup_seconds": round(rng.uniform(0.5, 1.5), 3),
        }
        if kind == HUMAN:
            user_ends = rng.random() < self.user_hangup_rate
            values.update(
                ring_seconds=_tri(rng, self.ring_seconds),
                talk_seconds=_tri(rng, self.human_talk_seconds),
                ended_by="user" if user_ends else "agent",
                end_reason=None if user_ends else "tool_end_call",
            )
        elif kind in (VOICEMAIL, IVR):
            # A machine answered: the agent speaks (or gives up on the menu) and hangs up.
            talk, reason = {
                VOICEMAIL: (self.voicemail_talk_seconds, "voicemail"),
                IVR: (self.ivr_talk_seconds, "ivr_no_navigate"),
            }[kind]
            values.update(
                ring_seconds=_tri(rng, self.ring_seconds),
                talk_seconds=_tri(rng, talk),
                ended_by="agent",
                end_reason=reason,
            )
        elif kind == NO_ANSWER:
            values.update(ring_seconds=_tri(rng, self.no_answer_ring_seconds), dial_error="no_answer")
        elif kind == BUSY:
            values.update(ring_seconds=_tri(rng, self.busy_ring_seconds), dial_error="busy")
        else:
            values.update(
                ring_seconds=_tri(rng, self.busy_ring_seconds), dial_error=rng.choice(OTHER_DIAL_ERRORS)
            )
        if kind not in CONNECTED_KINDS:
            values.update(ended_by="system", talk_seconds=0.0)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return AttemptDraw(kind=kind, **values)

    def draw_post_processing(self, rng: random.Random) -> float:
        """Draw the post-processing time of an order."""
        return _tri(rng, self.post_processing_seconds)

    def draw_outcome(self, rng: random.Random) -> str:
        """Draw the order ``outcome`` of an order that reached a person."""
        names = list(self.order_outcome_weights)
        return rng.choices(names, weights=[self.order_outcome_weights[n] for n in names])[0]


def _tri(rng: random.Random, spec: Triangle) -> float:
    low, mode, high = spec
    return round(rng.triangular(low, high, mode), 3) if high > low else float(low)


_FIRST_NAMES = ("Camille", "Jordan", "Alex", "Sam", "Morgan", "Léa", "Noah", "Maria", "Yuki", "Priya")
_LAST_NAMES = ("Martin", "Bernard", "Smith", "Garcia", "Müller", "Rossi", "Tanaka", "Patel", "Dubois")


def transcript_for(
    kind: str, rng: random.Random, variables: Mapping[str, Any], voicemail_message: str | None
) -> list[dict[str, Any]]:
    """A plausible live transcript for an attempt of ``kind`` (empty when nobody answered)."""
    name = str(variables.get("first_name") or variables.get("name") or rng.choice(_FIRST_NAMES))
    if kind == HUMAN:
        turns = [
            ("assistant", f"Hello {name}, this is Revox calling about your appointment. Is now a good time?"),
            ("user", rng.choice(("Yes, go ahead.", "Sure, what is it about?", "I have a minute, yes."))),
            ("assistant", "Great. Can you confirm you are still available for the date we planned?"),
            ("user", rng.choice(("Yes, that works.", "Could we move it to next week?", "No, cancel it."))),
            ("tool", "end_call"),
            ("assistant", "Thank you, I have noted that. Have a nice day!"),
        ]
        out = []
        for role, content in turns:
            if role == "tool":
                out.append(
                    {
                        "role": "tool",
                        "content": "",
                        "tool_name": content,
                        "tool_arguments": {"reason": "conversation_finished"},
                        "tool_is_error": False,
                        "tool_output": "ok",
                    }
                )
            else:
                out.append({"role": role, "content": content})
        return out
    if kind == VOICEMAIL:
        message = voicemail_message or f"Hello {name}, this is Revox. Please call us back. Thank you."
        return [
            {
                "role": "user",
                "content": "You have reached my voicemail, please leave a message after the tone.",
            },
            {"role": "assistant", "content": message},
        ]
    if kind == IVR:
        return [
            {"role": "user", "content": "Welcome. For sales, press 1. For support, press 2."},
            {"role": "assistant", "content": "Sorry, I cannot navigate this menu. Goodbye."},
        ]
    return []


def polish(turns: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The post-call transcript: the live turns, cleaned up as the offline pass does."""
    polished = []
    for turn in turns:
        copy = dict(turn)
        content = str(copy.get("content") or "")
        if content and content[-1] not in ".!?":
            content += "."
        copy["content"] = content
        polished.append(copy)
    return polished


def structured_output_for(
    fields: Sequence[OutputField], rng: random.Random, reference: datetime
) -> dict[str, Any]:
    """Values for every field of a ``structured_output_config``, typed as the config says.

    Required fields always get a value; optional ones are null one time in five.
    Types: string, number, boolean, enum (one of ``enum_options``), date (``YYYY-MM-DD``)
    and datetime (ISO 8601 UTC). An unknown type gets a string.
    """
    out: dict[str, Any] = {}
    for spec in fields:
        if not spec.required and rng.random() < 0.2:
            out[spec.name] = None
            continue
        kind = (spec.type or "string").lower()
        if kind == "number":
            out[spec.name] = round(rng.uniform(0, 1000), 2) if "price" in spec.name else rng.randint(0, 100)
        elif kind == "boolean":
            out[spec.name] = rng.random() < 0.6
        elif kind == "enum":
            options = spec.enum_options or ["unknown"]
            out[spec.name] = rng.choice(options)
        elif kind == "date":
            out[spec.name] = (reference.date() + timedelta(days=rng.randint(1, 21))).isoformat()
        elif kind == "datetime":
            day = reference.date() + timedelta(days=rng.randint(1, 21))
            moment = datetime.combine(day, time(rng.randint(9, 17), rng.choice((0, 30))), timezone.utc)
            out[spec.name] = moment.isoformat().replace("+00:00", "Z")
        else:
            out[spec.name] = _string_value(spec.name, rng, reference.date())
    return out


def _string_value(name: str, rng: random.Random, today: date) -> str:
    lowered = name.lower()
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    if "email" in lowered:
        return f"{first.lower()}.{last.lower()}@example.com".encode("ascii", "ignore").decode()
    if "name" in lowered:
        return f"{first} {last}"
    if "company" in lowered:
        return rng.choice(("Acme SAS", "Globex GmbH", "Initech Ltd", "Umbrella Inc"))
    return rng.choice(
        ("Confirmed by phone", "Asked for a written quote", "Prefers mornings", f"Noted {today}")
    )
