"""``file_format="delta"``: four Delta tables, one merge commit per table and load, through Airflow.

On a local path and on an S3 server on loopback (moto, in its own process) reached with the keys
of an Airflow ``aws`` connection. Read back with ``deltalake`` and with DuckDB.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_revox._internal.export.delta import WATERMARK_PREFIX, delta_target, storage_options
from airflow_provider_revox._internal.export.search import CallSearch
from airflow_provider_revox._internal.export.state import watermark_key
from tests.integration.operators.test_results_and_export import (
    GOOD_OUTPUT,
    export_dag,
    place,
    task_logs,
    task_state,
    xcoms,
)

__all__ = ["task_logs"]

deltalake = pytest.importorskip("deltalake")
duckdb = pytest.importorskip("duckdb")

KEYS = ("call_id", "attempt_id", "turn_index")
SEARCH = {"assistant_ids": ["asst_planted"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """An S3 server on 127.0.0.1 (moto, its own process) with a bucket ``lake``, and connection ``lake``."""
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if server is None:
        pytest.skip("moto[server] is not installed")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(600):  # up to 30 s: the server imports a lot on a busy machine
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        request = urllib.request.Request(f"{endpoint}/lake", method="PUT")
        urllib.request.urlopen(request, timeout=5).close()
        connection = {
            "conn_type": "aws",
            "login": "AKIALAKEKEY",
            "password": "lake-secret-never-logged",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        monkeypatch.setenv("AIRFLOW_CONN_LAKE", json.dumps(connection))
        yield {"endpoint": endpoint, "connection": connection}
    finally:
        process.terminate()
        process.wait(timeout=10)


def options_for(s3: dict[str, Any]) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": s3["connection"]["login"],
        "AWS_SECRET_ACCESS_KEY": s3["connection"]["password"],
        "AWS_ENDPOINT_URL": s3["endpoint"],
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }


def table(uri: str, options: dict[str, str] | None = None) -> Any:
    return deltalake.DeltaTable(uri, storage_options=options or {})


def rows(uri: str, options: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return table(uri, options).to_pyarrow_table().to_pylist()  # type: ignore[no-any-return]


def delta_dag(dag_id: str, **arguments: Any) -> str:
    return export_dag(
        dag_id,
        file_format="delta",
        tables=["transcripts", "structured_output", "calls", "attempts"],
        **arguments,
    )


# -- the connection -------------------------------------------------------------------------------


def test_an_aws_connection_gives_deltalake_its_keys_and_endpoint_and_they_never_show() -> None:
    from airflow.sdk import Connection, ObjectStoragePath

    conn = Connection(
        conn_id="lake",
        conn_type="aws",
        login="AKIA1",
        password="s3cret",
        extra=json.dumps({"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-3"}),
    )
    assert storage_options(conn) == {
        "AWS_ACCESS_KEY_ID": "AKIA1",
        "AWS_SECRET_ACCESS_KEY": "s3cret",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "eu-west-3",
    }
    local = delta_target(ObjectStoragePath("file:///data/lake"), None)
    assert local.table_uri("calls") == "/data/lake/calls" and local.storage_options == {}
    with pytest.raises(ValueError, match="local path or to s3://"):
        delta_target(ObjectStoragePath("memory://bucket/lake"), None)


# -- through Airflow ------------------------------------------------------------------------------


@pytest.mark.airflow
def test_local_delta_tables_merge_a_call_delivered_twice_and_duckdb_and_deltalake_read_them(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    a, b, c = (place(simulator, GOOD_OUTPUT) for _ in range(3))
    simulator.finish(a, b, c)
    base = tmp_path / "lake"
    first = run_dag(
        delta_dag("revox_delta_local", call_ids=[a, b], destination=str(base)), "revox_delta_local"
    )
    assert task_state(first, "export") == "success"
    result = xcoms(first, "export")["return_value"]
    assert result["versions"] == {"transcripts": 0, "structured_output": 0, "attempts": 0, "calls": 0}
    assert result["tables"]["calls"] == f"{base}/calls"
    turns = len(rows(f"{base}/transcripts"))
    assert turns > 4

    # b is delivered again, with c: b's rows are updated in place, c's added.
    second = run_dag(
        delta_dag("revox_delta_local", call_ids=[b, c], destination=str(base)), "revox_delta_local"
    )
    assert task_state(second, "export") == "success"
    versions = xcoms(second, "export")["return_value"]["versions"]
    assert versions == {"transcripts": 1, "structured_output": 1, "attempts": 1, "calls": 1}
    assert sorted(r["call_id"] for r in rows(f"{base}/calls")) == sorted([a, b, c])
    assert sorted(r["call_id"] for r in rows(f"{base}/structured_output")) == sorted([a, b, c])
    transcripts = rows(f"{base}/transcripts")
    keys = [tuple(r[k] for k in KEYS) for r in transcripts]
    assert len(keys) == len(set(keys))  # no turn twice
    assert {r["call_id"] for r in transcripts} == {a, b, c} and len(transcripts) == turns * 3 // 2
    attempts = rows(f"{base}/attempts")
    assert len({(r["call_id"], r["attempt_id"]) for r in attempts}) == len(attempts) == 6

    # Each commit names its load; a merge updated b's row instead of adding one.
    commit = table(f"{base}/calls").history(1)[0]
    assert (
        commit["operation"] == "MERGE"
        and commit["revox.load"] == xcoms(second, "export")["return_value"]["load"]
    )
    assert commit["operationMetrics"]["num_target_rows_updated"] == 1
    assert commit["operationMetrics"]["num_target_rows_inserted"] == 1

    # DuckDB reads the same tables (as Arrow tables read by deltalake: no Spark, no JVM). Tables,
    # not datasets: DuckDB 1.5 (what Python 3.10 installs) pushes its join filter into the dataset
    # scan, where Arrow has no kernel comparing string with deltalake's string_view columns.
    con = duckdb.connect()
    con.register("calls", table(f"{base}/calls").to_pyarrow_table())
    con.register("transcripts", table(f"{base}/transcripts").to_pyarrow_table())
    joined = con.sql(
        "SELECT c.call_id, count(*) FROM calls c JOIN transcripts t USING (call_id) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [call_id for call_id, _ in joined] == sorted([a, b, c])
    assert sum(count for _, count in joined) == len(transcripts)


@pytest.mark.airflow
def test_a_failed_delta_export_leaves_every_table_at_its_version(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    a = place(simulator, GOOD_OUTPUT)
    simulator.finish(a)
    base = tmp_path / "lake"
    ok = run_dag(delta_dag("revox_delta_fail", call_ids=[a], destination=str(base)), "revox_delta_fail")
    assert task_state(ok, "export") == "success"
    before = {
        name: (table(f"{base}/{name}").version(), rows(f"{base}/{name}")) for name in ("calls", "transcripts")
    }
    b = place(simulator, GOOD_OUTPUT)
    simulator.finish(b)
    source = delta_dag("revox_delta_fail", call_ids=[b, "call-that-does-not-exist"], destination=str(base))
    failed = run_dag(source, "revox_delta_fail")
    assert task_state(failed, "export") == "failed"
    after = {
        name: (table(f"{base}/{name}").version(), rows(f"{base}/{name}")) for name in ("calls", "transcripts")
    }
    assert after == before


@pytest.mark.airflow
def test_incremental_delta_on_s3_writes_the_watermark_in_the_commit_of_the_rows_it_covers(
    simulator: Any,
    run_dag: Callable[..., Any],
    s3: dict[str, Any],
    without_asset_state_store: None,
    task_logs: Callable[[], str],
) -> None:
    options = options_for(s3)
    calls_uri = "s3://lake/revox/calls"
    key = WATERMARK_PREFIX + watermark_key(CallSearch(**SEARCH))
    source = delta_dag(
        "revox_delta_s3",
        search=SEARCH,
        incremental=True,
        destination="s3://lake/revox",
        destination_conn_id="lake",
    )
    first = [place(simulator, GOOD_OUTPUT) for _ in range(2)]
    simulator.finish(*first)
    task_logs()
    run1 = run_dag(source, "revox_delta_s3")  # no asset state store: the table keeps the watermark
    assert task_state(run1, "export") == "success"
    result = xcoms(run1, "export")["return_value"]
    assert result["calls"] == 2 and result["versions"]["calls"] == 0
    commit = table(calls_uri, options).history(1)[0]
    mark = json.loads(commit[key])
    assert mark["ended_at"] == result["watermark"] and sorted(
        r["call_id"] for r in rows(calls_uri, options)
    ) == sorted(first)
    assert commit["operationMetrics"]["num_added_rows"] == 2  # the rows and the mark: one commit

    run2 = run_dag(source, "revox_delta_s3")  # nothing new: nothing committed
    assert task_state(run2, "export") == "success"
    assert xcoms(run2, "export")["return_value"]["versions"] == {}
    assert table(calls_uri, options).version() == 0

    later = place(simulator, GOOD_OUTPUT)
    simulator.finish(later)
    run3 = run_dag(source, "revox_delta_s3")
    assert task_state(run3, "export") == "success"
    assert xcoms(run3, "export")["return_value"]["calls"] == 1  # the mark was read back from the table
    commit = table(calls_uri, options).history(1)[0]
    assert commit["version"] == 1 and commit["operationMetrics"]["num_target_rows_inserted"] == 1
    assert json.loads(commit[key])["ended_at"] >= mark["ended_at"]
    assert sorted(r["call_id"] for r in rows(calls_uri, options)) == sorted([*first, later])
    assert "lake-secret-never-logged" not in task_logs()


def test_delta_is_a_file_format_of_the_export_without_recordings_and_needs_no_asset_state_store(
    without_asset_state_store: None, tmp_path: Path
) -> None:
    from airflow.sdk import Asset

    from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator

    export = RevoxCallsToStorageOperator(
        task_id="t", search=SEARCH, incremental=True, destination=str(tmp_path), file_format="delta"
    )
    assert export.outlets == [
        Asset(uri=f"file://{tmp_path}/transcripts"),
        Asset(uri=f"file://{tmp_path}/structured_output"),
    ]
    with pytest.raises(ValueError, match="include_recordings needs a file format"):
        RevoxCallsToStorageOperator(
            task_id="t",
            call_ids=["a"],
            destination=str(tmp_path),
            file_format="delta",
            include_recordings=True,
        )
    with pytest.raises(ValueError, match="jsonl, json, parquet, delta, not 'iceberg'"):
        RevoxCallsToStorageOperator(
            task_id="t", call_ids=["a"], destination=str(tmp_path), file_format="iceberg"
        )
