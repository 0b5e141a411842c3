"""The ``pytest11`` plugin users get with the package: ``revox_simulator`` and ``revox_fast_simulator``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_provider_revox._internal.client.requests import SEARCH_FILTERS
from airflow_provider_revox._simulator.search import SEARCH_FILTERS as SIMULATED_FILTERS

pytest_plugins = ["pytester"]

USER_TESTS = """
import json
import os

import httpx


def test_manual_clock(revox_simulator):
    conn = json.loads(os.environ["AIRFLOW_CONN_REVOX_DEFAULT"])
    assert conn["conn_type"] == "revox" and conn["host"] == revox_simulator.base_url
    call = revox_simulator.place_call(phone_number="+33612345678", assistant_id="asst_user")
    headers = {"Authorization": "Bearer " + conn["password"]}
    first = httpx.get(conn["host"] + "/call/" + call["id"], headers=headers).json()["call"]
    revox_simulator.advance(7 * 24 * 3600)
    last = httpx.get(conn["host"] + "/call/" + call["id"], headers=headers).json()["call"]
    assert first["status"] == "scheduled" and last["status"] in ("completed", "errored")


def test_fast_clock(revox_fast_simulator):
    assert revox_fast_simulator.clock.speed == 600
    assert json.loads(os.environ["AIRFLOW_CONN_REVOX_DEFAULT"])["host"] == revox_fast_simulator.base_url


def test_connection_is_gone_after_the_fixture():
    assert "AIRFLOW_CONN_REVOX_DEFAULT" not in os.environ
"""


def test_a_user_test_suite_gets_the_fixtures(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_REVOX_DEFAULT", raising=False)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_user_dags=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)


def test_loading_the_plugin_imports_neither_airflow_nor_the_simulator() -> None:
    probe = (
        "import sys, airflow_provider_revox.testing.pytest_plugin; "
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.endswith('simulator.engine')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_simulator_requires_the_filters_the_hook_sends() -> None:
    assert SIMULATED_FILTERS == SEARCH_FILTERS
