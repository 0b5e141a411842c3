"""RevoxCallEventTrigger run in an event loop against the simulator over real HTTP: one event per
batch of ended orders, a cursor that survives a restart, one shared poll, small payloads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_revox._internal.core import compat
from airflow_provider_revox._internal.triggers.call_events import CURSOR_KEY, CallPoll
from airflow_provider_revox._internal.waiting.cursor import Watermark, first_named, poll_delay
from airflow_provider_revox.triggers.revox import RevoxCallEventTrigger
from tests.integration.operators.test_results_and_export import GOOD_OUTPUT, PLANTED, place
from tests.support.paths import ROOT
from tests.support.versions import needs_asset_state_store

FAST = {"poll_interval": 0.01, "max_poll_interval": 0.02}


@pytest.fixture(autouse=True)
def fast_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Polls a few milliseconds apart: below the one-second floor a deployment keeps."""
    monkeypatch.setattr(RevoxCallEventTrigger, "min_sleep", 0.0)


class Accessor:
    """An asset state store accessor kept in a dict (the triggerer's talks to the API server)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values.get(key, default)))

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))
        self.writes += 1


class Store:
    """What the triggerer injects as ``asset_state_store``: accessors by asset name."""

    def __init__(self) -> None:
        self._by_name = {"revox-calls": Accessor()}
        self._by_uri: dict[str, Accessor] = {}

    @property
    def accessor(self) -> Accessor:
        return self._by_name["revox-calls"]


def watcher(store: Store, **kwargs: Any) -> RevoxCallEventTrigger:
    trigger = RevoxCallEventTrigger(assistant_ids=["asst_planted"], **{**FAST, **kwargs})
    trigger.asset_state_store = store  # type: ignore[assignment]
    return trigger


def named(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """An event's orders without their end times."""
    return [{"id": call["id"], "status": call["status"]} for call in payload["calls"]]


async def next_event(events: AsyncIterator[Any], timeout: float = 10.0) -> dict[str, Any]:
    event = await asyncio.wait_for(events.__anext__(), timeout)
    return dict(event.payload)


async def until_saved(store: Store, writes: int, timeout: float = 10.0) -> None:
    async def wait() -> None:
        while store.accessor.writes < writes:  # noqa: ASYNC110 - the store is written by the trigger
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), timeout)


@needs_asset_state_store
def test_one_event_per_batch_and_a_restart_neither_loses_nor_repeats(revox_simulator: Any) -> None:
    sim = revox_simulator
    store = Store()

    async def scenario() -> list[dict[str, Any]]:
        early = place(sim, GOOD_OUTPUT)
        sim.finish(early)  # ended before the watcher existed: not an event
        first, second = place(sim, GOOD_OUTPUT), place(sim, GOOD_OUTPUT)
        events = watcher(store).run()
        pending = asyncio.ensure_future(next_event(events))
        await until_saved(store, 1)  # the first poll set the cursor: from now on
        sim.finish(first, second)
        one = await pending
        await events.aclose()  # the triggerer stops

        third = place(sim, GOOD_OUTPUT)
        sim.finish(third)  # ends while no triggerer runs
        restarted = watcher(store).run()
        two = await next_event(restarted)
        fourth = place(sim, GOOD_OUTPUT)
        sim.finish(fourth)
        three = await next_event(restarted)
        await restarted.aclose()
        assert named(one) == sorted(
            [{"id": first, "status": "completed"}, {"id": second, "status": "completed"}],
            key=lambda c: (sim.get_call(c["id"])["ended_at"], c["id"]),
        )
        assert named(two) == [{"id": third, "status": "completed"}]
        assert named(three) == [{"id": fourth, "status": "completed"}]
        ended = datetime.fromisoformat(two["calls"][0]["ended_at"])
        assert ended == datetime.fromisoformat(sim.get_call(third)["ended_at"].replace("Z", "+00:00"))
        assert early not in json.dumps([one, two, three])
        return [one, two, three]

    events = asyncio.run(scenario())
    assert [e["count"] for e in events] == [2, 1, 1]
    assert set(events[0]) == {"calls", "count", "ended_at"}  # ids and statuses, nothing else
    text = json.dumps(events)
    for secret in [*PLANTED.values(), sim.api_key]:
        assert secret not in text
    assert store.accessor.values[CURSOR_KEY]["ended_at"] == events[-1]["ended_at"]


def test_without_an_asset_state_store_a_watcher_says_so_and_starts_again_from_its_first_poll(
    revox_simulator: Any,
    without_asset_state_store: None,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Airflow 3.2: no cursor is kept, so an order that ends while no triggerer runs is no event.
    sim = revox_simulator
    store = Store()  # what a 3.3 triggerer would give; not used where the feature is missing

    async def first_poll_done(polls: int) -> None:
        while sim.stats()["by_endpoint"].get("POST /call/search", 0) < polls:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        early = place(sim, GOOD_OUTPUT)
        sim.finish(early)
        events = watcher(store).run()
        pending = asyncio.ensure_future(next_event(events))
        await asyncio.wait_for(first_poll_done(1), 10)
        first = place(sim, GOOD_OUTPUT)
        sim.finish(first)
        one = await pending
        await events.aclose()

        lost = place(sim, GOOD_OUTPUT)
        sim.finish(lost)  # ends while no triggerer runs
        polls = sim.stats()["by_endpoint"]["POST /call/search"]
        restarted = watcher(store).run()
        pending = asyncio.ensure_future(next_event(restarted))
        await asyncio.wait_for(first_poll_done(polls + 1), 10)
        after = place(sim, GOOD_OUTPUT)
        sim.finish(after)
        two = await pending
        await restarted.aclose()
        assert named(one) == [{"id": first, "status": "completed"}]
        assert named(two) == [{"id": after, "status": "completed"}]
        return one, two, [early, lost]

    one, two, missed = asyncio.run(scenario())
    assert not set(missed) & {c["id"] for event in (one, two) for c in event["calls"]}
    assert store.accessor.writes == 0
    logged = capsys.readouterr()
    text = logged.out + logged.err + caplog.text
    warning = (
        "Keeping the cursor in the asset state store needs Airflow 3.3 or later (this is Airflow "
        f"{compat.airflow_version()}); this watcher starts from its first poll each time its triggerer starts"
    )
    assert text.count(warning) == 2  # once per start


def test_an_airflow_without_ack_mode_gets_no_acknowledged_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow 3.2 has no ack mode and never asks for the stream; the module still imports there.
    monkeypatch.setattr(compat, "has_acknowledged_streams", lambda: False)
    with pytest.raises(RuntimeError, match=r"An acknowledged shared stream needs Airflow 3\.3 or later"):
        RevoxCallEventTrigger.create_shared_stream_producer(watcher(Store()).serialize()[1])


def test_watchers_of_one_filter_set_share_one_poll_and_each_gets_every_event(revox_simulator: Any) -> None:
    sim = revox_simulator
    left, right, other = watcher(Store()), watcher(Store()), watcher(Store(), campaign_ids=["c-1"])
    assert left.shared_stream_key() == right.shared_stream_key() != other.shared_stream_key()
    assert hash(left.shared_stream_key()) == hash(right.shared_stream_key())

    async def scenario() -> tuple[list[Any], list[Any], int]:
        from airflow_provider_revox.hooks.revox import RevoxHook

        hook = RevoxHook()
        poll = CallPoll(hook, left.filters)
        batches = [await poll.poll()]
        ended = [place(sim, GOOD_OUTPUT) for _ in range(3)]
        sim.finish(*ended)
        batches.append(await poll.poll())
        quiet_before = poll.requests
        assert await poll.poll() is None  # nothing changed: one request, no batch
        quiet = poll.requests - quiet_before
        await hook.aclose()

        async def replay() -> AsyncIterator[Any]:
            for batch in batches:
                yield batch

        got_left = [e.payload async for e in left.filter_shared_stream(replay())]
        got_right = [e.payload async for e in right.filter_shared_stream(replay())]
        return got_left, got_right, quiet

    got_left, got_right, quiet = asyncio.run(scenario())
    assert got_left == got_right and len(got_left) == 1 and got_left[0]["count"] == 3
    assert quiet == 1


@needs_asset_state_store
def test_a_batch_larger_than_batch_size_is_cut_into_events_and_each_moves_the_cursor(
    revox_simulator: Any,
) -> None:
    sim = revox_simulator
    store = Store()

    async def scenario() -> list[dict[str, Any]]:
        events = watcher(store, batch_size=2).run()
        pending = asyncio.ensure_future(next_event(events))
        await until_saved(store, 1)
        ended = [place(sim, GOOD_OUTPUT) for _ in range(5)]
        sim.finish(*ended)
        got = [await pending, await next_event(events), await next_event(events)]
        await events.aclose()
        return got

    got = asyncio.run(scenario())
    assert [e["count"] for e in got] == [2, 2, 1]
    assert len({c["id"] for e in got for c in e["calls"]}) == 5
    assert store.accessor.writes == 4  # the start, then once per event


def test_kwargs_are_configuration_only_and_bad_filters_are_named() -> None:
    from airflow.triggers.base import BaseEventTrigger

    one, two = RevoxCallEventTrigger(campaign_ids=["b", "a"]), RevoxCallEventTrigger(campaign_ids=["a", "b"])
    assert one.serialize() == two.serialize()
    classpath, kwargs = one.serialize()
    assert BaseEventTrigger.hash(classpath, kwargs) == BaseEventTrigger.hash(*two.serialize())
    assert RevoxCallEventTrigger(**kwargs).serialize() == one.serialize()  # round trip
    with pytest.raises(ValueError, match="terminal statuses"):
        RevoxCallEventTrigger(statuses=["calling"])
    with pytest.raises(ValueError, match="campaign_ids must be a list"):
        RevoxCallEventTrigger(campaign_ids="c-1")
    with pytest.raises(ValueError, match="poll_interval"):
        RevoxCallEventTrigger(poll_interval=0)


def test_polls_back_off_while_nothing_changes() -> None:
    assert [poll_delay(n, 30, 600) for n in range(7)] == [30, 60, 120, 240, 480, 600, 600]


@pytest.mark.airflow
def test_the_example_dag_exports_the_orders_named_by_its_triggering_events(
    revox_simulator: Any, run_dag: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:

    from airflow.models import dagrun
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    sim = revox_simulator
    named = [place(sim, GOOD_OUTPUT) for _ in range(4)]
    unnamed = place(sim, GOOD_OUTPUT)
    sim.finish()
    ended = {i: sim.get_call(i)["ended_at"] for i in named}
    named.sort(key=lambda i: (ended[i], i))  # the trigger names orders in the order they ended
    real = dagrun.get_or_create_dagrun
    # The first run's events name three orders; the second run's name the third again (a triggerer
    # killed before saving its cursor) and a fourth.
    runs = [[named[:2], named[2:3]], [named[2:4]]]

    def with_triggering_events(*args: Any, **kwargs: Any) -> Any:
        # What the scheduler does for an asset-triggered run: the run consumes the asset's events.
        run = real(*args, **kwargs)
        session = kwargs["session"]
        asset = session.scalar(select(AssetModel).where(AssetModel.name == "revox_calls_finished"))
        for part in runs.pop(0):
            calls = [{"id": i, "status": "completed", "ended_at": ended[i]} for i in part]
            payload = {"calls": calls, "count": len(part), "ended_at": calls[-1]["ended_at"]}
            event = AssetEvent(asset_id=asset.id, extra={"from_trigger": True, "payload": payload})
            session.add(event)
            run.consumed_asset_events.append(event)
        session.flush()
        return run

    monkeypatch.setattr(dagrun, "get_or_create_dagrun", with_triggering_events)
    source = (ROOT / "example_dags" / "revox_on_calls_finished.py").read_text()
    exported = []
    for n in (1, 2):
        out = tmp_path / f"run{n}"
        dag_run = run_dag(
            source.replace("file:///tmp/revox-finished", out.as_uri()), "revox_on_calls_finished"
        )
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
        assert states == dict.fromkeys(
            ("finished_call_ids", "export_finished_calls", "remember_exported"), "success"
        )
        (run_dir,) = [p for p in out.iterdir() if p.name.startswith("load=")]
        rows = [json.loads(line) for line in (run_dir / "calls.jsonl").read_text().splitlines()]
        assert (run_dir / "attempts.jsonl").exists()
        exported.append(sorted(row["call_id"] for row in rows))
    if compat.has_asset_state_store():
        assert exported == [sorted(named[:3]), [named[3]]]  # the order named twice is exported once
    else:  # Airflow 3.2: no mark to keep, every order named is exported
        assert exported == [sorted(named[:3]), sorted(named[2:4])]
    assert unnamed not in str(exported)


def test_a_consumer_takes_each_order_once_across_repeated_events() -> None:
    calls = [
        {"id": "a", "status": "completed", "ended_at": "2026-06-10T10:00:00+00:00"},
        {"id": "b", "status": "errored", "ended_at": "2026-06-10T10:00:00+00:00"},
    ]
    first, mark = first_named(Watermark(), calls)
    assert first == ["a", "b"]
    later = {"id": "c", "status": "completed", "ended_at": "2026-06-10T10:00:01+00:00"}
    again, mark = first_named(Watermark.from_state(mark.to_state()), [calls[1], later, later])
    assert again == ["c"] and mark.ended_at is not None and mark.ids_at == {"c"}
    legacy, _ = first_named(mark, [{"id": "a", "status": "completed"}])  # no end time: taken
    assert legacy == ["a"]
