"""Landing chaos: a simulated day of orders landed exactly once by hourly incremental exports.

10,000 scripted orders end over one simulated day (the simulator in this process, on a manual
clock). Every simulated hour a real Airflow run (``dag.test()`` in its own process, one
AIRFLOW_HOME and SQLite database for the whole bench) runs
``RevoxCallsToStorageOperator(search=..., incremental=True)`` to one fixed destination, once as
Parquet loads (the watermark in the asset state store) and once as Delta tables (the watermark in
the ``calls`` commit), against an API that misbehaves:

* orders end while a read is in progress (the clock moves during every export), and in every
  run whose new orders span more than one page of the incremental read (the two peak hours,
  when about 1,200 orders end), ``Faults.shift_pages`` hides a few orders that ended minutes
  before the run from the first page, to show them once a later page is read (the results move
  under the reader). A read of one page has no "between two page reads" to shift in: one
  answer is one snapshot, so the runs of the quiet hours are read whole in one request;
* ``repeat_page``: now and then (a quarter of the reads of a later page) a search answers page 0
  whatever page it asked for;
* 1% transient faults (429 and 503, half each); the incremental read needs so few requests (one
  in a quiet hour) that the rate alone may serve none in a day, so every run that reads more
  than one page also gets a 429 on its second request and a 503 on its fourth
  (``Faults.script`` on the search), while its results move;
* 3 orders report ``ended_at`` in 2199 (``Faults.far_future``);
* 3 exports are SIGKILLed inside their publish (Parquet: with the load staged, before its
  folder is renamed in; with the folder in place, before ``_loads.jsonl`` lists it; with the
  load listed, before the watermark is stored. Delta: before the ``structured_output``, the
  ``attempts`` and the ``calls`` commit). The next hour's run picks up; the killed run is not
  retried.

After every run a reader compares the landing with the simulator's truth: every order that
ended before a completed run started should be in ``calls`` (one that is not is counted
``late`` if a later run lands it, ``lost`` if none does by the end of the day: an order the API
hid from the first page and that is newer than that page's head waits for the next run, since
the read never takes what it cannot place below the watermark), and no ``attempts`` or
``transcripts`` row may appear twice (Parquet: every load :func:`read_loads` lists; Delta: each
table's current version). While exports run, a second reader lists the load folders (Parquet:
every ``load=*`` folder must hold ``_SUCCESS`` and every file of its manifest; Delta: every call
in ``calls`` must have its ``attempts`` rows, ``calls`` being committed last).

Figures per format under ``landing`` in bench/results.json: ``lost``, ``duplicated``,
``reader_saw_partial_load`` (targets 0), ``requests_per_exported_call`` (target <= 0.02),
``far_future_orders_seen`` (target 3), the stress that happened (kills, faulted responses,
repeated pages, shifted reads, far-future times warned about) and ``targets_met``, figure by
figure, computed from the figures; the section's ``targets_met`` says, figure by figure, whether
both formats met it. ``stress_checks`` says whether the stress happened; the bench fails when a
target is missed or the stress did not happen. A phase that crashes is recorded with its error
(every target missed) and the other format still runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import evaluate, merge_results

ORDERS = int(os.environ.get("REVOX_BENCH_LANDING_ORDERS", "10000"))
HOURS = int(os.environ.get("REVOX_BENCH_LANDING_HOURS", "24"))
SEED = 20261206
API_KEY = "bench-landing-key"
FAULTS = "429=0.005:0.05,503=0.005,repeat_page=0.25"
T0 = datetime(2025, 3, 3, 8, 0, tzinfo=timezone.utc)
ASSISTANT = "asst_bench_landing"
#: Hour of the run -> where its export is killed (run in order over a phase).
KILLS = {
    "parquet": {
        HOURS // 4: "staged_before_rename",
        HOURS // 2: "renamed_before_listed",
        3 * HOURS // 4: "listed_before_watermark",
    },
    "delta": {
        HOURS // 4: "before_structured_output",
        HOURS // 2: "before_attempts",
        3 * HOURS // 4: "before_calls",
    },
}
SHIFTED_PER_RUN = 5
#: The search's next requests in a run that reads more than one page: faults between page reads.
SCRIPTED_SEARCH_FAULTS = ("ok", "429:0.05", "ok", "503")
SEARCH = "POST /call/search"
#: Hours (from T0) in which orders end at 3.5 times the rate of the others: about 1,200 each.
PEAK_HOURS = (HOURS // 3, 2 * HOURS // 3)
PEAK_WEIGHT = 3.5
#: Simulated seconds the clock moves every CLOCK_TICK real seconds while an export runs.
CLOCK_STEP = 2.0
CLOCK_TICK = 0.05
#: Each format's targets: figure -> "<op> <number>" (bench.results.target_met).
TARGETS = {
    "lost": "== 0",
    "duplicated": "== 0",
    "reader_saw_partial_load": "== 0",
    "requests_per_exported_call": "<= 0.02",
    "far_future_orders_seen": "== 3",
}
FORMATS = ("parquet", "delta")
TABLES = ("transcripts", "structured_output", "calls", "attempts")


def call_ids() -> list[str]:
    """The orders of the day, in the order they are placed."""
    return [f"landing-{i:05d}" for i in range(ORDERS)]


def far_future_ids() -> list[str]:
    """Three orders that will report an end in 2199."""
    ids = call_ids()
    return [ids[ORDERS // 5], ids[ORDERS // 2], ids[4 * ORDERS // 5]]


def end_offsets(span: float) -> list[float]:
    """Seconds after T0 around which each order ends: evenly within an hour, PEAK_WEIGHT times as
    many in the peak hours as in the others, none after ``span``."""
    segments = []
    for hour in range(HOURS):
        begin, end = hour * 3600.0, min((hour + 1) * 3600.0, span)
        if end > begin:
            segments.append((begin, end, (end - begin) * (PEAK_WEIGHT if hour in PEAK_HOURS else 1.0)))
    total = sum(mass for _, _, mass in segments)
    offsets = []
    for index in range(ORDERS):
        wanted = total * index / ORDERS
        for begin, end, mass in segments:
            if wanted < mass:
                offsets.append(begin + (end - begin) * wanted / mass)
                break
            wanted -= mass
    return offsets


def scenario(start: datetime) -> dict[str, Any]:
    """Orders spread over the day, ending before the last hourly run; one in four needs a second dial."""
    from airflow_provider_revox.testing import ALWAYS_OPEN_RETRY_CONFIG

    span = HOURS * 3600 - 1800  # the last orders end half an hour before the last run
    offsets = end_offsets(span)
    calls = []
    for index, call_id in enumerate(call_ids()):
        attempts: list[dict[str, Any]] = [{"result": "human", "duration": 40 + index % 50}]
        if index % 4 == 0:
            attempts.insert(0, {"dial_error": "no_answer"})
        second = 600 if index % 4 == 0 else 0
        scheduled = start + timedelta(seconds=max(0, offsets[index] - second - 200))
        calls.append(
            {
                "id": call_id,
                "phone_number": "+33612345678",
                "assistant": {"id": ASSISTANT},
                "scheduled_at": scheduled.isoformat(),
                "call_retry_config": ALWAYS_OPEN_RETRY_CONFIG,
                "attempts": attempts,
                "post_processing_seconds": 30,
                "outcome": "interested",
                "structured_output": {"confirmed": True},
            }
        )
    return {"calls": calls}


# -- the export process -------------------------------------------------------------------------

DAG = """
from datetime import datetime
from airflow.sdk import DAG
from airflow_provider_revox.operators.revox import RevoxCallsToStorageOperator

with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    RevoxCallsToStorageOperator(
        task_id="export",
        search={{"assistant_ids": [{assistant!r}]}},
        incremental=True,
        destination={destination!r},
        file_format={file_format!r},
        tables={tables!r},
        retries=0,
    )
"""


def _pause_here(marker: str) -> None:
    """Tell the driver the export reached its kill point, then wait for the SIGKILL."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(600)


def install_kill_point(point: str, marker: str) -> None:
    """Make this process stop (for the driver's SIGKILL) at ``point`` inside the publish."""
    from airflow_provider_revox._internal.export import delta
    from airflow_provider_revox._internal.export.loads import LoadStaging

    if point == "staged_before_rename":
        original_lock = LoadStaging._publish_lock

        @contextmanager
        def lock(self: Any) -> Iterator[None]:
            _pause_here(marker)
            with original_lock(self):
                yield

        LoadStaging._publish_lock = lock  # type: ignore[method-assign]
    elif point in ("renamed_before_listed", "listed_before_watermark"):
        original_list = LoadStaging._list

        def listed(self: Any, *args: Any, **kwargs: Any) -> None:
            if point == "renamed_before_listed":
                _pause_here(marker)
            original_list(self, *args, **kwargs)
            _pause_here(marker)

        LoadStaging._list = listed  # type: ignore[method-assign]
    else:
        table = point.removeprefix("before_")
        original_merge = delta._merge

        def merge(target: Any, name: str, *args: Any) -> int:
            if name == table:
                _pause_here(marker)
            return original_merge(target, name, *args)

        delta._merge = merge  # type: ignore[assignment]


def configure(home: Path) -> None:
    """Point Airflow at the bench's AIRFLOW_HOME; before anything imports airflow."""
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(home / "dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'airflow.db'}"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"


WARM_UP_DAG = """
from datetime import datetime
from airflow.sdk import DAG, task

with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    @task
    def nothing():
        return None

    nothing()
"""


@contextmanager
def one_airflow_run_at_a_time(home: Path) -> Iterator[None]:
    """The bench's processes share one SQLite database: one ``dag.test()`` at a time."""
    import fcntl

    with (home / "dag-test.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def test_dag(home: Path, dag_id: str, source: str, logical: datetime | None = None) -> dict[str, str]:
    """``dag.test()`` of ``source`` in this process; each task's state."""
    from airflow.dag_processing.dagbag import DagBag

    path = home / "dags" / f"{dag_id}.py"
    path.write_text(source)
    bag = DagBag(str(path))
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise RuntimeError(f"DAG not loaded: {bag.import_errors}")
    with one_airflow_run_at_a_time(home):
        run = dag.test(logical_date=logical, run_after=logical) if logical else dag.test()
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def run_hour(spec: dict[str, Any]) -> dict[str, Any]:
    """One hourly run: ``dag.test()`` of the export DAG, in this process."""
    source = DAG.format(
        dag_id=spec["dag_id"],
        assistant=ASSISTANT,
        destination=spec["destination"],
        file_format=spec["format"],
        tables=list(TABLES),
    )
    logical = datetime.fromisoformat(spec["logical_date"])
    return {"state": test_dag(Path(spec["home"]), spec["dag_id"], source, logical).get("export")}


def worker(home: str, kill_at: str | None, marker: str) -> None:
    """Run the hours the driver sends on stdin (one JSON spec a line); answer in each spec's result file.

    Airflow is imported once per process: a fresh interpreter per hour would spend most of the
    bench starting Python. A process with a kill point runs one hour and is killed in it.
    """
    configure(Path(home))
    if kill_at:
        install_kill_point(kill_at, marker)
    # Imported before the first hour arrives: the driver starts its processes ahead of time.
    import deltalake  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401

    import airflow_provider_revox.operators.revox  # noqa: F401

    # The first dag.test() of a process pays Airflow's one-time costs: paid here, not in an hour.
    warm_up = f"landing_warm_up_{os.getpid()}"
    test_dag(Path(home), warm_up, WARM_UP_DAG.format(dag_id=warm_up))
    Path(marker + ".ready").write_text("ready")
    for line in sys.stdin:
        spec = json.loads(line)
        try:
            result = run_hour(spec)
        except Exception as error:  # the hour failed outside its task: say so, run the next hour
            traceback.print_exc()
            result = {"state": "error", "error": f"{type(error).__name__}: {error}"[:500]}
        write_result(Path(spec["result"]), result)


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` whole or not at all: the driver polls for the file and reads it once it exists.

    Written in place, the file exists from its creation on, empty until the text is flushed: a
    driver polling while the worker is descheduled between the two read an empty result.
    """
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(result))
    os.replace(partial, path)


def initdb(home: str) -> None:
    """Create the metadata database of the bench's AIRFLOW_HOME."""
    configure(Path(home))
    from airflow.utils import db

    db.initdb()


# -- the driver -----------------------------------------------------------------------------------


class Worker:
    """One Airflow process waiting for hours to run on its stdin; its output goes to a log file."""

    def __init__(self, home: Path, sim: Any, name: str, kill_at: str | None) -> None:
        self.log = home / f"log-{name}.txt"
        self.marker = home / f"kill-{name}"
        self.kill_at = kill_at
        self._offset = 0
        args = {"home": str(home), "kill_at": kill_at, "marker": str(self.marker)}
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--worker", json.dumps(args)],
                env={**os.environ, "AIRFLOW_CONN_REVOX_DEFAULT": sim.connection_json()},
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its own process group: the SIGKILL reaches any child too
            )

    @property
    def ready(self) -> bool:
        """Its imports are done (or it died: the first hour sent to it says so)."""
        return Path(f"{self.marker}.ready").exists() or self.process.poll() is not None

    def send(self, spec: dict[str, Any]) -> None:
        """Ask for one hour's run."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(spec) + "\n")
        self.process.stdin.flush()

    def new_output(self) -> str:
        """What the process wrote since the last call."""
        with self.log.open(errors="replace") as log:
            log.seek(self._offset)
            text = log.read()
            self._offset = log.tell()
        return text

    def kill(self) -> None:
        """SIGKILL the process group, as an OOM killer or a lost node would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """End its input and wait for it to finish."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=120)


class Exporter:
    """The Airflow processes of one phase, all started at once so that they import Airflow while
    the first hours run: a long-lived one for the ordinary hours, one per hour that is killed."""

    def __init__(self, home: Path, sim: Any, phase: dict[str, Any], kills: dict[int, str]) -> None:
        self.home = home
        self.phase = phase
        self.sim = sim
        name = phase["format"]
        self._workers: dict[int | None, Worker] = {None: Worker(home, sim, name, None)}
        for hour, point in kills.items():
            self._workers[hour] = Worker(home, sim, f"{name}-{hour}", point)

    def stop(self) -> None:
        """Stop every process still running."""
        for worker in self._workers.values():
            worker.stop()

    def kill_all(self) -> None:
        """After a failure: SIGKILL every process still running."""
        for worker in self._workers.values():
            if worker.process.poll() is None:
                worker.kill()

    def run(self, hour: int) -> dict[str, Any]:
        """Run one hour's export; move the clock while it runs; kill it at its kill point if it has one."""
        worker = self._workers.pop(hour, None) or self._workers[None]
        while not worker.ready:  # the clock stands still while a process starts
            time.sleep(0.2)
        result = self.home / f"result-{self.phase['format']}-{hour}.json"
        worker.send(
            {
                "home": str(self.home),
                "dag_id": f"landing_{self.phase['format']}",
                "destination": self.phase["destination"].as_uri(),
                "format": self.phase["format"],
                "logical_date": (T0 + timedelta(hours=hour)).isoformat(),
                "result": str(result),
            }
        )
        killed = False
        began = time.monotonic()
        while not result.exists():
            time.sleep(CLOCK_TICK)
            self.sim.clock.advance(CLOCK_STEP)  # orders end while the export reads
            if worker.kill_at and worker.marker.exists():
                worker.kill()
                killed = True
                break
            if worker.process.poll() is not None:
                raise RuntimeError(
                    f"the process running hour {hour} exited ({worker.process.returncode}) without "
                    f"answering:\n{worker.new_output()[-3000:]}"
                )
        text = worker.new_output()
        answer = {} if killed else json.loads(result.read_text())
        return {
            "killed": killed,
            "state": answer.get("state"),
            "error": answer.get("error"),
            "seconds": round(time.monotonic() - began, 1),
            "rereads": text.count("moved while it was read"),
            "incomplete": text.count("RevoxIncompleteReadError"),
            "untrusted_warnings": text.count("later than the API's clock allows"),
        }


def landed_parquet(base: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of every complete load: each table's keys, as a careful reader iterates them."""
    import pyarrow.parquet as pq
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_revox.export import read_loads

    keys: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TABLES}
    for load in read_loads(ObjectStoragePath(base.as_uri())):
        folder = base / load["folder"]
        for table, columns in KEY_COLUMNS.items():
            file = folder / f"{table}.parquet"
            if file.exists():
                data = pq.read_table(file, columns=list(columns)).to_pydict()
                keys[table].extend(zip(*(data[c] for c in columns), strict=True))
    return keys


def duplicated_calls_by_load(base: Path) -> dict[str, int]:
    """Per load (by its DAG run), how many of its calls another load also holds."""
    import pyarrow.parquet as pq
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_revox.export import read_loads

    per_load: dict[str, set[str]] = {}
    for load in read_loads(ObjectStoragePath(base.as_uri())):
        table = pq.read_table(base / load["folder"] / "calls.parquet", columns=["call_id"])
        per_load[load["run_id"]] = set(table.column(0).to_pylist())
    counts = Counter(call_id for ids in per_load.values() for call_id in ids)
    found = {run: sum(1 for i in ids if counts[i] > 1) for run, ids in per_load.items()}
    return {run: n for run, n in found.items() if n}


def landed_delta(base: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's keys at its current version."""
    import deltalake

    keys: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TABLES}
    for table, columns in KEY_COLUMNS.items():
        uri = str(base / table)
        if deltalake.DeltaTable.is_deltatable(uri):
            data = deltalake.DeltaTable(uri).to_pyarrow_table(columns=list(columns)).to_pydict()
            keys[table].extend(zip(*(data[c] for c in columns), strict=True))
    return keys


KEY_COLUMNS = {
    "calls": ("call_id",),
    "attempts": ("call_id", "attempt_id"),
    "transcripts": ("call_id", "attempt_id", "turn_index"),
    "structured_output": ("call_id",),
}


class ListingReader:
    """Reads the destination over and over while exports run; counts partial loads it saw."""

    def __init__(self, base: Path, file_format: str) -> None:
        self.base = base
        self.file_format = file_format
        self.partial: list[str] = []
        self.looks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ListingReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.look()
            except Exception as error:  # a file vanishing under a lister is itself a partial view
                self.partial.append(f"read failed: {type(error).__name__}: {error}"[:300])
            self.looks += 1

    def look(self) -> None:
        """One look: Parquet, every load folder whole; Delta, every call with its attempts."""
        if self.file_format == "parquet":
            for folder in sorted(self.base.glob("load=*")):
                success = folder / "_SUCCESS"
                manifest = folder / "_manifest.json"
                if not success.exists() or not manifest.exists():
                    if folder.exists():
                        self.partial.append(f"{folder.name}: no _SUCCESS or manifest")
                    continue
                for entry in json.loads(manifest.read_text())["files"]:
                    if not (folder / entry["path"]).exists():
                        self.partial.append(f"{folder.name}: {entry['path']} missing")
            return
        import deltalake

        calls_uri, attempts_uri = str(self.base / "calls"), str(self.base / "attempts")
        if not deltalake.DeltaTable.is_deltatable(calls_uri):
            return
        # calls first: it is committed last, so the attempts read after it are at least as new.
        calls = set(
            deltalake.DeltaTable(calls_uri).to_pyarrow_table(columns=["call_id"]).column(0).to_pylist()
        )
        attempts = (
            deltalake.DeltaTable(attempts_uri).to_pyarrow_table(columns=["call_id"]).column(0).to_pylist()
        )
        missing = calls - set(attempts)
        if missing:
            self.partial.append(f"{len(missing)} calls without their attempts, e.g. {sorted(missing)[:2]}")


def duplicates(keys: list[tuple[Any, ...]]) -> int:
    """Rows beyond the first of each key."""
    return sum(count - 1 for count in Counter(keys).values() if count > 1)


class Day:
    """What one phase found so far: each run, and the worst the readers saw."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        #: Orders a completed run should have landed and did not (late, or lost if never landed).
        self.missed_ids: set[str] = set()
        self.most_dups = dict.fromkeys(TABLES, 0)
        self.present: Counter[str] = Counter()
        self.repeated_pages = 0


def recently_ended(ends: dict[str, datetime | None], started: datetime) -> list[str]:
    """The last orders that ended in the half hour before ``started``: the ones to shift."""
    recent = [
        i for i, end in ends.items() if end is not None and started - timedelta(minutes=30) <= end < started
    ]
    return sorted(recent, key=lambda i: ends[i] or started)[-SHIFTED_PER_RUN:]


def run_hours(sim: Any, exporter: Exporter, phase: dict[str, Any], day: Day) -> ListingReader:
    """Every hourly run of the day, each checked against the truth; the listing reader."""
    from airflow_provider_revox._internal.export.search import INCREMENTAL_PAGE_SIZE

    destination, file_format = phase["destination"], phase["format"]
    ends = {call_id: sim.engine.terminal_at(call_id) for call_id in call_ids()}
    with ListingReader(destination, file_format) as reader:
        for hour in range(1, HOURS + 1):
            sim.clock.set(max(sim.clock.now(), T0 + timedelta(hours=hour)))
            started = sim.clock.now()
            backlog = sum(
                1 for i, end in ends.items() if end is not None and end < started and not day.present[i]
            )
            # Results move between two page reads: a run that reads one page has none.
            recent = recently_ended(ends, started) if backlog > INCREMENTAL_PAGE_SIZE else []
            sim.faults.shift_pages(recent)
            if backlog > INCREMENTAL_PAGE_SIZE:
                sim.faults.script(SEARCH, SCRIPTED_SEARCH_FAULTS)
            before = sim.stats()["requests_total"]
            run = exporter.run(hour)
            run["requests"] = sim.stats()["requests_total"] - before
            run["shift_released"] = bool(recent) and not sim.faults.hidden(None)
            sim.faults.hidden(1)  # release what a killed run did not
            keys = landed_parquet(destination) if file_format == "parquet" else landed_delta(destination)
            day.present = Counter(k[0] for k in keys["calls"])
            if not run["killed"] and run["state"] == "success":
                owed = [i for i, end in ends.items() if end is not None and end < started]
                missing = [i for i in owed if day.present[i] == 0]
                day.missed_ids.update(missing)
                run["missing"] = len(missing)
            for name in TABLES:
                day.most_dups[name] = max(day.most_dups[name], duplicates(keys[name]))
            run.update(hour=hour, landed_calls=len(day.present), started=started.isoformat())
            day.runs.append(run)
            print(f"{file_format} hour {hour}: {run}", flush=True)
    return reader


def run_phase(file_format: str, home: Path, work: Path) -> dict[str, Any]:
    """One simulated day landed in ``file_format``; the phase's figures."""
    from airflow_provider_revox._simulator import server as server_module
    from airflow_provider_revox._simulator.clock import VirtualClock
    from airflow_provider_revox._simulator.faults import Faults
    from airflow_provider_revox._simulator.scenario import apply_scenario, parse_scenario
    from airflow_provider_revox.testing import running_simulator

    day = Day()
    first_page = server_module.first_page_body

    def counting_first_page(body: bytes) -> bytes:
        changed = first_page(body)
        if changed != body:  # a search for a later page answered with page 0
            day.repeated_pages += 1
        return changed

    phase: dict[str, Any] = {"format": file_format, "destination": work / f"landing-{file_format}"}
    kills = KILLS[file_format]
    server_module.first_page_body = counting_first_page
    try:
        faults = Faults(FAULTS, seed=SEED)
        with running_simulator(seed=SEED, api_key=API_KEY, clock=VirtualClock(T0), faults=faults) as sim:
            apply_scenario(parse_scenario(scenario(T0)), sim.engine, sim.faults)
            sim.faults.far_future(far_future_ids())
            exporter = Exporter(home, sim, phase, kills)
            sim.reset_stats()
            try:
                reader = run_hours(sim, exporter, phase, day)
            except BaseException:
                exporter.kill_all()
                raise
            exporter.stop()
            stats = sim.stats()
    finally:
        server_module.first_page_body = first_page
    runs, present = day.runs, day.present
    most_dups = day.most_dups
    lost_ids = {i for i in day.missed_ids if present[i] == 0}
    late_ids = day.missed_ids - lost_ids
    exported = len(present)
    faulted = sum(n for status, n in stats["by_status"].items() if status in ("429", "503"))
    far_seen = sum(1 for i in far_future_ids() if present[i] >= 1)
    figures = {
        "lost": len(lost_ids),
        "lost_examples": sorted(lost_ids)[:5],
        "late": len(late_ids),
        "late_examples": sorted(late_ids)[:5],
        "duplicated": sum(most_dups.values()),
        "duplicated_rows_by_table": most_dups,
        "reader_saw_partial_load": len(reader.partial),
        "partial_examples": reader.partial[:5],
        "listing_reader_looks": reader.looks,
        "requests_per_exported_call": round(stats["requests_total"] / max(1, exported), 4),
        "api_requests": stats["requests_total"],
        "exported_calls": exported,
        "orders": ORDERS,
        "hourly_runs": HOURS,
        "completed_runs": sum(1 for r in runs if r["state"] == "success"),
        "failed_runs": sum(1 for r in runs if not r["killed"] and r["state"] != "success"),
        "run_errors": [f"hour {r['hour']}: {r['error']}" for r in runs if r.get("error")],
        "kills_done": sum(1 for r in runs if r["killed"]),
        "kill_points": {str(hour): point for hour, point in kills.items()},
        "faulted_responses": faulted,
        "faulted_by_status": {s: n for s, n in stats["by_status"].items() if s in ("429", "503")},
        "repeated_pages": day.repeated_pages,
        "shifted_reads": sum(1 for r in runs if r["shift_released"]),
        "reader_reread_passes": sum(r["rereads"] for r in runs),
        "incomplete_reads": sum(r["incomplete"] for r in runs),
        "far_future_orders_seen": far_seen,
        "far_future_times_warned": sum(r["untrusted_warnings"] for r in runs),
        "duplicated_calls_by_load": (
            duplicated_calls_by_load(phase["destination"]) if file_format == "parquet" else {}
        ),
        "requests_per_run_mean": round(sum(r["requests"] for r in runs) / max(1, len(runs)), 1),
        "runs": [
            {
                k: r.get(k)
                for k in (
                    "hour",
                    "killed",
                    "state",
                    "error",
                    "landed_calls",
                    "missing",
                    "rereads",
                    "requests",
                    "seconds",
                )
            }
            for r in runs
        ],
    }
    figures["targets_met"] = evaluate(figures, TARGETS)
    return figures


def stress_checks(figures: dict[str, Any]) -> dict[str, bool]:
    """Whether the hostile API and the kills happened, per format: else the figures prove nothing."""
    checks = {}
    for file_format in FORMATS:
        found = figures[file_format]
        if "error" in found:  # the phase did not finish: nothing of it can be vouched for
            checks[f"{file_format}.completed"] = False
            continue
        checks.update(
            {
                f"{file_format}.kills_done": found["kills_done"] == len(KILLS[file_format]),
                # A run the bench could not start or read proves nothing (a task that failed is a figure).
                f"{file_format}.every_run_ran": not found["run_errors"],
                f"{file_format}.faulted_responses": found["faulted_responses"] > 0,
                f"{file_format}.repeated_pages": found["repeated_pages"] > 0,
                f"{file_format}.shifted_reads": found["shifted_reads"] > 0,
                f"{file_format}.far_future_times_warned": found["far_future_times_warned"] > 0,
            }
        )
    return checks


def main() -> int:
    began = time.monotonic()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    figures: dict[str, Any] = {
        "title": (
            f"{ORDERS:,} orders ending over a simulated day, {HOURS} hourly incremental exports "
            "as Parquet loads and as Delta tables, 1% faults, shifted and repeated pages, 3 kills"
        ),
        "started_at": started_at,
        "seed": SEED,
        "orders": ORDERS,
        "hourly_runs": HOURS,
        "faults": FAULTS,
        "targets": TARGETS,
    }
    with tempfile.TemporaryDirectory(prefix="revox-bench-landing-") as tmp:
        work = Path(tmp)
        home = work / "airflow-home"
        (home / "dags").mkdir(parents=True)
        done = subprocess.run(
            [sys.executable, __file__, "--initdb", str(home)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stderr[-3000:]}")
        for file_format in FORMATS:
            phase_began = time.monotonic()
            try:
                found = run_phase(file_format, home, work)
            except Exception as error:  # recorded, and the other format still runs
                traceback.print_exc()
                found = {
                    "error": f"{type(error).__name__}: {error}"[-3000:],
                    "targets_met": dict.fromkeys(TARGETS, False),
                }
            found["wall_seconds"] = round(time.monotonic() - phase_began, 1)
            figures[file_format] = found
    figures["wall_seconds"] = round(time.monotonic() - began, 1)
    figures["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    # A figure's target is met when every format meets it.
    figures["targets_met"] = {name: all(figures[f]["targets_met"][name] for f in FORMATS) for name in TARGETS}
    checks = stress_checks(figures)
    figures["stress_checks"] = checks
    merge_results("landing", figures)
    for file_format in FORMATS:
        f = figures[file_format]
        if "error" in f:
            print(f"landing {file_format}: did not finish: {f['error']}")
            continue
        print(
            f"landing {file_format}: lost {f['lost']}, late {f['late']}, duplicated {f['duplicated']}, "
            f"partial loads seen {f['reader_saw_partial_load']}, "
            f"{f['requests_per_exported_call']} requests per call, "
            f"kills {f['kills_done']}, failed runs {f['failed_runs']}, faults {f['faulted_responses']}, "
            f"repeated pages {f['repeated_pages']}, shifted reads {f['shifted_reads']}, "
            f"far-future seen {f['far_future_orders_seen']}; targets met {f['targets_met']}"
        )
    missing = [name for name, happened in checks.items() if not happened]
    if missing:
        print(f"landing: the stress did not happen, the figures prove nothing: {missing}")
    return 0 if all(figures["targets_met"].values()) and not missing else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--initdb":
        initdb(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        options = json.loads(sys.argv[2])
        worker(options["home"], options["kill_at"], options["marker"])
        sys.exit(0)
    sys.exit(main())
