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


def probed(monkeypatch: pytest.MonkeyPatch, probe: str) -> bool:
    """The probe's answer computed afresh (its cache cleared first; ``fresh_probes`` clears it after)."""
    function = getattr(compat, probe)
    function.cache_clear()
    return bool(function())


@pytest.fixture(autouse=True)
def fresh_probes() -> Any:
    yield
    for probe in (
        "has_task_state_store",
        "has_asset_state_store",
        "has_trigger_on_kill",
        "has_acknowledged_streams",
    ):
        getattr(compat, probe).cache_clear()


@pytest.mark.parametrize("present", [True, False])
@pytest.mark.parametrize(
    ("probe", "name"),
    [
        ("has_task_state_store", "TaskStateStoreAccessor"),
        ("has_asset_state_store", "AssetStateStoreAccessors"),
    ],
)
def test_the_state_store_probes_follow_the_task_context_module(
    monkeypatch: pytest.MonkeyPatch, probe: str, name: str, present: bool
) -> None:
    from airflow.sdk.execution_time import context as task_context

    if present:
        monkeypatch.setattr(task_context, name, type(name, (), {}), raising=False)
    else:
        monkeypatch.delattr(task_context, name, raising=False)
    assert probed(monkeypatch, probe) is present


@pytest.mark.parametrize("present", [True, False])
def test_the_on_kill_probe_follows_the_base_trigger(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    from airflow.triggers.base import BaseTrigger

    monkeypatch.setattr(BaseTrigger, "on_kill", (lambda self: None) if present else None, raising=False)
    assert probed(monkeypatch, "has_trigger_on_kill") is present


@pytest.mark.parametrize("present", [True, False])
def test_the_streams_probe_follows_the_shared_stream_module(
    monkeypatch: pytest.MonkeyPatch, present: bool
) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        if name == "airflow.triggers.shared_stream":
            return object() if present else None
        return real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert probed(monkeypatch, "has_acknowledged_streams") is present
