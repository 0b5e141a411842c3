"""What the documentation promises holds: the README keeps its two commands and links to pages that
exist, every code sample in README.md and docs/ compiles and imports only documented public names,
and the README's minimal DAG runs as written."""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_revox.testing import ALWAYS_OPEN_RETRY_CONFIG, SimulatorHandle
from tests.support.paths import ROOT
from tests.test_public_surface import PUBLIC_SURFACE

README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: Every Markdown page a reader sees: the README, the changelog and the documentation site.
PAGES = sorted([README, ROOT / "CHANGELOG.md", *(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)])
#: The region of the README that docs/getting-started.md includes.
MINIMAL_DAG = re.compile(r"<!-- minimal-dag -->\n(.*?)<!-- /minimal-dag -->", re.S)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _python_blocks(page: Path) -> list[str]:
    return PYTHON_BLOCK.findall(page.read_text())


def test_the_pages_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "CHANGELOG.md", "docs/index.md", "docs/guides/export-columns.md"} <= names
    assert sum(len(_python_blocks(p)) for p in PAGES) >= 10


def test_the_guides_say_what_a_newcomer_trips_on() -> None:
    connect = (DOCS / "guides" / "connect.md").read_text()
    # The Test button and `airflow connections test` need the setting turned on.
    assert "`[core] test_connection`" in connect and "AIRFLOW__CORE__TEST_CONNECTION=Enabled" in connect
    # "Redacted" is about credentials: say that personal data is not masked.
    export = (DOCS / "guides" / "export.md").read_text()
    assert 'What "redacted" covers: credentials' in export and "It does not cover personal data" in export
    campaigns = (DOCS / "guides" / "campaigns.md").read_text()
    assert "phone numbers and other personal data are kept as given" in campaigns


def test_the_testing_guide_shows_the_plugin_example_the_suite_runs() -> None:
    # tests/simulator/test_plugin.py runs the plugin docstring's example on a fresh AIRFLOW_HOME.
    from airflow_provider_revox.testing import pytest_plugin

    assert pytest_plugin.__doc__ is not None
    documented = [
        textwrap.dedent(block)
        for block in re.findall(r"::\n\n((?:    .*\n|\n)+)", pytest_plugin.__doc__)
        if "import" in block
    ]
    guide = _python_blocks(DOCS / "guides" / "testing.md")
    assert len(documented) == 2
    for block in documented:
        assert block.strip() in [shown.strip() for shown in guide]


def test_readme_keeps_the_two_commands_a_newcomer_runs() -> None:
    text = README.read_text()
    assert "make demo" in text
    assert "make test" in text
    assert "make docs" in text


def test_readme_links_to_every_guide_and_every_link_resolves() -> None:
    targets = [t for t in LINK.findall(README.read_text()) if "://" not in t]
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).is_file()]
    assert missing == []
    guides = {p.relative_to(ROOT).as_posix() for p in (DOCS / "guides").glob("*.md")}
    assert guides, "no guide found"
    assert guides <= set(targets)
    assert {"docs/getting-started.md", "docs/reference/index.md", "CHANGELOG.md"} <= set(targets)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_code_samples_compile_and_import_only_public_names(page: Path) -> None:
    for block in _python_blocks(page):
        tree = ast.parse(block, filename=str(page))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
                assert not [m for m in modules if m.startswith("airflow_provider_revox")], (page, modules)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow_provider_revox"):
                assert node.module in PUBLIC_SURFACE, f"{page.name}: {node.module} is not a public module"
                exported = importlib.import_module(node.module).__all__
                names = [alias.name for alias in node.names]
                assert set(names) <= set(exported), f"{page.name}: {names} from {node.module}"


def test_the_readme_minimal_dag_runs_as_written(
    fast_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    region = MINIMAL_DAG.search(README.read_text())
    assert region is not None, "README.md lost the minimal-dag markers docs/getting-started.md includes"
    (source,) = PYTHON_BLOCK.findall(region.group(1))
    assistant = {"id": "asst_readme", "call_retry_config": ALWAYS_OPEN_RETRY_CONFIG}
    call_id = fast_simulator.place_call(phone_number="+33612345678", assistant=assistant)["id"]

    dag_run = run_dag(source, "revox_call_results", conf={"call_id": call_id})

    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert {k: ti.state for k, ti in tis.items()} == {"wait_for_call": "success", "call_results": "success"}
    summary = tis["call_results"].xcom_pull(task_ids="call_results")
    assert summary["call_id"] == call_id
    assert summary["status"] == fast_simulator.get_call(call_id)["status"] == "completed"
