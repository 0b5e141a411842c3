"""The test kit as its own part: its ``testing`` extra; a simulator that borrows nothing from the provider."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from airflow_provider_revox import _simulator
from airflow_provider_revox._internal.core import statuses as provider
from airflow_provider_revox._simulator import statuses as simulated
from airflow_provider_revox._simulator.clock import FirstReadClock, calling_hours_start

FIX = 'pip install "airflow-provider-revox[testing]"'


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("hidden", ["starlette", "uvicorn"])
def test_a_kit_name_without_the_extra_says_how_to_install_it(hidden: str) -> None:
    probe = (
        f"import sys; sys.modules[{hidden!r}] = None\n"
        "import airflow_provider_revox.testing as kit\n"
        "try:\n"
        "    kit.running_simulator\n"
        "except ImportError as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    out = _run(probe)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        f"ImportError the Revox test kit needs {hidden!r}, which comes with the provider's testing "
        f"extra: {FIX}"
    )


def test_the_command_line_without_the_extra_says_how_to_install_it() -> None:
    probe = (
        "import runpy, sys; sys.modules['starlette'] = None\n"
        "runpy.run_module('airflow_provider_revox.testing', run_name='__main__')\n"
    )
    out = _run(probe)
    assert out.returncode == 2
    assert out.stderr.strip().endswith(f"testing extra: {FIX}")


def test_a_name_that_needs_nothing_of_the_extra_still_loads_without_it() -> None:
    out = _run(
        "import sys; sys.modules['starlette'] = None\n"
        "from airflow_provider_revox.testing import VirtualClock\n"
        "print(VirtualClock.__name__)\n"
    )
    assert out.stdout.strip() == "VirtualClock", out.stderr


def test_the_simulator_imports_nothing_of_the_provider() -> None:
    modules = sorted(
        f"{_simulator.__name__}.{info.name}" for info in pkgutil.iter_modules(_simulator.__path__)
    )
    assert len(modules) > 20
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "kit = ('airflow_provider_revox._simulator', 'airflow_provider_revox.testing')\n"
        "print(sorted(m for m in sys.modules if m.startswith('airflow_provider_revox.')\n"
        "             and not m.startswith(kit)))\n"
    )
    out = _run(probe)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _table(module: object) -> dict[str, object]:
    return {
        name: value
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str | frozenset)
    }


def test_the_simulator_reports_the_statuses_the_provider_knows() -> None:
    mine = _table(simulated)
    assert len(mine) == 17
    assert {name: getattr(provider, name, None) for name in mine} == mine
    assert simulated.KNOWN == provider.KNOWN and simulated.TERMINAL == provider.TERMINAL
    assert {s for s in simulated.KNOWN if simulated.is_terminal(s)} == provider.TERMINAL


@pytest.mark.parametrize(
    ("now", "start"),
    [
        # Sunday night: Monday morning.
        ("2026-12-06T21:30:00+00:00", "2026-12-07T09:00:00+00:00"),
        # Friday afternoon: Monday morning.
        ("2025-03-07T15:00:00+00:00", "2025-03-10T09:00:00+00:00"),
        # A weekday before nine: the same morning; nine sharp stays.
        ("2025-03-05T06:10:00+00:00", "2025-03-05T09:00:00+00:00"),
        ("2025-03-05T09:00:00+00:00", "2025-03-05T09:00:00+00:00"),
        # A weekday past nine: the next one (in another timezone: the same instant).
        ("2025-03-05T09:00:01+00:00", "2025-03-06T09:00:00+00:00"),
        ("2025-03-05T23:30:00-05:00", "2025-03-06T09:00:00+00:00"),
    ],
)
def test_a_fast_clock_starts_on_the_next_weekday_morning(now: str, start: str) -> None:
    assert calling_hours_start(datetime.fromisoformat(now)) == datetime.fromisoformat(start)
    assert calling_hours_start(datetime.fromisoformat(now)).tzinfo == timezone.utc


def test_a_first_read_clock_stands_still_until_read() -> None:
    start = datetime(2025, 3, 5, 9, tzinfo=timezone.utc)
    clock = FirstReadClock(600, start)
    time.sleep(0.05)  # 30 simulated seconds, had it been running
    assert clock.now() == start
    time.sleep(0.01)
    assert clock.now() > start and clock.speed == 600
