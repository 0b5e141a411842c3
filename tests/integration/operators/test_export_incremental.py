"""Incremental exports: each call that ended is exported once across runs, reruns and failures;
the watermark lives in the asset state store. Pure cursor rules first, then real Airflow runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_revox._internal.waiting.cursor import Watermark, takes
from airflow_provider_revox.export import read_loads
from airflow_provider_revox.testing import running_simulator
from tests.integration.operators.test_export import failing_store
from tests.integration.operators.test_results_and_export import (
    GOOD_OUTPUT,
    export_dag,
    place,
    task_logs,
    task_state,
    xcoms,
)
from tests.support.versions import needs_asset_state_store
from tests.unit.export.test_staging import FailingMemoryFileSystem, load_folders, reader_view

__all__ = ["failing_store", "task_logs"]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


# -- the cursor (pure) -------------------------------------------------------------------------


def test_an_empty_watermark_takes_every_ended_call_up_to_the_head() -> None:
    empty = Watermark()
    assert takes(empty, T0, "a", T0 - timedelta(days=30))
    assert not takes(empty, T0, "b", None)  # not terminal
    assert not takes(empty, T0, "c", T0 + timedelta(seconds=1))  # ended while the read ran: next time
    assert not empty.is_past(T0)


def test_ties_at_the_watermark_are_neither_taken_twice_nor_missed() -> None:
    mark = Watermark().advance([("a", T0 - timedelta(seconds=5)), ("b", T0), ("c", T0)])
    assert mark == Watermark(T0, frozenset({"b", "c"}))
    assert not mark.is_new("b", T0) and not mark.is_new("c", T0)
    assert mark.is_new("d", T0)  # ended at the same instant, not seen last time
    assert not mark.is_new("a", T0 - timedelta(seconds=5))
    assert mark.advance([("d", T0)]).ids_at == {"b", "c", "d"}
    later = mark.advance([("e", T0 + timedelta(microseconds=1))])
    assert later == Watermark(T0 + timedelta(microseconds=1), frozenset({"e"}))
    assert mark.is_past(T0 - timedelta(seconds=1)) and not mark.is_past(T0)


def test_the_watermark_round_trips_through_the_store_and_refuses_foreign_values() -> None:
    mark = Watermark(T0, frozenset({"x", "y"}))
    assert Watermark.from_state(json.loads(json.dumps(mark.to_state()))) == mark
    assert Watermark.from_state(None) == Watermark()
    naive = Watermark.from_state({"ended_at": "2026-03-02T09:00:00", "ids_at": []})
    assert naive.ended_at == T0
    for bad in ("2026", {"ended_at": 5}, {"ended_at": None, "ids_at": "x"}):
        with pytest.raises(ValueError, match="stored watermark"):
            Watermark.from_state(bad)


# -- through Airflow -----------------------------------------------------------------------------


def incremental_source(dag_id: str, destination: str) -> str:
    return export_dag(
        dag_id,
        search={"assistant_ids": ["asst_planted"]},
        incremental=True,
        destination=destination,
        tables=["calls", "attempts"],
    )


def exported(destination: Path) -> list[list[str]]:
    """The call ids of each load under ``destination``, oldest load first."""
    return [
        sorted(json.loads(line)["call_id"] for line in (load / "calls.jsonl").read_text().splitlines())
        for load in load_folders(destination)
    ]


def searches(simulator: Any) -> int:
    return int(simulator.stats()["by_endpoint"].get("POST /call/search", 0))


@pytest.fixture
def refusing_simulator(monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> Iterator[Any]:
    """A simulator that answers 422 to a sorted search, as ``revox_default``."""
    with running_simulator(refuse_sort=True) as simulator:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", simulator.connection_json())
        yield simulator


def run_three_rounds(
    simulator: Any, run_dag: Callable[..., Any], destination: Path, dag_id: str
) -> list[Any]:
    """Three calls end, export; two more end (one still running), export; nothing ends, export."""
    first = [place(simulator, GOOD_OUTPUT) for _ in range(3)]
    simulator.finish(*first)
    run1 = run_dag(incremental_source(dag_id, str(destination)), dag_id)
    assert task_state(run1, "export") == "success"
    assert exported(destination) == [sorted(first)]

    second = [place(simulator, GOOD_OUTPUT) for _ in range(2)]
    simulator.finish(*second)
    running = place(simulator, GOOD_OUTPUT)  # placed, not ended: not exported yet
    run2 = run_dag(incremental_source(dag_id, str(destination)), dag_id)
    assert task_state(run2, "export") == "success"
    # Appended: the first run's load is still there beside the second's.
    assert exported(destination) == [sorted(first), sorted(second)]

    before = searches(simulator)
    run3 = run_dag(incremental_source(dag_id, str(destination)), dag_id)
    assert task_state(run3, "export") == "success"
    assert exported(destination) == [sorted(first), sorted(second)]  # no calls: no load, nothing removed
    assert xcoms(run3, "export")["return_value"]["calls"] == 0
    assert xcoms(run3, "export")["return_value"]["load"] is None

    simulator.finish(running)
    run4 = run_dag(incremental_source(dag_id, str(destination)), dag_id)
    assert exported(destination) == [sorted(first), sorted(second), [running]]
    return [run1, run2, run3, run4, searches(simulator) - before]


@pytest.mark.airflow
@needs_asset_state_store
def test_each_ended_call_is_exported_once_across_runs_reading_only_the_new_page(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    runs = run_three_rounds(simulator, run_dag, tmp_path / "out", "revox_incremental")
    assert runs[-1] == 2  # one sorted page per later run: paging stops at the watermark
    result = xcoms(runs[1], "export")["return_value"]
    assert result["calls"] == 2 and result["sorted"] is True
    assert result["watermark"] is not None


@pytest.mark.airflow
@needs_asset_state_store
def test_an_api_that_refuses_the_sort_gets_a_full_scan_with_the_same_result_and_one_warning(
    refusing_simulator: Any, run_dag: Callable[..., Any], tmp_path: Path, task_logs: Callable[[], str]
) -> None:
    task_logs()
    runs = run_three_rounds(refusing_simulator, run_dag, tmp_path / "out", "revox_incremental_unsorted")
    assert xcoms(runs[1], "export")["return_value"]["sorted"] is False
    assert task_logs().count("refused to sort the search (HTTP 422)") == 4  # one per run


@pytest.mark.airflow
@needs_asset_state_store
def test_a_failed_publish_advances_nothing_and_the_rerun_exports_the_same_calls(
    simulator: Any, run_dag: Callable[..., Any], failing_store: FailingMemoryFileSystem
) -> None:
    destination = "memory://bucket/incremental"
    first = [place(simulator, GOOD_OUTPUT) for _ in range(2)]
    simulator.finish(*first)
    ok = run_dag(incremental_source("revox_incremental_fail", destination), "revox_incremental_fail")
    assert task_state(ok, "export") == "success"

    second = [place(simulator, GOOD_OUTPUT) for _ in range(2)]
    simulator.finish(*second)
    FailingMemoryFileSystem.puts = 0
    FailingMemoryFileSystem.fail_on = 2
    failed = run_dag(incremental_source("revox_incremental_fail", destination), "revox_incremental_fail")
    assert task_state(failed, "export") == "failed"

    FailingMemoryFileSystem.fail_on = None
    again = run_dag(incremental_source("revox_incremental_fail", destination), "revox_incremental_fail")
    assert task_state(again, "export") == "success"
    base = ObjectStoragePath(destination)
    loads = read_loads(base)
    assert [entry["run_id"] for entry in loads] == [ok.run_id, again.run_id]  # nothing of the failed run
    views = [reader_view(base / entry["folder"]) for entry in loads]
    rows = [sorted(json.loads(line)["call_id"] for line in v["calls.jsonl"].splitlines()) for v in views if v]
    assert rows == [sorted(first), sorted(second)]  # the failed run's calls, once, in the rerun's load


def test_incremental_needs_a_fixed_destination(tmp_path: Path) -> None:
    from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator

    with pytest.raises(ValueError, match="fixed destination"):
        RevoxCallsToStorageOperator(
            task_id="t", search={}, incremental=True, destination=str(tmp_path) + "/{{ ds }}"
        )


def test_incremental_on_an_airflow_without_an_asset_state_store_says_so(
    without_asset_state_store: None, tmp_path: Path
) -> None:
    from airflow_provider_revox._internal.core import compat
    from airflow_provider_revox.exceptions import RevoxConfigError
    from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator

    expected = (
        "incremental=True keeps its watermark in the asset state store, which needs Airflow 3.3 or later "
        f"(this is Airflow {compat.airflow_version()}); export by search without incremental"
    )
    with pytest.raises(RevoxConfigError) as caught:
        RevoxCallsToStorageOperator(task_id="t", search={}, incremental=True, destination=str(tmp_path))
    assert str(caught.value) == expected
    RevoxCallsToStorageOperator(task_id="t", search={}, destination=str(tmp_path))  # without: fine


@pytest.mark.airflow
def test_an_incremental_dag_on_an_airflow_without_an_asset_state_store_fails_to_parse(
    simulator: Any, airflow_db: Path, without_asset_state_store: None, tmp_path: Path
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    path = tmp_path / "revox_incremental_old_airflow.py"
    path.write_text(incremental_source("revox_incremental_old_airflow", str(tmp_path / "out")))
    bag = DagBag(str(path))
    (error,) = bag.import_errors.values()
    assert "RevoxConfigError: incremental=True keeps its watermark in the asset state store" in error
    assert bag.get_dag("revox_incremental_old_airflow") is None
    assert simulator.stats()["requests_total"] == 0  # refused before any request


@pytest.mark.airflow
@needs_asset_state_store
def test_a_run_killed_after_publishing_before_storing_its_mark_is_not_exported_again(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_revox._internal.operators import export as export_module

    destination = tmp_path / "incremental"
    dag_id = "revox_incremental_killed_mark"
    first = [place(simulator, GOOD_OUTPUT) for _ in range(3)]
    simulator.finish(*first)
    real_state = export_module.asset_state

    class KilledBeforeTheMark:
        """The store as a run sees it when it dies between publishing its load and storing its mark."""

        def __init__(self, store: Any) -> None:
            self.store = store

        def get(self, key: str) -> Any:
            return self.store.get(key)

        def set(self, key: str, value: Any) -> None:
            raise RuntimeError("killed before the watermark was stored")

    monkeypatch.setattr(export_module, "asset_state", lambda *a: KilledBeforeTheMark(real_state(*a)))
    killed = run_dag(incremental_source(dag_id, str(destination)), dag_id)
    assert task_state(killed, "export") == "failed"
    assert exported(destination) == [sorted(first)]  # its load was published whole

    monkeypatch.setattr(export_module, "asset_state", real_state)
    second = [place(simulator, GOOD_OUTPUT) for _ in range(2)]
    simulator.finish(*second)
    again = run_dag(incremental_source(dag_id, str(destination)), dag_id)
    assert task_state(again, "export") == "success"
    # The next run starts from the mark the published load carries: the first calls once only.
    assert exported(destination) == [sorted(first), sorted(second)]


@pytest.mark.airflow
@needs_asset_state_store
def test_a_search_that_repeats_pages_loses_no_order_and_lands_none_twice_across_runs(
    simulator: Any,
    run_dag: Callable[..., Any],
    tmp_path: Path,
    task_logs: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_revox._internal.export import search

    # Pages of 100: a few hundred orders span pages, and a repeated page hides a whole one.
    monkeypatch.setattr(search, "INCREMENTAL_PAGE_SIZE", 100)
    destination = tmp_path / "out"
    dag_id = "revox_incremental_repeated_page"

    def ended(count: int) -> list[str]:
        """``count`` orders ending 50 at a time, each fifty later than the last: a page the read
        misses holds orders older than the ones it read, which a watermark moved past would lose."""
        ids = []
        for _ in range(0, count, 50):
            batch = [place(simulator, GOOD_OUTPUT) for _ in range(min(50, count - len(ids)))]
            simulator.finish(*batch)
            ids += batch
        return ids

    def run() -> Any:
        return run_dag(incremental_source(dag_id, str(destination)), dag_id)

    first = ended(2)
    assert task_state(run(), "export") == "success"

    # Page 1 answers page 0 once: the read goes on past it and reads again from the head.
    second = ended(250)
    simulator.faults.script("POST /call/search", ["ok", "repeat_page"])
    run2 = run()
    assert task_state(run2, "export") == "success"
    assert xcoms(run2, "export")["return_value"]["calls"] == 250

    # Every page answers page 0: the read cannot reach the watermark; the run fails, adds no
    # load and leaves the watermark where it was.
    third = ended(150)
    simulator.faults.set_rates("repeat_page=1")
    task_logs()
    run3 = run()
    assert task_state(run3, "export") == "failed"
    mark = xcoms(run2, "export")["return_value"]["watermark"]
    assert (
        "RevoxIncompleteReadError: Revox incremental search incomplete: read 100 distinct call(s) in 3 "
        f"pass(es) of POST /call/search: the results kept moving, or the pages never reached the "
        f"watermark; the watermark stays at {mark}"
    ) in task_logs()
    assert len(exported(destination)) == 2

    # The API pages again (but for one repeat); more orders ended meanwhile: the next run owes both.
    simulator.faults.clear()
    fourth = ended(50)
    simulator.faults.script("POST /call/search", ["ok", "repeat_page"])
    run4 = run()
    assert task_state(run4, "export") == "success"

    loads = exported(destination)
    assert loads == [sorted(first), sorted(second), sorted(third + fourth)]
    landed = [call_id for load in loads for call_id in load]
    assert len(landed) == len(set(landed)) == 452  # every order once: none lost, none twice
