"""``revox_on_calls_finished`` in the real scheduler and triggerers, its triggerer SIGKILLed twice.

Orders of the watched assistant end in four batches (:meth:`~system_tests.orders.Plan.event_orders`).
The triggerer running the Asset's watcher is SIGKILLed once between the first two batches and once
while the third batch is ending, and a fresh triggerer is started each time. The checks read the
asset events, the DAG runs they started and the runs' exports through ``/api/v2``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import httpx

from airflow_provider_revox._internal.triggers.call_events import CURSOR_KEY
from system_tests.airflow_api import TERMINAL_RUN_STATES
from system_tests.context import FIRED, CheckFailed, Context, Run, as_dict, expect
from system_tests.orders import EVENT_ASSISTANT, EventOrder
from system_tests.processes import wait_until
from system_tests.stack import Stack

DAG_ID = "revox_on_calls_finished"
ASSET = "revox_calls_finished"
REPORT = "call_events"
TERMINAL = ("completed", "errored", "cancelled")
PAYLOAD_KEYS = {"calls", "count", "ended_at"}
#: The longest a kill may follow an order's first event for a repeat to be the documented one:
#: Airflow confirms a stored event on the triggerer's next sync (about a second), then the
#: watcher saves its cursor; a loaded 2-core machine stretches both.
REPEAT_WINDOW_S = 10.0


def start_watching(stack: Stack) -> None:
    """Unpause the DAG and have its file parsed again: only then does its Asset get the watcher."""
    stack.finished_dir.mkdir(parents=True, exist_ok=True)
    stack.api.request("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
    token = stack.api.get(f"/dags/{DAG_ID}/details")["file_token"]
    stack.api.request("PUT", f"/parseDagFile/{token}").raise_for_status()


def watched_asset(ctx: Context) -> dict[str, Any]:
    """The Asset ``revox_calls_finished`` as the API shows it (watchers included)."""
    assets = ctx.api.get("/assets", name_pattern=ASSET, limit=100)["assets"]
    return as_dict(next((a for a in assets if a["name"] == ASSET), None), f"the asset {ASSET}")


def asset_events(ctx: Context, asset_id: int) -> list[dict[str, Any]]:
    """Every event of the Asset, oldest first."""
    events: list[dict[str, Any]] = []
    while True:
        page = ctx.api.get("/assets/events", asset_id=asset_id, limit=100, offset=len(events))
        events += page["asset_events"]
        if not page["asset_events"] or len(events) >= page["total_entries"]:
            return sorted(events, key=lambda e: int(e["id"]))


def tolerant(condition: Callable[[], object]) -> Callable[[], object]:
    """``condition``, read as "not yet" while the API fails: Airflow 3.3.2 answers ``/assets/events``
    with HTTP 500 while a run its events created has not started (no start date to serialise)."""

    def polled() -> object:
        try:
            return condition()
        except httpx.HTTPError:
            return None

    return polled


def named_ids(events: list[dict[str, Any]]) -> list[str]:
    """The order ids the events name, in event order, repeats kept."""
    ids: list[str] = []
    for event in events:
        payload = ((event.get("extra") or {}).get("payload")) or {}
        ids += [str(call.get("id")) for call in payload.get("calls") or []]
    return ids


def cursor(ctx: Context, asset_id: int) -> Any:
    """The watcher's cursor in the Asset's state store (None before its first poll)."""
    response = ctx.api.request("GET", f"/assets/{asset_id}/state-store/{quote(CURSOR_KEY, safe='')}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json().get("value")


def holders(stack: Stack, trigger_id: int) -> list[str]:
    """The live triggerer that started the trigger ``trigger_id`` last, in a list (empty: none yet).

    A trigger taken over (a triggerer that missed its heartbeat on a loaded machine) shows
    starting in two outputs; the later start, by the log line's time, is the one running it.
    """
    started = f"trigger ID {trigger_id} starting"
    latest: dict[str, str] = {}
    for name, process in stack.triggerers.items():
        if not process.alive():
            continue
        lines = [line for line in process.output().splitlines() if started in line]
        if lines:
            latest[name] = lines[-1].split(" ", 1)[0]  # the ISO time each line starts with
    return [max(latest, key=lambda name: latest[name])] if latest else []


def ended(ctx: Context, orders: list[EventOrder]) -> list[str]:
    """Those of ``orders`` the simulator shows in a terminal status now."""
    status = {c["id"]: c["status"] for c in ctx.simulator_search(assistant_ids=[EVENT_ASSISTANT])}
    return [o.call_id for o in orders if status.get(o.call_id) in TERMINAL]


def _elapsed(stack: Stack) -> float:
    """Real seconds since the simulator started (the scale of the plan's offsets)."""
    return time.monotonic() - stack.sim_started[1]


def _kill_holder(ctx: Context, trigger_id: int, batch: int, orders: list[EventOrder]) -> dict[str, Any]:
    """SIGKILL the triggerer running the watcher, start a fresh one; say what had ended then."""
    stack = ctx.stack
    found = wait_until(lambda: holders(stack, trigger_id), 90, "the triggerer running the watcher")
    assert isinstance(found, list)
    if len(found) != 1:
        raise RuntimeError(f"the watcher seems to run in {found}")
    victim = found[0]
    batch_orders = [o for o in orders if o.batch == batch and o.watched_assistant]
    done_before = ended(ctx, batch_orders)
    stack.triggerers[victim].kill()
    moment = _elapsed(stack)
    killed_at = time.time()
    done_after = ended(ctx, batch_orders)
    replacement = f"triggerer-{len(stack.triggerers) + 1}"
    stack.start_triggerer(replacement)
    return {
        "victim": victim,
        "replacement": replacement,
        "at": round(moment, 1),
        "wall": killed_at,
        "batch": batch,
        # Bounds: the orders of the batch that had ended at the kill are between these two.
        "ended_before": len(done_before),
        "ended_after": len(done_after),
        "of": len(batch_orders),
    }


def follow_call_events(ctx: Context, timeout: float = 240.0) -> None:
    """Wait for the watcher's first poll, then SIGKILL its triggerer twice (see the module doc)."""
    stack = ctx.stack
    report: dict[str, Any] = ctx.kill_report.setdefault(REPORT, {"kills": []})
    plan = stack.plan
    orders = plan.event_orders()
    try:
        asset = wait_until(lambda: watched_asset_with_watcher(ctx), timeout, "the Asset's watcher", 2.0)
        assert isinstance(asset, dict)
        trigger_id = int(asset["watchers"][0]["trigger_id"])
        report.update({"asset_id": asset["id"], "trigger_id": trigger_id})
        wait_until(tolerant(lambda: cursor(ctx, asset["id"]) is not None), timeout, "the first poll", 2.0)
        report["first_poll_at"] = round(_elapsed(stack), 1)
        if report["first_poll_at"] >= plan.events_at[0]:
            raise RuntimeError(
                f"the watcher first polled {report['first_poll_at']} s after the simulator started, "
                f"after the first batch ended ({plan.events_at[0]} s): the machine is too slow for the plan"
            )
        # The mid-wait kill of check c comes first: one kill at a time keeps both checks readable.
        wait_until(
            lambda: "at" in ctx.kill_report or "error" in ctx.kill_report, timeout, "check c's kill", 1.0
        )

        def named(batch: int) -> int:
            ids = set(named_ids(asset_events(ctx, asset["id"])))
            return sum(o.call_id in ids for o in orders if o.batch == batch and o.matches)

        first = sum(o.matches for o in orders if o.batch == 1)
        # Between batches: once the whole first batch is named (a quiet moment), before the second
        # ends, so the second ends while no triggerer runs the watcher.
        wait_until(tolerant(lambda: named(1) == first), timeout, "events naming the whole first batch", 0.5)
        report["kills"].append(_kill_holder(ctx, trigger_id, 2, orders))
        # While orders end: the third batch ends one order at a time; kill as soon as one is named,
        # while the triggerer may still be handing on the events of the others.
        wait_until(tolerant(lambda: named(3) > 0), timeout, "an event naming the third batch", 0.5)
        report["kills"].append(_kill_holder(ctx, trigger_id, 3, orders))
        # The watcher must be picked up again (by the other or the fresh triggerer) and keep going.
        found = wait_until(lambda: holders(stack, trigger_id), timeout, "the watcher to run again", 1.0)
        report["final_holders"] = found
    except (TimeoutError, RuntimeError, KeyError, IndexError, httpx.HTTPError) as error:
        report["error"] = f"{type(error).__name__}: {error}"


def watched_asset_with_watcher(ctx: Context) -> dict[str, Any] | None:
    """The Asset once the dag-processor has given it the watcher, else None."""
    try:
        asset = watched_asset(ctx)
    except (CheckFailed, httpx.HTTPError):
        return None
    return asset if asset.get("watchers") else None


def watcher_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events the watcher's trigger added (Airflow marks them ``from_trigger``)."""
    return [e for e in events if (e.get("extra") or {}).get("from_trigger") is True]


def _runs(ctx: Context) -> list[dict[str, Any]]:
    return list(ctx.api.get(f"/dags/{DAG_ID}/dagRuns", limit=100)["dag_runs"])


def _quiet(ctx: Context) -> bool:
    """True when no event is waiting for a run: the queue is empty and every run has ended."""
    queued = ctx.api.get(f"/dags/{DAG_ID}/assets/queuedEvents")["total_entries"]
    return not queued and all(run["state"] in TERMINAL_RUN_STATES for run in _runs(ctx))


def wait_for_call_events(ctx: Context, deadline: float) -> None:
    """Wait until the watcher has named every matching order (or has gone quiet for 30 s after the
    last one ended), then until the runs of its events have ended.

    Airflow 3.3.2 may leave an event stored while the scheduler creates a run without a run of its
    own until the next event comes (the queue row it would have added already existed and is
    deleted with the run; apache/airflow#56050, fixed for 3.4 by #70972): one REST event is then
    added to the Asset, and the run it starts takes the waiting ones. The runs join ``ctx.runs``
    (as ``events_<n>``), so the secrets check reads them too.
    """
    report = ctx.kill_report.setdefault(REPORT, {"kills": []})
    asset_id = report.get("asset_id")
    if asset_id is None:
        return
    stack = ctx.stack
    orders = stack.plan.event_orders()
    wanted = {o.call_id for o in orders if o.matches}
    last_end = max(o.at for o in orders) + 1.0
    seen: dict[str, Any] = {"named": set(), "since": time.monotonic()}

    def all_named() -> bool:
        named = set(named_ids(asset_events(ctx, asset_id)))
        if named != seen["named"]:
            seen.update(named=named, since=time.monotonic())
        running = bool(holders(stack, report.get("trigger_id", -1)))
        quiet = running and _elapsed(stack) > last_end and time.monotonic() - seen["since"] > 30
        return wanted <= named or quiet

    try:
        wait_until(
            tolerant(all_named), max(deadline - time.monotonic(), 1.0), "the events naming the orders", 1.0
        )
        wait_until(
            tolerant(lambda: _quiet(ctx)),
            max(deadline - time.monotonic(), 1.0),
            "the runs of the events",
            2.0,
        )
        waiting = [e["id"] for e in asset_events(ctx, asset_id) if not e["created_dagruns"]]
        if waiting:
            report["flushed"] = waiting
            flush = ctx.api.post("/assets/events", {"asset_id": asset_id, "extra": {"system_test": "flush"}})

            def flushed() -> bool:
                events = {e["id"]: e for e in asset_events(ctx, asset_id)}
                return bool(events[flush["id"]]["created_dagruns"]) and _quiet(ctx)

            wait_until(
                tolerant(flushed), max(deadline - time.monotonic(), 1.0), "the run of the flush event", 2.0
            )
        report["settled_at"] = round(_elapsed(stack), 1)
    except (TimeoutError, httpx.HTTPError, RuntimeError) as error:
        report["settle_error"] = f"{type(error).__name__}: {error}"
    for i, run in enumerate(_runs(ctx), start=1):
        ctx.runs[f"events_{i}"] = Run(DAG_ID, run["dag_run_id"], run["state"])


def check_call_events(ctx: Context) -> str:
    """Every matching order is named by an asset event across two triggerer SIGKILLs, none lost;
    an order named twice had its first event stored just before a kill (delivery at least once)."""
    report = as_dict(ctx.kill_report.get(REPORT), "the call-events report")
    expect(report.get("error") is None, f"the call-events scenario failed: {report.get('error')}")
    expect(report.get("settle_error") is None, f"{report.get('settle_error')}; report {report}")
    kills = report["kills"]
    expect(len(kills) == 2, f"{len(kills)} kills: {kills}")
    # Each kill took the watcher down: it ran in the victim, and runs now in a triggerer never killed.
    ran = holders_ever(ctx.stack, report["trigger_id"])
    victims = [kill["victim"] for kill in kills]
    final = report.get("final_holders") or []
    expect(set(victims) <= set(ran), f"the watcher ran in {ran}, the kills hit {victims}")
    expect(final and not set(final) & set(victims), f"the watcher runs in {final} after killing {victims}")
    # Void unless orders ended while the watcher was down or being taken over.
    expect(
        any(kill["ended_before"] < kill["of"] for kill in kills),
        f"every order of the batches had ended before the kills: {kills}",
    )

    orders = {o.call_id: o for o in ctx.stack.plan.event_orders()}
    truth = {c["id"]: c for c in ctx.simulator_search(assistant_ids=[EVENT_ASSISTANT])}
    for o in orders.values():
        if o.watched_assistant:
            status = truth.get(o.call_id, {}).get("status")
            expect(status == o.final, f"{o.call_id}: the simulator shows {status}, the plan {o.final}")
    wanted = sorted(i for i, o in orders.items() if o.matches)
    everything = asset_events(ctx, report["asset_id"])
    events = watcher_events(everything)
    others = [e for e in everything if e not in events]
    expect(
        all((e.get("extra") or {}).get("system_test") == "flush" for e in others),
        f"events the watcher did not add: {others}",
    )
    names = Counter(named_ids(events))
    repeated = sorted(i for i, n in names.items() if n > 1)
    lost = sorted(set(wanted) - set(names))
    stray = sorted(set(names) - set(wanted))
    # At least once: an order is named again only when a kill came before its cursor was saved,
    # within Airflow's confirmation round after its first event was stored.
    first_stored = _first_stored(events)
    late = {
        i: min((k["wall"] - first_stored[i] for k in kills if k["wall"] >= first_stored[i]), default=None)
        for i in repeated
    }
    unexplained = sorted(i for i, gap in late.items() if gap is None or gap > REPEAT_WINDOW_S)
    expect(
        not lost and not stray and not unexplained,
        f"lost {lost}, not matching {stray}, repeated without a kill within {REPEAT_WINDOW_S} s of its "
        f"first event {unexplained}; fired by {_fired_by(ctx.stack, lost)}; "
        f"kills {[(k['victim'], k['at']) for k in kills]}",
    )
    secrets = (ctx.stack.api_key, ctx.stack.plan.planted, "transcript")
    for event in events:
        extra = as_dict(event.get("extra"), f"event {event['id']}'s extra")
        payload = as_dict(extra.get("payload"), f"event {event['id']}'s payload")
        expect(set(payload) == PAYLOAD_KEYS, f"event {event['id']}: payload keys {sorted(payload)}")
        expect(payload["count"] == len(payload["calls"]), f"event {event['id']}: {payload}")
        expect(
            1 <= payload["count"] <= ctx.stack.plan.watch()["batch_size"], f"event {event['id']}: {payload}"
        )
        for call in payload["calls"]:
            expect(set(call) == {"id", "status", "ended_at"}, f"event {event['id']}: call entry {call}")
            expect(call["status"] == orders[call["id"]].final, f"event {event['id']}: {call}")
        text = json.dumps(event)
        for secret in secrets:
            expect(secret not in text, f"event {event['id']} holds {secret[:12]}...")
    by_batch = Counter(orders[i].batch for i in names)
    kills_text = "; ".join(
        f"{k['victim']} killed at {k['at']} s with {k['ended_before']}-{k['ended_after']} of the "
        f"{k['of']} orders of batch {k['batch']} ended"
        for k in kills
    )
    again = ", ".join(f"{i} ({late[i]:.1f} s before a kill)" for i in repeated) or "none"
    return (
        f"{len(wanted)} matching orders named by {len(events)} events, none lost (orders per batch "
        f"{dict(sorted(by_batch.items()))}), none cancelled or of another assistant, payloads ids, "
        f"statuses and end times only; named again, each stored shortly before a kill: {again}; "
        f"first poll {report['first_poll_at']} s after the simulator started; "
        f"{kills_text}; the watcher ran in {ran}; all runs ended {report.get('settled_at')} s after "
        "the simulator started"
    )


def _first_stored(events: list[dict[str, Any]]) -> dict[str, float]:
    """Each order's first event's storage time (epoch seconds), from the events' timestamps."""
    from datetime import datetime

    first: dict[str, float] = {}
    for event in sorted(events, key=lambda e: str(e["timestamp"])):
        stored = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()
        for call_id in named_ids([event]):
            first.setdefault(call_id, stored)
    return first


def _fired_by(stack: Stack, call_ids: list[str]) -> dict[str, list[str]]:
    """For each order, the triggerers that logged firing an event naming it (killed ones included)."""
    return {
        call_id: sorted(
            name
            for name, p in stack.triggerers.items()
            if any(FIRED in line and f"'id': '{call_id}'" in line for line in p.output().splitlines())
        )
        for call_id in call_ids
    }


def holders_ever(stack: Stack, trigger_id: int) -> list[str]:
    """Every triggerer (live or killed) whose output shows the trigger ``trigger_id`` starting."""
    started = f"trigger ID {trigger_id} starting"
    return sorted(name for name, p in stack.triggerers.items() if started in p.output())


def _exported_ids(summary: dict[str, Any]) -> list[str]:
    """The call ids in an export's ``calls`` table (JSON lines or Parquet), read from its file."""
    uri = str(as_dict(summary.get("tables"), "the export's tables")["calls"])
    path = Path(unquote(urlparse(uri).path))
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [str(v) for v in pq.read_table(path, columns=["call_id"]).column("call_id").to_pylist()]
    return [str(json.loads(line)["call_id"]) for line in path.read_text().splitlines() if line.strip()]


def check_call_events_dag(ctx: Context) -> str:
    """The runs the events started exported exactly the orders their events named, each once
    (an order named again is not exported again: the DAG keeps a mark in the Asset's state store)."""
    report = as_dict(ctx.kill_report.get(REPORT), "the call-events report")
    wanted = sorted(o.call_id for o in ctx.stack.plan.event_orders() if o.matches)
    runs = [r for r in ctx.runs.values() if r.dag_id == DAG_ID]
    expect(runs, "no run of revox_on_calls_finished")
    exported: list[str] = []
    skipped_named: set[str] = set()
    consumed: Counter[int] = Counter()
    for run in runs:
        body = ctx.api.get(f"/dags/{DAG_ID}/dagRuns/{quote(run.run_id, safe='')}")
        expect(body["state"] == "success", f"{run.run_id} ended {body['state']}")
        expect(body["run_type"] == "asset_triggered", f"{run.run_id}: run type {body['run_type']}")
        expect(body.get("logical_date") is None, f"{run.run_id}: logical date {body.get('logical_date')}")
        path = f"/dags/{DAG_ID}/dagRuns/{quote(run.run_id, safe='')}/upstreamAssetEvents"
        events = ctx.api.get(path)["asset_events"]
        consumed.update(int(e["id"]) for e in events)
        named = sorted(set(named_ids(events)))
        chosen = _return(ctx, run, "finished_call_ids")
        if chosen is None:  # the flush event alone, or orders all exported by an earlier run
            skipped_named.update(named)
            continue
        ids = sorted(as_dict(chosen, "finished_call_ids's result")["call_ids"])
        expect(set(ids) <= set(named), f"{run.run_id}: ids {ids}, events name {named}")
        skipped_named.update(set(named) - set(ids))
        summary = as_dict(_return(ctx, run, "export_finished_calls"), "the export summary")
        files = _exported_ids(summary)
        expect(sorted(files) == ids, f"{run.run_id}: calls table {sorted(files)}, chosen {ids}")
        expect(summary.get("calls") == len(ids), f"{run.run_id}: summary {summary}")
        exported += files
    all_events = {int(e["id"]) for e in asset_events(ctx, report["asset_id"])}
    twice = sorted(i for i, n in consumed.items() if n > 1)
    expect(set(consumed) == all_events and not twice, f"events {all_events}, consumed {dict(consumed)}")
    expect(sorted(exported) == wanted, f"exported {sorted(exported)}, expected {wanted}")
    expect(skipped_named <= set(exported), f"named, never exported: {sorted(skipped_named - set(exported))}")
    text = (
        f"{len(runs)} asset-triggered runs (no logical date) consumed the {len(all_events)} events once "
        f"each and exported {len(exported)} calls: exactly the matching orders, each once"
    )
    flushed = report.get("flushed")
    if flushed:
        text += f"; events {flushed} waited for a later event (apache/airflow#56050) until a REST event came"
    return text


def _return(ctx: Context, run: Run, task_id: str) -> Any:
    """The return value a task of a run pushed (None when it pushed none)."""
    return ctx.api.xcoms(ctx.api.task_instance(run.dag_id, run.run_id, task_id)).get("return_value")
