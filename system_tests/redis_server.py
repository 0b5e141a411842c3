"""A throw-away Redis on loopback: the Celery broker of the system test's CeleryExecutor cell."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from system_tests.processes import Process, free_port, wait_until


def redis_server_bin() -> str:
    """The ``redis-server`` executable; installs Debian's ``redis-server`` package when absent."""
    for _ in range(2):
        found = shutil.which("redis-server") or next(
            (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)), None
        )
        if found:
            return found
        print("Redis not found: installing Debian's redis-server package", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env)
    raise RuntimeError("redis-server is still missing after installing the redis-server package")


class Redis:
    """``redis-server`` in the foreground on 127.0.0.1 and a free port, nothing written to disk."""

    def __init__(self) -> None:
        self.binary = redis_server_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="revox-systest-redis-"))
        self.process: Process | None = None

    @property
    def url(self) -> str:
        """The broker URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, log_dir: Path, timeout: float = 30.0) -> None:
        """Start the server (its output in ``log_dir``); return once it accepts connections."""
        argv = [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.root),
            # A broker for one run: no snapshot, no append-only file, no Unix socket.
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        self.process = Process("redis", argv, dict(os.environ), log_dir)
        process = self.process
        wait_until(
            lambda: "Ready to accept connections" in process.output() or not process.alive(),
            timeout,
            "redis-server",
        )
        if not process.alive():
            raise RuntimeError(f"redis-server did not start:\n{process.tail()}")

    def stop(self) -> None:
        """Stop the server and delete its directory."""
        if self.process is not None:
            self.process.stop(grace=5.0)
        shutil.rmtree(self.root, ignore_errors=True)
