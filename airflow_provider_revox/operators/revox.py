"""Operators that place Revox calls and move what they produced into XCom and object storage.

The classes live in :mod:`~airflow_provider_revox.operators.place`,
:mod:`~airflow_provider_revox.operators.results` and
:mod:`~airflow_provider_revox.operators.storage`; this module keeps their public import path.
"""

from __future__ import annotations

from airflow_provider_revox.export.recordings import recording_extension
from airflow_provider_revox.export.writers import FILE_FORMATS
from airflow_provider_revox.operators.campaigns import (
    RevoxCancelCampaignOperator,
    RevoxCreateCampaignOperator,
    RevoxLaunchCampaignOperator,
    RevoxPauseCampaignOperator,
    RevoxResumeCampaignOperator,
)
from airflow_provider_revox.operators.place import RevoxPlaceCallOperator
from airflow_provider_revox.operators.results import RevoxCallResultsOperator
from airflow_provider_revox.operators.storage import RevoxCallsToStorageOperator

__all__ = [
    "FILE_FORMATS",
    "RevoxCallResultsOperator",
    "RevoxCallsToStorageOperator",
    "RevoxCancelCampaignOperator",
    "RevoxCreateCampaignOperator",
    "RevoxLaunchCampaignOperator",
    "RevoxPauseCampaignOperator",
    "RevoxPlaceCallOperator",
    "RevoxResumeCampaignOperator",
    "recording_extension",
]
