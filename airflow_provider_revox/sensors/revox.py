"""Sensors that wait for Revox call orders and campaigns.

Each works in poke, reschedule and deferrable mode; the schedule of its checks comes from the
order itself (calling windows, retry delay, the next planned attempt), not from a fixed interval.
"""

from __future__ import annotations

from airflow_provider_revox._internal.sensors.batch import RevoxCallsSensor
from airflow_provider_revox._internal.sensors.call import RevoxCallSensor
from airflow_provider_revox._internal.sensors.campaign import RevoxCampaignSensor

__all__ = ["RevoxCallSensor", "RevoxCallsSensor", "RevoxCampaignSensor"]
