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


def test_connection_type_extra_fields(providers: Any) -> None:
    widgets = providers.connection_form_widgets
    assert {"extra__revox__timeout", "extra__revox__max_retries"} <= set(widgets)
    assert widgets["extra__revox__timeout"].field_name == "timeout"
    assert widgets["extra__revox__max_retries"].field_name == "max_retries"


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


def test_the_package_has_the_expected_modules() -> None:
    names = _modules()
    for module in ("hooks.revox", "exceptions", "models", "statuses", "redact", "get_provider_info"):
        assert f"airflow_provider_revox.{module}" in names


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
