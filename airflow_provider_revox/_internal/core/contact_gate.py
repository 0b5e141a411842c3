"""Who may be dialled: the do-not-contact gate's decisions, from the phone history and the policy.

Pure: no I/O, no clock (``now`` is an argument). The operators read the history
(:meth:`RevoxHook.phone_history <airflow_provider_revox.hooks.revox.RevoxHook.phone_history>`),
ask :func:`screen` which contacts to skip and why, and write, log and count what it says.

The reasons, checked in this order (a contact is skipped for the first that applies):

* ``do_not_contact``: the history marks the number do-not-contact. Never dialled unless the
  task names ``dial_do_not_contact=True``, which dials it and warns once per number;
* ``reached_human_within_days``: a person answered this number (``reached_human``) and its last
  call is within ``skip_reached_human_within_days`` days. The history keeps the time of the last
  call only, not of the call a person answered: a number a person answered once and that was
  called again since is skipped too (the safe side);
* ``called_within_hours``: the number's last call is within ``skip_called_within_hours`` hours;
* ``already_in_campaign``: a campaign of the same name (with or without the provider's key tag,
  ``"<name> [<key> ...]"``) already called the number (``skip_already_in_campaign``).

A called number (``count`` > 0) whose ``last_called_at`` is missing or unreadable counts as
called just now for the time policies: it cannot be proven to be outside the window.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_revox._internal.core.phone_history import PhoneHistoryEntry

DO_NOT_CONTACT = "do_not_contact"
REACHED_HUMAN = "reached_human_within_days"
CALLED_RECENTLY = "called_within_hours"
IN_CAMPAIGN = "already_in_campaign"
REASONS = (DO_NOT_CONTACT, REACHED_HUMAN, CALLED_RECENTLY, IN_CAMPAIGN)


def _window(value: Any, name: str) -> float | None:
    if value is None:
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a number > 0 (or None for no such check), not {value!r}")
    return float(value)


@dataclass(frozen=True)
class ContactPolicy:
    """What the gate skips besides do-not-contact numbers (each off by default).

    Raises:
        ValueError: a window that is not a positive number, or a flag that is not a bool.
    """

    dial_do_not_contact: bool = False
    skip_reached_human_within_days: float | None = None
    skip_called_within_hours: float | None = None
    skip_already_in_campaign: bool = False

    def __post_init__(self) -> None:
        for name in ("dial_do_not_contact", "skip_already_in_campaign"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")
        _window(self.skip_reached_human_within_days, "skip_reached_human_within_days")
        _window(self.skip_called_within_hours, "skip_called_within_hours")


@dataclass(frozen=True)
class Verdict:
    """The gate's answer for one number: the skip reason (None: dial) and a human-readable why."""

    reason: str | None
    detail: str = ""
    #: True for a do-not-contact number dialled because ``dial_do_not_contact`` says so.
    overridden: bool = False


def _last_called(entry: PhoneHistoryEntry, now: datetime) -> datetime | None:
    if entry.last_called_at is not None:
        return entry.last_called_at
    return now if entry.count > 0 else None


def _campaign_matches(campaign_name: str, called_by: str) -> bool:
    return called_by == campaign_name or called_by.startswith(f"{campaign_name} [")


def judge(
    number: str,
    entry: PhoneHistoryEntry | None,
    policy: ContactPolicy,
    now: datetime,
    campaign_name: str | None = None,
) -> Verdict:
    """Whether ``number`` may be dialled at ``now``, given its history entry (None: never called)."""
    if entry is None:
        return Verdict(None)
    if entry.do_not_contact:
        if not policy.dial_do_not_contact:
            return Verdict(DO_NOT_CONTACT, "the number is marked do-not-contact in the phone history")
        return Verdict(None, "do-not-contact, dialled: dial_do_not_contact=True", overridden=True)
    last = _last_called(entry, now)
    days = policy.skip_reached_human_within_days
    if days is not None and entry.reached_human and last is not None and now - last < timedelta(days=days):
        detail = f"a person was reached; the last call ({_iso(last)}) is within {days:g} days"
        return Verdict(REACHED_HUMAN, detail)
    hours = policy.skip_called_within_hours
    if hours is not None and last is not None and now - last < timedelta(hours=hours):
        return Verdict(CALLED_RECENTLY, f"last called {_iso(last)}, within {hours:g} hours")
    if policy.skip_already_in_campaign and campaign_name:
        for campaign in entry.campaigns:
            if _campaign_matches(campaign_name, campaign.name):
                return Verdict(IN_CAMPAIGN, f"already called by campaign {campaign.name!r} ({campaign.id})")
    return Verdict(None)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


@dataclass
class Screened:
    """The contacts to dial and those skipped, with why."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    #: ``(index in the input, contact, verdict)`` of each skipped contact.
    skipped: list[tuple[int, dict[str, Any], Verdict]] = field(default_factory=list)
    #: Do-not-contact numbers dialled because ``dial_do_not_contact=True``.
    overridden: list[str] = field(default_factory=list)
    total: int = 0

    @property
    def by_reason(self) -> dict[str, int]:
        """Skipped contacts per reason, in :data:`REASONS` order, only reasons that occurred."""
        counts = Counter(verdict.reason for _, _, verdict in self.skipped)
        return {reason: counts[reason] for reason in REASONS if counts[reason]}

    def summary(self) -> str:
        """``"2 of 10 contacts skipped (do_not_contact: 1, called_within_hours: 1)"``."""
        parts = ", ".join(f"{reason}: {count}" for reason, count in self.by_reason.items())
        return f"{len(self.skipped)} of {self.total} contacts skipped" + (f" ({parts})" if parts else "")

    def counts(self) -> dict[str, Any]:
        """What the XCom summary carries: ``{"total", "skipped", "by_reason", "dialled_do_not_contact"}``."""
        return {
            "total": self.total,
            "skipped": len(self.skipped),
            "by_reason": self.by_reason,
            "dialled_do_not_contact": len(self.overridden),
        }


def screen(
    contacts: Iterable[Mapping[str, Any]],
    history: Mapping[str, PhoneHistoryEntry],
    policy: ContactPolicy,
    now: datetime,
    campaign_name: str | None = None,
) -> Screened:
    """Sort ``contacts`` (each with ``to_phone_number``) into kept and skipped at ``now``."""
    result = Screened()
    for index, contact in enumerate(contacts):
        result.total += 1
        number = str(contact["to_phone_number"])
        verdict = judge(number, history.get(number), policy, now, campaign_name)
        if verdict.reason is not None:
            result.skipped.append((index, dict(contact), verdict))
            continue
        if verdict.overridden:
            result.overridden.append(number)
        result.kept.append(dict(contact))
    return result
