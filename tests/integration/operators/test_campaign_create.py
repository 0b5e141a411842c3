"""RevoxCreateCampaignOperator through real Airflow and real HTTP: sources, rejects, durability."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_revox._internal.core import compat
from airflow_provider_revox.testing import SimulatorHandle
from tests.support.versions import needs_task_state_store

DAG = """
import pendulum
from datetime import timedelta
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxCreateCampaignOperator

@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False)
def build():
    RevoxCreateCampaignOperator(
        task_id="create", name="Reminders", assistant_id="asst_demo",
        retries={retries}, retry_delay=timedelta(seconds=0), **{kwargs}
    )

build()
"""

GOOD = [("+33612345601", "Ana"), ("+33612345602", "Ben"), ("+12125550123", "Dee")]
BAD = [("0612345678", "Cy"), ("+3361", "Eve")]


def create_dag(run_dag: Callable[..., Any], retries: int = 0, **kwargs: Any) -> Any:
    run = run_dag(DAG.format(dag_id="campaign_create", retries=retries, kwargs=kwargs), "campaign_create")
    ti = next(ti for ti in run.get_task_instances() if ti.task_id == "create")
    return ti


def rows() -> list[dict[str, str]]:
    mixed = [GOOD[0], BAD[0], GOOD[1], BAD[1], GOOD[2]]
    return [{"to_phone_number": n, "first_name": f, "plan": "gold"} for n, f in mixed]


def write(path: Path, fmt: str) -> Path:
    data = rows()
    if fmt == "csv":
        path.write_text(
            "to_phone_number,first_name,plan\n"
            + "".join(f"{r['to_phone_number']},{r['first_name']},gold\n" for r in data)
        )
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in data))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(data), path)
    return path


def simulator_contacts(sim: SimulatorHandle) -> list[dict[str, Any]]:
    campaigns = [sim.engine.campaigns.campaign(i) for i in sim.engine.campaigns.ids()]
    assert len(campaigns) == 1
    return [sim.get_call(call_id) for call_id in campaigns[0].call_ids]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_file_rows_are_checked_and_bad_ones_rejected(
    fmt: str, revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    source = write(tmp_path / f"contacts.{fmt}", fmt)
    ti = create_dag(
        run_dag, contacts_path=source.as_uri(), max_rejected_rows=2, prompt_variable_columns=["first_name"]
    )
    assert ti.state == "success"
    result = ti.xcom_pull(task_ids="create")
    assert result["contacts"] == 3 and result["rejected"] == 2 and result["reattached"] is False
    rejects = [json.loads(line) for line in Path(str(source) + ".rejects.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rejects] == [2, 4]
    assert "E.164" in rejects[0]["reason"] and "not a valid phone number" in rejects[1]["reason"]
    assert rejects[0]["input"]["to_phone_number"] == "0612345678"
    calls = simulator_contacts(revox_simulator)
    assert sorted(c["to_phone_number"] for c in calls) == sorted(n for n, _ in GOOD)
    assert all(
        c["prompt_variables"] == {"first_name": next(f for n, f in GOOD if n == c["to_phone_number"])}
        for c in calls
    )


def test_list_contacts_with_their_own_prompt_variables(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    contacts = [
        {"to_phone_number": "+33612345601", "prompt_variables": {"first_name": "Ana"}},
        {"to_phone_number": "+33612345602", "prompt_variables": {"visits": 3}},
    ]
    rejects = tmp_path / "rejects.jsonl"
    ti = create_dag(run_dag, contacts=contacts, max_rejected_rows=1, rejects_path=str(rejects))
    assert ti.state == "success"
    assert ti.xcom_pull(task_ids="create")["rejected"] == 1
    [reject] = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert reject["row"] == 2 and "prompt_variables must map strings to strings" in reject["reason"]
    [call] = simulator_contacts(revox_simulator)
    assert call["prompt_variables"] == {"first_name": "Ana"}


def test_too_many_rejects_fail_the_task_and_create_nothing(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    source = write(tmp_path / "contacts.csv", "csv")
    ti = create_dag(run_dag, contacts_path=source.as_uri(), max_rejected_rows=1)
    assert ti.state == "failed"
    assert revox_simulator.stats()["campaigns"] == 0
    assert len(Path(str(source) + ".rejects.jsonl").read_text().splitlines()) == 2


def test_default_tolerates_no_bad_row(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    source = write(tmp_path / "contacts.jsonl", "jsonl")
    assert create_dag(run_dag, contacts_path=source.as_uri()).state == "failed"
    assert revox_simulator.stats()["campaigns"] == 0


def test_retry_after_a_lost_answer_finds_the_campaign(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    # The server stores the campaign and the connection drops before the answer: the first try
    # fails, and the retry finds the campaign by the key in its name instead of creating another.
    revox_simulator.faults.script("POST /campaigns", ["drop_after_commit"])
    contacts = [{"to_phone_number": n, "prompt_variables": {"first_name": f}} for n, f in GOOD]
    ti = create_dag(run_dag, retries=1, contacts=contacts)
    assert ti.state == "success" and ti.try_number == 2
    result = ti.xcom_pull(task_ids="create")
    assert result["reattached"] is True
    stats = revox_simulator.stats()
    assert stats["campaigns"] == 1 and stats["by_endpoint"]["POST /campaigns"] == 1
    [campaign] = [
        revox_simulator.engine.campaigns.campaign(i) for i in revox_simulator.engine.campaigns.ids()
    ]
    assert result["campaign_id"] == campaign.id and campaign.name.startswith("Reminders [af-")


def test_a_fixed_key_reattaches_across_runs(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    contacts = [{"to_phone_number": GOOD[0][0], "prompt_variables": {}}]
    first = create_dag(run_dag, contacts=contacts, idempotency_key="spring-2025").xcom_pull(task_ids="create")
    second = create_dag(run_dag, contacts=contacts, idempotency_key="spring-2025").xcom_pull(
        task_ids="create"
    )
    assert first["campaign_id"] == second["campaign_id"]
    assert (first["reattached"], second["reattached"]) == (False, True)
    assert first["name"] == "Reminders [spring-2025 @ campaign_create/create]"
    assert revox_simulator.stats()["campaigns"] == 1


STORED_DAG = """
import pendulum
from datetime import timedelta
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxCreateCampaignOperator


class DiesAfterCreating(RevoxCreateCampaignOperator):
    def execute(self, context):
        result = super().execute(context)
        if context["ti"].try_number == 1:
            raise RuntimeError("the worker died after the campaign was created")
        return result


@dag(dag_id="campaign_stored", schedule=None, start_date=pendulum.datetime(2025, 1, 1), catchup=False)
def build():
    DiesAfterCreating(
        task_id="create", name="Reminders", assistant_id="asst_demo", retries=1, retry_delay=timedelta(0),
        contacts=[{"to_phone_number": "+33612345601", "prompt_variables": {}}],
    )

build()
"""


@needs_task_state_store
def test_retry_reattaches_through_the_task_state_store(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any]
) -> None:
    run = run_dag(STORED_DAG, "campaign_stored")
    [ti] = run.get_task_instances()
    assert ti.state == "success" and ti.try_number == 2
    result = ti.xcom_pull(task_ids="create")
    assert result["reattached"] is True
    endpoints = revox_simulator.stats()["by_endpoint"]
    # The second try read the stored id (one GET of that campaign) and listed nothing.
    assert endpoints["POST /campaigns"] == 1 and endpoints["GET /campaigns"] == 1
    assert endpoints["GET /campaigns/{id}"] == 1


@pytest.mark.usefixtures("without_task_state_store")
def test_without_a_store_a_retry_finds_the_campaign_by_its_name(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Airflow 3.2: the id the first try got is not kept; the retry lists the campaigns instead.
    run = run_dag(STORED_DAG, "campaign_stored")
    [ti] = run.get_task_instances()
    assert ti.state == "success" and ti.try_number == 2
    result = ti.xcom_pull(task_ids="create")
    assert result["reattached"] is True and revox_simulator.stats()["campaigns"] == 1
    endpoints = revox_simulator.stats()["by_endpoint"]
    assert endpoints["POST /campaigns"] == 1 and endpoints["GET /campaigns"] == 2
    assert "GET /campaigns/{id}" not in endpoints
    logged = capsys.readouterr().out
    assert f"store needs Airflow 3.3 or later (this is Airflow {compat.airflow_version()})" in logged
    assert f"each try first looks for a campaign named {result['name']!r}, reattaching" in logged


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str], caplog: Any) -> Callable[[], str]:
    """What the tasks logged (``dag.test()`` prints the task logs)."""

    def read() -> str:
        captured = capsys.readouterr()
        return captured.out + captured.err + caplog.text

    return read


def test_a_csv_row_with_extra_fields_is_rejected_for_its_field_count(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    source = tmp_path / "contacts.csv"
    source.write_text("to_phone_number,first_name\n+33612345601,Ana\n+33612345602,Ben,gold,extra\n")
    ti = create_dag(run_dag, contacts_path=source.as_uri(), max_rejected_rows=1)
    assert ti.state == "success"
    [reject] = [json.loads(line) for line in Path(str(source) + ".rejects.jsonl").read_text().splitlines()]
    assert reject["row"] == 2
    assert reject["reason"] == "row 2 (line 3) has 4 fields, the header has 2"
    assert [c["to_phone_number"] for c in simulator_contacts(revox_simulator)] == ["+33612345601"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_file_without_the_number_column_is_one_error_naming_the_columns_found(
    fmt: str,
    revox_simulator: SimulatorHandle,
    run_dag: Callable[..., Any],
    tmp_path: Path,
    logs: Callable[[], str],
) -> None:
    source = tmp_path / f"contacts.{fmt}"
    rows = [{"phone": f"+3361234560{i}", "first_name": "Ana"} for i in range(5)]
    if fmt == "csv":
        source.write_text("phone,first_name\n" + "".join(f"{r['phone']},Ana\n" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), source)
    ti = create_dag(run_dag, contacts_path=source.as_uri(), max_rejected_rows=10)
    assert ti.state == "failed"
    text = logs()
    assert "has no 'to_phone_number' column (columns found: 'phone', 'first_name')" in text
    assert not Path(str(source) + ".rejects.jsonl").exists()
    assert revox_simulator.stats()["campaigns"] == 0


def test_the_same_number_twice_in_one_file_is_dialled_once(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    source = tmp_path / "contacts.csv"
    source.write_text(
        "to_phone_number,first_name\n+33612345601,Ana\n+33612345602,Ben\n +33612345601 ,Ana again\n"
    )
    ti = create_dag(run_dag, contacts_path=source.as_uri(), max_rejected_rows=1)
    assert ti.state == "success"
    assert ti.xcom_pull(task_ids="create")["contacts"] == 2
    [reject] = [json.loads(line) for line in Path(str(source) + ".rejects.jsonl").read_text().splitlines()]
    assert reject["row"] == 3 and reject["reason"] == "duplicate: the same number as row 1"
    numbers = sorted(c["to_phone_number"] for c in simulator_contacts(revox_simulator))
    assert numbers == ["+33612345601", "+33612345602"]


def test_a_file_that_is_not_utf8_is_a_named_error_naming_the_row(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path, logs: Callable[[], str]
) -> None:
    source = tmp_path / "contacts.csv"
    source.write_bytes(b"to_phone_number,first_name\n+33612345601,Ana\n+33612345602,Jos\xe9\n")
    ti = create_dag(run_dag, contacts_path=source.as_uri(), max_rejected_rows=5)
    assert ti.state == "failed"
    text = logs()
    assert "RevoxConfigError" in text
    assert "is not UTF-8 text: row 2 (line 3) holds byte 0xe9 at position 17" in text
    assert "UnicodeDecodeError" not in text
    assert revox_simulator.stats()["campaigns"] == 0


def test_rejects_mask_credential_columns(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    source = tmp_path / "contacts.jsonl"
    source.write_text(
        json.dumps({"to_phone_number": "+33612345601", "first_name": "Ana"})
        + "\n"
        + json.dumps({"to_phone_number": "0612", "pin": "4321", "otp": "998877", "session": "s-abc-123"})
        + "\n"
    )
    ti = create_dag(run_dag, contacts_path=source.as_uri(), max_rejected_rows=1, prompt_variable_columns=[])
    assert ti.state == "success"
    text = Path(str(source) + ".rejects.jsonl").read_text()
    [reject] = [json.loads(line) for line in text.splitlines()]
    assert reject["input"]["to_phone_number"] == "0612"
    assert {reject["input"][k] for k in ("pin", "otp", "session")} == {"***"}
    assert "4321" not in text and "998877" not in text and "s-abc-123" not in text


CREDENTIAL_COLUMNS = ("pin", "otp", "session", "key", "api_key")


def test_rejects_mask_every_credential_column_of_every_kind_of_reject(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    # Three rejects, each through its own path: a bad number, a duplicate (a checked contact) and a
    # do-not-contact number the gate skips (its columns are prompt variables by then).
    numbers = ["+33612345601", "0612", "+33612345601", "+33612345603"]
    raw = {(row, column): f"raw-{column}-{row}" for row in range(1, 5) for column in CREDENTIAL_COLUMNS}
    source = tmp_path / "contacts.csv"
    lines = [["to_phone_number", "first_name", *CREDENTIAL_COLUMNS]] + [
        [number, "Ana", *(raw[(row, c)] for c in CREDENTIAL_COLUMNS)]
        for row, number in enumerate(numbers, start=1)
    ]
    source.write_text("".join(",".join(line) + "\n" for line in lines))
    revox_simulator.engine.phone_book.mark(["+33612345603"])
    ti = create_dag(run_dag, contacts_path=source.as_uri(), max_rejected_rows=2)
    assert ti.state == "success"
    text = Path(str(source) + ".rejects.jsonl").read_text()
    rejects = [json.loads(line) for line in text.splitlines()]
    assert [(r["row"], r.get("skipped")) for r in rejects] == [(2, None), (3, None), (4, "do_not_contact")]
    shown = [rejects[0]["input"], rejects[1]["input"], rejects[2]["input"]["prompt_variables"]]
    assert [{c: values[c] for c in CREDENTIAL_COLUMNS} for values in shown] == [
        dict.fromkeys(CREDENTIAL_COLUMNS, "***")
    ] * 3
    assert [values["first_name"] for values in shown] == ["Ana"] * 3  # only credentials are masked
    leaked = [value for value in raw.values() if value in text]
    assert leaked == []


def test_a_large_file_is_streamed_and_stops_at_the_reject_limit(
    revox_simulator: SimulatorHandle, run_dag: Callable[..., Any], tmp_path: Path, logs: Callable[[], str]
) -> None:
    # 250,000 rows, every one bad after the first 120,000: the read stops at the 11th reject.
    source = tmp_path / "contacts.csv"
    good = "".join(f"+1212555{i:04d},n{i}\n" for i in range(10_000)) * 12
    with source.open("w") as out:
        out.write("to_phone_number,first_name\n")
        out.write(good)
        out.write("0612,bad\n" * 130_000)
    ti = create_dag(run_dag, contacts_path=source.as_uri(), max_rejected_rows=10)
    assert ti.state == "failed"
    rejects = Path(str(source) + ".rejects.jsonl").read_text().splitlines()
    # The first 10,000 numbers repeat eleven times: those duplicates reach the limit first.
    assert len(rejects) == 11
    assert json.loads(rejects[0])["reason"] == "duplicate: the same number as row 1"
    text = logs()
    assert "the read stopped at row 10011" in text
    assert revox_simulator.stats()["campaigns"] == 0


def test_a_long_read_logs_its_progress_with_counts(
    revox_simulator: SimulatorHandle,
    run_dag: Callable[..., Any],
    tmp_path: Path,
    logs: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_revox._internal.core import contacts as reading

    # A report every 1,000 rows instead of 100,000: the same lines, from a file that reads in seconds.
    monkeypatch.setattr(reading, "PROGRESS_EVERY", 1_000)
    source = tmp_path / "contacts.csv"
    with source.open("w") as out:
        out.write("to_phone_number,first_name\n")
        for row in range(1, 2_501):
            out.write(f"{'0612' if row % 500 == 0 else f'+336{10_000_000 + row}'},n{row}\n")
    logs()
    ti = create_dag(run_dag, contacts_path=source.as_uri(), max_rejected_rows=5)
    assert ti.state == "success"
    assert ti.xcom_pull(task_ids="create")["contacts"] == 2_495
    reports = [line for line in logs().splitlines() if "contact rows" in line and "Read " in line]
    counts = [line[line.index("Read ") :].split(" [")[0].strip() for line in reports]
    assert counts == [
        "Read 1000 contact rows: 998 contacts, 2 rejected",
        "Read 2000 contact rows: 1996 contacts, 4 rejected",
        "Read 2500 contact rows: 2495 contacts, 5 rejected",
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"mode": "fast"}, "mode must be one of ('ai_first', 'speed_dial'), not 'fast'"),
        ({"rows_mode": "some"}, "rows_mode must be one of ('only', 'all_except'), not 'some'"),
        ({"filters": {"status": ["completed"]}}, "unknown launch filters ['status']"),
    ],
)
def test_a_wrong_literal_launch_setting_is_refused_when_the_dag_is_parsed(
    arguments: dict[str, Any], message: str
) -> None:
    from airflow_provider_revox.operators.revox import RevoxLaunchCampaignOperator

    with pytest.raises(ValueError, match="launch") as raised:
        RevoxLaunchCampaignOperator(task_id="launch", campaign_id="{{ ti.xcom_pull('create') }}", **arguments)
    assert str(raised.value).startswith("launch: ") and message in str(raised.value)
