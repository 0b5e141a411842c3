"""A task killed while its POST /call is unanswered still cancels the order, found by its key.

Real HTTP against the simulator: the POST is stored and its answer lost, and the search right
after it fails, so the operator never learns the id; the kill that follows finds the order by
its idempotency key and this task's identity, and cancels it. A kill that comes while the POST is
held (the order not stored yet, so no search can find it) cancels the order once the answer brings
its id. Another DAG's order under the same key is never touched.
"""

from __future__ import annotations

import os
import signal
import threading
import time
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


def held_post(sim: SimulatorHandle) -> bool:
    """Wait until the simulator holds the POST /call (its scripted fault taken), nothing stored yet."""
    for _ in range(400):
        if sim.faults.pending(PARIS) == 0:
            break
        time.sleep(0.01)
    return sim.faults.pending(PARIS) == 0 and sim.engine.call_ids() == []


@pytest.mark.parametrize("kill", ["signal", "thread"])
def test_a_kill_while_the_post_is_held_cancels_the_order_once_its_answer_arrives(
    kill: str,
    revox_simulator: SimulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The POST is held before the order is stored: the kill's search finds nothing, so only the
    # answer, when it comes, can tell which order to cancel. "signal": as Airflow's SIGTERM
    # handler does, on_kill runs on the thread that is placing, interrupting its wait for the
    # answer; "thread": on_kill runs on another thread.
    monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", revox_simulator.connection_json(max_retries=0))
    revox_simulator.faults.script(PARIS, ["slow:3"])
    operator = RevoxPlaceCallOperator(
        task_id="call", phone_number=PARIS, assistant_id="asst_kill", scheduled_at=TOMORROW,
        wait_for_completion=False, idempotency_key="held-key",
    )  # fmt: skip
    placed: list[Any] = []
    if kill == "signal":
        held: list[bool] = []
        previous = signal.signal(signal.SIGUSR1, lambda *_: operator.on_kill())
        killer = threading.Thread(target=lambda: (held.append(held_post(revox_simulator)),
                                                  os.kill(os.getpid(), signal.SIGUSR1)))  # fmt: skip
        killer.start()
        try:
            placed.append(operator.execute(context("dag_held")))  # type: ignore[arg-type]
        finally:
            killer.join(timeout=30)
            signal.signal(signal.SIGUSR1, previous)
        assert held == [True]
    else:
        worker = threading.Thread(target=lambda: placed.append(operator.execute(context("dag_held"))))  # type: ignore[arg-type]
        worker.start()
        assert held_post(revox_simulator)
        operator.on_kill()
        worker.join(timeout=30)
        assert not worker.is_alive()

    (call_id,) = revox_simulator.engine.call_ids()
    assert placed == [call_id]
    assert revox_simulator.get_call(call_id)["status"] == "cancelled"
    endpoints = revox_simulator.stats()["by_endpoint"]
    assert endpoints["POST /call"] == 1
    assert endpoints["POST /call/{id}/cancel"] == 1
    out = capsys.readouterr()
    logged = out.out + out.err
    assert "no order with idempotency key held-key is visible" in logged
    assert f"Call {call_id} cancelled because the task was killed while the order was being placed" in logged
