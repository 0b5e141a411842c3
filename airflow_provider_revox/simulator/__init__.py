"""An embedded Revox simulator: develop and test call pipelines offline.

* :class:`SimulatorEngine`: deterministic order lifecycles, usable without HTTP;
* :class:`SimulatorServer`: the API over loopback HTTP;
* :func:`running_simulator`: a context manager for tests;
* ``revox-simulator``: the command line.
"""

from __future__ import annotations

from airflow_provider_revox.simulator.clock import Clock, RealClock, ScaledClock, VirtualClock
from airflow_provider_revox.simulator.engine import (
    Conflict,
    InvalidOrder,
    SimulatorEngine,
    SimulatorError,
    UnknownCall,
    default_assistant,
)
from airflow_provider_revox.simulator.faults import Faults
from airflow_provider_revox.simulator.profile import Profile
from airflow_provider_revox.simulator.scenario import ScenarioError, load_scenario
from airflow_provider_revox.simulator.server import SimulatorServer
from airflow_provider_revox.simulator.testing import SimulatorHandle, running_simulator

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
