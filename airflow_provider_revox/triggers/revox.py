"""Triggers that wait for Revox call orders and campaigns in the triggerer, and the call-event
trigger that schedules DAGs on finished calls.

Each trigger serializes itself under this module's path, literally, so a trigger stored in the
metadata database keeps working whatever file its code lives in.
"""

from __future__ import annotations

from airflow_provider_revox._internal.triggers.call import RevoxCallsTrigger, RevoxCallTrigger
from airflow_provider_revox._internal.triggers.call_events import RevoxCallEventTrigger
from airflow_provider_revox._internal.triggers.campaign import RevoxCampaignTrigger

__all__ = ["RevoxCallEventTrigger", "RevoxCallTrigger", "RevoxCallsTrigger", "RevoxCampaignTrigger"]
