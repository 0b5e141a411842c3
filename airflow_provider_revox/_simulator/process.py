"""The simulator's command line (``python -m airflow_provider_revox.testing``) as a subprocess, for
benchmarks, demos and system tests that need the server out of process.

::

    with SimulatorProcess(api_key="k", speed=100_000, scenario=path, faults="slow=1.0:0.05") as sim:
        sim.base_url            # http://127.0.0.1:PORT/api
        sim.get("/_simulator/stats")
        sim.get_call("call-1")  # authenticated GET /call/{id}, faults included

A separate process keeps the server's CPU and memory out of the measured process.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from airflow_provider_revox._simulator.harness import connection_json


def write_scenario(path: Path, calls: list[dict[str, Any]]) -> Path:
    """Write a scenario file (``{"calls": [...]}``) for ``--scenario`` and return its path."""
    path.write_text(json.dumps({"calls": calls}))
    return path


class SimulatorProcess:
    """Run ``python -m airflow_provider_revox.testing`` on a free loopback port.

    Args:
        api_key: the bearer token the simulator accepts.
        speed: simulated seconds per real second.
        seed: seed of the engine and the faults.
        calls: random orders to place at start-up.
        scenario: a scenario file of scripted orders.
        faults: a fault SPEC such as ``"429=0.05,slow=1.0:0.05"``.
        rate_limit_per_second: the account's limit, for every client together (``--rate-limit``).
    """

    def __init__(
        self,
        *,
        api_key: str,
        speed: float = 1.0,
        seed: int = 0,
        calls: int = 0,
        scenario: Path | None = None,
        faults: str | None = None,
        rate_limit_per_second: float | None = None,
    ) -> None:
        self.api_key = api_key
        self._args = ["--port", "0", "--speed", f"{speed:g}", "--seed", str(seed)]
        if calls:
            self._args += ["--calls", str(calls)]
        if scenario is not None:
            self._args += ["--scenario", str(scenario)]
        if faults:
            self._args += ["--faults", faults]
        if rate_limit_per_second:
            self._args += ["--rate-limit", f"{rate_limit_per_second:g}"]
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.port = 0

    def __enter__(self) -> SimulatorProcess:
        """Start the server; return once it listens."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_revox.testing", *self._args],
            # The key goes through the environment: on the command line it would show in ps.
            env={**os.environ, "REVOX_API_KEY": self.api_key},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        first = self._process.stdout.readline().strip()
        if not first.startswith("Revox simulator listening on "):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the simulator did not start: {first!r}")
        self.base_url = first.rsplit(" ", 1)[-1]
        self.port = int(self.base_url.split(":")[2].split("/")[0])
        return self

    def _request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, f"/api{path}", headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def get(self, path: str) -> Any:
        """GET an unauthenticated simulator route (``/_simulator/...``) and decode its JSON."""
        status, body = self._request("GET", path, {})
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        return json.loads(body)

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        """The order as ``GET /call/{id}`` shows it, or None when a fault got in the way."""
        try:
            auth = {"Authorization": f"Bearer {self.api_key}"}
            status, body = self._request("GET", f"/call/{call_id}", auth)
        except (http.client.HTTPException, OSError):  # a dropped connection
            return None
        if status != 200:
            return None
        try:
            call: dict[str, Any] = json.loads(body)["call"]
        except (ValueError, KeyError):
            return None
        return call

    def connection_env(self, conn_id: str = "revox_default", **extra: Any) -> dict[str, str]:
        """The environment variable that points an Airflow connection at this simulator.

        Args:
            conn_id: the connection id.
            **extra: connection extras, such as ``max_retries``.
        """
        return {f"AIRFLOW_CONN_{conn_id.upper()}": connection_json(self.base_url, self.api_key, **extra)}

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it does not stop)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None
