"""The one place that says which Airflow 3.3 features are here agrees with the installed Airflow."""

from __future__ import annotations

from typing import Any

import pytest
from packaging.version import Version

from airflow_provider_revox._internal.core import compat
from airflow_provider_revox._internal.core.durable import TaskState


def test_each_feature_is_found_exactly_on_airflow_3_3_and_later() -> None:
    from airflow import __version__

    expected = Version(__version__).release[:2] >= (3, 3)
    assert compat.airflow_version() == __version__
    assert compat.has_task_state_store() is expected
    assert compat.has_asset_state_store() is expected
    assert compat.has_trigger_on_kill() is expected
    assert compat.has_acknowledged_streams() is expected


def test_the_message_names_the_feature_the_release_and_this_airflow() -> None:
    assert compat.needs_airflow_3_3("The task state store") == (
        f"The task state store needs Airflow 3.3 or later (this is Airflow {compat.airflow_version()})"
    )


class Store:
    """Stands for whatever Airflow puts in the context."""

    def get(self, key: str) -> Any:
        return "call-1"


def context() -> dict[str, Any]:
    return {"task_state_store": Store(), "asset_state_store": Store()}


class Trigger:
    asset_state_store = Store()


@pytest.mark.usefixtures("without_task_state_store", "without_asset_state_store")
def test_without_the_features_nothing_in_the_context_is_used() -> None:
    # On Airflow 3.2 the context never holds them; a stand-in left there is not mistaken for one.
    assert compat.task_state_store(context()) is None
    assert compat.asset_state_store(context()) is None
    assert compat.trigger_asset_state_store(Trigger()) is None
    state = TaskState(context())
    assert not state.available and state.get("revox_call_id") is None
    state.set("revox_call_id", "call-2")  # dropped, not an error


def test_with_the_features_the_context_holds_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for probe in ("has_task_state_store", "has_asset_state_store"):
        monkeypatch.setattr(compat, probe, lambda: True)
    found = context()
    assert compat.task_state_store(found) is found["task_state_store"]
    assert compat.asset_state_store(found) is found["asset_state_store"]
    assert compat.trigger_asset_state_store(Trigger()) is Trigger.asset_state_store
    assert compat.task_state_store({}) is None  # a task run without one (outside Airflow)
    assert TaskState(found).get("revox_call_id") == "call-1"
