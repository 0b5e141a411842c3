"""An embedded Revox simulator: develop and test call pipelines offline.

* :class:`SimulatorEngine`: deterministic order lifecycles, usable without HTTP;
* :class:`SimulatorServer`: the API over loopback HTTP (Starlette on uvicorn);
* :func:`running_simulator`: a context manager for tests;
* ``revox_simulator`` / ``revox_fast_simulator``: pytest fixtures (see :mod:`.pytest_plugin`);
* ``revox-simulator``: the command line.

Names are imported on first use, so importing one submodule (the pytest plugin) loads
nothing else.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_revox.simulator.clock import Clock, RealClock, ScaledClock, VirtualClock
    from airflow_provider_revox.simulator.engine import SimulatorEngine
    from airflow_provider_revox.simulator.errors import Conflict, InvalidOrder, SimulatorError, UnknownCall
    from airflow_provider_revox.simulator.faults import Faults
    from airflow_provider_revox.simulator.orders import default_assistant
    from airflow_provider_revox.simulator.profile import Profile
    from airflow_provider_revox.simulator.scenario import ScenarioError, load_scenario
    from airflow_provider_revox.simulator.server import SimulatorServer
    from airflow_provider_revox.simulator.testing import SimulatorHandle, running_simulator

_HOMES = {
    "Clock": "clock",
    "RealClock": "clock",
    "ScaledClock": "clock",
    "VirtualClock": "clock",
    "SimulatorEngine": "engine",
    "Conflict": "errors",
    "InvalidOrder": "errors",
    "SimulatorError": "errors",
    "UnknownCall": "errors",
    "Faults": "faults",
    "default_assistant": "orders",
    "Profile": "profile",
    "ScenarioError": "scenario",
    "load_scenario": "scenario",
    "SimulatorServer": "server",
    "SimulatorHandle": "testing",
    "running_simulator": "testing",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)


__all__ = [
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
    "SimulatorServer",
    "UnknownCall",
    "VirtualClock",
    "default_assistant",
    "load_scenario",
    "running_simulator",
]
