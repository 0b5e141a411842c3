"""Export by search: filters checked up front, calls read by ``POST /call/search`` pages, ids by
searches of up to 100, through a real Airflow and real HTTP against the simulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_revox._internal.export.search import CallSearch, check_search
from airflow_provider_revox.exceptions import RevoxConfigError
from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator
from airflow_provider_revox.testing import ALWAYS_OPEN_RETRY_CONFIG
from tests.integration.operators.test_results_and_export import (
    GOOD_OUTPUT,
    dag_source,
    export_dag,
    finished,
    task_state,
    xcoms,
)
from tests.unit.export.test_staging import only_load


def campaign(simulator: Any, name: str, size: int, *, launch: bool = True) -> tuple[str, list[str]]:
    """A campaign of ``size`` contacts on the simulator, launched; returns its id and its orders' ids."""
    contacts = [
        {"to_phone_number": f"+336123{index:05d}", "prompt_variables": {"first_name": f"P{index}"}}
        for index in range(size)
    ]
    book = simulator.engine.campaigns
    campaign_id = book.create(
        name=name, assistant_id="asst_campaign", contacts=contacts, call_retry_config=ALWAYS_OPEN_RETRY_CONFIG
    )
    if launch:
        book.launch(campaign_id, mode="ai_first", selection=None)
    ids = [
        call_id
        for call_id in simulator.engine.call_ids()
        if (simulator.get_call(call_id).get("campaign") or {}).get("id") == campaign_id
    ]
    return campaign_id, ids


def endpoint_counts(simulator: Any) -> dict[str, int]:
    counts = simulator.stats()["by_endpoint"]
    return {
        "search": counts.get("POST /call/search", 0),
        "get": sum(n for name, n in counts.items() if name.startswith("GET /call/")),
    }


def search_source(dag_id: str, destination: str, search: Any, **options: Any) -> str:
    return export_dag(dag_id, search=search, destination=destination, **options)


@pytest.mark.airflow
def test_an_export_by_campaign_reads_one_search_page_and_exports_only_that_campaign(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    wanted, wanted_ids = campaign(simulator, "Spring", 7)
    _, other_ids = campaign(simulator, "Other", 3)
    simulator.finish()
    simulator.reset_stats()
    destination = str(tmp_path / "out")
    dag_run = run_dag(
        search_source("revox_by_campaign", destination, {"campaign_ids": [wanted]}), "revox_by_campaign"
    )
    assert task_state(dag_run, "export") == "success"
    assert endpoint_counts(simulator) == {"search": 1, "get": 0}  # seven calls, one request
    exported = sorted(p.stem for p in (only_load(tmp_path / "out") / "calls").iterdir())
    assert exported == sorted(wanted_ids) and not set(exported) & set(other_ids)
    result = xcoms(dag_run, "export")["return_value"]
    assert result["calls"] == 7 and result["rows"]["structured_output"] == 7


@pytest.mark.airflow
def test_a_typed_search_and_a_dict_export_the_same_calls(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    wanted, _ = campaign(simulator, "Typed", 4)
    campaign(simulator, "Else", 2)
    simulator.finish()
    typed_source = dag_source(
        "revox_typed_search",
        f"""
        from airflow_provider_revox.export import CallSearch

        RevoxCallsToStorageOperator(
            task_id="export",
            search=CallSearch(campaign_ids=({wanted!r},), statuses=("completed", "errored", "cancelled")),
            destination={str(tmp_path / "typed")!r},
        )
        """,
    )
    assert task_state(run_dag(typed_source, "revox_typed_search"), "export") == "success"
    plain = search_source(
        "revox_dict_search",
        str(tmp_path / "dict"),
        {"campaign_ids": [wanted], "statuses": ["completed", "errored", "cancelled"]},
    )
    assert task_state(run_dag(plain, "revox_dict_search"), "export") == "success"
    typed = sorted(p.name for p in (only_load(tmp_path / "typed") / "calls").iterdir())
    assert len(typed) == 4
    assert typed == sorted(p.name for p in (only_load(tmp_path / "dict") / "calls").iterdir())
    assert (only_load(tmp_path / "typed") / "transcripts.jsonl").read_text() == (
        only_load(tmp_path / "dict") / "transcripts.jsonl"
    ).read_text()


def test_an_export_of_150_ids_costs_two_searches_and_no_get(simulator: Any, tmp_path: Path) -> None:
    _, ids = campaign(simulator, "Big", 150)
    simulator.finish()
    simulator.reset_stats()
    ids = list(reversed(ids))
    export = RevoxCallsToStorageOperator(task_id="export", call_ids=ids, destination=str(tmp_path))
    result = export.execute(context={})  # type: ignore[arg-type]
    assert result["calls"] == 150
    assert endpoint_counts(simulator) == {"search": 2, "get": 0}
    rows = [
        json.loads(line)["call_id"]
        for line in (only_load(tmp_path) / "structured_output.jsonl").read_text().splitlines()
    ]
    assert rows == ids  # still in the order asked for


def test_an_id_the_search_does_not_return_is_asked_for_alone_and_named(
    simulator: Any, tmp_path: Path
) -> None:
    known = finished(simulator, GOOD_OUTPUT)
    simulator.reset_stats()
    export = RevoxCallsToStorageOperator(
        task_id="export",
        call_ids=[known, "call-nobody-placed"],
        destination=str(tmp_path),
        sleep=lambda s: None,
    )
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="'call-nobody-placed' could not be fetched"):
        export.execute(context={})  # type: ignore[arg-type]
    assert endpoint_counts(simulator) == {"search": 1, "get": 1}  # the GET only for the missing one
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no load, no table of loads, no staging


@pytest.mark.parametrize(
    ("search", "named"),
    [
        ({"campaign_id": ["c1"]}, "unknown filter(s) campaign_id"),
        ({"statuses": "completed"}, "statuses must be a list of strings"),
        ({"to_phone_number": "06 12"}, "to_phone_number"),
        ({"campaign_ids": ["ok", 3]}, "campaign_ids[1]"),
        (["campaign_ids"], "must be a CallSearch or a dict"),
    ],
)
def test_a_bad_search_is_refused_by_name_before_any_request(search: Any, named: str, tmp_path: Path) -> None:
    with pytest.raises(RevoxConfigError) as caught:
        RevoxCallsToStorageOperator(task_id="export", search=search, destination=str(tmp_path))
    assert named in str(caught.value)


def test_either_ids_or_a_search_and_incremental_needs_a_search(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either call_ids or search"):
        RevoxCallsToStorageOperator(task_id="a", call_ids=["x"], search={}, destination=str(tmp_path))
    with pytest.raises(ValueError, match="either call_ids or search"):
        RevoxCallsToStorageOperator(task_id="b", destination=str(tmp_path))
    with pytest.raises(ValueError, match="needs search"):
        RevoxCallsToStorageOperator(task_id="c", call_ids=["x"], incremental=True, destination=str(tmp_path))


def test_check_search_keeps_only_the_filters_given() -> None:
    checked = check_search({"campaign_ids": ["c1"], "query": "Ann", "outcomes": None})
    assert checked == CallSearch(campaign_ids=("c1",), query="Ann")
    assert checked.filters() == {"campaign_ids": ["c1"], "query": "Ann"}
    assert check_search(checked) == checked
