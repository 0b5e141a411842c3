"""Bad settings and ids are refused by name when the DAG is parsed, before any request."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_revox._internal.waiting.ids import batch_call_ids, normalize_call_ids
from airflow_provider_revox.exceptions import RevoxInvalidCallIdError
from airflow_provider_revox.sensors.revox import RevoxCallSensor, RevoxCallsSensor

SENSORS: dict[str, dict[str, Any]] = {
    "RevoxCallSensor": {"call_id": "c-1"},
    "RevoxCallsSensor": {"call_ids": ["c-1", "c-2"]},
}


def build(name: str, **kwargs: Any) -> Any:
    cls = RevoxCallSensor if name == "RevoxCallSensor" else RevoxCallsSensor
    return cls(task_id="wait", **{**SENSORS[name], **kwargs})


@pytest.mark.parametrize("name", sorted(SENSORS))
@pytest.mark.parametrize("interval", [0, -5, float("inf"), float("nan"), True])
def test_poke_interval_must_be_a_positive_number(name: str, interval: Any) -> None:
    with pytest.raises(ValueError, match=r"^poke_interval must be a positive number of seconds, not "):
        build(name, poke_interval=interval)


@pytest.mark.parametrize("call_id", [".", "..", "..."])
def test_an_id_of_dots_is_refused(call_id: str) -> None:
    with pytest.raises(RevoxInvalidCallIdError, match=r"only dots|contains '\.\.'"):
        build("RevoxCallSensor", call_id=call_id)
    with pytest.raises(RevoxInvalidCallIdError, match=r"only dots|contains '\.\.'"):
        build("RevoxCallsSensor", call_ids=["c-1", call_id])
    # Still a ValueError, for callers that catch that.
    with pytest.raises(ValueError, match=r"only dots|contains '\.\.'"):
        batch_call_ids([call_id])


def test_a_templated_id_is_checked_only_once_rendered() -> None:
    assert build("RevoxCallSensor", call_id="{{ params.id }}").call_id == "{{ params.id }}"


@pytest.mark.parametrize("key", ["completed", "failed"])
def test_a_string_under_completed_or_failed_is_one_id(key: str) -> None:
    assert normalize_call_ids({key: "call_abc"}) == ["call_abc"]
    assert normalize_call_ids({"completed": "call_a", "failed": ["call_b"]}) == ["call_a", "call_b"]
    with pytest.raises(RevoxInvalidCallIdError, match="whitespace"):
        normalize_call_ids({key: "not an id"})
