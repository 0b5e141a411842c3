"""pytest fixtures for testing your own DAGs against the Revox simulator, offline.

Needs the ``testing`` extra (``pip install "airflow-provider-revox[testing]"``). Add one line to
your ``conftest.py``::

    pytest_plugins = ["airflow_provider_revox.testing.pytest_plugin"]

Then ask for a fixture; ``revox_default`` points at a running simulator for the test's duration.
A DAG in Airflow's dags folder (``$AIRFLOW_HOME/dags/reminder.py`` unless ``[core] dags_folder``
says otherwise: ``dag.test()`` runs DAGs from there)::

    import pendulum
    from airflow.sdk import DAG

    from airflow_provider_revox.operators.revox import RevoxPlaceCallOperator

    with DAG("reminder", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")) as dag:
        RevoxPlaceCallOperator(task_id="call", phone_number="+33612345678", assistant_id="asst_1")

and its test (``test_reminder.py``)::

    from airflow.dag_processing.dagbag import DagBag


    def test_reminder_dag(revox_fast_simulator):
        dag = DagBag().get_dag("reminder")
        run = dag.test()
        assert run.state == "success"
        (call_id,) = revox_fast_simulator.engine.call_ids()
        call = revox_fast_simulator.get_call(call_id)
        assert call["status"] == "completed"

The fixtures:

* ``revox_fast_simulator``: a simulator on a clock running 600 times faster than real time, so
  an order with a few attempts ends in seconds while sensors poll as they would in production
  (they schedule on the simulator's clock). Its clock stands at the next weekday 09:00 UTC,
  as the default 10:00-18:00 calling window of Central European numbers opens, until it is
  first read (the first request, say), then runs: an order to such a number dials as soon as
  it is placed and ends within a few simulated hours (seconds of real time) instead of waiting
  for the next morning (at night or on a weekend, 80 s of real time and more), however long
  Airflow took to start the DAG run.
  A number in the Americas still waits for its own window (five simulated hours or more: 30 s
  of real time and more); give such orders ``skip_calling_window=True`` or a retry config
  whose windows you choose.
* ``revox_simulator``: the same on a manual clock: it stands still until ``advance()`` or
  ``clock.set()``.
* ``revox_airflow_db``: Airflow's metadata database, ready for ``dag.test()``. Both simulator
  fixtures ask for it. When the configured database has no tables (a fresh ``AIRFLOW_HOME``),
  it creates them once per test session; a database that already has them, such as one a
  project's conftest migrated, is left as it is.

Each simulator fixture sets ``AIRFLOW_CONN_REVOX_DEFAULT`` with ``monkeypatch`` and yields a
:class:`~airflow_provider_revox.testing.SimulatorHandle`.

This module imports nothing from Airflow or the simulator until a fixture is used, so loading
the plugin never configures Airflow before a project's own conftest sets ``AIRFLOW_HOME``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_revox._simulator.harness import SimulatorHandle

#: The connection the fixtures point at the simulator: the hook's default.
CONNECTION_VARIABLE = "AIRFLOW_CONN_REVOX_DEFAULT"
#: Simulated seconds per real second of ``revox_fast_simulator``.
FAST_SPEED = 600.0
#: A table every Airflow metadata database has once migrated, and ``dag.test()`` reads.
_AIRFLOW_TABLE = "task_instance"


def _airflow_db_ready() -> bool:
    from airflow import settings
    from sqlalchemy import inspect

    if settings.engine is None:
        settings.configure_orm()  # type: ignore[no-untyped-call]
    return bool(inspect(settings.engine).has_table(_AIRFLOW_TABLE))


@pytest.fixture(scope="session")
def revox_airflow_db() -> None:
    """Airflow's metadata database with its tables: created once when the configured one has none."""
    if not _airflow_db_ready():
        from airflow.utils import db

        db.initdb()


def _serve(monkeypatch: pytest.MonkeyPatch, speed: float | None) -> Iterator[SimulatorHandle]:
    from airflow_provider_revox._simulator.clock import FirstReadClock, calling_hours_start
    from airflow_provider_revox.testing import running_simulator

    clock = None
    if speed is not None:
        clock = FirstReadClock(speed, start=calling_hours_start(datetime.now(timezone.utc)))
    with running_simulator(seed=0, clock=clock) as sim:
        monkeypatch.setenv(CONNECTION_VARIABLE, sim.connection_json())
        yield sim


@pytest.fixture
def revox_simulator(monkeypatch: pytest.MonkeyPatch, revox_airflow_db: None) -> Iterator[SimulatorHandle]:
    """A running simulator on a manual clock, with ``revox_default`` pointing at it."""
    yield from _serve(monkeypatch, None)


@pytest.fixture
def revox_fast_simulator(
    monkeypatch: pytest.MonkeyPatch, revox_airflow_db: None
) -> Iterator[SimulatorHandle]:
    """A running simulator 600 times faster than real time, from a weekday morning, ``revox_default`` set."""
    yield from _serve(monkeypatch, FAST_SPEED)
