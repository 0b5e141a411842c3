"""The chaos part of the ``placement`` bench: plausible API behaviour and ordinary user choices.

A real Airflow worker (``dag.test()`` in its own process, as in :mod:`bench.placement`) runs one
DAG per case against a simulator served from this process (so the bench can mark numbers
do-not-contact and script faults by key). Cases, in order:

* ``do_not_contact``: a mapped ``RevoxPlaceCallOperator`` over 20 numbers, 5 of them marked
  do-not-contact, and a ``RevoxCreateCampaignOperator`` from a 30-row CSV file: 20 distinct
  numbers (5 marked do-not-contact) and 10 rows repeating earlier numbers;
* ``shared_key``: DAG A places to a number under ``idempotency_key="chaos-shared-key"`` (not
  waiting); DAG B places to the same number under the same key twice (a poking and a deferred
  task), each waiting with ``timeout=3`` on an order scheduled days ahead, so both give up;
* ``search_refused``: the answer of a ``POST /call`` is dropped after the order was stored
  (``drop_after_commit``), then the search that would find it is refused (503) for two tries:
  the task must not place a second order. (The simulator cannot make a search lag behind the
  POST on cue; a refusal is the uncertain answer it can script.)
* ``search_lag``: the same lost answer, then a search index that lags the orders by
  :data:`INDEX_LAG_S` (simulator clock): the first try's search cannot see the stored order; a
  later try, once the index caught up, reattaches to it. One order either way.
* ``concurrent_launchers``: a 10-row campaign; launcher ``l2`` (every row but r0) meets a 429
  storm on its first try and fails; launcher ``l1`` launches r0; ``l2``'s next try runs.

Figures: ``duplicates`` (orders or campaign rows beyond one per number and task), ``missing``
(numbers or rows owed a dial that never got one), ``calls_to_do_not_contact`` (orders or campaign
rows to marked numbers), ``foreign_cancels`` (orders cancelled by a task that did not place
them), ``orphan_orders`` (orders still live after the task that placed them gave up). The bench
asserts its stress happened (marks read, faults served, the timeouts, the storm).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow_provider_revox._simulator.harness import SimulatorHandle, running_simulator
from airflow_provider_revox.testing import ALWAYS_OPEN_RETRY_CONFIG

SPEED = 600.0
ASSISTANT = "asst_chaos"
SHARED_KEY = "chaos-shared-key"
KEY_NUMBER = "+33612380000"
LAG_NUMBER = "+33612380001"
INDEX_LAG_NUMBER = "+33612380002"
#: How far the search index lags the orders in ``search_lag``: 10 simulated minutes, 1 s real.
INDEX_LAG_S = 600.0
PLACE_NUMBERS = [f"+336123{6}{i:04d}" for i in range(20)]
CAMPAIGN_NUMBERS = [f"+336123{7}{i:04d}" for i in range(20)]
#: The launchers' campaign: a block of its own, so its rows are never counted as another case's orders.
LAUNCH_NUMBERS = [f"+336123{9}{i:04d}" for i in range(10)]
DNC = set(PLACE_NUMBERS[::4]) | set(CAMPAIGN_NUMBERS[1::4])
#: Retries of one request by the hook: a scripted storm of MAX_RETRIES + 1 answers exhausts it.
MAX_RETRIES = 1
OPEN_ALL_WEEK = {
    **ALWAYS_OPEN_RETRY_CONFIG,
    "allowed_days": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
}
TERMINAL = {"completed", "cancelled", "errored"}

HEADER = """
from datetime import timedelta
import pendulum
from airflow.sdk import dag
from airflow_provider_revox.operators.revox import (
    RevoxCreateCampaignOperator, RevoxLaunchCampaignOperator, RevoxPlaceCallOperator,
)
START = pendulum.datetime(2025, 1, 1, tz="UTC")
"""

DAGS = {
    "chaos_dnc": """
@dag(dag_id="chaos_dnc", schedule=None, start_date=START, catchup=False)
def build():
    RevoxPlaceCallOperator.partial(
        task_id="place", assistant_id={assistant!r}, wait_for_completion=False,
    ).expand(phone_number={place_numbers!r})
    RevoxCreateCampaignOperator(
        task_id="create", name="Chaos do-not-contact", assistant_id={assistant!r},
        contacts_path={contacts!r}, max_rejected_rows=100,
    )
build()
""",
    "chaos_key_a": """
@dag(dag_id="chaos_key_a", schedule=None, start_date=START, catchup=False)
def build():
    RevoxPlaceCallOperator(
        task_id="place", phone_number={key_number!r}, assistant_id={assistant!r},
        idempotency_key={key!r}, scheduled_at={later!r}, wait_for_completion=False,
    )
build()
""",
    "chaos_key_b": """
@dag(dag_id="chaos_key_b", schedule=None, start_date=START, catchup=False)
def build():
    modes = {{"poke": dict(mode="poke", poke_interval=1), "deferred": dict(deferrable=True, poke_interval=1)}}
    for task_id, mode in modes.items():
        RevoxPlaceCallOperator(
            task_id=task_id, phone_number={key_number!r}, assistant_id={assistant!r},
            idempotency_key={key!r}, scheduled_at={later!r}, timeout=3, **mode,
        )
build()
""",
    "chaos_search_refused": """
@dag(dag_id="chaos_search_refused", schedule=None, start_date=START, catchup=False)
def build():
    RevoxPlaceCallOperator(
        task_id="place", phone_number={lag_number!r}, assistant_id={assistant!r},
        wait_for_completion=False, retries=4, retry_delay=timedelta(seconds=0),
    )
build()
""",
    "chaos_search_lag": """
@dag(dag_id="chaos_search_lag", schedule=None, start_date=START, catchup=False)
def build():
    RevoxPlaceCallOperator(
        task_id="place", phone_number={index_lag_number!r}, assistant_id={assistant!r},
        wait_for_completion=False, retries=8, retry_delay=timedelta(seconds=1),
    )
build()
""",
    "chaos_launch_l2": """
@dag(dag_id="chaos_launch_l2", schedule=None, start_date=START, catchup=False)
def build():
    RevoxLaunchCampaignOperator(
        task_id="l2", campaign_id={campaign_id!r}, call_ids=[{first_row!r}], rows_mode="all_except",
    )
build()
""",
    "chaos_launch_l1": """
@dag(dag_id="chaos_launch_l1", schedule=None, start_date=START, catchup=False)
def build():
    RevoxLaunchCampaignOperator(
        task_id="l1", campaign_id={campaign_id!r}, call_ids=[{first_row!r}], rows_mode="only",
    )
build()
""",
}


def _worker(sim: SimulatorHandle, home: Path, dag_id: str, resume: bool) -> dict[str, Any]:
    """Run one DAG (or its next try) in a worker process; its closing line."""
    spec = {"home": str(home), "dag_id": dag_id, "resume": resume}
    env = {**os.environ, "AIRFLOW_CONN_REVOX_DEFAULT": sim.connection_json(max_retries=MAX_RETRIES)}
    placement = Path(__file__).with_name("placement.py")
    log = home.parent / "chaos.log"
    with log.open("ab") as out:
        subprocess.run(
            [sys.executable, str(placement), "--worker", json.dumps(spec)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith('{"run_id"'):
            result: dict[str, Any] = json.loads(line)
            return result
    return {}


def _progress(case: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Print a case's figures as soon as it is done (a long run shows where it is)."""
    print(f"chaos case {case}: {json.dumps(figures, sort_keys=True)}", flush=True)
    return figures


def _orders(sim: SimulatorHandle) -> list[dict[str, Any]]:
    return [sim.engine.get_call(call_id) for call_id in sim.engine.call_ids()]


def _number(order: dict[str, Any]) -> str:
    return str(order.get("to_phone_number") or order.get("phone_number"))


def _write_dags(home: Path, values: dict[str, Any]) -> None:
    (home / "dags").mkdir(parents=True, exist_ok=True)
    for dag_id, body in DAGS.items():
        (home / "dags" / f"{dag_id}.py").write_text(HEADER + body.format(**values))


def run_chaos(work: Path, seed: int) -> dict[str, Any]:
    """Every case, one worker run each (two for the interrupted launcher); the figures."""
    home = work / "chaos-home"
    contacts = work / "chaos-contacts.csv"
    rows = CAMPAIGN_NUMBERS + CAMPAIGN_NUMBERS[::2]  # 10 rows repeat an earlier number
    contacts.write_text("to_phone_number,first_name\n" + "".join(f"{n},Guest\n" for n in rows))
    with running_simulator(seed=seed, speed=SPEED) as sim:
        engine = sim.engine
        engine.phone_book.mark(DNC)
        later = (engine.clock.now() + timedelta(days=20)).isoformat()
        book = engine.campaigns
        launch_id = book.create(
            name="Chaos launchers",
            assistant_id=ASSISTANT,
            contacts=[{"to_phone_number": number, "prompt_variables": {}} for number in LAUNCH_NUMBERS],
            call_retry_config=OPEN_ALL_WEEK,
        )
        launch_rows = list(book.campaign(launch_id).call_ids)
        _write_dags(
            home,
            {
                "assistant": ASSISTANT,
                "place_numbers": PLACE_NUMBERS,
                "contacts": contacts.as_uri(),
                "key_number": KEY_NUMBER,
                "lag_number": LAG_NUMBER,
                "index_lag_number": INDEX_LAG_NUMBER,
                "key": SHARED_KEY,
                "later": later,
                "campaign_id": launch_id,
                "first_row": launch_rows[0],
            },
        )
        runs: dict[str, Any] = {}
        runs["chaos_dnc"] = _worker(sim, home, "chaos_dnc", resume=False)
        dnc = _progress("do_not_contact", _dnc_figures(sim))
        runs["chaos_key_a"] = _worker(sim, home, "chaos_key_a", resume=True)
        runs["chaos_key_b"] = _worker(sim, home, "chaos_key_b", resume=True)
        shared = _progress("shared_key", _shared_key_figures(sim))
        before = Counter(sim.stats()["by_status"])
        sim.faults.script(LAG_NUMBER, ["drop_after_commit"])
        sim.faults.script("POST /call/search", ["503"] * (2 * (MAX_RETRIES + 1)))
        runs["chaos_search_refused"] = _worker(sim, home, "chaos_search_refused", resume=True)
        refused = _progress("search_refused", _refused_figures(sim, before))
        before = Counter(sim.stats()["by_status"])
        sim.faults.script(INDEX_LAG_NUMBER, ["drop_after_commit"])
        sim.faults.lag_index(INDEX_LAG_S)
        runs["chaos_search_lag"] = _worker(sim, home, "chaos_search_lag", resume=True)
        sim.faults.lag_index(0)
        lagged = _progress("search_lag", _lag_figures(sim, before, runs["chaos_search_lag"]))
        before = Counter(sim.stats()["by_status"])
        sim.faults.script(launch_id, ["429:0"] * (MAX_RETRIES + 1))
        runs["chaos_launch_l2"] = _worker(sim, home, "chaos_launch_l2", resume=True)
        storm = Counter(sim.stats()["by_status"])["429"] - before["429"]
        runs["chaos_launch_l1"] = _worker(sim, home, "chaos_launch_l1", resume=True)
        runs["chaos_launch_l2_retry"] = _worker(sim, home, "chaos_launch_l2", resume=True)
        statuses = Counter(engine.get_call(call_id)["status"] for call_id in launch_rows)
        launchers = {
            "rows": len(launch_rows),
            "rows_never_launched": statuses.get("not_launched", 0),
            "responses_429_in_storm": storm,
            "missing": statuses.get("not_launched", 0),
            "duplicates": 0,  # a campaign row is one order: launching it twice cannot dial twice
        }
        history_reads = engine.phone_book.reads
    cases = {
        "do_not_contact": dnc,
        "shared_key": shared,
        "search_refused": refused,
        "search_lag": lagged,
        "concurrent_launchers": launchers,
    }
    _assert_stress(cases, history_reads)
    return {
        "cases": cases,
        "worker_results": {name: run.get("states") for name, run in runs.items()},
        "phone_history_reads": history_reads,
        **{
            name: sum(int(case.get(name, 0)) for case in cases.values())
            for name in (
                "duplicates",
                "missing",
                "calls_to_do_not_contact",
                "foreign_cancels",
                "orphan_orders",
            )
        },
    }


def _dnc_figures(sim: SimulatorHandle) -> dict[str, Any]:
    orders = _orders(sim)
    placed = Counter(_number(o) for o in orders if not o.get("campaign") and _number(o) in PLACE_NUMBERS)
    rows = Counter(_number(o) for o in orders if o.get("campaign") and _number(o) in CAMPAIGN_NUMBERS)
    owed = [n for n in PLACE_NUMBERS if n not in DNC], [n for n in CAMPAIGN_NUMBERS if n not in DNC]
    return {
        "numbers_marked": len(DNC),
        "placements": sum(placed.values()),
        "campaign_rows": sum(rows.values()),
        "calls_to_do_not_contact": sum(c for n, c in (*placed.items(), *rows.items()) if n in DNC),
        "duplicates": sum(c - 1 for c in (*placed.values(), *rows.values()) if c > 1),
        "missing": sum(1 for n in owed[0] if not placed[n]) + sum(1 for n in owed[1] if not rows[n]),
    }


def _owner(order: dict[str, Any]) -> str:
    return str((order.get("metadata") or {}).get("airflow_task", ""))


def _shared_key_figures(sim: SimulatorHandle) -> dict[str, Any]:
    mine = [o for o in _orders(sim) if _number(o) == KEY_NUMBER and not o.get("campaign")]
    by_owner = Counter(_owner(o) for o in mine)
    dag_a = [o for o in mine if _owner(o).startswith("chaos_key_a/")]
    dag_b = [o for o in mine if _owner(o).startswith("chaos_key_b/")]
    return {
        "orders_by_task": dict(by_owner),
        "duplicates": sum(c - 1 for c in by_owner.values() if c > 1),
        "missing": sum(
            1
            for task in ("chaos_key_a/place", "chaos_key_b/poke", "chaos_key_b/deferred")
            if not by_owner[task]
        ),
        "foreign_cancels": sum(1 for o in dag_a if o["status"] == "cancelled"),
        "orphan_orders": sum(1 for o in dag_b if o["status"] not in TERMINAL),
        "dag_b_statuses": sorted(o["status"] for o in dag_b),
    }


def _refused_figures(sim: SimulatorHandle, before: Counter[str]) -> dict[str, Any]:
    after = Counter(sim.stats()["by_status"])
    orders = [o for o in _orders(sim) if _number(o) == LAG_NUMBER and not o.get("campaign")]
    return {
        "orders": len(orders),
        "duplicates": max(0, len(orders) - 1),
        "missing": 0 if orders else 1,
        "dropped_answers": after["drop_after_commit"] - before["drop_after_commit"],
        "refused_searches": after["503"] - before["503"],
    }


def _lag_figures(sim: SimulatorHandle, before: Counter[str], run: dict[str, Any]) -> dict[str, Any]:
    after = Counter(sim.stats()["by_status"])
    orders = [o for o in _orders(sim) if _number(o) == INDEX_LAG_NUMBER and not o.get("campaign")]
    return {
        "orders": len(orders),
        "duplicates": max(0, len(orders) - 1),
        "missing": 0 if orders else 1,
        "dropped_answers": after["drop_after_commit"] - before["drop_after_commit"],
        "tries": (run.get("tries") or {}).get("place", 0),
        "task_states": run.get("states"),
    }


def _assert_stress(cases: dict[str, dict[str, Any]], history_reads: int) -> None:
    """The bench fails when its stress did not happen (not when a target is missed)."""
    assert history_reads >= 2, f"the phone history was read {history_reads} times"
    assert cases["shared_key"]["orders_by_task"], "no order was placed under the shared key"
    assert cases["search_refused"]["dropped_answers"] >= 1, "no POST /call answer was dropped"
    assert cases["search_refused"]["refused_searches"] >= 2, "the search was not refused"
    assert cases["search_lag"]["dropped_answers"] >= 1, "no POST /call answer was dropped (lag)"
    # One try cannot both miss the order (lag) and find it: a second try proves the lag hid it.
    assert cases["search_lag"]["tries"] >= 2, "the lagging index hid the order from no try"
    assert cases["concurrent_launchers"]["responses_429_in_storm"] >= MAX_RETRIES + 1, "no 429 storm"
