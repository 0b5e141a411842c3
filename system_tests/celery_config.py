"""The Celery configuration of the system test's CeleryExecutor cell: Airflow's own, with the
provider imported once in the worker, so every task process forked from it starts with the
provider loaded instead of importing it again (about 0.5 CPU-second per task run)."""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

import airflow_provider_revox.operators.revox
import airflow_provider_revox.sensors.revox  # noqa: F401

CELERY_CONFIG = DEFAULT_CELERY_CONFIG
