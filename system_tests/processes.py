"""Start and stop the processes of the system test: PostgreSQL, the simulator and Airflow's components.

Every process runs in its own session with its output in a log file, so it can be stopped as a
group (an Airflow component forks workers) and its log tail printed when a check fails.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.5) -> object:
    """Poll ``condition`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Process:
    """One child process whose stdout and stderr go to ``<logs>/<name>.log``."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = self.log_path.open("ab")
        self._stopped = False
        self.popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a crash or an OOM kill would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
        if self._stopped:
            return
        self._stopped = True
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # Children that outlived their parent (task runners, uvicorn workers) share its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self._log.close()

    def output(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the process's output."""
        return "\n".join(self.output().splitlines()[-lines:])


def _postgres_bin() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``; installs Debian's ``postgresql`` when absent."""
    for _ in range(2):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if found:
            return Path(found[-1]).parent
        if shutil.which("initdb") and shutil.which("pg_ctl"):
            return Path(str(shutil.which("initdb"))).resolve().parent
        print("PostgreSQL not found: installing Debian's postgresql package", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env)
    raise RuntimeError("initdb is still missing after installing postgresql")


class Postgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1 with its data and socket in a temporary directory."""

    def __init__(self, log_dir: Path) -> None:
        self.bin = _postgres_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="revox-systest-pg-"))
        self.data = self.root / "data"
        # The server writes its log where the postgres user may: inside its own directory.
        self.log_path = self.root / "postgres.log"
        self._log_copy = log_dir / "postgres.log"
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
            self._user = pwd.getpwnam("postgres")
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        self.log_path.touch()
        if self._user is not None:
            os.chown(self.log_path, self._user.pw_uid, self._user.pw_gid)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``airflow`` database."""
        return self.url_of("airflow")

    def url_of(self, database: str) -> str:
        """The SQLAlchemy URL of one database of the cluster."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def copy_database(self, source: str, target: str) -> None:
        """Create ``target`` as a copy of ``source`` (a file copy: nothing may be connected to it)."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-T", source, target)

    def _run(self, *argv: str) -> None:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self._user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stdout}{result.stderr}")

    def start(self) -> None:
        """initdb, start on loopback only, and create the ``airflow`` database."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "-t", "60", "start"
        )
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "airflow")

    def stop(self) -> None:
        """Stop the cluster immediately and delete its files."""
        if self.data.exists():
            with contextlib.suppress(RuntimeError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        with contextlib.suppress(OSError):
            shutil.copy(self.log_path, self._log_copy)
        shutil.rmtree(self.root, ignore_errors=True)

    def pid(self) -> int | None:
        """The postmaster's process id while the cluster runs."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def tail(self, lines: int = 40) -> str:
        """The last lines of the server log."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])
