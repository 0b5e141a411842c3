"""Which of the Airflow 3.3 features this provider uses the installed Airflow has.

The provider runs on Airflow 3.2 and later. Five things it uses arrived in 3.3:

* the task state store (``context["task_state_store"]``), where a placing operator keeps the id
  it got back so that a retry reattaches to it; without it a retry searches by idempotency key;
* the asset state store (``context["asset_state_store"]``, and a trigger's
  ``asset_state_store``), where an incremental export keeps its watermark and
  ``RevoxCallEventTrigger`` its cursor; without it ``incremental=True`` is refused and a
  watcher's cursor does not outlive its triggerer;
* a trigger's ``on_kill``, which cancels the order of a deferred ``RevoxPlaceCallOperator``
  killed by a user; without it a killed deferred task leaves its order running.
* acknowledged shared streams, through which ``RevoxCallEventTrigger`` moves its cursor only
  once the triggerer has stored the events before it; without them (and with no asset state
  store to keep a cursor in) ``triggers.stream`` is never used.
* waits that start in the triggerer (``start_from_trigger`` with the task's templates rendered
  there) and end there (a trigger's ``TaskSuccessEvent``/``TaskFailedEvent``/
  ``TaskSkippedEvent``), so a deferrable sensor costs no worker run; without them a deferrable
  wait starts on a worker, defers, and resumes on a worker.

Each is detected here, by looking for it rather than by comparing version numbers, and only
here: the rest of the package asks these functions and says what it does instead.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

#: The Airflow release that brought all five features.
SINCE = "3.3"


def airflow_version() -> str:
    """The installed Airflow's version, as it reports it."""
    from airflow import __version__

    return str(__version__)


@functools.cache
def has_task_state_store() -> bool:
    """Whether tasks get a task state store (Airflow 3.3+)."""
    from airflow.sdk.execution_time import context

    return hasattr(context, "TaskStateStoreAccessor")


@functools.cache
def has_asset_state_store() -> bool:
    """Whether tasks and event triggers get an asset state store (Airflow 3.3+)."""
    from airflow.sdk.execution_time import context

    return hasattr(context, "AssetStateStoreAccessors")


@functools.cache
def has_trigger_on_kill() -> bool:
    """Whether the triggerer tells a trigger that a user killed its task (Airflow 3.3+)."""
    from airflow.triggers.base import BaseTrigger

    return callable(getattr(BaseTrigger, "on_kill", None))


@functools.cache
def has_acknowledged_streams() -> bool:
    """Whether shared streams of event triggers can wait for their events to be stored (3.3+)."""
    import importlib.util

    return importlib.util.find_spec("airflow.triggers.shared_stream") is not None


@functools.cache
def has_start_from_trigger() -> bool:
    """Whether a task can start and end in the triggerer, templates rendered there (3.3+).

    Airflow 3.3's triggerer hands a start-from-trigger trigger the serialized DAG (``dag_data``)
    so it can render the task's templates; before that the trigger got its kwargs unrendered.
    """
    from airflow.executors.workloads import trigger as workload
    from airflow.triggers import base

    rendered = "dag_data" in getattr(workload.RunTrigger, "model_fields", {})
    names = ("StartTriggerArgs", "TaskSuccessEvent", "TaskFailedEvent", "TaskSkippedEvent")
    return rendered and all(hasattr(base, name) for name in names)


def needs_airflow_3_3(feature: str) -> str:
    """The start of every message about a missing feature: what needs what, and what this is."""
    return f"{feature} needs Airflow {SINCE} or later (this is Airflow {airflow_version()})"


def task_state_store(context: Mapping[str, Any]) -> Any | None:
    """The task state store of a task's context, or None where this Airflow has none."""
    if not has_task_state_store():
        return None
    return context.get("task_state_store")


def asset_state_store(context: Mapping[str, Any]) -> Any | None:
    """The asset state stores of a task's context (by Asset), or None where this Airflow has none."""
    if not has_asset_state_store():
        return None
    return context.get("asset_state_store")


def trigger_asset_state_store(trigger: object) -> Any | None:
    """What the triggerer gave an event trigger as its asset state store, or None.

    None where this Airflow has no asset state store, and where the trigger runs outside a
    triggerer (nothing was given).
    """
    if not has_asset_state_store():
        return None
    return getattr(trigger, "asset_state_store", None)
