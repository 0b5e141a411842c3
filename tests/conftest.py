"""Shared fixtures: a real Airflow on SQLite in a temporary AIRFLOW_HOME, and the simulator on loopback.

The tests mirror the code: ``unit/<layer>/`` tests one private layer of the package (talking to
the simulator over loopback where it needs an API), ``integration/`` runs real Airflow
(``dag.test()``) against the simulator, ``simulator/`` tests the test kit itself, and the files at
the top hold the promises of the package as a whole (the public surface, the import graph, the
documentation, the provider's registration). ``support/`` has the helpers they share.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Airflow reads its configuration at import: this must run before anything imports airflow.
_HOME = Path(tempfile.mkdtemp(prefix="revox-airflow-home-"))
_DAGS = _HOME / "dags"
_DAGS.mkdir()
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_DAGS)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.pop("AIRFLOW_CONN_REVOX_DEFAULT", None)


# The simulator fixtures (``revox_simulator``, ``revox_fast_simulator``), as a user's conftest adds them.
pytest_plugins = ["airflow_provider_revox.testing.pytest_plugin"]

#: Fixtures that bring up a real Airflow; a test using one is marked ``airflow`` so that
#: ``make test-fast`` (``-m "not airflow"``) can leave it out.
_AIRFLOW_FIXTURES = frozenset({"airflow_db", "run_dag"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that runs a real Airflow, whichever way it asks for one."""
    for item in items:
        if _AIRFLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.airflow)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the metadata database once per test session; returns AIRFLOW_HOME."""
    from airflow.utils import db

    db.initdb()
    return _HOME


@pytest.fixture
def run_dag(airflow_db: Path) -> Callable[..., Any]:
    """Write DAG source into the dags folder, parse it, run ``dag.test()`` and return the DagRun."""
    from airflow.dag_processing.dagbag import DagBag

    def _run(source: str, dag_id: str, conf: dict[str, Any] | None = None, logical_date: Any = None) -> Any:
        """``logical_date``: a run at a date an earlier run had is that DAG run again (its rerun)."""
        path = _DAGS / f"{dag_id}.py"
        path.write_text(source)
        bag = DagBag(str(path))
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag(dag_id)
        assert dag is not None, f"{dag_id} not found in {path}"
        if logical_date is not None:
            return dag.test(run_conf=conf, logical_date=logical_date, run_after=logical_date)
        return dag.test(run_conf=conf)

    return _run


# The simulator fixtures come from the package's pytest plugin (``pytest_plugins`` above), as users
# get them; these names are the ones the tests grew up with.


@pytest.fixture
def simulator(revox_simulator: Any) -> Any:
    """A simulator on loopback with a manual virtual clock, ``revox_default`` pointing at it."""
    return revox_simulator


@pytest.fixture
def revox_conn(revox_simulator: Any) -> Any:
    """The same simulator, for tests that mostly need the connection."""
    return revox_simulator


@pytest.fixture
def fast_simulator(revox_fast_simulator: Any) -> Any:
    """A simulator at 600x real time with ``revox_default`` pointing at it.

    It reports its clock in its responses and sensors schedule on it, so an order with a few
    attempts resolves in seconds while the sensor polls exactly as it would in production.
    """
    return revox_fast_simulator


# What the provider does on Airflow 3.2, where a 3.3 feature is missing, is tested on every
# version: these make 3.3 answer as 3.2 does (on 3.2 they change nothing). Markers for tests that
# need a feature are in tests/versions.py.


def _without(monkeypatch: pytest.MonkeyPatch, probe: str) -> None:
    from airflow_provider_revox._internal.core import compat

    monkeypatch.setattr(compat, probe, lambda: False)


@pytest.fixture
def without_task_state_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as on Airflow 3.2: tasks get no task state store."""
    _without(monkeypatch, "has_task_state_store")


@pytest.fixture
def without_asset_state_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as on Airflow 3.2: tasks and event triggers get no asset state store."""
    _without(monkeypatch, "has_asset_state_store")


@pytest.fixture
def without_trigger_on_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as on Airflow 3.2: the triggerer never calls a trigger's ``on_kill``."""
    _without(monkeypatch, "has_trigger_on_kill")


@pytest.fixture(autouse=True)
def _fresh_rate_limiters() -> Iterator[None]:
    """Each test starts with no connection's rate cut by another test's 429s."""
    from airflow_provider_revox._internal.client import ratelimit

    ratelimit.reset_buckets()
    yield
    ratelimit.reset_buckets()


@pytest.fixture
def without_start_from_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as on Airflow 3.2: no task starts or ends in the triggerer."""
    _without(monkeypatch, "has_start_from_trigger")
