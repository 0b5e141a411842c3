"""The Revox hook, and the typed models its methods return.

``RevoxHook`` is the one way the provider talks to the Revox API: the ``revox`` connection type,
retries, the rate limit and errors a user can act on, sync and async. Its methods return the
tolerant models below, which accept statuses and fields the API adds later.
"""

from __future__ import annotations

from airflow_provider_revox._internal.core.call import Call, CallAttempt, TranscriptTurn
from airflow_provider_revox._internal.core.campaign import (
    Campaign,
    CampaignRow,
    CampaignStatistics,
    LaunchResult,
)
from airflow_provider_revox._internal.core.phone_history import PhoneHistory, PhoneHistoryEntry
from airflow_provider_revox._internal.hooks.revox import RevoxHook

__all__ = [
    "Call",
    "CallAttempt",
    "Campaign",
    "CampaignRow",
    "CampaignStatistics",
    "LaunchResult",
    "PhoneHistory",
    "PhoneHistoryEntry",
    "RevoxHook",
    "TranscriptTurn",
]
