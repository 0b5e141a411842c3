"""The pytest plugin users opt into with ``pytest_plugins``: ``revox_simulator``, ``revox_fast_simulator``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path

import pytest

from airflow_provider_revox._internal.client.requests import SEARCH_FILTERS
from airflow_provider_revox._simulator.clock import calling_hours_start
from airflow_provider_revox._simulator.search import SEARCH_FILTERS as SIMULATED_FILTERS
from airflow_provider_revox.testing import pytest_plugin

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


PLUGIN_LINE = 'pytest_plugins = ["airflow_provider_revox.testing.pytest_plugin"]\n'


def test_a_user_test_suite_gets_the_fixtures_with_one_line_in_its_conftest(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_REVOX_DEFAULT", raising=False)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(PLUGIN_LINE)
    pytester.makepyfile(test_user_dags=USER_TESTS)
    # In a process of its own: an in-process run would unload the Airflow modules it imported.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)


def test_installing_the_provider_brings_no_fixture(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_user_dags="def test_x(revox_fast_simulator):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'revox_fast_simulator' not found*"])


def test_the_distribution_registers_no_pytest_plugin_and_no_command() -> None:
    # The provider is installed into Airflow's components: it must change no pytest run there
    # (a pytest11 entry point loads into every one) and add no command. Its entry points are the
    # provider's own and the api-server plugin serving the webhook endpoint.
    groups = {entry.group for entry in metadata.distribution("airflow-provider-revox").entry_points}
    assert groups == {"apache_airflow_provider", "airflow.plugins"}


def test_loading_the_plugin_imports_neither_airflow_nor_the_simulator() -> None:
    probe = (
        "import sys, airflow_provider_revox.testing.pytest_plugin; "
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.endswith('simulator.engine')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_simulator_knows_the_filters_the_hook_sends() -> None:
    assert SIMULATED_FILTERS == SEARCH_FILTERS


REFUSE_MIGRATIONS = """
from airflow.utils import db


def _refuse(**_):
    raise AssertionError("the plugin migrated a database that had its tables")


db.initdb = _refuse
"""


@pytest.mark.airflow
def test_a_database_a_project_already_migrated_is_left_alone(
    airflow_db: Path, pytester: pytest.Pytester
) -> None:
    # The suite's conftest migrated this session's database (airflow_db); the user run shares it.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(PLUGIN_LINE + REFUSE_MIGRATIONS)
    pytester.makepyfile(test_user_dags="def test_x(revox_airflow_db, revox_simulator):\n    pass\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q").assert_outcomes(passed=1)


def _documented_example() -> list[str]:
    """The literal blocks of the plugin's docstring: the conftest line, the DAG, the test."""
    assert pytest_plugin.__doc__ is not None
    blocks = re.findall(r"::\n\n((?:    .*\n|\n)+)", pytest_plugin.__doc__)
    return [textwrap.dedent(block).strip() + "\n" for block in blocks]


@pytest.mark.airflow
def test_the_documented_example_passes_on_a_fresh_airflow_home(tmp_path: Path) -> None:
    conftest, dag, test = _documented_example()
    assert conftest == PLUGIN_LINE
    home, project = tmp_path / "airflow-home", tmp_path / "project"
    (home / "dags").mkdir(parents=True)
    project.mkdir()
    (home / "dags" / "reminder.py").write_text(dag)
    (project / "conftest.py").write_text(conftest)
    # The harness, not the documented example, reports the order for the checks below.
    report = '    print(call["status"], call["calls_count"], call["created_at"], call["ended_at"])\n'
    (project / "test_reminder.py").write_text(test + report)
    # Nothing of this suite's Airflow: a machine that has only installed the provider.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "PYTEST"))}
    env["AIRFLOW_HOME"] = str(home)
    before = datetime.now(timezone.utc)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_reminder.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert "1 passed" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
    (line,) = [line for line in out.stdout.splitlines() if line.startswith("completed ")]
    _, attempts, created, ended = line.split()
    placed, done = (
        datetime.fromisoformat(created[:-1] + "+00:00"),
        datetime.fromisoformat(ended[:-1] + "+00:00"),
    )
    # Placed as the fast clock's weekday morning begins, however long Airflow took to get there,
    # and dialled at once: one attempt, minutes long, where a clock started at night or on a
    # weekend waited hours for the calling window.
    assert placed >= calling_hours_start(before) and placed.weekday() < 5
    assert (placed.hour, placed.minute // 10) == (9, 0)
    assert attempts == "1"
    assert timedelta(seconds=10) < done - placed < timedelta(minutes=30)
