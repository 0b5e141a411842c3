"""Airflow discovers the provider, its connection type, and imports every module cleanly."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import airflow_provider_revox

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def providers() -> Any:
    from airflow.providers_manager import ProvidersManager

    return ProvidersManager()


def test_provider_is_listed(providers: Any) -> None:
    info = providers.providers["airflow-provider-revox"]
    assert info.version == airflow_provider_revox.__version__
    assert (
        info.data["connection-types"][0]["hook-class-name"] == "airflow_provider_revox.hooks.revox.RevoxHook"
    )


def test_connection_type_field_behaviours(providers: Any) -> None:
    behaviour = providers.field_behaviours["revox"]
    assert behaviour["relabeling"] == {"password": "API key", "host": "Base URL"}
    assert set(behaviour["hidden_fields"]) == {"login", "schema", "port"}
    assert behaviour["placeholders"]["host"] == "https://www.getrevox.com/api"


def test_every_extra_the_hook_reads_is_in_the_connection_form(providers: Any) -> None:
    widgets = providers.connection_form_widgets
    fields = {widget.field_name for key, widget in widgets.items() if key.startswith("extra__revox__")}
    assert fields == {
        "timeout",
        "max_retries",
        "max_requests_per_second",
        "allow_insecure_http",
        "max_response_mb",
        "max_recording_mb",
        "download_timeout",
        "batch_polls",
        "adaptive_rate",
        "webhook_base_url",
        "webhook_token",
        "webhook_previous_token",
    }


def test_hook_class_attributes_match_the_registration() -> None:
    from airflow_provider_revox.get_provider_info import get_provider_info
    from airflow_provider_revox.hooks.revox import RevoxHook

    registered = get_provider_info()["connection-types"][0]
    assert (RevoxHook.conn_type, RevoxHook.hook_name) == (
        registered["connection-type"],
        registered["hook-name"],
    )
    assert (RevoxHook.conn_name_attr, RevoxHook.default_conn_name) == ("revox_conn_id", "revox_default")


@pytest.mark.airflow
def test_cli_connection_keeps_its_type(airflow_db: Path) -> None:
    import sqlalchemy
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    command = [AIRFLOW, "connections", "add", "revox_cli", "--conn-type", "revox"]
    command += ["--conn-host", "www.getrevox.com/api", "--conn-password", "rvx_cli_key_123"]
    command += ["--conn-extra", '{"timeout": 30}']
    subprocess.run(command, env=dict(os.environ), check=True, capture_output=True, timeout=120)
    with create_session() as session:
        # Only plain columns: password and extra are encrypted with the CLI's own Fernet key.
        rows = session.query(Connection.conn_type, Connection.host).filter_by(conn_id="revox_cli")
        stored = rows.all()
        session.execute(sqlalchemy.delete(Connection).where(Connection.conn_id == "revox_cli"))
    assert stored == [("revox", "www.getrevox.com/api")]


def _modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(airflow_provider_revox.__path__, prefix="airflow_provider_revox.")
    )


def test_the_public_import_paths_give_the_public_classes() -> None:
    from airflow_provider_revox._internal.client.requests import SEARCH_FILTERS, validate_call_id
    from airflow_provider_revox._internal.client.requests import SEARCH_FILTERS as filters
    from airflow_provider_revox._internal.hooks.revox import RevoxHook
    from airflow_provider_revox.exceptions import RevoxInvalidCallIdError
    from airflow_provider_revox.operators.revox import RevoxCallResultsOperator, RevoxCallsToStorageOperator
    from airflow_provider_revox.sensors.revox import RevoxCallSensor, RevoxCallsSensor
    from airflow_provider_revox.triggers.revox import RevoxCallsTrigger, RevoxCallTrigger

    classes = [RevoxHook, RevoxCallResultsOperator, RevoxCallsToStorageOperator, RevoxCallSensor]
    classes += [RevoxCallsSensor, RevoxCallTrigger, RevoxCallsTrigger]
    assert [cls.__name__ for cls in classes] == [
        "RevoxHook",
        "RevoxCallResultsOperator",
        "RevoxCallsToStorageOperator",
        "RevoxCallSensor",
        "RevoxCallsSensor",
        "RevoxCallTrigger",
        "RevoxCallsTrigger",
    ]
    assert SEARCH_FILTERS is filters and "campaign_ids" in SEARCH_FILTERS
    with pytest.raises(RevoxInvalidCallIdError):
        validate_call_id("..")
    assert "airflow_provider_revox._internal.client.settings" in _modules()


_IMPORT_ALL = """
import importlib, json, pkgutil, sys, warnings
import airflow.sdk
import airflow_provider_revox
warnings.simplefilter("error")
failures = {}
for info in pkgutil.walk_packages(airflow_provider_revox.__path__, prefix="airflow_provider_revox."):
    try:
        importlib.import_module(info.name)
    except Exception as error:
        failures[info.name] = f"{type(error).__name__}: {error}"
print(json.dumps(failures))
"""


def test_every_module_imports_without_warnings() -> None:
    # A fresh interpreter, so modules already imported by other tests cannot hide a warning.
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL], env=dict(os.environ), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert failures == {}
