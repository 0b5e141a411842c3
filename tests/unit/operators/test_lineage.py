"""OpenLineage: what the export and results operators report, extracted as the provider's listener does."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from airflow.sdk._shared.listeners import hookimpl

from airflow_provider_revox._internal.export.tables import TRANSCRIPT_SCHEMA, Column
from airflow_provider_revox._internal.operators.lineage import (
    Lineage,
    LineageDataset,
    calls_read,
    export_lineage,
    file_dataset,
    openlineage_facets,
    revox_namespace,
)
from tests.integration.operators.test_export import export_source
from tests.integration.operators.test_results_and_export import (
    GOOD_OUTPUT,
    dag_source,
    finished,
    place,
    task_state,
)
from tests.unit.export.test_staging import only_load

TRANSCRIPT_FIELDS = [
    ("call_id", "string"),
    ("attempt_id", "string"),
    ("attempt_started_at", "timestamp"),
    ("turn_index", "integer"),
    ("role", "string"),
    ("content", "string"),
    ("tool_name", "string"),
    ("tool_arguments", "string"),
    ("tool_is_error", "boolean"),
]
# The fixed columns, then the planted assistant's fields (FIELDS of the results and export tests), typed.
STRUCTURED_OUTPUT_FIELDS = [
    ("call_id", "string"),
    ("status", "string"),
    ("outcome", "string"),
    ("ended_at", "timestamp"),
    ("confirmed", "boolean"),
    ("contact_name", "string"),
    ("party_size", "number"),
    ("interest_level", "string"),
    ("new_date", "date"),
    ("callback_at", "timestamp"),
    ("validation_errors", "array<string>"),
]


class LineageCapture:
    """A task listener that extracts lineage on success exactly as the OpenLineage listener does.

    The provider's own listener only runs with a transport configured; this one keeps what the
    provider's ``ExtractorManager`` returns, per task id, plus the task and its task instance.
    """

    def __init__(self) -> None:
        self.extract = True
        self.extracted: dict[str, Any] = {}
        self.ran: dict[str, tuple[Any, Any]] = {}

    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        self.ran[task_instance.task_id] = (task_instance.task, task_instance)
        if not self.extract:
            return
        from airflow.providers.openlineage.extractors.manager import ExtractorManager
        from airflow.providers.openlineage.utils.utils import get_dag_run_dag_and_task_from_ti
        from airflow.utils.state import TaskInstanceState

        dagrun, _, task = get_dag_run_dag_and_task_from_ti(task_instance)
        self.extracted[task.task_id] = ExtractorManager().extract_metadata(
            dagrun=dagrun,
            task=task,
            task_instance_state=TaskInstanceState.SUCCESS,
            task_instance=task_instance,
        )


@pytest.fixture
def lineage_capture() -> Iterator[LineageCapture]:
    from airflow.sdk.listener import get_listener_manager

    capture = LineageCapture()
    manager = get_listener_manager()
    manager.add_listener(capture)
    yield capture
    manager.pm.unregister(capture)


def digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(set(ids))).encode()).hexdigest()[:16]


def revox_ns(simulator: Any) -> str:
    parts = urlsplit(simulator.base_url)
    return f"revox://{parts.hostname}:{parts.port}"


def described(datasets: list[Any]) -> list[tuple[str, str, list[tuple[str, str]] | None]]:
    """Each dataset as (namespace, name, schema fields or None)."""
    out = []
    for dataset in datasets:
        schema = (dataset.facets or {}).get("schema")
        fields = None if schema is None else [(f.name, f.type) for f in schema.fields]
        out.append((dataset.namespace, dataset.name, fields))
    return out


def test_a_local_export_reports_the_calls_read_and_each_table_with_its_schema(
    simulator: Any, run_dag: Callable[..., Any], lineage_capture: LineageCapture, tmp_path: Path
) -> None:
    ids = [place(simulator, GOOD_OUTPUT), place(simulator, {"confirmed": False})]
    simulator.finish(*ids)
    out = tmp_path / "out"
    source = export_source("revox_lineage_local", [ids[1], ids[0], ids[1]], str(out), include_recordings=True)
    dag_run = run_dag(source, "revox_lineage_local")
    assert task_state(dag_run, "export") == "success"

    lineage = lineage_capture.extracted["export"]
    assert described(lineage.inputs) == [(revox_ns(simulator), f"calls?ids_sha256={digest(ids)}", None)]
    assert described(lineage.outputs) == [
        ("file", f"{out}/transcripts.jsonl", TRANSCRIPT_FIELDS),
        ("file", f"{out}/structured_output.jsonl", STRUCTURED_OUTPUT_FIELDS),
        ("file", f"{out}/calls", None),
        ("file", f"{out}/recordings", None),
    ]
    # The method itself, called with the task instance as the provider's extractor does.
    task, task_instance = lineage_capture.ran["export"]
    direct = task.get_openlineage_facets_on_complete(task_instance)
    assert described(direct.outputs) == described(lineage.outputs)
    # The tables are also the task's Asset outlets: OpenLineage names them the same way.
    from airflow.providers.openlineage.utils.utils import translate_airflow_asset

    translated = [translate_airflow_asset(asset, None) for asset in task.outlets]
    assert [(d.namespace, d.name) for d in translated] == [(d.namespace, d.name) for d in lineage.outputs[:2]]


def test_an_object_store_export_splits_bucket_and_key_like_openlineage(
    simulator: Any, run_dag: Callable[..., Any], lineage_capture: LineageCapture
) -> None:
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io.store import attach
    from fsspec.implementations.memory import MemoryFileSystem

    store = MemoryFileSystem()
    attach("memory", fs=store)
    store.store.clear()
    ids = [place(simulator, GOOD_OUTPUT)]
    simulator.finish(*ids)
    destination = "memory://bucket/campaign/2025"
    dag_run = run_dag(
        export_source("revox_lineage_store", ids, destination, file_format="parquet"), "revox_lineage_store"
    )
    assert task_state(dag_run, "export") == "success"

    lineage = lineage_capture.extracted["export"]
    assert described(lineage.inputs) == [(revox_ns(simulator), f"calls?ids_sha256={digest(ids)}", None)]
    assert described(lineage.outputs) == [
        ("memory://bucket", "campaign/2025/transcripts.parquet", TRANSCRIPT_FIELDS),
        ("memory://bucket", "campaign/2025/structured_output.parquet", STRUCTURED_OUTPUT_FIELDS),
        ("memory://bucket", "campaign/2025/calls", None),
    ]
    # The same split Airflow's own object storage path reports (as the file transfer operator uses).
    table = ObjectStoragePath(f"{destination}/transcripts.parquet")
    assert (lineage.outputs[0].namespace, lineage.outputs[0].name) == (table.namespace, table.key)


def test_the_results_operator_reports_the_call_it_read_and_no_outputs(
    simulator: Any, run_dag: Callable[..., Any], lineage_capture: LineageCapture
) -> None:
    results = """RevoxCallResultsOperator(task_id="results", call_id="{{ dag_run.conf['call_id'] }}")"""
    call_id = finished(simulator, GOOD_OUTPUT)
    dag_run = run_dag(
        dag_source("revox_lineage_results", results), "revox_lineage_results", conf={"call_id": call_id}
    )
    assert task_state(dag_run, "results") == "success"

    lineage = lineage_capture.extracted["results"]
    assert described(lineage.inputs) == [(revox_ns(simulator), f"calls/{call_id}", None)]
    assert lineage.outputs == []


def test_without_the_openlineage_provider_the_export_runs_and_reports_nothing(
    simulator: Any,
    run_dag: Callable[..., Any],
    lineage_capture: LineageCapture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = [place(simulator, GOOD_OUTPUT)]
    simulator.finish(*ids)
    # A None entry in sys.modules makes the import raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)
    monkeypatch.setitem(sys.modules, "airflow.providers.common.compat.openlineage.facet", None)
    lineage_capture.extract = False  # the provider's extractor manager is "absent" too
    out = tmp_path / "out"
    dag_run = run_dag(export_source("revox_lineage_absent", ids, str(out)), "revox_lineage_absent")
    assert task_state(dag_run, "export") == "success"
    assert (only_load(out) / "_SUCCESS").exists()
    task, task_instance = lineage_capture.ran["export"]
    assert task.get_openlineage_facets_on_complete(task_instance) is None


# Blocks the OpenLineage client and the provider's code (its metadata entry point stays, which
# Airflow's provider discovery reads), and records what was asked for.
BLOCK_OPENLINEAGE = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoOpenLineage(importlib.abc.MetaPathFinder):
        blocked = (
            "openlineage",
            "airflow.providers.openlineage.extractors",
            "airflow.providers.openlineage.plugins",
            "airflow.providers.common.compat.openlineage",
        )
        tried = []

        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in self.blocked):
                self.tried.append(name)
                raise ImportError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoOpenLineage())
    from airflow_provider_revox.operators.revox import RevoxCallResultsOperator, RevoxCallsToStorageOperator
    from airflow_provider_revox._internal.operators.lineage import Lineage, LineageDataset, openlineage_facets

    assert NoOpenLineage.tried == [], NoOpenLineage.tried  # importing the package needs no OpenLineage
    lineage = Lineage(inputs=(LineageDataset("revox://api.revox.io", "calls/c1"),))
    operator = RevoxCallResultsOperator(task_id="results", call_id="c1")
    operator.revox_lineage = lineage
    print(openlineage_facets(lineage), operator.get_openlineage_facets_on_complete(None))
    assert NoOpenLineage.tried, "the facets were built without trying OpenLineage"
    """
)


def test_the_package_imports_and_reports_none_without_openlineage() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_OPENLINEAGE], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "None None"


@pytest.mark.parametrize(
    ("base_url", "namespace"),
    [
        ("https://api.revox.io/api", "revox://api.revox.io"),
        ("https://user:secret@api.revox.io:8443/api/", "revox://api.revox.io:8443"),
        ("http://[::1]:8080/api", "revox://[::1]:8080"),
    ],
)
def test_the_revox_namespace_is_the_base_url_host(base_url: str, namespace: str) -> None:
    assert revox_namespace(base_url) == namespace


def test_a_base_url_without_host_is_named() -> None:
    with pytest.raises(ValueError, match="has no host"):
        revox_namespace("/api")


def test_a_search_is_named_by_its_sorted_filters_and_phone_numbers_by_digest() -> None:
    search = {
        "statuses": ["completed"],
        "campaign_ids": ["camp_2", "camp_1"],
        "assistant_ids": [],
        "from_phone_numbers": ["+33612345678"],
    }
    phone = hashlib.sha256(b"+33612345678").hexdigest()[:16]
    dataset = calls_read("https://api.revox.io/api", search=search)
    assert dataset == LineageDataset(
        "revox://api.revox.io",
        f"calls?campaign_ids=camp_1,camp_2&from_phone_numbers=sha256:{phone}&statuses=completed",
    )
    assert calls_read("https://api.revox.io/api", search={"statuses": []}).name == "calls"
    # A single value, as a search's recipient or free text: a digest too.
    text = hashlib.sha256(b"Ann Smith").hexdigest()[:16]
    named = calls_read("https://h/api", search={"to_phone_number": "+33612345678", "query": "Ann Smith"})
    assert named.name == f"calls?query=sha256:{text}&to_phone_number=sha256:{phone}"
    # The same ids in any order, repeated or not, are the same dataset.
    assert calls_read("https://h/api", ["b", "a", "b"]) == calls_read("https://h/api", ["a", "b"])
    assert calls_read("https://h/api", ["a"]) != calls_read("https://h/api", ["a", "b"])


@pytest.mark.parametrize(
    ("uri", "namespace", "name"),
    [
        ("file:///data/out/transcripts.jsonl", "file", "/data/out/transcripts.jsonl"),
        ("/data/out/", "file", "/data/out"),
        ("s3://user:secret@bucket/exports/t.parquet", "s3://bucket", "exports/t.parquet"),
        ("gs://bucket/a/b/", "gs://bucket", "a/b"),
    ],
)
def test_files_are_named_as_openlineage_names_them(uri: str, namespace: str, name: str) -> None:
    assert file_dataset(uri) == LineageDataset(namespace, name)


def test_an_export_without_recordings_reports_no_recordings_folder() -> None:
    manifest = {
        "files": [
            {"path": "calls/c1.json"},
            {"path": "transcripts.json"},
            {"path": "structured_output.json"},
        ],
        "schemas": {
            "transcripts.json": TRANSCRIPT_SCHEMA,
            "structured_output.json": (Column("call_id", "string"),),
        },
    }
    lineage = export_lineage("https://api.revox.io/api", ["c1"], "s3://bucket/out/", manifest)
    assert [(d.namespace, d.name, d.columns) for d in lineage.outputs] == [
        ("s3://bucket", "out/transcripts.json", TRANSCRIPT_SCHEMA),
        ("s3://bucket", "out/structured_output.json", (Column("call_id", "string"),)),
        ("s3://bucket", "out/calls", ()),
    ]


def test_an_operator_that_recorded_nothing_reports_an_empty_lineage() -> None:
    from airflow.providers.openlineage.extractors import OperatorLineage

    assert openlineage_facets(None) == OperatorLineage()
    facets = openlineage_facets(Lineage(outputs=(file_dataset("/x/t.json", TRANSCRIPT_SCHEMA[:1]),)))
    assert facets is not None
    assert described(facets.outputs) == [("file", "/x/t.json", [("call_id", "string")])]
