"""Scenario files: calls with fixed ids and scripted lifecycles, in JSON or YAML.

::

    calls:
      - id: call-voicemail-then-human
        phone_number: "+33612345678"
        assistant_id: asst_reminder          # or a full `assistant` object
        scheduled_at: "2025-03-03T09:00:00Z" # optional
        call_retry_config: {max_retry_attempts: 3, calling_windows: [...]}   # optional
        metadata: {customer_id: "42"}        # optional
        attempts:                            # optional: random draws otherwise
          - {result: voicemail, duration: 20}
          - {dial_error: busy}
          - {result: human, duration: 140, ring_seconds: 6}
        post_processing_seconds: 30          # optional
        final_status: completed              # optional override
        outcome: interested                  # optional override
        structured_output: {confirmed: true} # optional override
        faults: ["429", "ok", "truncate"]    # optional: scripted faults for this call
        shift_pages: true                    # optional: hidden from searches until a page > 0 is read
        far_future: true                     # optional: reports ended_at/updated_at in 2199
        asks_not_to_be_called: true          # optional: once it ends, its number is do-not-contact
    do_not_contact: ["+33699999999"]         # optional: numbers the phone history marks do-not-contact

Scripted attempts are the whole story of the order: it makes exactly those dials
(stopping at the first human), timed by its retry policy.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_revox._simulator import statuses
from airflow_provider_revox._simulator.engine import SimulatorEngine
from airflow_provider_revox._simulator.faults import Faults, parse_token
from airflow_provider_revox._simulator.profile import (
    BUSY,
    FAILED,
    HUMAN,
    IVR,
    NO_ANSWER,
    VOICEMAIL,
    AttemptDraw,
    Profile,
)
from airflow_provider_revox._simulator.timeline import OrderScript

DIAL_ERRORS = (
    "number_non_attributed",
    "too_many_calls",
    "busy",
    "temporarily_unavailable",
    "no_answer",
    "no_international_permission",
    "precondition_failed",
    "non_classified_error",
)
_RESULTS = {"human": HUMAN, "voicemail": VOICEMAIL, "ivr": IVR}
_ORDER_KEYS = frozenset(
    {
        "id",
        "phone_number",
        "assistant",
        "assistant_id",
        "scheduled_at",
        "call_retry_config",
        "metadata",
        "prompt_variables",
        "attempts",
        "post_processing_seconds",
        "final_status",
        "outcome",
        "structured_output",
        "faults",
        "shift_pages",
        "far_future",
        "asks_not_to_be_called",
    }
)
#: Keys of a search fault (see :class:`~.faults.Faults`): true or false.
_SEARCH_FAULT_KEYS = ("shift_pages", "far_future")
_ATTEMPT_KEYS = frozenset(
    {"result", "dial_error", "duration", "ring_seconds", "queue_seconds", "ended_by", "end_reason"}
)


class ScenarioError(ValueError):
    """A scenario file is unreadable or invalid; the message names the file and the entry."""


@dataclass(frozen=True)
class ScenarioCall:
    """One order of a scenario."""

    order: dict[str, Any]
    script: OrderScript | None
    faults: tuple[str, ...]
    search_faults: tuple[str, ...] = ()
    #: Once the order ends, its number is marked do-not-contact (the person asked).
    asks_not_to_be_called: bool = False


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario file."""

    source: str
    calls: tuple[ScenarioCall, ...]
    #: Numbers the phone history marks do-not-contact.
    do_not_contact: tuple[str, ...] = ()


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate a ``.json``, ``.yaml`` or ``.yml`` scenario.

    Raises:
        ScenarioError: unreadable file, bad syntax, unknown keys or invalid values.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"cannot read scenario {path}: {error.strerror}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:  # pragma: no cover - pyyaml ships with the testing extra
            raise ScenarioError(
                f'reading {path} needs PyYAML: pip install "airflow-provider-revox[testing]"'
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ScenarioError(f"{path} is not valid YAML: {error}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ScenarioError(f"{path} is not valid JSON: {error}") from None
    return parse_scenario(data, source=str(path))


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate already-loaded scenario data (``{"calls": [...]}`` or a bare list).

    Raises:
        ScenarioError: unknown keys or invalid values, naming the entry.
    """
    entries = data.get("calls") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ScenarioError(f"{source}: expected a 'calls' list")
    calls = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{source}: calls[{index}]"
        if not isinstance(entry, dict):
            raise ScenarioError(f"{where} must be an object")
        unknown = set(entry) - _ORDER_KEYS
        if unknown:
            raise ScenarioError(f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(_ORDER_KEYS)}")
        call_id = entry.get("id")
        if call_id is not None:
            if not isinstance(call_id, str) or not call_id:
                raise ScenarioError(f"{where}.id must be a non-empty string")
            if call_id in seen:
                raise ScenarioError(f"{where}.id {call_id!r} is used twice")
            seen.add(call_id)
        calls.append(_parse_call(entry, where))
    marked = data.get("do_not_contact", []) if isinstance(data, dict) else []
    if not isinstance(marked, list) or not all(isinstance(number, str) and number for number in marked):
        raise ScenarioError(f"{source}: do_not_contact must be a list of phone numbers")
    return Scenario(source=source, calls=tuple(calls), do_not_contact=tuple(marked))


def _parse_call(entry: dict[str, Any], where: str) -> ScenarioCall:
    order = {
        key: entry[key]
        for key in _ORDER_KEYS
        - {"attempts", "post_processing_seconds", "final_status", "outcome", "structured_output", "faults"}
        - {"asks_not_to_be_called"}
        - set(_SEARCH_FAULT_KEYS)
        if key in entry
    }
    final_status = entry.get("final_status")
    if final_status is not None and final_status not in statuses.TERMINAL:
        raise ScenarioError(
            f"{where}.final_status must be one of {sorted(statuses.TERMINAL)}, not {final_status!r}"
        )
    output = entry.get("structured_output")
    if output is not None and not isinstance(output, dict):
        raise ScenarioError(f"{where}.structured_output must be an object")
    post = entry.get("post_processing_seconds")
    if post is not None and (not isinstance(post, int | float) or post < 0):
        raise ScenarioError(f"{where}.post_processing_seconds must be a non-negative number")
    raw_attempts = entry.get("attempts") or []
    if not isinstance(raw_attempts, list):
        raise ScenarioError(f"{where}.attempts must be a list")
    attempts = tuple(_parse_attempt(item, f"{where}.attempts[{i}]") for i, item in enumerate(raw_attempts))
    faults = entry.get("faults") or []
    if not isinstance(faults, list):
        raise ScenarioError(f'{where}.faults must be a list such as ["429", "ok"]')
    try:
        for token in faults:
            parse_token(str(token))
    except ValueError as error:
        raise ScenarioError(f"{where}.faults: {error}") from None
    scripted = (
        attempts or final_status or entry.get("outcome") is not None or output is not None or post is not None
    )
    script = (
        OrderScript(
            attempts=attempts,
            post_processing_seconds=float(post) if post is not None else None,
            final_status=final_status,
            outcome=entry.get("outcome"),
            structured_output=output,
        )
        if scripted
        else None
    )
    for key in _SEARCH_FAULT_KEYS:
        if not isinstance(entry.get(key, False), bool):
            raise ScenarioError(f"{where}.{key} must be true or false")
    search_faults = tuple(key for key in _SEARCH_FAULT_KEYS if entry.get(key))
    asks = entry.get("asks_not_to_be_called", False)
    if not isinstance(asks, bool):
        raise ScenarioError(f"{where}.asks_not_to_be_called must be true or false")
    return ScenarioCall(
        order=order,
        script=script,
        faults=tuple(str(t) for t in faults),
        search_faults=search_faults,
        asks_not_to_be_called=asks,
    )


def _parse_attempt(item: Any, where: str) -> AttemptDraw:
    if not isinstance(item, dict):
        raise ScenarioError(f"{where} must be an object such as {{result: human, duration: 90}}")
    unknown = set(item) - _ATTEMPT_KEYS
    if unknown:
        raise ScenarioError(f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(_ATTEMPT_KEYS)}")
    result, dial_error = item.get("result"), item.get("dial_error")
    if (result is None) == (dial_error is None):
        raise ScenarioError(f"{where} needs exactly one of 'result' (human, voicemail, IVR) or 'dial_error'")
    if result is not None:
        kind = _RESULTS.get(str(result).lower())
        if kind is None:
            raise ScenarioError(f"{where}.result must be human, voicemail or IVR, not {result!r}")
    else:
        if dial_error not in DIAL_ERRORS:
            raise ScenarioError(f"{where}.dial_error must be one of {list(DIAL_ERRORS)}, not {dial_error!r}")
        kind = {"busy": BUSY, "no_answer": NO_ANSWER}.get(dial_error, FAILED)
    numbers = {}
    for key, field_name in (
        ("duration", "talk_seconds"),
        ("ring_seconds", "ring_seconds"),
        ("queue_seconds", "queue_seconds"),
    ):
        value = item.get(key)
        if value is not None:
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ScenarioError(f"{where}.{key} must be a non-negative number of seconds")
            numbers[field_name] = float(value)
    rng = random.Random(f"{where}/{sorted(item.items())}")
    return Profile().attempt_of_kind(
        kind,
        rng,
        dial_error=dial_error,
        ended_by=item.get("ended_by"),
        end_reason=item.get("end_reason"),
        **numbers,
    )


def apply_scenario(scenario: Scenario, engine: SimulatorEngine, faults: Faults | None = None) -> list[str]:
    """Place every call of ``scenario`` on ``engine`` (at the clock's now) and script its faults.

    Returns:
        The ids of the placed calls, in file order.

    Raises:
        ScenarioError: when the engine rejects an order (bad phone number, ...).
    """
    placed = []
    engine.phone_book.mark(scenario.do_not_contact)
    for index, call in enumerate(scenario.calls):
        try:
            order = {key: value for key, value in call.order.items() if key != "id"}
            created = engine.place_call(**order, call_id=call.order.get("id"), script=call.script)
        except ValueError as error:
            raise ScenarioError(f"{scenario.source}: calls[{index}]: {error}") from None
        placed.append(created["id"])
        if call.asks_not_to_be_called:
            engine.phone_book.asks_not_to_be_called([created["id"]])
        if call.faults and faults is not None:
            faults.script(created["id"], call.faults)
        if faults is not None:
            for key in call.search_faults:
                getattr(faults, key)([created["id"]])
    return placed
