"""The benchmark table of docs/guides/production.md is scripts/bench-table's output for
bench/results.json, so the guide cannot drift from the figures; the generator computes each
target again from its figure and marks a section of another run stale."""

from __future__ import annotations

import json
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from types import ModuleType
from typing import Any

import pytest

from tests.support.paths import ROOT

SCRIPT = ROOT / "scripts" / "bench-table"


def generator() -> ModuleType:
    """The script, loaded as a module (its file name has no .py)."""
    loader = SourceFileLoader("bench_table", str(SCRIPT))
    spec = spec_from_loader(loader.name, loader)
    assert spec is not None
    module = module_from_spec(spec)
    loader.exec_module(module)
    return module


def section(run_id: str, **figures: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "run_started_at": "2026-12-07T00:00:00+00:00" if run_id == "new" else "2026-12-01T00:00:00+00:00",
        "started_at": "2026-12-07T00:01:00+00:00",
        "seed": 3,
        "load_average_at_start": [1.0, 1.0, 1.0],
        **figures,
    }


def test_the_guide_shows_the_generated_table_of_results_json() -> None:
    table = generator()
    document = (ROOT / "docs" / "guides" / "production.md").read_text()
    expected = table.render(json.loads((ROOT / "bench" / "results.json").read_text()))

    assert document.count(table.BEGIN) == 1 and document.count(table.END) == 1
    shown = document[document.index(table.BEGIN) + len(table.BEGIN) : document.index(table.END)]
    assert shown == "\n" + expected, "run scripts/bench-table --write after changing bench/results.json"


def test_targets_are_computed_from_the_figure_not_taken_from_targets_met() -> None:
    results = {
        "fast": section(
            "new",
            title="10 things",
            requests=7,
            ratio=0.031,
            targets={"requests": ">= 2,000", "ratio": "<= 0.03"},
            targets_met={"requests": True, "ratio": True},
        )
    }

    lines = generator().render(results).splitlines()

    assert lines[0] == "Run `new`, started 2026-12-07T00:00:00+00:00."
    assert lines[1] == "Every section comes from this run."
    assert lines[5] == (
        "| `fast`: 10 things (seed 3; started 2026-12-07T00:01:00+00:00; load [1.0, 1.0, 1.0]) "
        "| `requests` | 7 | >= 2,000 | **no** (recorded yes) |"
    )
    assert lines[6] == "|  | `ratio` | 0.031 | <= 0.03 | **no** (recorded yes) |"


def test_a_section_of_an_earlier_run_is_stale_and_one_without_targets_says_so() -> None:
    results = {
        "current": section("new", title="now", x=1, targets={"x": "== 1"}, targets_met={"x": True}),
        "old": section("old", title="before", y=2, targets={"y": "<= 3"}, targets_met={"y": True}),
        "bare": {"figure": 5},
    }

    lines = generator().render(results).splitlines()

    assert lines[1] == "Stale (not written by this run): `bare`, `old`."
    assert lines[5] == "| `bare` (no seed recorded; **stale** (run not recorded)) | no targets | | | |"
    assert lines[6].endswith("| `x` | 1 | == 1 | yes |")
    assert lines[7].startswith("| `old`: before (seed 3;") and "**stale** (run old)" in lines[7]
    assert lines[7].endswith("| `y` | 2 | <= 3 | yes |")


def test_a_figure_per_format_is_met_only_when_every_format_meets_it() -> None:
    results = {
        "landing": section(
            "new",
            parquet={"lost": 0, "ratio": 0.01},
            delta={"lost": 1, "ratio": 0.01},
            targets={"lost": "0", "ratio": "<= 0.02", "absent": "<= 1"},
        )
    }

    rows = generator().render(results).splitlines()[5:]

    assert rows[0].endswith("| `lost` | parquet 0, delta 1 | 0 | **no** |")
    assert rows[1].endswith("| `ratio` | parquet 0.01, delta 0.01 | <= 0.02 | yes |")
    assert rows[2].endswith("| `absent` | missing | <= 1 | not computable |")


def test_a_section_whose_stress_did_not_happen_says_so() -> None:
    results = {
        "soak": section(
            "new",
            stress_checks={"api_requests >= 500": False, "the sensor deferred": True},
            n=0,
            targets={"n": "== 0"},
        ),
        "fleet": section("new", stress_checks="ok", n=0, targets={"n": "== 0"}),
    }

    rows = generator().render(results).splitlines()[5:]

    assert "; stress checked)" in rows[0]
    assert "; **stress did not happen**: api_requests >= 500)" in rows[1]


def test_the_guide_without_markers_is_an_error() -> None:
    with pytest.raises(ValueError, match="bench-table"):
        generator().replace_table("# no table here\n", "| a |\n")


def test_merge_results_evaluates_targets_from_figures_and_stamps_the_run(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import results

    monkeypatch.setattr(results, "RESULTS", tmp_path / "results.json")
    monkeypatch.setenv(results.RUN_ID_VARIABLE, "20261207T000000Z")
    monkeypatch.setenv(results.RUN_STARTED_VARIABLE, "2026-12-07T00:00:00+00:00")
    figures = {"gets_per_s": 1999, "share": 0.02, "targets": {"gets_per_s": ">= 2,000", "share": "<= 0.02"}}
    figures["targets_met"] = results.evaluate(figures, figures["targets"])  # type: ignore[arg-type]
    results.merge_results("simulator", figures)

    written = json.loads((tmp_path / "results.json").read_text())["simulator"]
    assert written["targets_met"] == {"gets_per_s": False, "share": True}
    assert written["run_id"] == "20261207T000000Z"
    assert written["run_started_at"] == "2026-12-07T00:00:00+00:00"
    assert len(written["load_average_at_start"]) == len(written["load_average_at_end"]) == 3
    with pytest.raises(ValueError, match="not a number"):
        results.target_met("fast", "<= 1")
    with pytest.raises(ValueError, match="not '<op> <number>'"):
        results.target_met(1, "soon")
