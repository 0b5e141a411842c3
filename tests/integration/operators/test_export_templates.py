"""Templated ``search=`` and call-id inputs: rendered, then checked before any request; the same id
shapes accepted by the export and results operators and both sensors. Through a real Airflow
(``dag.test()``) and real HTTP against the simulator."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_revox._internal.export.search import rendered_search
from airflow_provider_revox._internal.waiting.ids import batch_call_ids, normalize_call_ids, one_call_id
from airflow_provider_revox.exceptions import RevoxConfigError, RevoxInvalidCallIdError
from airflow_provider_revox.operators.revox import RevoxCallResultsOperator, RevoxCallsToStorageOperator
from airflow_provider_revox.sensors.revox import RevoxCallSensor, RevoxCallsSensor
from tests.integration.operators.test_export_search import campaign, endpoint_counts
from tests.integration.operators.test_results_and_export import (  # noqa: F401
    GOOD_OUTPUT,
    finished,
    task_logs,
    task_state,
    xcoms,
)
from tests.unit.export.test_staging import only_load

NATIVE = "render_template_as_native_obj=True"


def dag_file(dag_id: str, body: str, *, native: bool = False) -> str:
    head = f"""
        from datetime import datetime
        from airflow.sdk import DAG, task
        from airflow_provider_revox.operators.revox import (
            RevoxCallResultsOperator,
            RevoxCallsToStorageOperator,
        )
        from airflow_provider_revox.sensors.revox import RevoxCallSensor, RevoxCallsSensor

        with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2025, 1, 1),
                 render_template_as_native_obj={native!r}):
        """
    return textwrap.dedent(head) + textwrap.indent(textwrap.dedent(body), "    ")


# -- search= ---------------------------------------------------------------------------------


@pytest.mark.airflow
def test_a_search_templated_from_an_upstream_xcom_exports_that_campaign(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    wanted, wanted_ids = campaign(simulator, "Templated", 5)
    campaign(simulator, "Other", 2)
    simulator.finish()
    source = dag_file(
        "revox_templated_search",
        f"""
        @task
        def pick():
            return {{"campaign_id": {wanted!r}}}

        pick() >> RevoxCallsToStorageOperator(
            task_id="export",
            search={{"campaign_ids": ["{{{{ ti.xcom_pull(task_ids='pick')['campaign_id'] }}}}"]}},
            destination={str(tmp_path)!r},
        )
        """,
    )
    dag_run = run_dag(source, "revox_templated_search")
    assert task_state(dag_run, "export") == "success"
    assert xcoms(dag_run, "export")["return_value"]["calls"] == 5  # was 0: the raw text was the filter
    assert sorted(p.stem for p in (only_load(tmp_path) / "calls").iterdir()) == sorted(wanted_ids)


@pytest.mark.airflow
def test_a_search_value_still_holding_a_template_fails_before_any_request(
    simulator: Any,
    run_dag: Callable[..., Any],
    tmp_path: Path,
    task_logs: Callable[[], str],  # noqa: F811
) -> None:
    campaign(simulator, "Any", 2)
    simulator.finish()
    simulator.reset_stats()
    source = dag_file(
        "revox_unrendered_search",
        f"""
        RevoxCallsToStorageOperator(
            task_id="export",
            search={{"campaign_ids": ["{{% raw %}}{{{{ campaign }}}}{{% endraw %}}"]}},
            destination={str(tmp_path)!r},
        )
        """,
    )
    task_logs()
    dag_run = run_dag(source, "revox_unrendered_search")
    assert task_state(dag_run, "export") == "failed"
    assert endpoint_counts(simulator) == {"search": 0, "get": 0}
    assert not (tmp_path / "_SUCCESS").exists()
    assert "search.campaign_ids[0] still holds a template after rendering" in task_logs()


def test_rendered_search_names_the_template_and_hints_at_a_list_rendered_to_text() -> None:
    with pytest.raises(RevoxConfigError, match=r"search\.query still holds a template"):
        rendered_search({"query": "{{ params.q }}"})
    with pytest.raises(RevoxConfigError, match=NATIVE):
        rendered_search({"campaign_ids": "['c1', 'c2']"})
    assert rendered_search({"campaign_ids": ["c1"]}).campaign_ids == ("c1",)  # type: ignore[union-attr]
    # Parse time: plain filters checked as before, templated ones by name only.
    with pytest.raises(RevoxConfigError, match="unknown filter"):
        RevoxCallsToStorageOperator(task_id="t", search={"campaign": ["{{ x }}"]}, destination="/tmp/x")
    op = RevoxCallsToStorageOperator(task_id="t", search={"campaign_ids": ["{{ x }}"]}, destination="/tmp/x")
    assert "search" in op.template_fields and op.search == {"campaign_ids": ["{{ x }}"]}


# -- call ids ----------------------------------------------------------------------------------


def test_one_id_and_many_ids_take_the_same_shapes() -> None:
    summary = {"call_id": "c1", "status": "completed"}
    for value in ("c1", summary, ["c1"], [summary]):
        assert one_call_id(value) == "c1"
        assert normalize_call_ids(value) == ["c1"]
        assert batch_call_ids(value) == ["c1"]
    with pytest.raises(RevoxInvalidCallIdError, match="exactly one"):
        one_call_id(["c1", "c2"])
    for text in ("['c1', 'c2']", '["c1"]', "{'call_id': 'c1'}"):
        for read in (one_call_id, normalize_call_ids, batch_call_ids):
            with pytest.raises(ValueError, match=NATIVE):
                read(text)
    # Literal inputs are checked when the DAG is parsed, with the same hint.
    with pytest.raises(ValueError, match=NATIVE):
        RevoxCallSensor(task_id="s", call_id="['c1']")
    with pytest.raises(ValueError, match=NATIVE):
        RevoxCallsSensor(task_id="b", call_ids="['c1', 'c2']")
    with pytest.raises(ValueError, match=NATIVE):
        RevoxCallResultsOperator(task_id="r", call_id="['c1']")
    with pytest.raises(ValueError, match=NATIVE):
        RevoxCallsToStorageOperator(task_id="e", call_ids="['c1', 'c2']", destination="/tmp/x")
    assert RevoxCallSensor(task_id="s2", call_id=summary).call_id == summary  # read once rendered


@pytest.mark.airflow
def test_every_id_input_takes_a_summary_an_id_or_an_xcomarg(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    call_id = finished(simulator, GOOD_OUTPUT)
    source = dag_file(
        "revox_id_shapes",
        f"""
        @task
        def placed():
            return {{"call_id": {call_id!r}, "status": "completed"}}

        @task
        def one_id():
            return {call_id!r}

        summary, plain = placed(), one_id()
        RevoxCallSensor(task_id="wait", call_id=summary, poke_interval=5)
        RevoxCallResultsOperator(task_id="results", call_id=summary)
        RevoxCallsSensor(task_id="wait_all", call_ids=plain, poke_interval=5)
        plain >> RevoxCallsSensor(task_id="wait_text", call_ids="{{{{ ti.xcom_pull(task_ids='one_id') }}}}")
        RevoxCallsToStorageOperator(task_id="export", call_ids=summary, destination={str(tmp_path)!r})
        """,
    )
    dag_run = run_dag(source, "revox_id_shapes")
    states = {
        name: task_state(dag_run, name) for name in ("wait", "results", "wait_all", "wait_text", "export")
    }
    assert states == dict.fromkeys(states, "success")
    assert xcoms(dag_run, "wait")["return_value"]["call_id"] == call_id
    assert xcoms(dag_run, "results")["return_value"]["call_id"] == call_id
    assert (only_load(tmp_path) / "calls" / f"{call_id}.json").is_file()


@pytest.mark.airflow
def test_a_list_rendered_to_text_fails_with_how_to_pass_the_list(
    simulator: Any,
    run_dag: Callable[..., Any],
    tmp_path: Path,
    task_logs: Callable[[], str],  # noqa: F811
) -> None:
    first, second = finished(simulator, GOOD_OUTPUT), finished(simulator, GOOD_OUTPUT)
    source = dag_file(
        "revox_ids_as_text",
        f"""
        @task
        def ids():
            return [{first!r}, {second!r}]

        ids() >> RevoxCallsSensor(task_id="wait_all", call_ids="{{{{ ti.xcom_pull(task_ids='ids') }}}}")
        """,
    )
    task_logs()
    dag_run = run_dag(source, "revox_ids_as_text")
    assert task_state(dag_run, "wait_all") == "failed"
    logged = task_logs()
    assert "the string form of a list or mapping" in logged and NATIVE in logged
    # With native rendering the same DAG waits on both orders.
    native = dag_file(
        "revox_ids_native",
        f"""
        @task
        def ids():
            return [{first!r}, {second!r}]

        ids() >> RevoxCallsSensor(task_id="wait_all", call_ids="{{{{ ti.xcom_pull(task_ids='ids') }}}}")
        """,
        native=True,
    )
    assert task_state(run_dag(native, "revox_ids_native"), "wait_all") == "success"
