"""``RevoxPlaceCallOperator`` with its worker SIGKILLed mid-wait: the retry places nothing twice."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
import psutil

from system_tests.context import CheckFailed, Context, expect
from system_tests.processes import wait_until
from system_tests.stack import Stack

RUN = "place_kill"
PHONE = "+33612340014"  # no scenario order goes to this number
TERMINAL = ("completed", "errored", "cancelled")
#: Every ``POST /call`` of the deployment: this run's one, and one by ``system_tests.place_timeout``.
EXPECTED_POSTS = 2


def place_kill_conf(stack: Stack) -> dict[str, Any]:
    """The run's conf: the number, and a dial time (simulator clock) after the retry has reattached."""
    return {"phone": PHONE, "scheduled_at": stack.sim_time(150.0).isoformat()}


def orders_to_phone(ctx: Context) -> list[dict[str, Any]]:
    """Every order the simulator holds to :data:`PHONE`, searched with the API key."""
    return ctx.simulator_search(to_phone_number=PHONE)


def placements(ctx: Context) -> int:
    """How many ``POST /call`` requests the simulator has served."""
    response = httpx.get(f"{ctx.stack.sim_base_url}/_simulator/stats", timeout=10)
    response.raise_for_status()
    by_endpoint = response.json().get("by_endpoint") or {}
    entry = by_endpoint.get("POST /call", 0)
    return int(sum(entry.values()) if isinstance(entry, dict) else entry)


def _worker_of(ctx: Context, ti_id: str) -> psutil.Process | None:
    """The LocalExecutor worker (task supervisor) running the task instance ``ti_id``.

    The task process titles itself ``airflow worker -- <ti id>``; its parent is the executor's
    worker that supervises it. Killing that parent kills the task the way a lost node does.
    """
    scheduler = next(p for p in ctx.stack.processes if p.name == "scheduler")
    for member in psutil.Process(scheduler.pid).children(recursive=True):
        try:
            if ti_id not in " ".join(member.cmdline()):
                continue
            parent = member.parent()
            if parent is not None and "LocalExecutor" in " ".join(parent.cmdline()):
                return parent
            return member
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def kill_worker_mid_place(ctx: Context, timeout: float = 240.0) -> None:
    """Once the order is placed and the task waits, SIGKILL its worker process and the task's."""
    report = ctx.kill_report.setdefault(RUN, {})
    try:

        def placed() -> dict[str, Any] | None:
            ti = ctx.ti(RUN, "place")
            if ti["state"] != "running" or not orders_to_phone(ctx):
                return None
            return ti

        ti = wait_until(placed, timeout, "the placement to reach the simulator", interval=1.0)
        assert isinstance(ti, dict)
        time.sleep(3.0)  # past storing the call id: the kill lands in the wait
        worker = wait_until(lambda: _worker_of(ctx, ti["id"]), 30, "the task's worker process")
        assert isinstance(worker, psutil.Process)
        victims = [*worker.children(recursive=True), worker]
        report["killed"] = [f"{p.pid} {' '.join(p.cmdline())[:100]}" for p in victims]
        orders = orders_to_phone(ctx)
        for victim in victims:
            try:
                victim.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                continue
        report.update(
            {
                "try_at_kill": ti["try_number"],
                "orders_at_kill": len(orders),
                "status_at_kill": orders[0]["status"] if orders else None,
            }
        )
    except (TimeoutError, RuntimeError, KeyError, StopIteration, psutil.Error, httpx.HTTPError) as error:
        report["error"] = f"{type(error).__name__}: {error}"


def check_place_killed(ctx: Context) -> str:
    """The placing task's worker is SIGKILLed mid-wait; a retry reattaches and one order exists."""
    report = ctx.kill_report.get(RUN) or {}
    expect(report and report.get("error") is None, f"the kill did not happen: {report.get('error')}")
    expect(report["status_at_kill"] not in TERMINAL, f"the order had ended before the kill: {report}")
    run = ctx.runs[RUN]
    expect(run.state == "success", f"run {RUN} ended {run.state}")
    ti = ctx.ti(RUN, "place")
    expect(ti["state"] == "success", f"task state {ti['state']}")
    expect(ti["try_number"] > report["try_at_kill"], f"try {ti['try_number']}: the killed try did not retry")
    orders = orders_to_phone(ctx)
    expect(len(orders) == 1, f"{len(orders)} orders to {PHONE}: {[o['id'] for o in orders]}")
    posts = placements(ctx)
    expect(
        posts == EXPECTED_POSTS,
        f"the simulator served {posts} POST /call, not {EXPECTED_POSTS} (this run's and place_timeout's)",
    )
    log = ctx.api.log(ti)
    expect("Reattaching" in log or "reattaching" in log, f"the retry did not reattach:\n{log[-1500:]}")
    summary = ctx.api.xcoms(ti).get("return_value")
    if not isinstance(summary, dict) or summary.get("call_id") != orders[0]["id"]:
        raise CheckFailed(f"summary {summary!r}, order {orders[0]['id']}")
    return (
        f"killed {len(report['killed'])} processes with order {orders[0]['id']} {report['status_at_kill']}; "
        f"try {ti['try_number']} reattached and ended {summary.get('status')}; 1 order; "
        f"{posts} POST /call in all, j2's included"
    )
