"""No import cycle between the package's modules: scripts/check-import-cycles, which ``make lint``
runs too, on the package itself and on a small tangled package it must name every cycle of."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.paths import ROOT

SCRIPT = ROOT / "scripts" / "check-import-cycles"
# grimp 3.20 needs Python 3.11: make lint runs the check on the project's .venv, not in the test
# matrix's Python 3.10 cells.
pytest.importorskip("grimp", reason="grimp (scripts/check-import-cycles) needs Python 3.11 or later")


def checker() -> ModuleType:
    """The script, loaded as a module (its file name has no .py)."""
    loader = SourceFileLoader("check_import_cycles", str(SCRIPT))
    spec = spec_from_loader(loader.name, loader)
    assert spec is not None
    module = module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_package_has_no_import_cycle() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("check-import-cycles: no import cycle among the ")
    _, graph = checker().import_graph("airflow_provider_revox")
    # The graph is the real one: private layers, the simulator and a TYPE_CHECKING-only import.
    assert (
        "airflow_provider_revox._internal.core.retry_policy"
        in graph["airflow_provider_revox._internal.core.call"]
    )
    assert "airflow_provider_revox._simulator.engine" in graph
    assert "airflow_provider_revox.exceptions" in graph


def test_every_elementary_cycle_of_a_tangle_is_listed_once() -> None:
    graph = {
        "a": {"b"},
        "b": {"a", "c"},
        "c": {"a", "d"},
        "d": set(),
        "e": {"e"},
        "f": {"g"},
        "g": set(),
    }
    assert checker().find_cycles(graph) == [["a", "b", "a"], ["a", "b", "c", "a"], ["e", "e"]]
    assert checker().find_cycles(graph, limit=1) == [["a", "b", "a"]]


def test_a_cycle_through_a_type_checking_import_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    package = tmp_path / "tangled"
    package.mkdir()
    modules = {
        "__init__.py": "",
        "low.py": "VALUE = 1\n",
        "one.py": "from tangled import two\n\n\nclass One:\n    pass\n",
        "two.py": """
            from typing import TYPE_CHECKING

            from tangled.low import VALUE

            if TYPE_CHECKING:
                from tangled.one import One
            """,
    }
    for name, text in modules.items():
        (package / name).write_text(textwrap.dedent(text).lstrip())
    monkeypatch.syspath_prepend(str(tmp_path))
    assert checker().main(["check-import-cycles", "tangled"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "check-import-cycles: 1 import cycle(s) in tangled:",
        "  tangled.one (l.1) -> tangled.two (l.6) -> tangled.one",
    ]
