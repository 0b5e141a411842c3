"""Chaos: 1,000 placements and a 1,000-contact campaign while the worker is SIGKILLed; count the orders.

A real Airflow worker process (``dag.test()`` in its own process, with its own AIRFLOW_HOME and
SQLite database) runs a DAG against the simulator (its own process, with a small fault rate,
``drop_after_commit`` included: the request is served and stored, its answer never sent). The
benchmark SIGKILLs the worker at five moments, some as soon as the simulator has served a given
``POST`` (the order or campaign is stored; the worker may not have read the answer, nor stored
the id), the others after a random delay. After each kill the worker is started again on the
same dag run, as a scheduler does after a worker loss: the task instances that were running get
their next try (the task state store rows stay: they belong to the dag run), and the run goes
on, until every task succeeded. Then the orders are counted in the simulator, one by one by id.

``dag.test()`` alone cannot resume: it deletes an existing run for the logical date and starts
a fresh one (try 1, no stored ids), which is not what a retry on a deployment sees. The worker
here keeps the run (see ``resume_run``) and otherwise runs ``dag.test()``'s loop.

* placements: one mapped ``RevoxPlaceCallOperator`` (``wait_for_completion=False``) over 1,000
  distinct numbers; kills: three as soon as ``POST /call`` passed a mark drawn by the seeded
  generator (20 to 150 more orders), two at a time drawn by it (1 to 20 s after the worker's
  first request). Reported: ``duplicates`` (orders beyond one per number) and ``missing``
  (numbers without an order), targets 0 and 0; ``placements_per_s`` (orders per second of the
  placement phase, worker start-ups included), checked against the connection's
  ``max_requests_per_second`` ceiling (a limit obeyed, not a speed target); per kill,
  ``unrecorded_orders``: orders stored by the simulator whose id was not yet in the task state
  store when the worker died.
* campaign: ``RevoxCreateCampaignOperator`` (1,000 contacts from a CSV file) ->
  ``RevoxLaunchCampaignOperator`` -> deferrable ``RevoxCampaignSensor``; kills: right after
  ``POST /campaigns``, right after the launch, and three times during the wait, each right
  after the sensor's next first or second poll (drawn by the seeded generator): not at
  arbitrary moments. Reported: ``campaigns`` (target 1), ``duplicates`` and ``missing`` orders
  (0 and 0), and the wait's cost as what it is: ``campaign_requests_per_poll`` (campaign
  requests of the wait per status poll) with ``polls_per_campaign_hour``, which the chosen
  ``poke_interval`` sets (no target: a knob, not a property of the code).
* chaos (:mod:`bench.placement_chaos`): do-not-contact numbers, duplicate contacts, two DAGs
  sharing a key, waits that time out, a dropped answer with a refused search, concurrent
  launchers with a 429 storm. Reported: ``calls_to_do_not_contact``, ``foreign_cancels`` and
  ``orphan_orders`` (targets 0), and its share of ``duplicates`` and ``missing``.

Every figure of the ``placement`` section comes from one run of this script (a partial run,
``REVOX_BENCH_PLACEMENT_PHASES``, writes only its phases and says so in ``phases``); the top-level
``duplicates`` and ``missing`` add up every phase.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_provider_revox.testing import SimulatorProcess
from bench.results import merge_results
from bench.soak import _airflow_env as soak_airflow_env

NUMBERS = int(os.environ.get("REVOX_BENCH_PLACEMENT_NUMBERS", "1000"))
KILLS = 5
MAX_RPS = 50.0
FAULTS = "drop_after_commit=0.02,503=0.01,drop=0.01"
API_KEY = "rvx_live_chaos_connection_key_Zp30"
LOGICAL_DATE = "2025-06-01T00:00:00+00:00"
ASSISTANT = "asst_chaos"
MAX_RUNS = 12
SEED = int(os.environ.get("REVOX_BENCH_SEED", "12"))
PHASES = os.environ.get("REVOX_BENCH_PLACEMENT_PHASES", "placements,campaign,chaos").split(",")
# Seconds between the campaign sensor's polls; at the campaign phase's simulator speed that is
# CAMPAIGN_POLL_SECONDS * CAMPAIGN_SPEED simulated seconds.
CAMPAIGN_POLL_SECONDS = 30
CAMPAIGN_SPEED = 30.0


def phone(index: int, block: int = 4) -> str:
    """A valid French mobile number in E.164, distinct per index (and per block)."""
    return f"+336123{block}{index:04d}"


PLACEMENT_DAG = """
from datetime import timedelta
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxPlaceCallOperator

PHONES = {phones!r}

@dag(dag_id="revox_chaos_placement", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
     catchup=False)
def build():
    RevoxPlaceCallOperator.partial(
        task_id="place",
        assistant_id={assistant!r},
        prompt_variables={{"first_name": "Chaos"}},
        wait_for_completion=False,
        retries=20,
        retry_delay=timedelta(seconds=0),
    ).expand(phone_number=PHONES)

build()
"""

CAMPAIGN_DAG = """
from datetime import timedelta
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import RevoxCreateCampaignOperator, RevoxLaunchCampaignOperator
from airflow_provider_revox.sensors.revox import RevoxCampaignSensor

CAMPAIGN_ID = "{{{{ ti.xcom_pull(task_ids='create')['campaign_id'] }}}}"
RETRIES = dict(retries=20, retry_delay=timedelta(seconds=0))

@dag(dag_id="revox_chaos_campaign", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
     catchup=False)
def build():
    create = RevoxCreateCampaignOperator(
        task_id="create",
        name="Chaos campaign",
        assistant_id={assistant!r},
        contacts_path={contacts!r},
        call_retry_config={retry_config!r},
        max_concurrent_calls=50,
        **RETRIES,
    )
    launch = RevoxLaunchCampaignOperator(task_id="launch", campaign_id=CAMPAIGN_ID, **RETRIES)
    wait = RevoxCampaignSensor(
        task_id="wait", campaign_id=CAMPAIGN_ID, deferrable=True, poke_interval={poll}, **RETRIES
    )
    create >> launch >> wait

build()
"""

#: Every day, all day: the campaign dials whatever the weekday and hour of the run.
OPEN_ALL_WEEK = {
    "calling_windows": [
        {"calling_window_start_time": "00:00", "calling_window_end_time": "23:59", "retry_delay_seconds": 600}
    ],
    "allowed_days": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    "max_retry_attempts": 2,
}


# -- the worker process ---------------------------------------------------------------------------


def _airflow_env(home: Path) -> None:
    soak_airflow_env(home)
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"


def resume_run(dag_id: str, logical_date: Any) -> bool:
    """Give every unfinished task instance of the existing run its next try; False if no run.

    What a scheduler does after a worker loss: a task instance left running, queued or
    deferred (or failed) runs again under a higher try number, and its task state store rows
    stay, as they belong to the dag run. One only scheduled (never started) keeps its try.
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(
            select(DagRun).where(DagRun.dag_id == dag_id, DagRun.logical_date == logical_date)
        )
        if run is None:
            return False
        keep = {
            TaskInstanceState.SUCCESS,
            TaskInstanceState.SKIPPED,
            TaskInstanceState.SCHEDULED,
            TaskInstanceState.UP_FOR_RETRY,
        }
        query = select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)
        for ti in session.scalars(query):
            if ti.state not in keep:
                ti.state = None
                ti.next_method = None
                ti.next_kwargs = None
                ti.trigger_id = None
        run.state = DagRunState.RUNNING
    return True


def worker_main(spec: dict[str, Any]) -> dict[str, Any]:
    """Run (or resume) one chaos DAG's run; return the task states it ended with."""
    home = Path(spec["home"])
    dag_id = spec["dag_id"]
    _airflow_env(home)
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    if not spec["resume"]:
        db.initdb()
    bag = DagBag(str(home / "dags"))
    if bag.import_errors:
        raise RuntimeError(f"the chaos DAG does not import: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    assert dag is not None

    import pendulum

    logical_date = pendulum.parse(LOGICAL_DATE)
    if spec["resume"] and resume_run(dag_id, logical_date):
        import airflow.models.dagrun as dagrun_module
        from airflow.models.dagrun import DagRun
        from airflow.serialization.definitions.dag import SerializedDAG
        from sqlalchemy import select

        create = dagrun_module.get_or_create_dagrun

        def keep_run(*, dag: Any, run_id: str, session: Any, **kwargs: Any) -> Any:
            query = select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id)
            existing = session.scalar(query)
            if existing is None:
                return create(dag=dag, run_id=run_id, session=session, **kwargs)
            existing.dag = dag
            return existing

        # dag.test() would clear the run's task instances and replace the run: keep both.
        dagrun_module.get_or_create_dagrun = keep_run
        SerializedDAG.clear_dags = classmethod(lambda cls, *a, **k: 0)  # type: ignore[assignment,method-assign]
    run = dag.test(logical_date=logical_date, run_after=logical_date)
    tis = run.get_task_instances()
    states = Counter(str(ti.state) for ti in tis)
    tries = {ti.task_id: ti.try_number for ti in tis}
    return {"run_id": run.run_id, "state": str(run.state), "states": dict(states), "tries": tries}


# -- the benchmark --------------------------------------------------------------------------------


class StatsPoller:
    """Reads the simulator's request counts over one kept-alive connection (fast, for the kills)."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def served(self, endpoint: str | None = None) -> int:
        """How many requests to ``endpoint`` (e.g. ``POST /call``; None: any) the simulator served."""
        self._connection.request("GET", "/api/_simulator/stats")
        stats = json.loads(self._connection.getresponse().read())
        if endpoint is None:
            return int(stats["requests_total"])
        return int(stats["by_endpoint"].get(endpoint, 0))

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


@dataclass
class Kill:
    """One planned kill: as soon as ``endpoint`` was served ``after`` more times, or at a random time.

    A random time counts from the worker's first request, so it falls in the work rather than in
    Airflow's start-up.
    """

    endpoint: str | None = None
    after: tuple[int, int] = (1, 1)
    seconds: tuple[float, float] = (1.0, 20.0)

    @property
    def kind(self) -> str:
        """A short name for the report."""
        return f"after {self.endpoint}" if self.endpoint else "random time"


def stored_ids(home: Path, key: str) -> int:
    """How many ids the task state store holds under ``key``."""
    path = home / "airflow.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path, timeout=30) as connection:
        try:
            row = connection.execute("SELECT count(*) FROM task_state_store WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(row[0])


def start_worker(
    sim: SimulatorProcess, home: Path, dag_id: str, resume: bool, log: Path
) -> subprocess.Popen[bytes]:
    """Start the worker process, its output appended to ``log``."""
    spec = {"home": str(home), "dag_id": dag_id, "resume": resume}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            env={**os.environ, **sim.connection_env(max_requests_per_second=MAX_RPS)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def kill_when(
    process: subprocess.Popen[bytes], poller: StatsPoller, plan: Kill, rng: random.Random
) -> dict[str, Any]:
    """SIGKILL ``process`` at the moment ``plan`` says; return what was seen then."""
    started = time.monotonic()
    if plan.endpoint is not None:
        mark = poller.served(plan.endpoint) + rng.randint(*plan.after)
        # Coarse until the request before the mark, then as fast as the stats answer: the kill
        # lands within a poll of the request being served, and the spin does not slow the worker.
        while process.poll() is None and poller.served(plan.endpoint) < mark - 1:
            time.sleep(0.2)
        while process.poll() is None and poller.served(plan.endpoint) < mark:
            time.sleep(0.001)
    else:
        delay = rng.uniform(*plan.seconds)
        before = poller.served()
        while process.poll() is None and poller.served() == before:
            time.sleep(0.1)
        deadline = time.monotonic() + delay
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    if process.poll() is not None:
        return {"kind": plan.kind, "killed": False, "exit_code": process.returncode}
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return {"kind": plan.kind, "killed": True, "after_s": round(time.monotonic() - started, 1)}


def last_result(log: Path) -> dict[str, Any]:
    """The worker's closing line (its task states), if it printed one."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith('{"run_id"'):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    return {}


def chaos_run(
    sim: SimulatorProcess, home: Path, dag_id: str, plans: Sequence[Kill], expected: int, budget: float,
    rng: random.Random, state_key: str,
) -> dict[str, Any]:  # fmt: skip
    """Run the DAG, killing the worker as planned and restarting it, until ``expected`` tasks succeed."""
    started = time.monotonic()
    log = home.parent / f"{dag_id}.log"
    poller = StatsPoller(sim.port)
    kills: list[dict[str, Any]] = []
    runs = 0
    result: dict[str, Any] = {}
    while runs < MAX_RUNS and time.monotonic() - started < budget:
        process = start_worker(sim, home, dag_id, resume=runs > 0, log=log)
        runs += 1
        if len(kills) < len(plans):
            kill = kill_when(process, poller, plans[len(kills)], rng)
            if kill["killed"]:
                stats = sim.get("/_simulator/stats")
                kill["orders_at_kill"] = stats["calls"]
                kill["ids_stored_at_kill"] = stored_ids(home, state_key)
                kills.append(kill)
                continue
        try:
            process.wait(timeout=max(budget - (time.monotonic() - started), 1.0))
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            break
        result = last_result(log)
        if result.get("states") == {"success": expected}:
            break
    poller.close()
    succeeded = result.get("states") == {"success": expected}
    return {
        "all_tasks_succeeded": succeeded,
        "final_task_states": result.get("states"),
        "worker_runs": runs,
        "kills": kills,
        "seconds": round(time.monotonic() - started, 1),
        "log_tail": "" if succeeded else log.read_text(errors="replace")[-3000:],
    }


def count_orders(sim: SimulatorProcess) -> Counter[str]:
    """Orders per recipient number, read one by one by id."""
    ids = sim.get("/_simulator/calls")["call_ids"]

    def fetch(call_id: str) -> str:
        for _ in range(50):
            call = sim.get_call(call_id)
            if call is not None:
                return str(call.get("to_phone_number") or call.get("phone_number"))
        raise RuntimeError(f"could not read {call_id} from the simulator")

    with ThreadPoolExecutor(max_workers=8) as pool:
        return Counter(pool.map(fetch, ids))


def order_counts(per_number: Counter[str], numbers: Sequence[str]) -> dict[str, int]:
    """Orders, duplicates, missing numbers and orders to numbers outside ``numbers``."""
    wanted = set(numbers)
    return {
        "orders": sum(per_number.values()),
        "duplicates": sum(
            count - 1 for number, count in per_number.items() if count > 1 and number in wanted
        ),
        "missing": sum(1 for number in numbers if per_number.get(number, 0) == 0),
        "orders_to_other_numbers": sum(count for number, count in per_number.items() if number not in wanted),
    }


def placements(work: Path, rng: random.Random) -> dict[str, Any]:
    """The mapped placements under five kills; their figures."""
    numbers = [phone(i, 4) for i in range(NUMBERS)]
    home = work / "placement-home"
    (home / "dags").mkdir(parents=True)
    (home / "dags" / "chaos.py").write_text(PLACEMENT_DAG.format(phones=numbers, assistant=ASSISTANT))
    plans = [
        Kill("POST /call", (20, 150)),
        Kill(),
        Kill("POST /call", (20, 150)),
        Kill(),
        Kill("POST /call", (20, 150)),
    ]
    with SimulatorProcess(api_key=API_KEY, speed=600.0, seed=SEED, faults=FAULTS) as sim:
        run = chaos_run(sim, home, "revox_chaos_placement", plans, NUMBERS, 480.0, rng, "revox_call_id")
        stats = sim.get("/_simulator/stats")
        counts = order_counts(count_orders(sim), numbers)
    for kill in run["kills"]:
        kill["unrecorded_orders"] = kill["orders_at_kill"] - kill.pop("ids_stored_at_kill")
    return {
        "numbers": NUMBERS,
        **counts,
        **run,
        "placements_per_s": round(counts["orders"] / run["seconds"], 2),
        "max_requests_per_second": MAX_RPS,
        "requests_by_endpoint": stats["by_endpoint"],
        "faulted_responses": {k: v for k, v in stats["by_status"].items() if k != "200"},
        "faults": FAULTS,
        "speed": 600.0,
    }


def campaign(work: Path, rng: random.Random) -> dict[str, Any]:
    """The campaign under five kills; its figures."""
    numbers = [phone(i, 5) for i in range(NUMBERS)]
    home = work / "campaign-home"
    (home / "dags").mkdir(parents=True)
    contacts = work / "contacts.csv"
    contacts.write_text(
        "to_phone_number,first_name\n" + "".join(f"{n},Guest{i}\n" for i, n in enumerate(numbers))
    )
    (home / "dags" / "chaos_campaign.py").write_text(
        CAMPAIGN_DAG.format(
            assistant=ASSISTANT,
            contacts=contacts.as_uri(),
            retry_config=OPEN_ALL_WEEK,
            poll=CAMPAIGN_POLL_SECONDS,
        )
    )
    plans = [
        Kill("POST /campaigns"),
        Kill("POST /campaigns/{id}/launch-calls"),
        # During the wait: right after one of the sensor's next two polls.
        Kill("GET /campaigns/{id}", (1, 2)),
        Kill("GET /campaigns/{id}", (1, 2)),
        Kill("GET /campaigns/{id}", (1, 2)),
    ]
    with SimulatorProcess(api_key=API_KEY, speed=CAMPAIGN_SPEED, seed=SEED, faults=FAULTS) as sim:
        run = chaos_run(sim, home, "revox_chaos_campaign", plans, 3, 300.0, rng, "revox_campaign_id")
        stats = sim.get("/_simulator/stats")
        counts = order_counts(count_orders(sim), numbers)
    for kill in run["kills"]:
        kill.pop("ids_stored_at_kill")
    polls = stats["by_endpoint"].get("GET /campaigns/{id}", 0)
    wait_requests = polls + stats["by_endpoint"].get("GET /campaigns/{id}/statistics", 0)
    return {
        "contacts": NUMBERS,
        "campaigns": stats["campaigns"],
        **counts,
        **run,
        "campaign_status_requests": polls,
        "campaign_requests_per_poll": round(wait_requests / max(polls, 1), 3),
        "polls_per_campaign_hour": round(3600 / (CAMPAIGN_POLL_SECONDS * CAMPAIGN_SPEED), 2),
        "poke_interval_s": CAMPAIGN_POLL_SECONDS,
        "poke_interval_simulated_s": CAMPAIGN_POLL_SECONDS * CAMPAIGN_SPEED,
        "requests_by_endpoint": stats["by_endpoint"],
        "faulted_responses": {k: v for k, v in stats["by_status"].items() if k != "200"},
        "speed": CAMPAIGN_SPEED,
    }


TARGETS = {
    "duplicates": "<= 0",
    "missing": "<= 0",
    "calls_to_do_not_contact": "<= 0",
    "foreign_cancels": "<= 0",
    "orphan_orders": "<= 0",
    "campaigns": "== 1",
    "placements_per_s": f"<= {MAX_RPS:g}",
}


def met(value: Any, target: str) -> bool:
    """Whether ``value`` meets a ``"<= 5"`` / ``"== 1"`` target (a missing figure does not)."""
    if value is None:
        return False
    operator, bound = target.split()
    return bool(value <= float(bound) if operator == "<=" else value == float(bound))


def summarise(figures: dict[str, Any]) -> dict[str, Any]:
    """The section's top-level figures from its phases, with the targets evaluated."""
    place, camp, chaos = (figures.get(phase) or {} for phase in ("placements", "campaign", "chaos"))
    phases = [phase for phase in (place, camp, chaos) if phase]
    top: dict[str, Any] = {
        name: sum(int(phase.get(name, 0)) for phase in phases) if phases else None
        for name in ("duplicates", "missing")
    }
    for name in ("calls_to_do_not_contact", "foreign_cancels", "orphan_orders"):
        top[name] = chaos.get(name)
    top["campaigns"] = camp.get("campaigns")
    top["placements_per_s"] = place.get("placements_per_s")
    targets = {name: target for name, target in TARGETS.items() if top.get(name) is not None}
    return {**top, "targets": targets, "targets_met": {n: met(top[n], t) for n, t in targets.items()}}


def check_stress(figures: dict[str, Any]) -> list[str]:
    """What the bench claims and did not do: kills that did not land, tasks that never finished."""
    problems = []
    for phase in ("placements", "campaign"):
        found = figures.get(phase)
        if found:
            if len(found["kills"]) != KILLS:
                problems.append(f"{phase}: {len(found['kills'])} kills landed, not {KILLS}")
            if not found["all_tasks_succeeded"]:
                problems.append(f"{phase}: not every task succeeded: {found['final_task_states']}")
    return problems


def report(figures: dict[str, Any]) -> None:
    """Print the figures against their targets, the kills, and failed runs' log tails."""
    print(f"{'figure':<28}{'value':>10}  target")
    for name, target in figures["targets"].items():
        flag = "" if figures["targets_met"][name] else "  MISSED"
        print(f"{name:<28}{figures[name]!s:>10}  {target}{flag}")
    for phase in (figures.get("placements"), figures.get("campaign")):
        for kill in (phase or {}).get("kills", []):
            extra = (
                f", {kill['unrecorded_orders']} not yet in the task state store"
                if "unrecorded_orders" in kill
                else ""
            )
            print(f"  kill {kill['kind']} at {kill['after_s']}s: {kill['orders_at_kill']} orders{extra}")
        if phase and phase["log_tail"]:
            print(phase["log_tail"])
    if figures.get("chaos"):
        print(json.dumps(figures["chaos"]["cases"], indent=1))


def main() -> int:
    from bench.placement_chaos import run_chaos

    started = time.monotonic()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rng = random.Random(SEED)
    load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="revox-bench-placement-") as tmp:
        figures: dict[str, Any] = {}
        if "placements" in PHASES:
            figures["placements"] = placements(Path(tmp), rng)
        if "campaign" in PHASES:
            figures["campaign"] = campaign(Path(tmp), rng)
        if "chaos" in PHASES:
            figures["chaos"] = run_chaos(Path(tmp), SEED)
    figures.update(
        title=(
            f"{NUMBERS:,} placements and a {NUMBERS:,}-contact campaign under 5 worker SIGKILLs each; "
            "do-not-contact numbers, duplicate contacts, a shared key, timeouts, a refused search "
            "and a 429 storm between concurrent launchers"
        ),
        started_at=started_at,
        phases=PHASES,
        seed=SEED,
        load_average_at_start=load,
        load_average_at_end=[round(x, 2) for x in os.getloadavg()],
        cpus=os.cpu_count(),
        seconds=round(time.monotonic() - started, 1),
    )
    figures.update(summarise(figures))
    report(figures)
    for phase in ("placements", "campaign"):
        if figures.get(phase):
            figures[phase].pop("log_tail")
    merge_results("placement", figures)
    problems = check_stress(figures)
    for problem in problems:
        print(f"STRESS NOT PROVEN: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker_main(json.loads(sys.argv[2])), default=str), flush=True)
        sys.exit(0)
    sys.exit(main())
