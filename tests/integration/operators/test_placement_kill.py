"""A task killed while its POST /call is unanswered still cancels the order, found by its key.

Real HTTP against the simulator: the POST is stored and its answer lost, and the search right
after it fails, so the operator never learns the id; the kill that follows finds the order by
its idempotency key and this task's identity, and cancels it. Another DAG's order under the same
key is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from airflow_provider_revox._internal.operators.placement import RevoxPlaceCallOperator
from airflow_provider_revox.exceptions import RevoxPlacementUnknownError
from airflow_provider_revox.testing import SimulatorHandle

PARIS = "+33612345678"
TOMORROW = "2099-01-05T09:00:00Z"


@dataclass
class StubTI:
    """What the operator reads of its task instance."""

    dag_id: str
    try_number: int = 1
    task_id: str = "call"
    map_index: int = -1

    def xcom_push(self, key: str, value: Any) -> None:
        """The extra link's URL goes nowhere."""


def context(dag_id: str) -> dict[str, Any]:
    return {"ti": StubTI(dag_id=dag_id), "run_id": "manual__1"}


def killed_mid_post(sim: SimulatorHandle, dag_id: str, **kwargs: Any) -> RevoxPlaceCallOperator:
    """An operator whose POST reached Revox but whose answer (and the search after it) was lost."""
    sim.faults.script("POST /call", ["drop_after_commit"])
    sim.faults.script("POST /call/search", ["ok", "503"])  # the search before the POST, the one after
    operator = RevoxPlaceCallOperator(
        task_id="call", phone_number=PARIS, assistant_id="asst_kill", scheduled_at=TOMORROW,
        wait_for_completion=False, idempotency_key="shared-key", **kwargs,
    )  # fmt: skip
    with pytest.raises(RevoxPlacementUnknownError):
        operator.execute(context(dag_id))  # type: ignore[arg-type]
    assert operator.call_id == ""
    return operator


def test_a_kill_while_the_post_is_unanswered_finds_the_order_and_cancels_it(
    revox_simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", revox_simulator.connection_json(max_retries=0))
    operator = killed_mid_post(revox_simulator, "dag_kill")
    (call_id,) = revox_simulator.engine.call_ids()
    operator.on_kill()
    assert operator.call_id == call_id
    assert revox_simulator.get_call(call_id)["status"] == "cancelled"
    assert revox_simulator.stats()["by_endpoint"]["POST /call/{id}/cancel"] == 1


def test_a_kill_mid_post_never_cancels_another_dags_order_under_the_same_key(
    revox_simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", revox_simulator.connection_json(max_retries=0))
    theirs = RevoxPlaceCallOperator(
        task_id="call", phone_number=PARIS, assistant_id="asst_kill", scheduled_at=TOMORROW,
        wait_for_completion=False, idempotency_key="shared-key",
    ).execute(context("dag_other"))  # type: ignore[arg-type]  # fmt: skip
    revox_simulator.faults.script("POST /call", ["drop"])  # this time the POST never arrives
    revox_simulator.faults.script("POST /call/search", ["ok", "503"])
    operator = RevoxPlaceCallOperator(
        task_id="call", phone_number=PARIS, assistant_id="asst_kill", scheduled_at=TOMORROW,
        wait_for_completion=False, idempotency_key="shared-key",
    )  # fmt: skip
    with pytest.raises(RevoxPlacementUnknownError):
        operator.execute(context("dag_kill"))  # type: ignore[arg-type]
    operator.on_kill()
    assert operator.call_id == ""
    assert revox_simulator.get_call(theirs)["status"] != "cancelled"
    assert revox_simulator.stats()["by_endpoint"].get("POST /call/{id}/cancel", 0) == 0


def test_without_cancel_on_kill_a_kill_mid_post_looks_for_nothing(
    revox_simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", revox_simulator.connection_json(max_retries=0))
    operator = killed_mid_post(revox_simulator, "dag_keep", cancel_on_kill=False)
    searches = revox_simulator.stats()["by_endpoint"]["POST /call/search"]
    operator.on_kill()
    (call_id,) = revox_simulator.engine.call_ids()
    assert revox_simulator.get_call(call_id)["status"] != "cancelled"
    assert revox_simulator.stats()["by_endpoint"]["POST /call/search"] == searches
