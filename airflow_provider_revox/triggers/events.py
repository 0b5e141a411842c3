"""Deprecated: the classpath the call-event trigger was stored under before 0.1.0's layout.

An asset watcher stored by an earlier build names this module; it keeps working for one release.
Import :class:`~airflow_provider_revox.triggers.revox.RevoxCallEventTrigger` instead.
"""

from __future__ import annotations

from airflow_provider_revox.triggers.revox import RevoxCallEventTrigger as RevoxCallEventTrigger
