"""The decisions of a campaign wait: done, failed or waiting; when to look again; what to return.

Pure: no I/O and no clock reads. A campaign is read with one ``GET /campaigns/{id}`` however
many orders it holds, so the wait costs one request per poll.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from airflow_provider_revox._internal.core.campaign import COMPLETED, PAUSED, Campaign
from airflow_provider_revox._internal.core.redact import redact, redact_text
from airflow_provider_revox._internal.waiting.rounds import error_backoff

#: Verdicts of one look at a campaign.
SUCCESS = "success"
FAILED = "failed"
WAITING = "waiting"


def verdict(campaign: Campaign) -> str:
    """``failed`` once cancelled, ``success`` once ``completed``, else ``waiting``.

    A cancelled campaign also reads ``completed`` (every order is terminal), so the flag is
    checked first. ``paused`` and statuses nobody has seen yet keep the wait going.
    """
    if campaign.is_cancelled:
        return FAILED
    if campaign.status == COMPLETED:
        return SUCCESS
    return WAITING


def poll_interval(campaign: Campaign | None, poke_interval: float, failures: int = 0) -> float:
    """Seconds until the next look.

    ``poke_interval`` while the campaign runs, four times that while it is paused (only a
    person can resume it), and the doubling backoff while the API fails.
    """
    if failures:
        return error_backoff(poke_interval, failures)
    if campaign is not None and campaign.status == PAUSED:
        return poke_interval * 4
    return poke_interval


def first_pause(next_poll_at: datetime | None, now: datetime) -> float:
    """Seconds a handed-over wait sleeps before its first look.

    The sensor looked just before it deferred and says when its next look is due; polling at
    once would repeat that look. None (or a time already passed, as after a triggerer restart)
    means look now.
    """
    if next_poll_at is None:
        return 0.0
    return max((next_poll_at - now).total_seconds(), 0.0)


def summary(
    campaign: Campaign, statistics: dict[str, Any] | None = None, secrets: Iterable[str] = ()
) -> dict[str, Any]:
    """The small XCom of a campaign wait: id, name, status, row stats, funnel stats, statistics."""
    result = {
        "campaign_id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "is_cancelled": campaign.is_cancelled,
        "row_stats": campaign.row_stats.model_dump(mode="json"),
        "funnel_stats": campaign.funnel_stats.model_dump(mode="json"),
    }
    if statistics is not None:
        result["statistics"] = statistics
    cleaned: dict[str, Any] = redact(result, secrets)
    return cleaned


def describe(campaign: Campaign, secrets: Iterable[str] = ()) -> str:
    """One line on where a campaign stands: status and row counts."""
    rows = campaign.row_stats
    state = "cancelled" if campaign.is_cancelled else campaign.status or "(no status)"
    text = (
        f"campaign {campaign.id} ({campaign.name!r}) is {state}: {rows.completed} completed, "
        f"{rows.failed} failed, {rows.skipped} skipped, {rows.calling} calling, "
        f"{rows.pending + rows.retry} waiting, {rows.not_launched} not launched of {rows.total}"
    )
    return redact_text(text, secrets)


def summary_ok(payload: Any, campaign_id: str) -> bool:
    """Whether a trigger's success payload is the summary of ``campaign_id``."""
    return isinstance(payload, dict) and payload.get("campaign_id") == campaign_id
