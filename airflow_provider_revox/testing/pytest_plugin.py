"""pytest fixtures for testing your own DAGs against the Revox simulator, offline.

Installed with the package (a ``pytest11`` entry point), so a test only asks for a fixture::

    def test_reminder_dag(revox_simulator):
        call = revox_simulator.place_call(phone_number="+33612345678", assistant_id="asst_1")
        revox_simulator.advance(3600)        # the clock is manual: move it yourself
        ...                                  # run your DAG: revox_default points at the simulator

* ``revox_simulator``: a simulator on a manual clock (it stands still until advanced), and
  ``AIRFLOW_CONN_REVOX_DEFAULT`` pointing at it for the test's duration;
* ``revox_fast_simulator``: the same on a clock running 600 times faster than real time, so
  an order with a few attempts ends in seconds while sensors poll as they would in production.

This module imports nothing from Airflow or the simulator until a fixture is used, so loading
the plugin never configures Airflow before a project's own conftest sets ``AIRFLOW_HOME``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_revox._simulator.harness import SimulatorHandle

#: The connection the fixtures point at the simulator: the hook's default.
CONNECTION_VARIABLE = "AIRFLOW_CONN_REVOX_DEFAULT"
#: Simulated seconds per real second of ``revox_fast_simulator``.
FAST_SPEED = 600.0


def _serve(monkeypatch: pytest.MonkeyPatch, speed: float | None) -> Iterator[SimulatorHandle]:
    from airflow_provider_revox._simulator.harness import running_simulator

    with running_simulator(seed=0, speed=speed) as sim:
        monkeypatch.setenv(CONNECTION_VARIABLE, sim.connection_json())
        yield sim


@pytest.fixture
def revox_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorHandle]:
    """A running simulator on a manual clock, with ``revox_default`` pointing at it."""
    yield from _serve(monkeypatch, None)


@pytest.fixture
def revox_fast_simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorHandle]:
    """A running simulator on a clock 600 times faster than real time, with ``revox_default`` set."""
    yield from _serve(monkeypatch, FAST_SPEED)
