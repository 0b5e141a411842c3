"""What every system-test check reads: the context (stack, REST API, runs, deferral watch) and the
ways a check fails."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from airflow_provider_revox._internal.client.requests import SEARCH_FILTERS
from system_tests.airflow_api import AirflowApi
from system_tests.stack import Stack

FIRED = "Trigger fired event"
STARTED = re.compile(r"trigger \S+ \(ID \d+\) starting")
SUMMARY_KEYS = {
    "call_id",
    "status",
    "outcome",
    "calls_count",
    "last_attempt_result",
    "last_attempt_end_reason",
    "last_attempt_dial_error",
    "last_attempt_ended_at",
    "ended_at",
}
TIMEOUT_WORDS = ("timeout", "timed out", "did not finish")


class CheckFailed(AssertionError):
    """A check's expectation did not hold; the message says what was seen."""


def expect(condition: object, message: str) -> None:
    """Fail the current check with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)


def as_dict(value: object, what: str) -> dict[str, Any]:
    """``value`` when it is a mapping; else fail the current check naming ``what``."""
    if not isinstance(value, dict):
        raise CheckFailed(f"{what}: expected a mapping, got {value!r}")
    return value


@dataclass
class Run:
    """One DAG run the test started."""

    dag_id: str
    run_id: str
    state: str = "queued"


class DeferralWatch:
    """Records, once a second, which triggerer holds each deferred task instance."""

    def __init__(self, api: AirflowApi) -> None:
        self.api = api
        self.seen: dict[tuple[str, str, str, int], list[int | None]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="deferral-watch", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                body = self.api.get("/dags/~/dagRuns/~/taskInstances", state="deferred", limit=100)
            except (httpx.HTTPError, ValueError):
                continue
            for ti in body["task_instances"]:
                key = (ti["dag_id"], ti["dag_run_id"], ti["task_id"], ti["map_index"])
                trigger = ti.get("trigger") or {}
                holder = trigger.get("triggerer_id")
                history = self.seen[key]
                if not history or history[-1] != holder:
                    history.append(holder)

    def holders(self, ti: dict[str, Any]) -> list[int | None]:
        """The triggerer job ids seen holding ``ti``'s trigger, in order (None: unassigned)."""
        return list(self.seen.get((ti["dag_id"], ti["dag_run_id"], ti["task_id"], ti["map_index"]), []))

    def deferred_in_triggerer(self, ti: dict[str, Any]) -> bool:
        """True when ``ti`` was seen deferred with its trigger held by a triggerer."""
        return any(holder is not None for holder in self.holders(ti))


@dataclass
class Context:
    """What every check reads."""

    stack: Stack
    api: AirflowApi
    watch: DeferralWatch
    runs: dict[str, Run]
    kill_report: dict[str, Any] = field(default_factory=dict)
    listeners: list[tuple[str, str, int]] = field(default_factory=list)

    def ti(self, run: str, task_id: str = "wait", map_index: int = -1) -> dict[str, Any]:
        """A task instance of one of the test's runs."""
        r = self.runs[run]
        return self.api.task_instance(r.dag_id, r.run_id, task_id, map_index)

    def simulator_call(self, call_id: str) -> dict[str, Any]:
        """The order as the simulator's API shows it (the raw response, secrets and all)."""
        response = httpx.get(
            f"{self.stack.sim_base_url}/call/{call_id}",
            headers={"Authorization": f"Bearer {self.stack.api_key}"},
            timeout=10,
        )
        response.raise_for_status()
        return dict(response.json()["call"])

    def simulator_search(self, **filters: Any) -> list[dict[str, Any]]:
        """Every order the simulator's ``POST /call/search`` returns for ``filters`` (one page of 1,000)."""
        return simulator_search(self.stack.sim_base_url, self.stack.api_key, **filters)


def simulator_search(sim_base_url: str, api_key: str, **filters: Any) -> list[dict[str, Any]]:
    """Every order a simulator's ``POST /call/search`` returns for ``filters`` (one page of 1,000)."""
    # The API requires every filter list (an empty one does not filter) and the page.
    body = {**{name: [] for name in SEARCH_FILTERS}, "page": 0, "page_size": 1000, **filters}
    response = httpx.post(
        f"{sim_base_url}/call/search",
        json=body,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    response.raise_for_status()
    return list(response.json()["calls"])
