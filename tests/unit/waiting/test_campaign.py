"""The pure parts of campaigns: tolerant models, the wait's decisions and the sorting of contact rows."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_revox._internal.core.campaign import (
    Campaign,
    LaunchResult,
    launch_body,
    parse,
    parse_list,
)
from airflow_provider_revox._internal.core.contacts import sort_rows
from airflow_provider_revox._internal.waiting import campaign as waiting
from airflow_provider_revox._internal.waiting.rounds import MAX_ERROR_BACKOFF_SECONDS


def make(**fields: Any) -> Campaign:
    return Campaign.model_validate({"id": "cmp_1", "name": "Spring", "status": "running", **fields})


def test_models_tolerate_nulls_unknown_statuses_and_new_fields() -> None:
    campaign = parse(
        Campaign,
        {
            "campaign": {
                "id": "cmp_1",
                "status": "archived",
                "row_stats": None,
                "funnel_stats": {"hot": None},
                "name": None,
                "brand_new": {"x": 1},
            }
        },
        "campaign",
    )
    assert campaign.status == "archived" and campaign.name == ""
    assert campaign.row_stats.total == 0 and campaign.funnel_stats.hot == 0
    assert campaign.model_dump(mode="json")["brand_new"] == {"x": 1}
    assert waiting.verdict(campaign) == waiting.WAITING
    launched = parse(LaunchResult, {"launched": 3.0, "skipped": None}, "launch")
    assert launched.launched == 3 and launched.skipped.active == 0
    with pytest.raises(ValueError, match="no 'campaigns' list"):
        parse_list(Campaign, {"campaigns": None}, "campaigns")
    with pytest.raises(ValueError, match="id"):
        parse(Campaign, {"campaign": {"status": "running"}}, "campaign")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"status": "running"}, waiting.WAITING),
        ({"status": "paused"}, waiting.WAITING),
        ({"status": "completed"}, waiting.SUCCESS),
        ({"status": "completed", "is_cancelled": True}, waiting.FAILED),
        ({"status": "running", "is_cancelled": True}, waiting.FAILED),
    ],
)
def test_verdict(fields: dict[str, Any], expected: str) -> None:
    assert waiting.verdict(make(**fields)) == expected


def test_poll_interval_slows_down_while_paused_and_backs_off_on_errors() -> None:
    assert waiting.poll_interval(make(), 30) == 30
    assert waiting.poll_interval(None, 30) == 30
    assert waiting.poll_interval(make(status="paused"), 30) == 120
    assert waiting.poll_interval(make(), 30, failures=3) == 120
    assert waiting.poll_interval(make(), 30, failures=40) == MAX_ERROR_BACKOFF_SECONDS


def test_summary_is_small_and_redacted() -> None:
    campaign = make(
        status="completed",
        row_stats={"total": 2, "completed": 2},
        assistant={"llm_model": {"type": "custom", "api_key": "sk-live-secret"}},
        name="Spring sk_conn_key",
    )
    summary = waiting.summary(campaign, {"funnel": {"called": {"count": 2}}}, secrets=["sk_conn_key"])
    assert set(summary) == {
        "campaign_id",
        "name",
        "status",
        "is_cancelled",
        "row_stats",
        "funnel_stats",
        "statistics",
    }
    assert summary["row_stats"]["completed"] == 2 and summary["name"] == "Spring ***"
    assert "sk-live-secret" not in repr(summary)
    assert waiting.summary_ok(summary, "cmp_1") and not waiting.summary_ok(summary, "cmp_2")
    assert "2 completed" in waiting.describe(campaign)


def test_rows_are_sorted_with_reasons() -> None:
    rows = [
        {"to_phone_number": " +33612345678 ", "first_name": "Ana", "note": ""},
        {"to_phone_number": "+33612345678", "prompt_variables": {"a": 1}},
        {"first_name": "no number"},
        ValueError("not JSON (Expecting value)"),
        {"to_phone_number": "+12125550123", "first_name": "Dee", "age": 40},
    ]
    result = sort_rows(rows, None, secrets=())
    assert result.contacts == [{"to_phone_number": "+33612345678", "prompt_variables": {"first_name": "Ana"}}]
    assert [(r["row"], r["reason"].split(" ")[0]) for r in result.rejects] == [
        (2, "contact.prompt_variables"),
        (3, "no"),
        (4, "not"),
        (5, "contact.prompt_variables"),
    ]
    picked = sort_rows(rows[4:], ["first_name"], secrets=())
    assert picked.contacts == [{"to_phone_number": "+12125550123", "prompt_variables": {"first_name": "Dee"}}]


def test_launch_body_defaults_to_every_row() -> None:
    assert launch_body() == {
        "mode": "ai_first",
        "selection": {
            "filters": {"statuses": [], "outcomes": [], "results": [], "directions": [], "assignee_ids": []},
            "rows": {"call_ids": [], "mode": "all_except"},
        },
    }
    body = launch_body(
        filters={"statuses": ["not_launched"], "query": "paris"}, call_ids=["c1"], rows_mode="only"
    )
    assert body["selection"]["filters"]["query"] == "paris"
    assert body["selection"]["rows"] == {"call_ids": ["c1"], "mode": "only"}


def test_a_handed_over_wait_sleeps_until_the_sensors_next_look() -> None:
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    assert waiting.first_pause(None, now) == 0.0
    assert waiting.first_pause(now + timedelta(seconds=42.5), now) == 42.5
    # Already due (a triggerer restarted long after the sensor deferred): look at once.
    assert waiting.first_pause(now - timedelta(minutes=5), now) == 0.0
    # Another offset, same instant.
    paris = timezone(timedelta(hours=1))
    assert waiting.first_pause(datetime(2026, 3, 2, 10, 1, tzinfo=paris), now) == 60.0


def test_a_long_read_reports_progress_and_stops_past_the_reject_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_revox._internal.core import contacts

    monkeypatch.setattr(contacts, "PROGRESS_EVERY", 3)
    rows = [{"to_phone_number": f"+3361234560{i}"} for i in range(7)] + [{"to_phone_number": "0612"}] * 5
    seen: list[tuple[int, int, int]] = []
    result = sort_rows(
        rows,
        [],
        max_rejected=2,
        progress=lambda so_far: seen.append((so_far.rows, len(so_far.contacts), len(so_far.rejects))),
    )
    assert seen == [(3, 3, 0), (6, 6, 0), (9, 7, 2)]
    assert result.stopped_early is True and result.rows == 10 and len(result.rejects) == 3
    assert (len(result.contacts), [r["row"] for r in result.rejects]) == (7, [8, 9, 10])
