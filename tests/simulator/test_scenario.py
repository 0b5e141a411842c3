"""Scenario files (JSON and YAML), the CLI as a real subprocess, and the clocks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._simulator import cli
from airflow_provider_revox._simulator import clock as clock_module
from airflow_provider_revox._simulator.search import SEARCH_FILTERS
from airflow_provider_revox.hooks.revox import Call
from airflow_provider_revox.testing import (
    ScaledClock,
    ScenarioError,
    VirtualClock,
    load_scenario,
    running_simulator,
)

SCENARIO: dict[str, Any] = {
    "calls": [
        {
            "id": "call-voicemail-then-human",
            "phone_number": "+33612345678",
            "assistant_id": "asst_reminder",
            "metadata": {"customer_id": "42"},
            "attempts": [{"result": "voicemail", "duration": 20}, {"result": "human", "duration": 140}],
            "post_processing_seconds": 30,
            "outcome": "interested",
            "structured_output": {"confirmed": True, "contact_name": "Ada Lovelace"},
            "faults": ["429", "ok"],
        },
        {
            "id": "call-unreachable",
            "phone_number": "+12127363100",
            "assistant_id": "asst_reminder",
            "attempts": [{"dial_error": "busy"}, {"dial_error": "number_non_attributed"}],
        },
        {"id": "call-random", "phone_number": "+442071838750", "assistant_id": "asst_reminder"},
    ]
}


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_scenario_file_drives_fixed_calls_over_http(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"scenario{suffix}"
    path.write_text(json.dumps(SCENARIO) if suffix == ".json" else yaml.safe_dump(SCENARIO))
    with running_simulator(seed=2, scenario=path) as sim:
        assert sim.engine.call_ids() == ["call-voicemail-then-human", "call-unreachable", "call-random"]
        headers = {"Authorization": f"Bearer {sim.api_key}"}
        url = f"{sim.base_url}/call/call-voicemail-then-human"
        assert httpx.get(url, headers=headers).status_code == 429  # scripted in the file
        sim.clock.set(max(sim.engine.terminal_at(i) for i in sim.engine.call_ids()))  # type: ignore[attr-defined, type-var]
        human = Call.from_response(httpx.get(url, headers=headers).json())
        assert human.status == statuses.COMPLETED and human.calls_count == 2
        assert [a.result for a in human.attempts_newest_first()] == ["human", "voicemail"]
        assert human.attempts_newest_first()[0].answered_at is not None
        ended, answered = human.last_attempt.ended_at, human.last_attempt.answered_at  # type: ignore[union-attr]
        assert (ended - answered).total_seconds() == 140  # type: ignore[operator]
        assert human.outcome == "interested"
        assert human.structured_output == {"confirmed": True, "contact_name": "Ada Lovelace"}
        assert sim.engine.terminal_at("call-voicemail-then-human") == ended + timedelta(seconds=30)  # type: ignore[operator]
        unreachable = Call.from_response(
            httpx.get(f"{sim.base_url}/call/call-unreachable", headers=headers).json()
        )
        assert unreachable.status == statuses.ERRORED
        assert [a.dial_error for a in unreachable.attempts_newest_first()] == [
            "number_non_attributed",
            "busy",
        ]
        random_call = httpx.get(f"{sim.base_url}/call/call-random", headers=headers).json()["call"]
        assert random_call["status"] in statuses.TERMINAL


@pytest.mark.parametrize(
    ("calls", "message"),
    [
        (
            [{"id": "a", "phone_number": "+33612345678", "assistant_id": "x", "colour": "red"}],
            "unknown keys \\['colour'\\]",
        ),
        (
            [{"phone_number": "+33612345678", "assistant_id": "x", "attempts": [{"result": "fax"}]}],
            "result must be",
        ),
        ([{"phone_number": "+33612345678", "assistant_id": "x", "attempts": [{}]}], "exactly one of"),
        ([{"phone_number": "+33612345678", "assistant_id": "x", "final_status": "done"}], "final_status"),
        ([{"phone_number": "+33612345678", "assistant_id": "x", "faults": ["boom"]}], "unknown fault 'boom'"),
        ([{"id": "a", "phone_number": "+1", "assistant_id": "x"}], "calls\\[0\\]: phone_number"),
    ],
)
def test_bad_scenarios_name_the_entry(tmp_path: Path, calls: list[dict[str, Any]], message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"calls": calls}))
    with pytest.raises(ScenarioError, match=message), running_simulator(scenario=path):
        pass


def test_unreadable_scenarios(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_scenario(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("calls: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(broken)


def test_cli_serves_a_population_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_revox.testing",
            "--port",
            "0",
            "--speed",
            "600",
            "--calls",
            "20",
            "--refuse-sort",
            "--faults",
            "drop_after_commit=0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first.startswith("Revox simulator listening on http://127.0.0.1:")
        base_url = first.rsplit(" ", 1)[-1]
        assert base_url.endswith("/api")
        key_line = process.stdout.readline().strip()
        assert key_line.startswith("API key: ")
        api_key = key_line.removeprefix("API key: ")
        ids = httpx.get(f"{base_url}/_simulator/calls").json()["call_ids"]
        assert len(ids) == 20
        headers = {"Authorization": f"Bearer {api_key}"}
        response = httpx.get(f"{base_url}/call/{ids[0]}", headers=headers)
        assert response.status_code == 200
        assert Call.from_response(response.json()).id == ids[0]
        filters = dict.fromkeys(SEARCH_FILTERS, ())
        sorted_search = {**filters, "page": 0, "page_size": 5, "sort_by": "updated_at"}
        refused = httpx.post(f"{base_url}/call/search", json=sorted_search, headers=headers)
        assert refused.status_code == 422 and "sort" in refused.json()["message"]
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert "Revox simulator stopped" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "--allow-remote"),
        (["--faults", "bogus=0.1"], "unknown fault 'bogus'"),
        (["--speed", "0"], "--speed must be a positive number"),
    ],
)
def test_cli_rejects_bad_options(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--port", "0", *args], environ={})
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_virtual_clock_moves_only_forward() -> None:
    clock = VirtualClock(datetime(2025, 1, 1, tzinfo=timezone.utc))
    assert clock.advance(90) == datetime(2025, 1, 1, 0, 1, 30, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="negative"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="cannot set the clock back"):
        clock.set(datetime(2024, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(ValueError, match="no timezone"):
        clock.set(datetime(2026, 1, 1))


def test_scaled_clock_multiplies_real_time(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([100.0, 102.5])
    monkeypatch.setattr(clock_module.time, "monotonic", lambda: next(ticks))
    start = datetime(2025, 3, 3, 9, tzinfo=timezone.utc)
    clock = ScaledClock(speed=3600, start=start)
    assert clock.now() == start + timedelta(hours=2.5)
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(speed=0)
