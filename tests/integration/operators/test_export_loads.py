"""Append-only loads: every export adds a folder under one base and a line to ``_loads.jsonl``.

What a folder-listing reader (DuckDB or pyarrow.dataset over ``<base>/load=*/``) and a reader of
the table of loads see after several runs, an empty run, a rerun of one DAG run, and a publish
that fails or is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_revox._internal.export import loads as loads_module
from airflow_provider_revox._internal.export.loads import LOADS_TABLE, Load, LoadStaging
from airflow_provider_revox._internal.export.staging import STAGING_DIR
from airflow_provider_revox.export import read_loads
from tests.integration.operators.test_results_and_export import (
    GOOD_OUTPUT,
    export_dag,
    place,
    task_state,
    xcoms,
)
from tests.unit.export.test_staging import load_folders, local_tree, reader_view

pa = pytest.importorskip("pyarrow")
ds = pytest.importorskip("pyarrow.dataset")
duckdb = pytest.importorskip("duckdb")


def part(folder: Path) -> str:
    """The ``load`` column's value for the rows of a load folder: its name without ``load=``."""
    return folder.name.split("=", 1)[1]


def listed_rows(base: Path, table: str = "calls") -> list[tuple[str, str]]:
    """(load, call_id) of every row a folder-listing reader finds: pyarrow.dataset over ``load=*/``."""
    files = sorted(str(path) for path in base.glob(f"load=*/{table}.parquet"))
    if not files:
        return []
    found = ds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(base))
    rows = found.to_table(columns=["load", "call_id"]).to_pylist()
    return sorted((row["load"], row["call_id"]) for row in rows)


def duckdb_rows(base: Path) -> list[tuple[str, str]]:
    """The same rows as DuckDB reads them: a glob over the load folders, the load as a column."""
    query = f"SELECT load, call_id FROM read_parquet('{base}/load=*/calls.parquet', hive_partitioning = true)"
    return sorted(duckdb.sql(query).fetchall())


# -- names ------------------------------------------------------------------------------------------


def test_a_load_is_named_by_its_dag_run_safely_and_two_dags_with_one_run_id_stay_apart() -> None:
    run_id = "manual__2026-03-02T09:00:00+00:00"
    load = Load("campaign_export", "export", run_id)
    assert load.name.startswith("load=manual__2026-03-02T09_00_00_00_00-")
    assert load.name == Load("campaign_export", "export", run_id).name  # a retry: the same load
    others = {
        Load("other_dag", "export", run_id).name,
        Load("campaign_export", "export_2", run_id).name,
        Load("campaign_export", "export", run_id, map_index=3).name,
    }
    assert len(others | {load.name}) == 4
    odd = Load("d", "t", "../../etc/passwd\n?x=1").name
    assert "/" not in odd and "\n" not in odd and odd.startswith("load=etc_passwd_x_1-")


# -- through Airflow --------------------------------------------------------------------------------


def by_ids(dag_id: str, ids: list[str], base: Path) -> str:
    return export_dag(dag_id, call_ids=ids, destination=str(base), file_format="parquet", tables=["calls"])


@pytest.mark.airflow
def test_every_export_adds_a_load_an_empty_one_nothing_and_a_rerun_replaces_only_its_own(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    base = tmp_path / "lake"
    a1, a2, b1, b2 = (place(simulator, GOOD_OUTPUT) for _ in range(4))
    simulator.finish(a1, a2, b1, b2)

    first = run_dag(by_ids("revox_loads_a", [a1, a2], base), "revox_loads_a")
    assert task_state(first, "export") == "success"
    (load_a,) = load_folders(base)
    files_a = local_tree(load_a)

    at = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    second = run_dag(by_ids("revox_loads_b", [b1], base), "revox_loads_b", logical_date=at)
    assert task_state(second, "export") == "success"
    _, load_b = load_folders(base)
    assert listed_rows(base) == sorted([(part(load_a), a1), (part(load_a), a2), (part(load_b), b1)])

    # A search that matches nothing: no load, and nothing of the earlier ones goes.
    empty_source = export_dag(
        "revox_loads_empty",
        search={"assistant_ids": ["asst_nobody"]},
        destination=str(base),
        file_format="parquet",
        tables=["calls"],
    )
    empty = run_dag(empty_source, "revox_loads_empty")
    assert task_state(empty, "export") == "success"
    assert xcoms(empty, "export")["return_value"]["load"] is None
    assert load_folders(base) == [load_a, load_b]
    table_before = (base / LOADS_TABLE).read_bytes()

    # The second DAG run again (a rerun), now with two calls: its load is replaced, not added.
    again = run_dag(by_ids("revox_loads_b", [b1, b2], base), "revox_loads_b", logical_date=at)
    assert task_state(again, "export") == "success" and again.run_id == second.run_id
    assert load_folders(base) == [load_a, load_b]
    expected = sorted([(part(load_a), a1), (part(load_a), a2), (part(load_b), b1), (part(load_b), b2)])
    assert listed_rows(base) == expected
    assert duckdb_rows(base) == expected
    assert local_tree(load_a) == files_a

    # The table of loads: one line per load, the rerun's with its new manifest.
    entries = read_loads(ObjectStoragePath(str(base)))
    assert [(e["folder"], e["run_id"], e["calls"]) for e in entries] == [
        (load_a.name, first.run_id, 2),
        (load_b.name, second.run_id, 2),
    ]
    assert entries[1]["rows"] == {"calls": 2}
    assert (base / LOADS_TABLE).read_bytes() != table_before
    assert [e["load"] for e in entries] == [part(load_a), part(load_b)]  # the column readers get
    for entry in entries:
        assert (base / entry["folder"] / "_SUCCESS").read_text().strip() == entry["manifest_sha256"]
    assert not (base / STAGING_DIR).exists()


@pytest.mark.airflow
def test_a_publish_that_fails_leaves_the_earlier_loads_and_shows_no_part_of_its_own(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "lake"
    kept_id, lost_id = place(simulator, GOOD_OUTPUT), place(simulator, GOOD_OUTPUT)
    simulator.finish(kept_id, lost_id)
    ok = run_dag(by_ids("revox_loads_kept", [kept_id], base), "revox_loads_kept")
    assert task_state(ok, "export") == "success"
    (kept,) = load_folders(base)
    before = local_tree(base)

    real_replace = os.replace

    def broken_rename(source: Any, target: Any) -> None:
        if Path(source).name == "tree":  # the whole load, about to become visible
            raise OSError("the disk went away")
        real_replace(source, target)

    monkeypatch.setattr(loads_module.os, "replace", broken_rename)
    failed = run_dag(by_ids("revox_loads_lost", [lost_id], base), "revox_loads_lost")
    assert task_state(failed, "export") == "failed"
    assert local_tree(base) == before  # not a file more: the failed load's staging is gone too
    assert listed_rows(base) == [(part(kept), kept_id)]
    assert [e["folder"] for e in read_loads(ObjectStoragePath(str(base)))] == [kept.name]


KILLED_PUBLISH = textwrap.dedent(
    """
    import os, signal, sys
    from airflow.sdk import ObjectStoragePath
    from airflow_provider_revox._internal.export import loads
    from airflow_provider_revox._internal.export.loads import Load, LoadStaging

    real_replace = os.replace

    def killed(source, target):
        if os.path.basename(source) == "tree":
            os.kill(os.getpid(), signal.SIGKILL)  # dies right before the load becomes visible
        real_replace(source, target)

    loads.os.replace = killed
    staging = LoadStaging(ObjectStoragePath(sys.argv[1]), Load("d", "t", "killed"))
    staging.stage("calls.jsonl").write_text('{"call_id": "lost"}\\n')
    staging.stage("calls/lost.json").write_text("{}")
    staging.commit()
    """
)


def test_a_publish_killed_before_the_rename_leaves_only_hidden_staging_that_the_next_run_sweeps(
    tmp_path: Path,
) -> None:
    base = ObjectStoragePath(str(tmp_path))
    with LoadStaging(base, Load("d", "t", "earlier")) as staging:
        staging.stage("calls.jsonl").write_text('{"call_id": "kept"}\n')
        staging.commit()
    (earlier,) = load_folders(tmp_path)
    before = local_tree(tmp_path)

    died = subprocess.run([sys.executable, "-c", KILLED_PUBLISH, str(tmp_path)], check=False)
    assert died.returncode == -signal.SIGKILL
    visible = {path: data for path, data in local_tree(tmp_path).items() if not path.startswith(".")}
    assert visible == before  # the dead run's files are all under .revox-staging/
    assert any((tmp_path / STAGING_DIR).rglob("calls.jsonl"))
    assert [e["folder"] for e in read_loads(base)] == [earlier.name]

    with LoadStaging(base, Load("d", "t", "next")) as staging:  # sweeps the dead run's staging
        staging.stage("calls.jsonl").write_text('{"call_id": "next"}\n')
        staging.commit()
    assert [p.name for p in load_folders(tmp_path)] == [earlier.name, Load("d", "t", "next").name]
    assert not (tmp_path / STAGING_DIR).exists()
    view = reader_view(ObjectStoragePath(str(tmp_path / earlier.name)))
    assert view == {"calls.jsonl": b'{"call_id": "kept"}\n'}


def test_read_loads_adds_a_complete_folder_the_table_lost_and_drops_a_listed_folder_that_is_gone(
    tmp_path: Path,
) -> None:
    base = ObjectStoragePath(str(tmp_path))
    for run in ("one", "two", "three"):
        with LoadStaging(base, Load("d", "t", run)) as staging:
            staging.stage("calls.jsonl").write_text(json.dumps({"call_id": run}) + "\n")
            staging.commit()
    one, two, three = (Load("d", "t", run).name for run in ("one", "two", "three"))
    table = tmp_path / LOADS_TABLE
    lines = table.read_text().splitlines()
    table.write_text(lines[0] + "\n" + lines[2] + "\n")  # two publishes raced: "two" lost its line
    (tmp_path / three / "_SUCCESS").unlink()  # and "three" is being replaced right now
    assert [e["folder"] for e in read_loads(base)] == [one, two]


@pytest.mark.airflow
def test_a_retry_after_its_load_was_published_replaces_that_load_instead_of_adding_one(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "lake"
    call_id = place(simulator, GOOD_OUTPUT)
    simulator.finish(call_id)
    real_list = LoadStaging._list
    tries: list[str] = []

    def list_fails_once(self: LoadStaging, manifest: Any, *more: Any) -> None:
        tries.append(self.load.name)
        if len(tries) == 1:  # the folder is in place; the task dies before it is listed
            raise OSError("the worker went away")
        real_list(self, manifest, *more)

    monkeypatch.setattr(LoadStaging, "_list", list_fails_once)
    source = export_dag(
        "revox_loads_retry",
        call_ids=[call_id],
        destination=str(base),
        file_format="parquet",
        tables=["calls"],
        retries=1,
        retry_delay=0,
    )
    dag_run = run_dag(source, "revox_loads_retry")
    assert task_state(dag_run, "export") == "success"
    assert len(tries) == 2 and tries[0] == tries[1]  # two tries, one load
    (load,) = load_folders(base)
    assert listed_rows(base) == [(part(load), call_id)]
    (entry,) = read_loads(ObjectStoragePath(str(base)))
    assert entry["run_id"] == dag_run.run_id and entry["calls"] == 1
