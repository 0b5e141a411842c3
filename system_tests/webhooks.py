"""Revox webhooks into the real api-server, SIGKILLed and restarted while a burst of orders ends.

Runs once, at the first of its checks, after every other check: its orders and events would
otherwise show among those of checks k1 and k2 (same assistant, same Asset). The steps:

1. Two webhooks with a wrong and with no token (h4), before anything else happens.
2. The watched assistant is given the endpoint's URL (``RevoxHook.set_assistant_webhook``, as
   the Webhooks guide says); the simulator (:mod:`system_tests.webhook_sim`) then posts each of
   its orders that ends to the api-server, some twice, out of order, retrying a refused one.
3. :data:`BURST` orders end about one every 0.2 s. Once :data:`KILL_AFTER` of their webhooks were
   taken (202), the api-server is SIGKILLed and started again at once, as a process supervisor
   (systemd, Kubernetes) would: the webhooks sent meanwhile are refused, retried, given up.
4. Once it answers again, :data:`AFTER` more orders end (their webhooks reach it again).
5. The watcher's poll (every 1-2 s here) names every order; the consumer ``revox_on_calls_finished``
   exports them; this waits until every order is exported and no run is left.

The consumer has retries (the example DAG's ``default_args``): a task whose calls to the
execution API outlive their retries while the api-server is down runs again, and its mark and
per-run load keep the export exactly once.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from system_tests.call_events import (
    DAG_ID,
    TERMINAL,
    asset_events,
    named_ids,
    tolerant,
    watched_asset,
    watcher_events,
)
from system_tests.context import CheckFailed, Context, as_dict, expect
from system_tests.orders import EVENT_ASSISTANT, EVENT_STATUSES, scripted_order
from system_tests.processes import wait_until
from system_tests.webhook_sim import orders_dir, read_deliveries

REPORT = "webhooks"
PREFIX = "wh-"
BURST = 40
AFTER = 10
KILL_AFTER = 10
#: The endpoint's path on the api-server (the plugin's ``/revox`` prefix).
ENDPOINT = "/revox/webhooks"
#: How long the whole phase may take, in seconds: it ends the run, past this it fails.
PHASE_TIMEOUT = 180.0


def _order(call_id: str, at: datetime, final: str) -> dict[str, Any]:
    return scripted_order(call_id, at, final, assistant_id=EVENT_ASSISTANT)


def _place(ctx: Context, name: str, ids: list[str], start: float, step: float) -> None:
    """Have the simulator place orders ``ids``, dialled ``start`` s from now, one every ``step`` s."""
    stack = ctx.stack
    folder = orders_dir(stack.home)
    calls = [
        _order(call_id, stack.sim_time(start + i * step), EVENT_STATUSES[i % 2])
        for i, call_id in enumerate(ids)
    ]
    staged = folder / f"{name}.tmp"
    staged.write_text(json.dumps({"calls": calls}), encoding="utf-8")
    staged.rename(folder / f"{name}.json")  # whole, or not there: the simulator reads *.json
    wait_until(lambda: (folder / f"{name}.placed").exists(), 30, f"the simulator to place {name}", 0.1)


def _taken(deliveries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in deliveries if 200 <= int(d["status"]) < 300]


def _burst(deliveries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in deliveries if str(d.get("call_id", "")).startswith(PREFIX)]


def _post_webhook(ctx: Context, path: str) -> int:
    body = {"type": "call.completed", "call": {"id": f"{PREFIX}forged", "status": "completed"}}
    return httpx.post(f"{ctx.api.base_url}{path}", json=body, timeout=30).status_code


def _set_webhook(ctx: Context) -> None:
    """``RevoxHook.set_assistant_webhook`` on the deployment's connection (read from its variable)."""
    from airflow_provider_revox.hooks.revox import RevoxHook

    name = "AIRFLOW_CONN_REVOX_DEFAULT"
    before = os.environ.get(name)
    os.environ[name] = ctx.stack.env[name]
    try:
        RevoxHook("revox_default").set_assistant_webhook(EVENT_ASSISTANT)
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _exported(ctx: Context) -> Counter[str]:
    """How many times each order of the phase is in a ``calls`` table under the consumer's destination."""
    counts: Counter[str] = Counter()
    for table in sorted(ctx.stack.finished_dir.glob("load=*/calls.*")):
        if table.suffix == ".parquet":
            import pyarrow.parquet as pq

            ids = [str(v) for v in pq.read_table(table, columns=["call_id"]).column("call_id").to_pylist()]
        else:
            ids = [
                str(json.loads(line)["call_id"]) for line in table.read_text().splitlines() if line.strip()
            ]
        counts.update(i for i in ids if i.startswith(PREFIX))
    return counts


def _consumer_runs(ctx: Context, before: set[str]) -> list[dict[str, Any]]:
    runs = ctx.api.get(f"/dags/{DAG_ID}/dagRuns", limit=100)["dag_runs"]
    return [r for r in runs if r["dag_run_id"] not in before]


def _settled(ctx: Context, report: dict[str, Any]) -> bool:
    """Every order of the phase ended and exported, no event queued, every consumer run ended.

    Airflow 3.3.2 may leave the last events without a run until another event comes
    (apache/airflow#56050, see :func:`system_tests.call_events.wait_for_call_events`): once
    nothing else is pending, one REST event (``{"system_test": "flush"}``) is added.
    """
    ended = {
        c["id"] for c in ctx.simulator_search(assistant_ids=[EVENT_ASSISTANT]) if c["status"] in TERMINAL
    }
    mine = set(report["orders"])
    queued = ctx.api.get(f"/dags/{DAG_ID}/assets/queuedEvents")["total_entries"]
    runs = _consumer_runs(ctx, set(report["runs_before"]))
    quiet = not queued and all(r["state"] in ("success", "failed") for r in runs)
    if mine <= ended and mine <= set(_exported(ctx)):
        return quiet
    waiting = [e["id"] for e in _new_events(ctx, report) if not e["created_dagruns"]]
    if quiet and mine <= ended and waiting and not report.get("flushed"):
        report["flushed"] = waiting
        ctx.api.post("/assets/events", {"asset_id": report["asset_id"], "extra": {"system_test": "flush"}})
    return False


def run_webhooks(ctx: Context) -> dict[str, Any]:
    """Run the phase once (see the module doc); its report, with ``error`` when a step failed."""
    if REPORT in ctx.kill_report:
        return as_dict(ctx.kill_report[REPORT], "the webhooks report")
    stack = ctx.stack
    report: dict[str, Any] = {"kill": {}}
    ctx.kill_report[REPORT] = report
    began = time.monotonic()
    try:
        asset = watched_asset(ctx)
        report["asset_id"] = asset_id = int(asset["id"])
        report["events_before"] = max((int(e["id"]) for e in asset_events(ctx, asset_id)), default=0)
        report["runs_before"] = [r["dag_run_id"] for r in _consumer_runs(ctx, set())]
        wrong = _wrong_token(stack.webhook_token)
        report["refused_statuses"] = [_post_webhook(ctx, f"{ENDPOINT}?token={wrong}")]
        report["refused_statuses"].append(_post_webhook(ctx, ENDPOINT))
        report["refused_recorded"] = [
            e["id"] for e in asset_events(ctx, asset_id) if int(e["id"]) > report["events_before"]
        ]
        _set_webhook(ctx)
        first = [f"{PREFIX}{i:02d}" for i in range(1, BURST + 1)]
        then = [f"{PREFIX}{i:02d}" for i in range(BURST + 1, BURST + AFTER + 1)]
        report["orders"] = first + then
        _place(ctx, "burst", first, start=1.0, step=0.2)
        wait_until(
            lambda: len(_taken(_burst(read_deliveries(stack.home)))) >= KILL_AFTER,
            60,
            f"{KILL_AFTER} webhooks taken",
            0.05,
        )
        victim = [p for p in stack.processes if p.name == "api-server" and p.alive()][-1]
        report["kill"]["at"] = time.time()  # before: a webhook in flight fails from this moment
        victim.kill()
        stack.start_api_server()
        wait_until(stack.api.healthy, 120, "the api-server to answer again", 0.2)
        report["kill"]["healthy_at"] = time.time()
        _place(ctx, "after", then, start=1.0, step=0.2)
        wait_until(
            tolerant(lambda: _settled(ctx, report)),
            max(PHASE_TIMEOUT - (time.monotonic() - began), 1.0),
            "every order of the phase exported and the consumer's runs ended",
            2.0,
        )
        report["settled_after"] = round(time.monotonic() - began, 1)
    except (TimeoutError, RuntimeError, KeyError, IndexError, CheckFailed, httpx.HTTPError) as error:
        report["error"] = f"{type(error).__name__}: {error}"
    report["took"] = round(time.monotonic() - began, 1)
    return report


def _wrong_token(token: str) -> str:
    """A token of the same length and alphabet that is not ``token``."""
    return ("B" if token[0] == "A" else "A") + token[1:]


def _ready(ctx: Context) -> dict[str, Any]:
    report = run_webhooks(ctx)
    expect(report.get("error") is None, f"the webhooks phase failed: {report.get('error')}; {_brief(report)}")
    return report


def _brief(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("orders", "runs_before")}


def _new_events(ctx: Context, report: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in asset_events(ctx, report["asset_id"]) if int(e["id"]) > report["events_before"]]


def _webhook_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if (e.get("extra") or {}).get("from_webhook") is True]


def check_webhooks_taken(ctx: Context) -> str:
    """h1: the api-server took the simulator's webhooks: an asset event per webhook taken, naming
    its order, before the kill and again after the restart."""
    report = _ready(ctx)
    kill = report["kill"]
    deliveries = _burst(read_deliveries(ctx.stack.home))
    taken = _taken(deliveries)
    before = [d for d in taken if d["at"] < kill["at"]]
    after = [d for d in taken if d["at"] > kill["healthy_at"]]
    expect(len(before) >= KILL_AFTER, f"{len(before)} webhooks taken before the kill")
    expect(after, f"no webhook taken after the restart; deliveries {deliveries[-5:]}")
    events = _webhook_events(_new_events(ctx, report))
    named = Counter(named_ids(events))
    short = {i: n for i, n in Counter(d["call_id"] for d in taken).items() if named[i] < n}
    expect(not short, f"webhooks taken (202) without as many asset events naming their order: {short}")
    stray = sorted(set(named) - set(report["orders"]))
    expect(not stray, f"webhook events naming orders of no webhook: {stray}")
    for event in events:
        calls = (event["extra"].get("payload") or {}).get("calls") or []
        expect(all(c.get("announced") is True for c in calls), f"event {event['id']}: {calls}")
    twice = sum(1 for n in Counter(d["call_id"] for d in taken).values() if n > 1)
    return (
        f"{len(taken)} webhooks taken (202) for {len({d['call_id'] for d in taken})} of the "
        f"{len(report['orders'])} orders ({twice} sent twice): {len(before)} before the kill, "
        f"{len(after)} after the restart; {len(events)} asset events marked from_webhook name them, "
        "entries announced"
    )


def check_webhooks_refused(ctx: Context) -> str:
    """h2: the api-server SIGKILLed mid-burst and restarted: the webhooks sent meanwhile were
    refused (none before the kill, none after the restart), and the orders left with no webhook
    taken were named by the watcher's poll."""
    report = _ready(ctx)
    kill = report["kill"]
    deliveries = _burst(read_deliveries(ctx.stack.home))
    before = [d for d in deliveries if d["at"] < kill["at"]]
    expect(all(int(d["status"]) == 202 for d in before), f"webhooks before the kill not taken: {before}")
    down = [d for d in deliveries if kill["at"] <= d["at"] <= kill["healthy_at"]]
    refused = [d for d in down if d.get("error") == "ConnectError"]
    expect(refused, f"no webhook refused while the api-server was down ({kill}): {down}")
    late = [d for d in deliveries if d["at"] > kill["healthy_at"] and d.get("error") == "ConnectError"]
    expect(not late, f"webhooks refused after the api-server answered again ({kill}): {late}")
    odd = [d for d in deliveries if int(d["status"]) not in (0, 202)]
    expect(not odd, f"webhooks answered neither 202 nor not at all: {odd}")
    # Unanswered but not refused: cut at the kill, or a slow answer just after the restart.
    other = Counter(str(d.get("error")) for d in deliveries if int(d["status"]) == 0 and d not in refused)
    taken_ids = {d["call_id"] for d in _taken(deliveries)}
    lost = sorted(set(report["orders"]) - taken_ids)
    expect(lost, f"every order had a webhook taken: the kill came too late ({kill})")
    polled = set(named_ids(watcher_events(_new_events(ctx, report))))
    unnamed = sorted(set(lost) - polled)
    expect(not unnamed, f"orders with no webhook taken, never named by the poll: {unnamed}")
    return (
        f"api-server SIGKILLed after {len(before)} webhooks taken, answering again "
        f"{kill['healthy_at'] - kill['at']:.1f} s later: {len(refused)} deliveries refused while down "
        f"(the sender's retries included), none after; other unanswered: {dict(other) or 'none'}; "
        f"{len(lost)} orders left with no webhook taken, each named by the watcher's poll: {_spans(lost)}"
    )


def _spans(ids: list[str]) -> str:
    """``wh-10..wh-40, wh-44``: the orders' ids, consecutive numbers as spans."""
    numbers = sorted(int(i[len(PREFIX) :]) for i in ids)
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{PREFIX}{a:02d}" if a == b else f"{PREFIX}{a:02d}..{PREFIX}{b:02d}" for a, b in spans)


def check_webhooks_exported_once(ctx: Context) -> str:
    """h3: every order of the phase exported exactly once by revox_on_calls_finished (named by
    webhooks, twice by some, and by the poll), every consumer run successful; the token is in no
    event, export or log."""
    report = _ready(ctx)
    stack = ctx.stack
    truth = {c["id"]: c["status"] for c in ctx.simulator_search(assistant_ids=[EVENT_ASSISTANT])}
    ended = sorted(i for i in report["orders"] if truth.get(i) in EVENT_STATUSES)
    expect(len(ended) == BURST + AFTER, f"{len(ended)} orders ended as planned: {ended}")
    exported = _exported(ctx)
    again = {i: n for i, n in exported.items() if n > 1}
    expect(not again, f"orders exported more than once: {again}")
    expect(sorted(exported) == ended, f"exported {sorted(exported)}, ended {ended}")
    runs = _consumer_runs(ctx, set(report["runs_before"]))
    bad = [(r["dag_run_id"], r["state"]) for r in runs if r["state"] != "success"]
    expect(runs and not bad, f"consumer runs not successful: {bad} of {len(runs)}")
    kill, hit, retried = report["kill"], [], []
    for run in runs:
        path = f"/dags/{DAG_ID}/dagRuns/{quote(run['dag_run_id'], safe='')}/taskInstances"
        for ti in ctx.api.get(path)["task_instances"]:
            if int(ti.get("try_number") or 0) > 1:
                retried.append(f"{ti['task_id']} try {ti['try_number']}")
            # Every try: the one the outage failed shows only among the tries.
            for tried in ctx.api.get(f"{path}/{ti['task_id']}/tries")["task_instances"]:
                start, end = _epoch(tried.get("start_date")), _epoch(tried.get("end_date"))
                if start is not None and start <= kill["healthy_at"] and (end is None or end >= kill["at"]):
                    hit.append(f"{ti['task_id']} try {tried['try_number']} ({tried['state']})")
    token = stack.webhook_token
    leaks = [str(p) for p in _text_files(stack) if token in p.read_text(encoding="utf-8", errors="ignore")]
    leaks += [f"event {e['id']}" for e in _new_events(ctx, report) if token in json.dumps(e)]
    expect(not leaks, f"the webhook token is in {leaks}")
    return (
        f"{len(ended)} orders ended, {len(exported)} exported, each once, by {len(runs)} successful "
        f"consumer runs; tasks running while the api-server was down: {hit or 'none'}; retried: "
        f"{retried or 'none'}; token in no asset event, export file or log"
    )


def check_webhook_bad_token(ctx: Context) -> str:
    """h4: a webhook with a wrong token and one with none get 401 and record nothing; the api-server
    logs the refusals, never the token."""
    report = _ready(ctx)
    statuses = report["refused_statuses"]
    expect(statuses == [401, 401], f"wrong and missing token answered {statuses}")
    expect(not report["refused_recorded"], f"asset events recorded after them: {report['refused_recorded']}")
    log = ctx.stack.output("api-server")
    refusals = log.count("Revox webhook refused from 127.0.0.1")
    expect(refusals == 2, f"{refusals} refusals in the api-server's log, for 2 webhooks refused")
    wrong = _wrong_token(ctx.stack.webhook_token)
    expect(wrong not in log and ctx.stack.webhook_token not in log, "a token is in the api-server's log")
    return (
        f"wrong token and no token: HTTP {statuses[0]} and {statuses[1]}, no asset event recorded "
        f"(events after #{report['events_before']}: none); the api-server logged {refusals} refusals "
        "and no token"
    )


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _text_files(stack: Any) -> list[Path]:
    """The deployment's logs (components' and tasks') and the consumer's exports."""
    roots = [stack.logs, stack.home / "logs", stack.finished_dir]
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


#: Run after every other check (see the module doc).
CHECKS = [
    ("h1 webhooks: the real api-server took the simulator's webhooks as events", check_webhooks_taken),
    ("h2 webhooks: api-server SIGKILLed mid-burst, the refused named by the poll", check_webhooks_refused),
    ("h3 webhooks: every order of the burst exported exactly once", check_webhooks_exported_once),
    ("h4 webhooks: a wrong or missing token gets 401 and records nothing", check_webhook_bad_token),
]
