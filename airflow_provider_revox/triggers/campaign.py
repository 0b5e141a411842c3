"""Deprecated: the classpath a campaign trigger was stored under before 0.1.0's layout.

A deferred task stored by an earlier build names this module; it keeps working for one release.
Import :class:`~airflow_provider_revox.triggers.revox.RevoxCampaignTrigger` instead.
"""

from __future__ import annotations

from airflow_provider_revox.triggers.revox import RevoxCampaignTrigger as RevoxCampaignTrigger
