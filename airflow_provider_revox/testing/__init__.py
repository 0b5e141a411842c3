"""The test kit: an embedded Revox simulator to build and test call pipelines offline.

Install it with the ``testing`` extra (``pip install "airflow-provider-revox[testing]"``), which
brings what the simulator's server needs. Then:

* :func:`running_simulator`: a simulator on loopback for the length of a ``with`` block, and the
  :class:`SimulatorHandle` it yields (place orders, move the clock, read what was requested);
* :class:`SimulatorEngine` and :class:`SimulatorServer`: the API's behaviour without HTTP, and
  over HTTP;
* :class:`SimulatorProcess`: the simulator in a process of its own, as the system tests run it;
* the pytest fixtures ``revox_simulator``, ``revox_fast_simulator`` and ``revox_airflow_db``:
  add ``pytest_plugins = ["airflow_provider_revox.testing.pytest_plugin"]`` to your
  ``conftest.py`` (installing the provider registers no pytest plugin by itself);
* ``python -m airflow_provider_revox.testing``: the simulator from the command line.

Names are imported on first use, so loading the pytest plugin loads nothing else.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_revox._simulator.clock import Clock, RealClock, ScaledClock, VirtualClock
    from airflow_provider_revox._simulator.engine import SimulatorEngine
    from airflow_provider_revox._simulator.errors import Conflict, InvalidOrder, SimulatorError, UnknownCall
    from airflow_provider_revox._simulator.faults import Faults
    from airflow_provider_revox._simulator.harness import (
        ALWAYS_OPEN_RETRY_CONFIG,
        SimulatorHandle,
        connection_json,
        running_simulator,
    )
    from airflow_provider_revox._simulator.orders import default_assistant
    from airflow_provider_revox._simulator.process import SimulatorProcess, write_scenario
    from airflow_provider_revox._simulator.profile import Profile
    from airflow_provider_revox._simulator.scenario import ScenarioError, load_scenario
    from airflow_provider_revox._simulator.server import SimulatorServer

_HOMES = {
    "ALWAYS_OPEN_RETRY_CONFIG": "harness",
    "Clock": "clock",
    "Conflict": "errors",
    "Faults": "faults",
    "InvalidOrder": "errors",
    "Profile": "profile",
    "RealClock": "clock",
    "ScaledClock": "clock",
    "ScenarioError": "scenario",
    "SimulatorEngine": "engine",
    "SimulatorError": "errors",
    "SimulatorHandle": "harness",
    "SimulatorProcess": "process",
    "SimulatorServer": "server",
    "UnknownCall": "errors",
    "VirtualClock": "clock",
    "connection_json": "harness",
    "default_assistant": "orders",
    "load_scenario": "scenario",
    "running_simulator": "harness",
    "write_scenario": "process",
}


#: What the ``testing`` extra brings (import names): the simulator's HTTP server and YAML scenarios.
_EXTRA_MODULES = frozenset({"starlette", "uvicorn", "httptools", "yaml"})
_INSTALL_HINT = 'pip install "airflow-provider-revox[testing]"'


def _simulator_module(home: str) -> Any:
    """Import ``_simulator.<home>``; a package of the ``testing`` extra missing says how to get it.

    Raises:
        ImportError: a package of the extra is not installed (the message names the fix).
    """
    try:
        return import_module(f"airflow_provider_revox._simulator.{home}")
    except ImportError as error:
        missing = (error.name or "").partition(".")[0]
        if missing not in _EXTRA_MODULES:
            raise
        raise ImportError(
            f"the Revox test kit needs {missing!r}, which comes with the provider's testing extra: "
            f"{_INSTALL_HINT}",
            name=error.name,
        ) from error


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(_simulator_module(home), name)


__all__ = [
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
]
