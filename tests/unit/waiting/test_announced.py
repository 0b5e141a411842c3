"""The consumer's mark across webhook events (any order, twice) and the poll's events (in order)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from airflow_provider_revox._internal.waiting.cursor import Watermark, first_named


def at(minute: int) -> str:
    return datetime(2026, 6, 10, 10, minute, tzinfo=timezone.utc).isoformat()


def polled(call_id: str, minute: int) -> dict[str, object]:
    return {"id": call_id, "status": "completed", "ended_at": at(minute)}


def announced(call_id: str, minute: int | None) -> dict[str, object]:
    entry: dict[str, object] = {"id": call_id, "announced": True}
    if minute is not None:
        entry.update(status="completed", ended_at=at(minute))
    return entry


def roundtrip(mark: Watermark) -> Watermark:
    return Watermark.from_state(json.loads(json.dumps(mark.to_state())))


def test_webhooks_out_of_order_then_the_poll_export_each_order_once() -> None:
    # Webhooks: c3 first, then c1 twice; c2's webhook is lost.
    taken, mark = first_named(Watermark(), [announced("c3", 3), announced("c1", 1), announced("c1", 1)])
    assert taken == ["c3", "c1"]
    assert mark.ended_at is None  # webhooks do not move the mark: the poll may still name c2
    assert {call_id for call_id, _ in mark.ahead} == {"c1", "c3"}
    mark = roundtrip(mark)
    # The poll names every order, in order: only the one no webhook announced is taken.
    taken, mark = first_named(mark, [polled("c1", 1), polled("c2", 2), polled("c3", 3)])
    assert taken == ["c2"]
    assert mark.ended_at == datetime(2026, 6, 10, 10, 3, tzinfo=timezone.utc)
    assert mark.ahead == frozenset()  # the poll passed them: nothing more kept
    # A replayed webhook after the poll passed it is absorbed by the mark itself.
    again, _ = first_named(roundtrip(mark), [announced("c1", 1), announced("c3", 3)])
    assert again == []


def test_a_webhook_late_past_the_poll_is_not_exported_again() -> None:
    taken, mark = first_named(Watermark(), [polled("c1", 1), polled("c2", 2)])
    assert taken == ["c1", "c2"]
    late, mark = first_named(mark, [announced("c1", 1)])
    assert late == [] and mark.ahead == frozenset()


def test_an_announced_order_the_api_does_not_date_is_left_to_the_poll() -> None:
    taken, mark = first_named(Watermark(), [announced("open", None)])
    assert taken == [] and mark == Watermark()
    taken, _ = first_named(mark, [polled("open", 5)])
    assert taken == ["open"]


def test_a_poll_and_a_webhook_in_one_run_take_the_order_once_and_the_mark_moves() -> None:
    taken, mark = first_named(Watermark(), [announced("c1", 1), polled("c1", 1), polled("c0", 0)])
    assert taken == ["c1", "c0"]
    assert mark.ended_at == datetime(2026, 6, 10, 10, 1, tzinfo=timezone.utc) and mark.ahead == frozenset()


def test_an_untrusted_poll_entry_of_an_announced_order_is_not_taken_twice() -> None:
    _, mark = first_named(Watermark(), [announced("f", 9)])
    taken, mark = first_named(mark, [{**polled("f", 9), "untrusted_time": True}])
    assert taken == [] and "f" in mark.untrusted and mark.ahead == frozenset()
