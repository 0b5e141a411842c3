"""The public surface, pinned: every public name, the one module it is imported from, and the
classpath each trigger is stored under. A change here is a decision about the API, made on purpose."""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Any

import pytest

import airflow_provider_revox

#: Every public module and the names it exports, as documented.
PUBLIC_SURFACE: dict[str, list[str]] = {
    "airflow_provider_revox.exceptions": [
        "RevoxApiError",
        "RevoxAuthError",
        "RevoxConfigError",
        "RevoxError",
        "RevoxIdsFileError",
        "RevoxIncompleteReadError",
        "RevoxInsecureConnectionError",
        "RevoxInvalidCallIdError",
        "RevoxInvalidRequestError",
        "RevoxNotFoundError",
        "RevoxPhoneHistoryError",
        "RevoxPlacementUnknownError",
        "RevoxResponseError",
        "RevoxResponseTooLargeError",
        "RevoxRetriesExhaustedError",
        "RevoxTransportError",
        "is_transient",
    ],
    "airflow_provider_revox.export": [
        "ALL_TABLES",
        "FILE_FORMATS",
        "CallSearch",
        "Watermark",
        "first_named",
        "read_loads",
        "read_published",
        "recording_extension",
    ],
    "airflow_provider_revox.hooks.revox": [
        "Call",
        "CallAttempt",
        "Campaign",
        "CampaignRow",
        "CampaignStatistics",
        "LaunchResult",
        "PhoneHistory",
        "PhoneHistoryEntry",
        "RevoxHook",
        "TranscriptTurn",
    ],
    "airflow_provider_revox.operators.revox": [
        "RevoxCallLink",
        "RevoxCallResultsOperator",
        "RevoxCallsToStorageOperator",
        "RevoxCancelCampaignOperator",
        "RevoxCreateCampaignOperator",
        "RevoxLaunchCampaignOperator",
        "RevoxPauseCampaignOperator",
        "RevoxPlaceCallOperator",
        "RevoxResumeCampaignOperator",
    ],
    "airflow_provider_revox.plugins.revox": ["RevoxWebhookPlugin"],
    "airflow_provider_revox.sensors.revox": ["RevoxCallSensor", "RevoxCallsSensor", "RevoxCampaignSensor"],
    "airflow_provider_revox.testing": [
        "ALWAYS_OPEN_RETRY_CONFIG",
        "Clock",
        "Conflict",
        "Faults",
        "InvalidOrder",
        "Profile",
        "RealClock",
        "ScaledClock",
        "ScenarioError",
        "SimulatorEngine",
        "SimulatorError",
        "SimulatorHandle",
        "SimulatorProcess",
        "SimulatorServer",
        "UnknownCall",
        "VirtualClock",
        "connection_json",
        "default_assistant",
        "load_scenario",
        "running_simulator",
        "write_scenario",
    ],
    "airflow_provider_revox.triggers.revox": [
        "RevoxCallEventTrigger",
        "RevoxCallTrigger",
        "RevoxCallsTrigger",
        "RevoxCampaignTrigger",
    ],
}

#: Modules that are neither public nor private by name: the provider entry point, the package
#: faces, and the classpaths triggers were stored under before 0.1.0's layout (kept one release).
OTHER_MODULES = {
    "airflow_provider_revox",
    "airflow_provider_revox.get_provider_info",
    "airflow_provider_revox.hooks",
    "airflow_provider_revox.operators",
    "airflow_provider_revox.plugins",
    "airflow_provider_revox.sensors",
    "airflow_provider_revox.triggers",
    "airflow_provider_revox.testing.pytest_plugin",
    "airflow_provider_revox.testing.__main__",
    "airflow_provider_revox.triggers.campaign",
    "airflow_provider_revox.triggers.events",
}


def import_string(path: str) -> Any:
    """What Airflow does with a stored classpath."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _is_private(module: str) -> bool:
    return any(part.startswith("_") and part != "__main__" for part in module.split(".")[1:])


def _all_modules() -> set[str]:
    return {
        info.name
        for info in pkgutil.walk_packages(airflow_provider_revox.__path__, prefix="airflow_provider_revox.")
    } | {"airflow_provider_revox"}


@pytest.mark.parametrize("module", sorted(PUBLIC_SURFACE))
def test_each_public_module_exports_exactly_its_documented_names(module: str) -> None:
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(PUBLIC_SURFACE[module])
    for name in imported.__all__:
        assert getattr(imported, name) is not None, f"{module}.{name}"


def test_no_name_is_exported_twice() -> None:
    seen: dict[str, str] = {}
    for module, names in PUBLIC_SURFACE.items():
        for name in names:
            assert name not in seen, f"{name} is exported by {seen.get(name)} and {module}"
            seen[name] = module


def test_every_other_module_is_private_by_name() -> None:
    public = set(PUBLIC_SURFACE) | OTHER_MODULES
    leaked = sorted(m for m in _all_modules() - public if not _is_private(m))
    assert leaked == []


def test_private_modules_declare_no_export_list() -> None:
    # A private module's names are reached through a public module; an __all__ there would be a
    # second, undocumented surface.
    private = sorted(m for m in _all_modules() if _is_private(m))
    assert len(private) > 60
    declaring = [m for m in private if "__all__" in vars(importlib.import_module(m))]
    assert declaring == []


TRIGGER_KWARGS: dict[str, dict[str, Any]] = {
    "RevoxCallTrigger": {"call_id": "c-1", "poke_interval": 20.0},
    "RevoxCallsTrigger": {"call_ids": ["c-1", "c-2"], "poke_interval": 20.0},
    "RevoxCampaignTrigger": {"campaign_id": "camp-1", "poke_interval": 30.0},
    "RevoxCallEventTrigger": {"campaign_ids": ["camp-1"], "poll_interval": 10.0},
}


@pytest.mark.parametrize("name", sorted(TRIGGER_KWARGS))
def test_every_trigger_is_stored_under_its_documented_path_and_comes_back_from_it(name: str) -> None:
    cls = getattr(importlib.import_module("airflow_provider_revox.triggers.revox"), name)
    classpath, kwargs = cls(**TRIGGER_KWARGS[name]).serialize()
    assert classpath == f"airflow_provider_revox.triggers.revox.{name}"
    assert json.loads(json.dumps(kwargs)) == kwargs
    restored = import_string(classpath)(**kwargs)
    assert restored.serialize() == (classpath, kwargs)


@pytest.mark.parametrize(
    ("old_path", "name"),
    [
        ("airflow_provider_revox.triggers.events.RevoxCallEventTrigger", "RevoxCallEventTrigger"),
        ("airflow_provider_revox.triggers.campaign.RevoxCampaignTrigger", "RevoxCampaignTrigger"),
        ("airflow_provider_revox.triggers.revox.RevoxCallTrigger", "RevoxCallTrigger"),
        ("airflow_provider_revox.triggers.revox.RevoxCallsTrigger", "RevoxCallsTrigger"),
    ],
)
def test_a_trigger_stored_under_an_earlier_path_still_loads(old_path: str, name: str) -> None:
    cls = import_string(old_path)
    assert cls is getattr(importlib.import_module("airflow_provider_revox.triggers.revox"), name)
    _, kwargs = cls(**TRIGGER_KWARGS[name]).serialize()
    assert cls(**kwargs).serialize()[0] == f"airflow_provider_revox.triggers.revox.{name}"


def test_the_webhook_plugin_is_registered_through_the_airflow_plugins_entry_point() -> None:
    from importlib.metadata import entry_points

    (point,) = [p for p in entry_points(group="airflow.plugins") if p.name == "revox_webhooks"]
    plugin = point.load()
    assert point.value == "airflow_provider_revox.plugins.revox:RevoxWebhookPlugin"
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/revox" and app["app"] is not None
