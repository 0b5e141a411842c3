"""Typed, tolerant models of a Revox campaign, and the checks a campaign request passes before it leaves.

The models follow the call models' rules (:mod:`airflow_provider_revox._internal.core.call`): statuses are
plain strings, counts that are missing or null read as zero, and every field the models do not
name is kept. The checks raise :class:`~airflow_provider_revox.exceptions.RevoxConfigError`
naming the problem, so a bad request is refused before anything is sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import phonenumbers
from pydantic import BeforeValidator, Field, ValidationError

from airflow_provider_revox._internal.core.call import Call, RevoxModel
from airflow_provider_revox.exceptions import RevoxConfigError

if TYPE_CHECKING:  # annotations only: typing.Unpack needs Python 3.11
    from typing_extensions import Unpack

#: Campaign statuses (``GET /campaigns/{id}``); ``is_cancelled`` is a separate flag.
RUNNING = "running"
PAUSED = "paused"
COMPLETED = "completed"
#: ``launch-calls`` modes; ``speed_dial`` needs a person at the dashboard.
LAUNCH_MODES = ("ai_first", "speed_dial")
#: The filter lists a launch selection requires (an empty list does not filter).
SELECTION_FILTERS = ("statuses", "outcomes", "results", "directions", "assignee_ids")
ROW_MODES = ("only", "all_except")
MAX_CAMPAIGN_ID_LENGTH = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _count(value: Any) -> Any:
    """A count as sent, or 0 for null and unreadable values (a count never breaks a wait)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return int(value)


def _text(value: Any) -> Any:
    return "" if value is None else str(value)


Count = Annotated[int, BeforeValidator(_count)]
Text = Annotated[str, BeforeValidator(_text)]


class RowStats(RevoxModel):
    """How many of a campaign's rows are in each state."""

    not_launched: Count = 0
    pending: Count = 0
    calling: Count = 0
    retry: Count = 0
    completed: Count = 0
    failed: Count = 0
    skipped: Count = 0
    total: Count = 0


class FunnelStats(RevoxModel):
    """A campaign's funnel: leads, humans reached, hot leads."""

    total_leads: Count = 0
    talked_to_human: Count = 0
    hot: Count = 0


def _dict(value: Any) -> Any:
    return value if isinstance(value, dict) else {}


#: A nested stats object; null or garbage reads as all zeros.
Stats = BeforeValidator(_dict)


class Campaign(RevoxModel):
    """A campaign as ``GET /campaigns/{id}`` returns it (tolerant: unknown fields are kept)."""

    id: str
    name: Text = ""
    status: Text = ""
    is_cancelled: bool = False
    assistant_id: str | None = None
    max_concurrent_calls: float | None = None
    row_stats: Annotated[RowStats, Stats] = Field(default_factory=RowStats)
    funnel_stats: Annotated[FunnelStats, Stats] = Field(default_factory=FunnelStats)

    @property
    def is_completed(self) -> bool:
        """Every order of the campaign is terminal (and it was not cancelled)."""
        return self.status == COMPLETED and not self.is_cancelled


class CampaignRow(RevoxModel):
    """One contact row of a campaign, with its order as ``call`` once it has one."""

    id: str
    phone_number: Text = ""
    row_index: Count = 0
    input_data: dict[str, Any] = Field(default_factory=dict)
    call: Call | None = None

    @property
    def call_id(self) -> str | None:
        """The id of the row's call order, or None."""
        return self.call.id if self.call is not None else None


class Skipped(RevoxModel):
    """Rows a launch left alone, by reason."""

    active: Count = 0
    attempts_exhausted: Count = 0
    cancelled: Count = 0


class LaunchResult(RevoxModel):
    """What ``POST /campaigns/{id}/launch-calls`` answered."""

    launched: Count = 0
    skipped: Annotated[Skipped, Stats] = Field(default_factory=Skipped)


class CampaignStatistics(RevoxModel):
    """The statistics report of a campaign (funnel, effort, leads, outcomes), kept as sent."""

    funnel: dict[str, Any] = Field(default_factory=dict)
    effort: dict[str, Any] = Field(default_factory=dict)

    def small(self) -> dict[str, Any]:
        """The report without its per-lead lists (names and numbers of people): counts only."""
        return {key: value for key, value in self.model_dump(mode="json").items() if key != "leads"}


def _unwrap(payload: Any, key: str) -> Any:
    """The object under ``key`` when the API wraps it (``{"campaign": {...}}``), else the payload."""
    if isinstance(payload, dict) and isinstance(payload.get(key), dict | list):
        return payload[key]
    return payload


def parse(kind: type[RevoxModel], payload: Any, key: str) -> Any:
    """A model of ``kind`` from a decoded body; raises ``ValueError`` naming what is wrong."""
    try:
        return kind.model_validate(_unwrap(payload, key))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()[:3]
        )
        raise ValueError(problems) from None


def parse_list(kind: type[RevoxModel], payload: Any, key: str) -> list[Any]:
    """The list of ``kind`` under ``key``; raises ``ValueError`` when there is none."""
    items = _unwrap(payload, key)
    if not isinstance(items, list):
        raise ValueError(f"no {key!r} list")
    return [parse(kind, item, key) for item in items]


# -- checks before a request ------------------------------------------------------------------


def validate_campaign_id(campaign_id: Any) -> str:
    """Return ``campaign_id`` when it is safe to put in a URL path.

    Raises:
        RevoxConfigError: not a non-empty string of at most 128 characters without ``/``,
            ``?``, ``#``, whitespace or control characters.
    """
    if not isinstance(campaign_id, str) or not campaign_id.strip():
        raise RevoxConfigError(f"campaign_id must be a non-empty string, not {campaign_id!r}")
    bad = len(campaign_id) > MAX_CAMPAIGN_ID_LENGTH or campaign_id in (".", "..")
    if bad or _CONTROL.search(campaign_id) or any(c in campaign_id for c in "/?# \\%"):
        raise RevoxConfigError(f"campaign_id {campaign_id[:140]!r} is not a usable campaign id")
    return campaign_id


def validate_e164(number: Any, field: str = "to_phone_number") -> str:
    """Return ``number`` when it is a valid phone number written in E.164 (``+33612345678``).

    Raises:
        RevoxConfigError: naming ``field`` and why the number is refused.
    """
    if not isinstance(number, str) or not number.startswith("+"):
        raise RevoxConfigError(
            f"{field} must be an E.164 phone number such as '+33612345678', not {number!r}"
        )
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        raise RevoxConfigError(f"{field} {number!r} is not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise RevoxConfigError(f"{field} {number!r} is not a valid phone number")
    if phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) != number:
        raise RevoxConfigError(f"{field} {number!r} is not written in E.164 (no spaces or punctuation)")
    return number


def validate_string_map(value: Any, field: str) -> dict[str, str]:
    """Return ``value`` as a dict when it maps strings to strings.

    Raises:
        RevoxConfigError: naming ``field`` and the first entry that is not a string.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RevoxConfigError(f"{field} must be a map of strings to strings, not {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise RevoxConfigError(
                f"{field} must map strings to strings; {key!r} maps to {type(item).__name__}"
            )
    return dict(value)


def validate_contact(contact: Any, where: str = "contact") -> dict[str, Any]:
    """One contact as the API takes it: ``{to_phone_number, prompt_variables}``, both checked.

    Raises:
        RevoxConfigError: naming ``where`` and the field at fault.
    """
    if not isinstance(contact, Mapping):
        raise RevoxConfigError(f"{where} must be a map with 'to_phone_number', not {type(contact).__name__}")
    number = validate_e164(contact.get("to_phone_number"), f"{where}.to_phone_number")
    variables = validate_string_map(contact.get("prompt_variables"), f"{where}.prompt_variables")
    return {"to_phone_number": number, "prompt_variables": variables}


def validate_name(name: Any, field: str = "name") -> str:
    """Return ``name`` when it is a non-empty string."""
    if not isinstance(name, str) or not name.strip():
        raise RevoxConfigError(f"{field} must be a non-empty string, not {name!r}")
    return name


class CampaignOptions(TypedDict, total=False):
    """The optional fields of ``POST /campaigns``."""

    call_retry_config: Mapping[str, Any] | None
    from_phone_number: str | None
    max_concurrent_calls: int | None


def create_body(
    *, name: str, assistant_id: str, contacts: Sequence[Mapping[str, Any]], **options: Unpack[CampaignOptions]
) -> dict[str, Any]:
    """The checked body of ``POST /campaigns``.

    Raises:
        RevoxConfigError: an empty name or assistant id, no contacts, a bad contact (named by
            its index), a bad caller number or concurrency.
    """
    body: dict[str, Any] = {
        "name": validate_name(name),
        "assistant_id": validate_name(assistant_id, "assistant_id"),
    }
    if isinstance(contacts, str | bytes) or not isinstance(contacts, Sequence) or not contacts:
        raise RevoxConfigError("contacts must be a non-empty list of {to_phone_number, prompt_variables}")
    body["contacts"] = [validate_contact(c, f"contacts[{i}]") for i, c in enumerate(contacts)]
    call_retry_config = options.get("call_retry_config")
    from_phone_number = options.get("from_phone_number")
    max_concurrent_calls = options.get("max_concurrent_calls")
    if call_retry_config is not None:
        if not isinstance(call_retry_config, Mapping):
            raise RevoxConfigError("call_retry_config must be a map")
        body["call_retry_config"] = dict(call_retry_config)
    if from_phone_number is not None:
        body["from_phone_number"] = validate_e164(from_phone_number, "from_phone_number")
    if max_concurrent_calls is not None:
        if (
            isinstance(max_concurrent_calls, bool)
            or not isinstance(max_concurrent_calls, int)
            or (max_concurrent_calls < 1)
        ):
            raise RevoxConfigError(
                f"max_concurrent_calls must be a positive integer, not {max_concurrent_calls!r}"
            )
        body["max_concurrent_calls"] = max_concurrent_calls
    return body


def launch_body(
    mode: str = "ai_first",
    *,
    filters: Mapping[str, Any] | None = None,
    call_ids: Sequence[str] = (),
    rows_mode: str = "all_except",
    scheduled_at: str | None = None,
) -> dict[str, Any]:
    """The checked body of ``POST /campaigns/{id}/launch-calls``.

    The default selection is every row (no filter, no row excepted).

    Raises:
        RevoxConfigError: an unknown mode, row mode or filter, or a filter that is not a list.
    """
    if mode not in LAUNCH_MODES:
        raise RevoxConfigError(f"mode must be one of {LAUNCH_MODES}, not {mode!r}")
    if rows_mode not in ROW_MODES:
        raise RevoxConfigError(f"rows_mode must be one of {ROW_MODES}, not {rows_mode!r}")
    given = dict(filters or {})
    unknown = set(given) - {*SELECTION_FILTERS, "query"}
    if unknown:
        raise RevoxConfigError(
            f"unknown launch filters {sorted(unknown)}; known: {[*SELECTION_FILTERS, 'query']}"
        )
    chosen: dict[str, Any] = {}
    for key in SELECTION_FILTERS:
        values = given.get(key, [])
        if isinstance(values, str) or not isinstance(values, Sequence):
            raise RevoxConfigError(f"launch filter {key!r} must be a list of strings")
        chosen[key] = [str(v) for v in values]
    if given.get("query"):
        chosen["query"] = str(given["query"])
    if isinstance(call_ids, str):
        raise RevoxConfigError("call_ids must be a list of call ids, not one string")
    body: dict[str, Any] = {
        "mode": mode,
        "selection": {"filters": chosen, "rows": {"call_ids": list(call_ids), "mode": rows_mode}},
    }
    if scheduled_at:
        body["scheduled_at"] = scheduled_at
    return body
