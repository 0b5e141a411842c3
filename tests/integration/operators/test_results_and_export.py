"""Results and storage operators through a real Airflow (``dag.test()``) against the simulator."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk import Asset, AssetAlias, ObjectStoragePath

from airflow_provider_revox._internal.core.redact import MASK, redact
from airflow_provider_revox._internal.sensors.links import (
    RevoxCallLink,
    call_dashboard_url,
    dashboard_origin,
)
from airflow_provider_revox._internal.waiting.ids import normalize_call_ids
from airflow_provider_revox._simulator.profile import AttemptDraw
from airflow_provider_revox._simulator.timeline import OrderScript
from airflow_provider_revox.export import recording_extension
from airflow_provider_revox.hooks.revox import Call
from airflow_provider_revox.operators.revox import RevoxCallResultsOperator, RevoxCallsToStorageOperator
from tests.unit.export.test_staging import load_folders, only_load

# -- pure parts ----------------------------------------------------------------------------


def test_call_ids_from_every_upstream_shape_keep_order_without_duplicates() -> None:
    assert normalize_call_ids("c1") == ["c1"]
    assert normalize_call_ids(["c2", "c1", "c2"]) == ["c2", "c1"]
    assert normalize_call_ids([{"call_id": "c1", "status": "completed"}, {"call_id": "c3"}]) == ["c1", "c3"]
    assert normalize_call_ids({"completed": ["c1", "c2"], "failed": ["c3"], "timed_out": []}) == [
        "c1",
        "c2",
        "c3",
    ]
    # A mapped sensor's results arrive as a lazy sequence, not a list.
    assert normalize_call_ids({"call_id": c} for c in ("c5", "c4", "c5")) == ["c5", "c4"]
    assert normalize_call_ids([]) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["ok", "bad/id"], "'bad/id'"),
        ([{"call_id": 42}], "must be a string, not int"),
        ([{"id": "c1"}], "needs 'call_id' or 'completed'/'failed'"),
        (["ok", ""], "call_id is empty"),
        (3.5, "must be a string, not float"),
    ],
)
def test_a_bad_call_id_is_named(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match="call_ids") as raised:
        normalize_call_ids(value)
    assert message in str(raised.value)


def test_recording_extension_is_public_in_the_export_module() -> None:
    assert recording_extension("https://cdn.example/rec/a1.MP3?sig=x") == "mp3"


@pytest.mark.parametrize(
    ("base_url", "origin"),
    [
        ("https://www.getrevox.com/api", "https://www.getrevox.com"),
        ("https://www.getrevox.com/api/", "https://www.getrevox.com"),
        ("http://127.0.0.1:8089/api", "http://127.0.0.1:8089"),
        ("https://user:pw@proxy.example/revox/api/v2", "https://proxy.example/revox"),
        (None, "https://www.getrevox.com"),
    ],
)
def test_dashboard_origin_drops_the_api_path(base_url: str | None, origin: str) -> None:
    assert dashboard_origin(base_url) == origin


def test_call_dashboard_url() -> None:
    assert call_dashboard_url("abc-1") == "https://www.getrevox.com/dashboard/calls/abc-1"
    assert RevoxCallLink().name == "Revox call"


def test_bad_arguments_fail_when_the_dag_is_parsed() -> None:
    with pytest.raises(ValueError, match="'a/b'"):
        RevoxCallResultsOperator(task_id="t", call_id="a/b")
    with pytest.raises(ValueError, match="'newest'"):
        RevoxCallResultsOperator(task_id="t", call_id="c1", transcript_source="newest")
    with pytest.raises(ValueError, match="'csv'"):
        RevoxCallsToStorageOperator(task_id="t", call_ids=["c1"], destination="/tmp/x", file_format="csv")
    with pytest.raises(ValueError, match="max_concurrency"):
        RevoxCallsToStorageOperator(task_id="t", call_ids=["c1"], destination="/tmp/x", max_concurrency=0)
    with pytest.raises(ValueError, match="'x y'"):
        RevoxCallsToStorageOperator(task_id="t", call_ids=["c1", "x y"], destination="/tmp/x")
    # Templated ids are checked when the task runs.
    RevoxCallsToStorageOperator(task_id="t", call_ids=["{{ params.id }}"], destination="/tmp/x")


def test_a_fixed_destination_declares_its_tables_as_assets() -> None:
    op = RevoxCallsToStorageOperator(
        task_id="t", call_ids=["c1"], destination="s3://aws_conn@bucket/revox/", file_format="parquet"
    )
    assert op.outlets == [
        Asset(uri="s3://bucket/revox/transcripts.parquet"),
        Asset(uri="s3://bucket/revox/structured_output.parquet"),
    ]
    local = RevoxCallsToStorageOperator(
        task_id="t", call_ids=["c1"], destination=ObjectStoragePath("/data/x")
    )
    assert [a.uri for a in local.outlets] == [
        "file:///data/x/transcripts.jsonl",
        "file:///data/x/structured_output.jsonl",
    ]
    templated = RevoxCallsToStorageOperator(task_id="t", call_ids=["c1"], destination="/data/{{ ds }}")
    assert templated.outlets == [AssetAlias(templated.asset_alias_name)]
    path = ObjectStoragePath("s3://bucket/{{ ds }}")
    templated_path = RevoxCallsToStorageOperator(task_id="t", call_ids=["c1"], destination=path)
    assert templated_path.outlets == [AssetAlias(templated_path.asset_alias_name)]


# -- through Airflow and the simulator -----------------------------------------------------

PLANTED = {
    "llm": "sk-planted-llm-key-0001",
    "header": "planted-header-bearer-0002",
    "query": "planted-query-param-0003",
    "deep": "planted-deep-token-0004",
    "password": "planted-password-0005",
}
FIELDS = [
    {"name": "confirmed", "type": "boolean", "required": True},
    {"name": "contact_name", "type": "string", "required": True},
    {"name": "party_size", "type": "number"},
    {"name": "interest_level", "type": "enum", "required": True, "enum_options": ["low", "medium", "high"]},
    {"name": "new_date", "type": "date"},
    {"name": "callback_at", "type": "datetime"},
]


def planted_assistant(fields: list[dict[str, Any]] = FIELDS) -> dict[str, Any]:
    return {
        "id": "asst_planted",
        "name": "Planted",
        "llm_model": {"type": "custom", "api_key": PLANTED["llm"], "api_url": "https://llm.example/v1"},
        "custom_tools": [
            {
                "name": "crm",
                "url": "https://crm.example/hook",
                "headers": {"Authorization": f"Bearer {PLANTED['header']}"},
                "query_params": {"key": PLANTED["query"]},
                "config": {"nested": [{"session": {"token": PLANTED["deep"]}}]},
            }
        ],
        "structured_output_config": fields,
    }


def place(
    simulator: Any,
    output: dict[str, Any],
    *,
    human: bool = True,
    fields: list[dict[str, Any]] = FIELDS,
    outcome: str = "interested",
) -> str:
    """Place a scripted order (a missed dial, then a person) that ends with ``output``."""
    attempts = (
        AttemptDraw(kind="no_answer"),
        AttemptDraw(kind="human" if human else "busy", talk_seconds=45),
    )
    call = simulator.place_call(
        phone_number="+33612345678",
        assistant=planted_assistant(fields),
        metadata={"crm": {"password": PLANTED["password"]}},
        script=OrderScript(attempts=attempts, structured_output=output, outcome=outcome),
    )
    return str(call["id"])


def finished(simulator: Any, output: dict[str, Any]) -> str:
    """Place an order that ends with ``output`` and run it to its end."""
    call_id = place(simulator, output)
    simulator.finish(call_id)
    return call_id


def xcoms(dag_run: Any, task_id: str) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
            )
        ).all()
        return {row.key: XComModel.deserialize_value(row) for row in rows}


def task_state(dag_run: Any, task_id: str) -> str:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return str(
            session.scalar(
                select(TaskInstance.state).where(
                    TaskInstance.dag_id == dag_run.dag_id,
                    TaskInstance.run_id == dag_run.run_id,
                    TaskInstance.task_id == task_id,
                )
            )
        )


def dag_source(dag_id: str, body: str) -> str:
    return textwrap.dedent(
        f"""
            from datetime import datetime
            from airflow.sdk import DAG, ObjectStoragePath
            from airflow_provider_revox.operators.revox import (
                RevoxCallResultsOperator,
                RevoxCallsToStorageOperator,
            )

            with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
            """
    ) + textwrap.indent(textwrap.dedent(body), "    ")


def export_dag(dag_id: str, **arguments: Any) -> str:
    """A one-task DAG, ``RevoxCallsToStorageOperator(task_id="export", **arguments)``, that does not
    pause between fetch rounds."""
    listed = "".join(f", {name}={value!r}" for name, value in arguments.items())
    return dag_source(
        dag_id, f'RevoxCallsToStorageOperator(task_id="export", sleep=lambda seconds: None{listed})\n'
    )


@pytest.fixture
def task_logs(capsys: pytest.CaptureFixture[str], caplog: Any) -> Callable[[], str]:
    """Read what the tasks logged since the last read: ``dag.test()`` prints the task logs."""

    def read() -> str:
        captured = capsys.readouterr()
        text = captured.out + captured.err + caplog.text
        caplog.clear()
        return text

    return read


def assert_no_planted(text: str, api_key: str) -> None:
    for name, value in PLANTED.items():
        assert value not in text, f"planted {name} leaked"
    assert api_key not in text, "the connection's API key leaked"


GOOD_OUTPUT = {
    "confirmed": True,
    "contact_name": "Ann",
    "party_size": 3,
    "interest_level": "high",
    "new_date": "2025-03-10",
    "callback_at": "2025-03-04T09:30:00Z",
    "notes": {"api_token": PLANTED["deep"]},
}


@pytest.mark.airflow
def test_results_operator_pushes_redacted_transcript_and_output(
    simulator: Any, run_dag: Callable[..., Any], task_logs: Callable[[], str]
) -> None:
    call_id = finished(simulator, GOOD_OUTPUT)
    dag_run = run_dag(
        dag_source(
            "revox_results",
            """
            RevoxCallResultsOperator(task_id="results", call_id="{{ dag_run.conf['call_id'] }}")
            """,
        ),
        "revox_results",
        conf={"call_id": call_id},
    )
    assert task_state(dag_run, "results") == "success"
    pushed = xcoms(dag_run, "results")
    engine_call = Call.from_response(simulator.get_call(call_id))
    expected_turns = [
        (attempt.id, index, turn.role, turn.content) for attempt, index, turn in engine_call.iter_turns()
    ]
    assert expected_turns, "the scripted call should have a transcript"
    assert [(t["attempt_id"], t["turn_index"], t["role"], t["content"]) for t in pushed["transcript"]] == (
        expected_turns
    )
    assert pushed["structured_output"] == {**GOOD_OUTPUT, "notes": {"api_token": MASK}}
    assert pushed["return_value"] == {
        "call_id": call_id,
        "status": "completed",
        "outcome": "interested",
        "structured_output": pushed["structured_output"],
        "turns": len(expected_turns),
    }
    dashboard = f"{simulator.base_url.removesuffix('/api')}/dashboard/calls/{call_id}"
    assert pushed["revox_call_link"] == {"call_id": call_id, "url": dashboard}
    # What the API server shows for the link, computed by the link when the task finished.
    assert pushed[RevoxCallLink().xcom_key] == dashboard
    log_text = task_logs()
    assert f"Revox call {call_id} is completed" in log_text
    assert_no_planted(json.dumps(pushed) + log_text, simulator.api_key)


def stored_xcom_text(dag_run: Any) -> str:
    """Every XCom value of the run as the metadata database stores it."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        values = session.scalars(select(XComModel.value).where(XComModel.run_id == dag_run.run_id)).all()
    return json.dumps([str(v) for v in values])


@pytest.mark.airflow
def test_results_operator_redacts_the_connection_key_echoed_in_the_outcome(
    simulator: Any, run_dag: Callable[..., Any], task_logs: Callable[[], str]
) -> None:
    call_id = place(simulator, GOOD_OUTPUT, outcome=f"call back; the key was {simulator.api_key}")
    simulator.finish(call_id)
    dag_run = run_dag(
        dag_source("revox_results_echo", f"RevoxCallResultsOperator(task_id='results', call_id={call_id!r})"),
        "revox_results_echo",
    )
    assert task_state(dag_run, "results") == "success"
    assert xcoms(dag_run, "results")["return_value"]["outcome"] == f"call back; the key was {MASK}"
    stored = stored_xcom_text(dag_run)
    assert call_id in stored  # the search does look at the stored values
    assert simulator.api_key not in stored + task_logs()


@pytest.mark.airflow
def test_results_operator_fails_on_a_call_that_did_not_complete(
    simulator: Any, run_dag: Callable[..., Any], task_logs: Callable[[], str]
) -> None:
    call_id = place(simulator, GOOD_OUTPUT)  # not finished: still waiting for its first dial
    dag_run = run_dag(
        dag_source(
            "revox_results_pending",
            f"""
            RevoxCallResultsOperator(task_id="results", call_id={call_id!r})
            """,
        ),
        "revox_results_pending",
    )
    assert task_state(dag_run, "results") == "failed"
    assert "transcript" not in xcoms(dag_run, "results")
    log_text = task_logs()
    assert f"Revox call {call_id!r} is not completed (status 'scheduled')" in log_text
    assert_no_planted(log_text, simulator.api_key)


def read_table(path: Path, file_format: str) -> list[dict[str, Any]]:
    if file_format == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if file_format == "json":
        rows: list[dict[str, Any]] = json.loads(path.read_text())
        return rows
    table: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return table


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.airflow
@pytest.mark.parametrize("file_format", ["jsonl", "json", "parquet"])
def test_export_to_storage_writes_every_file_and_a_rerun_writes_the_same_bytes(
    file_format: str,
    simulator: Any,
    run_dag: Callable[..., Any],
    tmp_path: Path,
    task_logs: Callable[[], str],
) -> None:
    bad_output = {"confirmed": "yes", "party_size": "three", "interest_level": "extreme", "stray": 1}
    first = place(simulator, GOOD_OUTPUT)
    second = place(simulator, bad_output)
    other_fields = [{"name": "budget", "type": "number", "required": True}, FIELDS[0]]
    third = place(simulator, {"budget": 1200, "confirmed": False}, fields=other_fields)
    simulator.finish(first, second, third)
    destination = tmp_path / "export"
    dag_id = f"revox_export_{file_format}"
    source = dag_source(
        dag_id,
        f"""
        RevoxCallsToStorageOperator(
            task_id="export",
            call_ids=[{{"call_id": {second!r}}}, {first!r}, {{"completed": [{third!r}, {first!r}]}}],
            destination={f"file://{destination}"!r},
            file_format={file_format!r},
            include_recordings=True,
            max_concurrency=2,
        )
        """,
    )
    dag_run = run_dag(source, dag_id)
    assert task_state(dag_run, "export") == "success"
    load = only_load(destination)
    order = [second, first, third]
    engine_calls = {c: Call.from_response(simulator.get_call(c)) for c in order}

    # calls/<id>.json: the whole call, redacted.
    for call_id in order:
        document = json.loads((load / "calls" / f"{call_id}.json").read_text())
        assert document["id"] == call_id
        assert document["assistant"]["llm_model"]["api_key"] == MASK
        assert document == json.loads(json.dumps(redact(simulator.get_call(call_id), (simulator.api_key,))))
        # Presigned recording links are credentials too.
        assert all(
            "sig=" + MASK in a["recording_url"] for a in document["call_attempts"] if a["recording_url"]
        )

    # transcripts: one row per turn, calls in input order, attempts oldest first.
    transcripts = read_table(load / f"transcripts.{file_format}", file_format)
    expected = [
        (call_id, attempt.id, index, turn.role, turn.content, turn.tool_name)
        for call_id in order
        for attempt, index, turn in engine_calls[call_id].iter_turns()
    ]
    assert len(expected) > 6
    assert [
        (r["call_id"], r["attempt_id"], r["turn_index"], r["role"], r["content"], r["tool_name"])
        for r in transcripts
    ] == expected
    tool_rows = [r for r in transcripts if r["tool_name"]]
    assert tool_rows and all(isinstance(json.loads(r["tool_arguments"]), dict) for r in tool_rows)

    # structured_output: one typed row per call, problems listed, bad values nulled.
    outputs = read_table(load / f"structured_output.{file_format}", file_format)
    assert list(outputs[0]) == [
        "call_id",
        "status",
        "outcome",
        "ended_at",
        "confirmed",
        "contact_name",
        "party_size",
        "interest_level",
        "new_date",
        "callback_at",
        "budget",
        "validation_errors",
    ]
    assert [r["call_id"] for r in outputs] == order
    assert [r["status"] for r in outputs] == ["completed"] * 3
    bad, good, other = outputs
    assert bad["confirmed"] is None and bad["party_size"] is None and bad["interest_level"] is None
    assert bad["validation_errors"] == [
        'confirmed: expected boolean, got str "yes"',
        "contact_name: missing required field",
        'party_size: expected number, got str "three"',
        "interest_level: \"extreme\" is not one of ['low', 'medium', 'high']",
        "stray: not in structured_output_config",
    ]
    assert good["validation_errors"] == ["notes: not in structured_output_config"]
    assert other["budget"] == 1200.0 and other["confirmed"] is False and other["validation_errors"] == []
    ended = engine_calls[first].ended_at
    assert ended is not None
    if file_format == "parquet":
        schema = pq.read_schema(load / "structured_output.parquet")
        assert schema.field("ended_at").type == pa.timestamp("us", tz="UTC")
        assert schema.field("confirmed").type == pa.bool_()
        assert schema.field("party_size").type == pa.float64()
        assert schema.field("new_date").type == pa.date32()
        assert schema.field("callback_at").type == pa.timestamp("us", tz="UTC")
        assert schema.field("validation_errors").type == pa.list_(pa.string())
        assert pq.read_schema(load / "transcripts.parquet").field("turn_index").type == pa.int64()
        assert good["ended_at"] == ended
        assert good["new_date"] == date(2025, 3, 10)
        assert good["callback_at"] == datetime(2025, 3, 4, 9, 30, tzinfo=timezone.utc)
    else:
        assert good["ended_at"] == ended.isoformat()
        assert good["new_date"] == "2025-03-10"
        assert good["callback_at"] == "2025-03-04T09:30:00+00:00"
    assert good["party_size"] == 3.0 and good["confirmed"] is True and good["interest_level"] == "high"

    # Recordings, streamed byte for byte.
    recorded = [
        (call_id, attempt)
        for call_id in order
        for attempt in reversed(engine_calls[call_id].attempts_newest_first())
        if attempt.recording_url
    ]
    assert len(recorded) == 3
    for call_id, attempt in recorded:
        assert attempt.recording_url is not None
        direct = httpx.get(attempt.recording_url).content
        assert (load / "recordings" / call_id / f"{attempt.id}.wav").read_bytes() == direct

    # The manifest lists every file, and nothing else is under the destination.
    result = xcoms(dag_run, "export")["return_value"]
    assert result["load"] == load.name
    assert result["manifest"] == f"file://{destination}/{load.name}/_manifest.json"
    assert result["tables"]["transcripts"] == f"file://{destination}/{load.name}/transcripts.{file_format}"
    assert (result["calls"], result["recordings"], result["rows"]["structured_output"]) == (3, 3, 3)
    first_run = tree(load)
    relative = [f["path"] for f in json.loads(first_run["_manifest.json"])["files"]]
    assert result["files"] == len(relative)
    assert relative == sorted(
        [
            f"transcripts.{file_format}",
            f"structured_output.{file_format}",
            *(f"calls/{c}.json" for c in order),
            *(f"recordings/{c}/{a.id}.wav" for c, a in recorded),
        ]
    )
    assert sorted(first_run) == sorted([*relative, "_manifest.json", "_SUCCESS"])
    manifest = json.loads(first_run["_manifest.json"])
    assert {f["path"]: f.get("rows") for f in manifest["files"] if "rows" in f} == {
        f"transcripts.{file_format}": len(expected),
        f"structured_output.{file_format}": len(order),
    }

    # Secrets: in no file and no log line.
    log_text = task_logs()
    assert "Exporting 3 Revox call(s)" in log_text
    text_files = b"".join(v for k, v in first_run.items() if not k.startswith("recordings/"))
    assert_no_planted(text_files.decode("utf-8", "replace") + log_text, simulator.api_key)

    # Another run adds a load of the same files, byte for byte, and leaves the first one as it was.
    rerun = run_dag(source, dag_id)
    assert task_state(rerun, "export") == "success"
    kept, added = load_folders(destination)
    assert kept == load and tree(load) == first_run

    def data(files: dict[str, bytes]) -> dict[str, bytes]:
        return {path: content for path, content in files.items() if not path.startswith("_")}

    assert data(tree(added)) == data(first_run)


@pytest.mark.airflow
def test_a_failed_fetch_names_the_call_and_leaves_the_previous_export_intact(
    monkeypatch: pytest.MonkeyPatch,
    simulator: Any,
    run_dag: Callable[..., Any],
    tmp_path: Path,
    task_logs: Callable[[], str],
) -> None:
    call_id = finished(simulator, GOOD_OUTPUT)
    destination = tmp_path / "export"

    def source(ids: list[str], sleep: bool = False) -> str:
        no_sleep = ", sleep=lambda seconds: None" if sleep else ""
        return dag_source(
            "revox_export_failure",
            f"""
            RevoxCallsToStorageOperator(
                task_id="export", call_ids={ids!r}, destination={str(destination)!r}{no_sleep}
            )
            """,
        )

    ok = run_dag(source([call_id]), "revox_export_failure")
    assert task_state(ok, "export") == "success"
    before = tree(destination)
    assert f"{only_load(destination).name}/transcripts.jsonl" in before
    task_logs()

    failed = run_dag(source([call_id, "call-that-does-not-exist"]), "revox_export_failure")
    assert task_state(failed, "export") == "failed"
    assert tree(destination) == before  # no new, no half-written, no temporary file
    log_text = task_logs()
    assert "Revox call 'call-that-does-not-exist' could not be fetched" in log_text
    assert_no_planted(log_text, simulator.api_key)

    # A call the API keeps failing on: each round's request fails, three rounds, then it gives up.
    flaky = finished(simulator, GOOD_OUTPUT)
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", simulator.connection_json(max_retries=0))
    # The ids are read by one search: the search keeps failing, three rounds, then it gives up.
    simulator.faults.script("POST /call/search", ["503"] * 50)
    searches = simulator.stats()["by_endpoint"].get("POST /call/search", 0)
    failed = run_dag(source([call_id, flaky], sleep=True), "revox_export_failure")
    assert task_state(failed, "export") == "failed"
    assert tree(destination) == before
    log_text = task_logs()
    origin = simulator.base_url.removesuffix("/api")
    assert (
        "Revox search of 2 call(s) failed after 3 round(s): "
        f"Revox API at {origin} still failing after 1 tries" in log_text
    )
    assert_no_planted(log_text, simulator.api_key)
    assert (
        simulator.stats()["by_endpoint"]["POST /call/search"] - searches == 3
    )  # three rounds of one try each


def test_a_call_that_recovers_between_rounds_is_exported(
    monkeypatch: pytest.MonkeyPatch, simulator: Any, tmp_path: Path
) -> None:
    call_id = finished(simulator, GOOD_OUTPUT)
    pauses: list[float] = []
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", simulator.connection_json(max_retries=0))
    simulator.faults.script("POST /call/search", ["503", "ok"])  # the first round's one try fails
    export = RevoxCallsToStorageOperator(
        task_id="export",
        call_ids=[call_id],
        destination=str(tmp_path),
        file_format="jsonl",
        sleep=pauses.append,
    )
    result = export.execute(context={})  # type: ignore[arg-type]
    assert result["calls"] == 1 and (only_load(tmp_path) / "calls" / f"{call_id}.json").exists()
    assert simulator.stats()["by_endpoint"]["POST /call/search"] == 2
    assert pauses == [5.0]  # the one pause between rounds


@pytest.mark.airflow
def test_a_templated_destination_reports_its_tables_through_an_asset_alias(
    simulator: Any, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    call_id = finished(simulator, GOOD_OUTPUT)
    source = dag_source(
        "revox_export_alias",
        f"""
        RevoxCallsToStorageOperator(
            task_id="export",
            call_ids=[{call_id!r}],
            destination="{tmp_path}/{{{{ dag_run.conf['folder'] }}}}",
        )
        """,
    )
    dag_run = run_dag(source, "revox_export_alias", conf={"folder": "batch-7"})
    assert task_state(dag_run, "export") == "success"
    assert (only_load(tmp_path / "batch-7") / "transcripts.jsonl").exists()
    with create_session() as session:
        uris = session.scalars(
            select(AssetModel.uri)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_run_id == dag_run.run_id, AssetEvent.source_dag_id == dag_run.dag_id)
        ).all()
    assert sorted(uris) == [
        f"file://{tmp_path}/batch-7/structured_output.jsonl",
        f"file://{tmp_path}/batch-7/transcripts.jsonl",
    ]


@pytest.mark.airflow
def test_export_of_mapped_upstream_results_to_an_object_store_reads_them_without_probing_past_their_end(
    simulator: Any, run_dag: Callable[..., Any], task_logs: Callable[[], str]
) -> None:
    from airflow.sdk.io.store import attach
    from fsspec.implementations.memory import MemoryFileSystem

    store = MemoryFileSystem()
    attach("memory", fs=store)
    store.store.clear()
    ids = [place(simulator, GOOD_OUTPUT), place(simulator, {"confirmed": False})]
    simulator.finish(*ids)
    source = dag_source(
        "revox_export_mapped",
        f"""
        from airflow.sdk import task

        @task
        def summary(call_id):
            return {{"call_id": call_id, "status": "completed"}}

        summaries = summary.expand(call_id={[*ids, ids[0]]!r})
        RevoxCallsToStorageOperator(
            task_id="export", call_ids=summaries, destination="memory://bucket/revox", file_format="parquet"
        )
        """,
    )
    task_logs()
    dag_run = run_dag(source, "revox_export_mapped")
    assert task_state(dag_run, "export") == "success"
    # Iterating the lazy sequence asks for one item past the end: Airflow logs that as an ERROR.
    log_text = task_logs()
    assert "Exporting 2 Revox call(s)" in log_text
    assert "XCom not found" not in log_text
    result = xcoms(dag_run, "export")["return_value"]
    folder = f"/bucket/revox/{result['load']}"
    assert sorted(store.store) == sorted(
        [
            f"{folder}/transcripts.parquet",
            f"{folder}/structured_output.parquet",
            *(f"{folder}/calls/{c}.json" for c in ids),
            f"{folder}/_manifest.json",
            f"{folder}/_SUCCESS",
            "/bucket/revox/_loads.jsonl",
        ]
    )
    with store.open(f"{folder}/structured_output.parquet", "rb") as file:
        rows = pq.read_table(file).to_pylist()
    assert [(r["call_id"], r["confirmed"]) for r in rows] == [(ids[0], True), (ids[1], False)]
    assert result["tables"]["transcripts"] == f"memory:/{folder}/transcripts.parquet"


@pytest.mark.airflow
def test_a_long_export_logs_its_progress_with_a_rate_and_its_rows_per_table(
    simulator: Any,
    run_dag: Callable[..., Any],
    tmp_path: Path,
    task_logs: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_revox._internal.export import run as export_run

    monkeypatch.setattr(export_run, "PROGRESS_EVERY", 2)
    ids = [place(simulator, GOOD_OUTPUT) for _ in range(5)]
    simulator.finish(*ids)
    destination = tmp_path / "export"
    task_logs()
    dag_run = run_dag(
        export_dag(
            "revox_export_progress", call_ids=ids, destination=f"file://{destination}", tables=["calls"]
        ),
        "revox_export_progress",
    )
    assert task_state(dag_run, "export") == "success"
    text = task_logs()
    progress = re.findall(r"(\d+) call\(s\) fetched so far \((\d+|inf) calls/s\); rows: calls (\d+)", text)
    assert [(done, rows) for done, _, rows in progress] == [("2", "2"), ("4", "4")]
    assert re.search(r"Fetched 5 call\(s\) in [\d.]+ s; rows: calls 5", text)
    assert re.search(r"Wrote \d+ file\(s\) for 5 call\(s\) under \S+; rows: calls 5", text)
