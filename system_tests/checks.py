"""The checks of the system test; each reads what the deployment did through the public REST API."""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from system_tests.context import (
    FIRED,
    STARTED,
    SUMMARY_KEYS,
    TIMEOUT_WORDS,
    Context,
    as_dict,
    expect,
)
from system_tests.processes import wait_until


def _sensor_ok(ctx: Context, run: str, call_id: str, task_id: str = "wait") -> dict[str, Any]:
    expect(ctx.runs[run].state == "success", f"run {run} ended {ctx.runs[run].state}")
    ti = ctx.ti(run, task_id)
    expect(ctx.watch.deferred_in_triggerer(ti), f"{run}: the sensor never waited in a triggerer")
    summary = as_dict(ctx.api.xcoms(ti).get("return_value"), f"{run}: the summary XCom")
    expect(set(summary) >= SUMMARY_KEYS, f"{run}: summary keys {sorted(summary)}")
    expect(summary["call_id"] == call_id and summary["status"] == "completed", f"{run}: summary {summary}")
    return ti


def _sensor_failed(ctx: Context, run: str, words: tuple[str, ...], where: str = "wait") -> str:
    expect(ctx.runs[run].state == "failed", f"run {run} ended {ctx.runs[run].state}, expected failed")
    ti = ctx.ti(run, where)
    expect(ti["state"] == "failed", f"{run}: task state {ti['state']}")
    expect(ctx.watch.deferred_in_triggerer(ti), f"{run}: the sensor never waited in a triggerer")
    expect(ti["try_number"] == 1, f"{run}: {ti['try_number']} tries for a failure that retrying cannot fix")
    log = ctx.api.log(ti)
    lowered = log.lower()
    expect(any(word in lowered for word in words), f"{run}: none of {words} in the task log:\n{log[-1500:]}")
    expect("return_value" not in ctx.api.xcoms(ti), f"{run}: a failed sensor pushed a return value")
    return log


def ends_logged(log: str, call_id: str) -> int:
    """How many lines of a task's log say the wait for ``call_id`` ended: the trigger's when it
    ended the task, the sensor's on a worker (not the fired event's, which may quote it)."""
    marker = f"call {call_id} is '"
    return sum(1 for line in log.splitlines() if marker in line and FIRED not in line)


def check_call_completed(ctx: Context) -> str:
    """revox_call_completion: sensor (in the triggerer), results operator and route_lead succeed."""
    ti = _sensor_ok(ctx, "completion", "ok-1", task_id="wait_for_call")
    results = ctx.api.xcoms(ctx.ti("completion", "call_results"))
    expect(results.get("transcript"), "call_results pushed no transcript")
    lead = as_dict(ctx.api.xcoms(ctx.ti("completion", "route_lead")).get("return_value"), "route_lead")
    expect(lead.get("call_id") == "ok-1", f"route_lead returned {lead!r}")
    return (
        f"summary pushed, {len(results['transcript'])} transcript turns, triggerers {ctx.watch.holders(ti)}"
    )


def check_call_errored(ctx: Context) -> str:
    """The single-order sensor fails on errored with the reason in the log."""
    _sensor_failed(ctx, "errored", ("errored",))
    return "failed once, 'errored' in the log, no XCom"


def check_call_cancelled(ctx: Context) -> str:
    """The single-order sensor fails on cancelled with the reason in the log."""
    _sensor_failed(ctx, "cancelled", ("cancelled",))
    return "failed once, 'cancelled' in the log, no XCom"


def _timed_out_after(ctx: Context, run: str, pattern: str, seconds: float = 20.0) -> str:
    """The sensor failed on its own timeout message, and the failure came ``seconds`` after it began."""
    ti = ctx.ti(run)
    log = ctx.api.log(ti)
    expect(re.search(pattern, log) is not None, f"{run}: no {pattern!r} in the task log:\n{log[-1500:]}")
    began, ended = (
        datetime.fromisoformat(str(ti[key]).replace("Z", "+00:00")) for key in ("start_date", "end_date")
    )
    took = (ended - began).total_seconds()
    expect(
        took >= seconds - 1, f"{run}: failed {took:.1f} s after it started, before its {seconds:g}-s timeout"
    )
    return f"failed on its {seconds:g}-s timeout after {took:.1f} s"


def check_call_timeout(ctx: Context) -> str:
    """The single-order sensor times out."""
    _sensor_failed(ctx, "timeout", TIMEOUT_WORDS)
    return _timed_out_after(ctx, "timeout", r"call \S+ did not finish by \S+")


def check_calls_completed(ctx: Context) -> str:
    """RevoxCallsSensor returns counts and id lists once enough orders completed."""
    expect(ctx.runs["batch_ok"].state == "success", f"run ended {ctx.runs['batch_ok'].state}")
    ti = ctx.ti("batch_ok")
    expect(ctx.watch.deferred_in_triggerer(ti), "the sensor never waited in a triggerer")
    result = as_dict(ctx.api.xcoms(ti).get("return_value"), "the batch XCom")
    expect(result["total"] == 3, f"total {result['total']}")
    expect(result["counts"] == {"completed": 2, "errored": 1}, f"counts {result['counts']}")
    expect(sorted(result["completed"]) == ["bok-1", "bok-2"], f"completed {result['completed']}")
    expect(result["failed"] == ["berr-1"], f"failed {result['failed']}")
    expect(abs(result["completed_ratio"] - 2 / 3) < 0.01, f"ratio {result['completed_ratio']}")
    return f"{result['counts']}, failed {result['failed']}"


def check_calls_failed(ctx: Context) -> str:
    """RevoxCallsSensor fails at once when the completed ratio can no longer be met, naming the ids."""
    log = _sensor_failed(ctx, "batch_fail", ("bcan-1",))
    expect("bcan-2" in log, "the failure does not name bcan-2")
    return "failed naming bcan-1 and bcan-2"


def check_calls_timeout(ctx: Context) -> str:
    """RevoxCallsSensor times out."""
    _sensor_failed(ctx, "batch_timeout", TIMEOUT_WORDS)
    return _timed_out_after(ctx, "batch_timeout", r"call orders did not all finish by \S+")


def check_db_connection(ctx: Context) -> str:
    """A connection that exists only in the metadata database works in the triggerer."""
    expect("AIRFLOW_CONN_REVOX_DB" not in ctx.stack.env, "revox_db is also in the environment")
    stored = ctx.api.get("/connections/revox_db")
    expect(stored["conn_type"] == "revox", f"stored connection {stored}")
    _sensor_ok(ctx, "db_conn", "db-1")
    return "revox_db (created by POST /connections) served the trigger"


def check_triggerer_killed(ctx: Context) -> str:
    """The triggerer holding a wait is SIGKILLed and restarted; the task completes once."""
    report = ctx.kill_report
    expect(report.get("error") is None, f"the kill did not happen: {report.get('error')}")
    expect(
        report["status_at_kill"] not in ("completed", "errored", "cancelled"), f"order ended before: {report}"
    )
    ti = _sensor_ok(ctx, "kill", "kill-1")
    holders = [h for h in ctx.watch.holders(ti) if h is not None]
    expect(report["killed_job"] in holders, f"holders {holders}, killed {report['killed_job']}")
    after = holders[holders.index(report["killed_job"]) + 1 :]
    expect(after and report["killed_job"] not in after, f"no live triggerer took the wait over: {holders}")
    expect(ti["try_number"] == 1, f"try {ti['try_number']}")
    log = ctx.api.log(ti)
    starts, fired, ended = len(STARTED.findall(log)), log.count(FIRED), ends_logged(log, "kill-1")
    expect(
        starts >= 2,
        f"the trigger started {starts} times: not running when killed, or not restarted "
        f"(saw {report.get('seen')!r})",
    )
    expect(fired == 1 and ended == 1, f"{fired} events fired, {ended} ends")
    return (
        f"killed {report['name']} (job {report['killed_job']}) with the order {report['status_at_kill']}; "
        f"trigger started {starts} times, taken over by job {after[0]}; one event, one end, try 1"
    )


def check_two_triggerers(ctx: Context) -> str:
    """Two triggerers share the waits; every deferred task ends once."""
    ids = ctx.stack.triggerer_jobs
    expect(-1 not in ids.values(), f"triggerer jobs not both known: {ids}")
    served: dict[int, int] = defaultdict(int)
    for holders in ctx.watch.seen.values():
        for holder in {h for h in holders if h is not None}:
            served[holder] += 1
    for name, job in ids.items():
        expect(served.get(job), f"{name} (job {job}) held no wait; held: {dict(served)}")
    for i in range(1, ctx.stack.plan.ha_calls + 1):
        ti = _sensor_ok(ctx, f"ha_{i}", f"ha-{i}")
        expect(ti["try_number"] == 1, f"ha-{i}: try {ti['try_number']}")
        log = ctx.api.log(ti)
        # Each trigger run that ended the task logs it; a wait run twice (see below) may log twice.
        ended, starts = ends_logged(log, f"ha-{i}"), len(STARTED.findall(log))
        expect(1 <= ended <= max(starts, 1), f"ha-{i}: ended {ended} times in {starts} trigger runs")
    # A trigger run fires one event. A wait taken over from a triggerer that was (or looked) dead
    # may have run twice, and Airflow then keeps the first event: the task must still end once.
    doubled, rerun = [], 0
    for dag_id, run_id, task_id, map_index in ctx.watch.seen:
        ti = ctx.api.task_instance(dag_id, run_id, task_id, map_index)
        log = ctx.api.log(ti)
        starts, fired = len(STARTED.findall(log)), log.count(FIRED)
        rerun += starts > 1
        if fired > max(starts, 1) or ti["try_number"] != 1:
            doubled.append(
                f"{run_id}/{task_id}/{map_index}: {starts} runs, {fired} events, try {ti['try_number']}"
            )
    expect(not doubled, f"double events: {doubled}")
    return (
        f"waits held per triggerer job: {dict(served)}; {ctx.stack.plan.ha_calls} tasks ended on try 1; "
        f"{len(ctx.watch.seen)} deferred tasks, at most one event per trigger run ({rerun} taken over)"
    )


def check_connection_form(ctx: Context) -> str:
    """hook_meta shows the relabelled fields; the Test endpoint passes and fails with a clear message."""
    metas = ctx.api.ui_get("/connections/hook_meta")
    revox = as_dict(next((m for m in metas if m.get("connection_type") == "revox"), None), "hook_meta revox")
    fields = as_dict(revox.get("standard_fields"), "hook_meta standard_fields")
    expect(fields["password"]["title"] == "API key", f"password field {fields['password']}")
    expect(fields["host"]["title"] == "Base URL", f"host field {fields['host']}")
    hidden = sorted(name for name, field in fields.items() if field and field.get("hidden"))
    extras = set(revox.get("extra_fields") or {})
    expect({"timeout", "max_retries", "max_requests_per_second", "batch_polls"} <= extras, f"extras {extras}")
    body = {"connection_id": "revox_form", "conn_type": "revox", "host": ctx.stack.sim_base_url}
    good = ctx.api.post("/connections/test", {**body, "password": ctx.stack.api_key})
    expect(good["status"] is True, f"good key: {good}")
    wrong = "sk_wrong_" + "0" * 24
    bad = ctx.api.post("/connections/test", {**body, "password": wrong})
    message = str(bad.get("message", ""))
    expect(bad["status"] is False, f"wrong key passed: {bad}")
    expect(
        message.startswith("Revox did not accept the API key of this connection") and wrong not in message,
        f"unclear message: {message!r}",
    )
    return (
        f"titles API key / Base URL, hidden {hidden}; good key: {good['message']!r}; wrong key: {message!r}"
    )


def check_ui_port_zero(ctx: Context) -> str:
    """The UI's Test button sends ``port: 0`` for a stored connection without a port: Airflow 3.3.2
    answers 400 to that body and 200 without the port (the production guide's known problem).
    A change either way fails here, so the guide is corrected."""
    body = {
        "connection_id": "revox_db",
        "conn_type": "revox",
        "host": ctx.stack.sim_base_url,
        "password": "***",
    }
    as_ui = ctx.api.request("POST", "/connections/test", json={**body, "port": 0})
    without = ctx.api.request("POST", "/connections/test", json=body)
    retyped = ctx.api.request(
        "POST", "/connections/test", json={**body, "port": 0, "password": ctx.stack.api_key}
    )
    expect(without.status_code == 200, f"the Test endpoint without a port: HTTP {without.status_code}")
    expect(
        as_ui.status_code == 400,
        f"Airflow now answers HTTP {as_ui.status_code} to the UI's port-0 body: update the production guide",
    )
    return (
        f"port 0 + masked key: HTTP {as_ui.status_code} {as_ui.text[:160]}; "
        f"no port: HTTP {without.status_code} {without.text[:100]}; "
        f"port 0 + key typed again: HTTP {retyped.status_code} {retyped.text[:100]}"
    )


def check_no_secrets(ctx: Context) -> str:
    """Task logs, XComs and rendered templates hold neither the API key nor a planted secret."""
    planted = ctx.stack.plan.planted
    raw = json.dumps(ctx.simulator_call("ok-1"))
    expect(
        planted in raw, "the simulator's response does not carry the planted secret: the check would be void"
    )
    seen = 0
    for name, run in ctx.runs.items():
        for ti in ctx.api.task_instances(run.dag_id, run.run_id):
            texts = {
                "log": ctx.api.log(ti) if ti["try_number"] else "",
                "xcom": json.dumps(ctx.api.xcoms(ti), default=str),
                "rendered": json.dumps(ti.get("rendered_fields"), default=str),
            }
            for kind, text in texts.items():
                expect(
                    ctx.stack.api_key not in text, f"the API key is in the {kind} of {name}/{ti['task_id']}"
                )
                expect(planted not in text, f"the planted secret is in the {kind} of {name}/{ti['task_id']}")
            seen += 1
    files = [p for p in ctx.stack.export_dir.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        expect(planted.encode() not in data and ctx.stack.api_key.encode() not in data, f"secret in {path}")
    return f"{seen} task instances and {len(files)} exported files clean"


def check_link_and_assets(ctx: Context) -> str:
    """The "Revox call" extra link points at the call; the export's asset events are listed."""
    links = ctx.api.links(ctx.ti("completion", "wait_for_call"))
    expected = f"http://127.0.0.1:{ctx.stack.sim_port}/dashboard/calls/ok-1"
    expect(links.get("Revox call") == expected, f"links {links}, expected {expected}")
    run = ctx.runs["export"]
    events = ctx.api.get("/assets/events", source_dag_id=run.dag_id, source_run_id=run.run_id, limit=50)
    uris = sorted({e.get("uri") or str(e.get("asset_id")) for e in events["asset_events"]})
    # One event per table the export wrote, each naming that table's file under the export's folder.
    tables = ("structured_output.parquet", "transcripts.parquet")
    expect(
        len(uris) == len(tables) and all(u.endswith(t) for u, t in zip(uris, tables, strict=True)),
        f"asset events of {run.run_id} name {uris}, not the export's tables {tables}",
    )
    return f"link {expected}; {events['total_entries']} asset events: {uris}"


def check_export(ctx: Context) -> str:
    """The campaign export example DAG runs end to end."""
    run = ctx.runs["export"]
    expect(run.state == "success", f"run ended {run.state}")
    counts = as_dict(ctx.api.xcoms(ctx.ti("export", "read_back")).get("return_value"), "read_back")
    expect(counts.get("structured_output.parquet") == 3, f"row counts {counts}")
    expect(counts.get("transcripts.parquet", 0) > 0, f"row counts {counts}")
    return f"Parquet rows read back: {counts}"


def check_loopback_only(ctx: Context) -> str:
    """Every socket the deployment listens on is on the loopback interface."""
    expect(ctx.listeners, "no listening socket found: the snapshot is void")
    names = {name for name, _, _ in ctx.listeners}
    wanted = {"api-server", "simulator"} | ({"postgres"} if ctx.stack.postgres is not None else set())
    expect(wanted <= names, f"listeners seen only for {sorted(names)}")
    wide = [entry for entry in ctx.listeners if not ipaddress.ip_address(entry[1]).is_loopback]
    expect(not wide, f"listening beyond loopback: {wide}")
    return ", ".join(f"{name} {ip}:{port}" for name, ip, port in ctx.listeners)


CHECKS: list[tuple[str, Callable[[Context], str]]] = [
    ("a1 call sensor completes in the triggerer (example DAG)", check_call_completed),
    ("a2 call sensor fails on errored", check_call_errored),
    ("a3 call sensor fails on cancelled", check_call_cancelled),
    ("a4 call sensor times out", check_call_timeout),
    ("a5 calls sensor completes with counts", check_calls_completed),
    ("a6 calls sensor fails naming the ids", check_calls_failed),
    ("a7 calls sensor times out", check_calls_timeout),
    ("b  connection only in the metadata database", check_db_connection),
    ("c  triggerer SIGKILLed mid-wait and restarted", check_triggerer_killed),
    ("d  two triggerers share the waits", check_two_triggerers),
    ("e  connection form metadata and Test endpoint", check_connection_form),
    ("f  no API key or planted secret in logs, XCom, templates", check_no_secrets),
    ("g  extra link and asset events", check_link_and_assets),
    ("h  campaign export example DAG end to end", check_export),
    ("i  nothing listens beyond loopback", check_loopback_only),
    ("l  the UI Test button's port-0 body (known Airflow 3.3.2 problem)", check_ui_port_zero),
]


def kill_triggerer_mid_wait(ctx: Context, timeout: float = 180.0) -> None:
    """SIGKILL the triggerer holding the ``kill`` run's wait, then start a replacement at once."""
    try:

        def running() -> int | None:
            # Assigned is not enough: the triggerer starts the trigger a moment later.
            ti = ctx.ti("kill")
            holder = (ti.get("trigger") or {}).get("triggerer_id")
            if ti["state"] != "deferred" or holder is None:
                return None
            return int(holder) if STARTED.search(ctx.api.log(ti)) else None

        job = int(
            str(wait_until(running, timeout, "the kill run's trigger to run in a triggerer", interval=1.0))
        )
        name = next((n for n, j in ctx.stack.triggerer_jobs.items() if j == job), None)
        if name is None:
            raise RuntimeError(f"job {job} is not one of the started triggerers {ctx.stack.triggerer_jobs}")
        status = ctx.simulator_call("kill-1")["status"]
        ctx.stack.triggerers[name].kill()
        ctx.stack.start_triggerer(f"{name}-restarted")
        ctx.kill_report.update({"killed_job": job, "name": name, "status_at_kill": status, "at": time.time()})
    except (TimeoutError, RuntimeError, KeyError, httpx.HTTPError) as error:
        ctx.kill_report["error"] = f"{type(error).__name__}: {error}"


def write_export_dir(path: Path) -> str:
    """The export destination, as a file:// URI."""
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()
