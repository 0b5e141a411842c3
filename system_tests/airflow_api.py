"""A small client of Airflow's public REST API (``/api/v2``) with a token from ``/auth/token``."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import httpx

TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class AirflowApi:
    """Calls ``/api/v2`` of one api-server; every call carries a fresh-enough bearer token."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=60.0)
        self._token: str | None = None

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()

    def healthy(self) -> bool:
        """True once the api-server answers its health endpoint."""
        try:
            return self.http.get("/api/v2/monitor/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def token(self) -> str:
        """A JWT from the simple auth manager (every user is an admin in this deployment)."""
        if self._token is None:
            response = self.http.get("/auth/token")
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One authenticated request to ``/api/v2{path}``."""
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        return self.http.request(method, f"/api/v2{path}", headers=headers, **kwargs)

    def get(self, path: str, **params: Any) -> Any:
        """GET a JSON document; raise on an HTTP error."""
        response = self.request("GET", path, params=params or None)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any) -> Any:
        """POST a JSON body; raise on an HTTP error."""
        response = self.request("POST", path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:500]}")
        return response.json()

    # -- DAGs and runs ---------------------------------------------------------------------

    def dag_ids(self) -> set[str]:
        """The DAGs the api-server knows (parsed by the dag-processor)."""
        return {dag["dag_id"] for dag in self.get("/dags", limit=100)["dags"]}

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str) -> str:
        """Unpause ``dag_id`` and start a run with ``conf``; return its run id."""
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
        run = self.post(f"/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        """The state of a DAG run."""
        return str(self.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Poll a run every second until it ends; return its final state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.run_state(dag_id, run_id)
            if state in TERMINAL_RUN_STATES or time.monotonic() > deadline:
                return state
            time.sleep(1.0)

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """One task instance as the API shows it."""
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        return dict(self.get(path))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run (mapped ones included)."""
        body = self.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances", limit=100)
        return list(body["task_instances"])

    def log(self, ti: dict[str, Any]) -> str:
        """The full task log of a task instance's latest try, as the api-server serves it."""
        path = (
            f"/dags/{ti['dag_id']}/dagRuns/{quote(ti['dag_run_id'], safe='')}/taskInstances/"
            f"{ti['task_id']}/logs/{max(ti['try_number'], 1)}"
        )
        params: dict[str, Any] = {"full_content": "true"}
        if ti["map_index"] >= 0:
            params["map_index"] = ti["map_index"]
        response = self.request("GET", path, params=params, headers={"Accept": "application/json"})
        response.raise_for_status()
        lines = []
        for entry in response.json().get("content") or []:
            if isinstance(entry, dict):
                rest = {k: v for k, v in entry.items() if k != "event"}
                lines.append(f"{entry.get('event', '')} {json.dumps(rest, default=str) if rest else ''}")
            else:
                lines.append(str(entry))
        return "\n".join(lines)

    def xcoms(self, ti: dict[str, Any]) -> dict[str, Any]:
        """Every XCom of a task instance, deserialised, by key."""
        base = (
            f"/dags/{ti['dag_id']}/dagRuns/{quote(ti['dag_run_id'], safe='')}/taskInstances/{ti['task_id']}"
        )
        entries = self.get(f"{base}/xcomEntries", map_index=ti["map_index"])["xcom_entries"]
        values = {}
        for entry in entries:
            value = self.get(f"{base}/xcomEntries/{quote(entry['key'], safe='')}", map_index=ti["map_index"])
            values[entry["key"]] = value.get("value")
        return values

    @staticmethod
    def _ti_path(ti: dict[str, Any]) -> str:
        return (
            f"/dags/{ti['dag_id']}/dagRuns/{quote(ti['dag_run_id'], safe='')}/taskInstances/{ti['task_id']}"
        )

    def links(self, ti: dict[str, Any]) -> dict[str, Any]:
        """The extra links of a task instance."""
        path = f"{self._ti_path(ti)}/links"
        body = self.get(path, map_index=ti["map_index"]) if ti["map_index"] >= 0 else self.get(path)
        return dict(body["extra_links"])

    def ui_get(self, path: str) -> Any:
        """GET from the UI's API (``/ui``), which serves what the connection form reads."""
        response = self.http.get(f"/ui{path}", headers={"Authorization": f"Bearer {self.token()}"})
        response.raise_for_status()
        return response.json()
