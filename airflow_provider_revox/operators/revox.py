"""Operators that place Revox calls, run campaigns, and move what the calls produced into XCom
and object storage; and the "Revox call" extra link they show."""

from __future__ import annotations

from airflow_provider_revox._internal.operators.campaign import (
    RevoxCancelCampaignOperator,
    RevoxCreateCampaignOperator,
    RevoxPauseCampaignOperator,
    RevoxResumeCampaignOperator,
)
from airflow_provider_revox._internal.operators.export import RevoxCallsToStorageOperator
from airflow_provider_revox._internal.operators.launch import RevoxLaunchCampaignOperator
from airflow_provider_revox._internal.operators.placement import RevoxPlaceCallOperator
from airflow_provider_revox._internal.operators.results import RevoxCallResultsOperator
from airflow_provider_revox._internal.sensors.links import RevoxCallLink

__all__ = [
    "RevoxCallLink",
    "RevoxCallResultsOperator",
    "RevoxCallsToStorageOperator",
    "RevoxCancelCampaignOperator",
    "RevoxCreateCampaignOperator",
    "RevoxLaunchCampaignOperator",
    "RevoxPauseCampaignOperator",
    "RevoxPlaceCallOperator",
    "RevoxResumeCampaignOperator",
]
