"""The do-not-contact gate's pure decisions and the streamed phone-history scanner (no I/O, no clock)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_revox._internal.core.contact_gate import ContactPolicy, judge, screen
from airflow_provider_revox._internal.core.phone_history import (
    HistoryFormatError,
    HistoryScanner,
    PhoneHistoryEntry,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def entry(**fields: object) -> PhoneHistoryEntry:
    return PhoneHistoryEntry.model_validate(fields)


def test_do_not_contact_wins_and_only_a_named_override_dials_it() -> None:
    marked = entry(do_not_contact=True, count=0)
    assert judge("+1", marked, ContactPolicy(), NOW).reason == "do_not_contact"
    verdict = judge("+1", marked, ContactPolicy(dial_do_not_contact=True), NOW)
    assert verdict.reason is None and verdict.overridden


@pytest.mark.parametrize("value", ["true", "yes", 1, {"x": 1}])
def test_an_unexpected_do_not_contact_value_reads_as_marked(value: object) -> None:
    assert entry(do_not_contact=value).do_not_contact is True


def test_time_policies_take_now_as_an_argument() -> None:
    two_days_ago = (NOW - timedelta(days=2)).isoformat()
    human = entry(count=1, reached_human=True, last_called_at=two_days_ago)
    assert judge("+1", human, ContactPolicy(skip_reached_human_within_days=3), NOW).reason == (
        "reached_human_within_days"
    )
    assert judge("+1", human, ContactPolicy(skip_reached_human_within_days=1), NOW).reason is None
    assert judge("+1", human, ContactPolicy(skip_called_within_hours=49), NOW).reason == "called_within_hours"
    assert judge("+1", human, ContactPolicy(skip_called_within_hours=47), NOW).reason is None
    unreadable = entry(count=2, last_called_at="last tuesday")
    verdict = judge("+1", unreadable, ContactPolicy(skip_called_within_hours=1), NOW)
    assert verdict.reason == "called_within_hours"


def test_already_in_campaign_matches_the_name_with_or_without_its_key_tag() -> None:
    policy = ContactPolicy(skip_already_in_campaign=True)
    tagged = entry(count=1, campaigns=[{"id": "c1", "name": "Renewals [af-1 @ d/t]"}])
    other = entry(count=1, campaigns=[{"id": "c2", "name": "Renewals 2"}])
    assert judge("+1", tagged, policy, NOW, "Renewals").reason == "already_in_campaign"
    assert judge("+1", other, policy, NOW, "Renewals").reason is None


def test_screen_counts_by_reason() -> None:
    history = {"+1": entry(do_not_contact=True), "+2": entry(count=1, last_called_at=NOW.isoformat())}
    contacts = [{"to_phone_number": n} for n in ("+1", "+2", "+3")]
    result = screen(contacts, history, ContactPolicy(skip_called_within_hours=1), NOW)
    assert [c["to_phone_number"] for c in result.kept] == ["+3"]
    assert result.summary() == "2 of 3 contacts skipped (do_not_contact: 1, called_within_hours: 1)"


def test_bad_policy_values_are_refused() -> None:
    with pytest.raises(ValueError, match="skip_called_within_hours"):
        ContactPolicy(skip_called_within_hours=0)
    with pytest.raises(ValueError, match="dial_do_not_contact"):
        ContactPolicy(dial_do_not_contact="yes")  # type: ignore[arg-type]


BODY = json.dumps(
    {
        "request_id": "r-1",
        "phone_history": {f"+3361234{i:04d}": {"count": i, "do_not_contact": i % 7 == 0} for i in range(300)},
        "tail": [1.5, {"}": "{"}],
    },
    indent=1,
)


@pytest.mark.parametrize("size", [1, 5, 64, 4096, len(BODY)])
def test_the_scanner_keeps_only_the_numbers_asked_whatever_the_pieces(size: int) -> None:
    scanner = HistoryScanner({"+33612340007", "+33612340010", "+1999"})
    for start in range(0, len(BODY), size):
        scanner.feed(BODY[start : start + size])
    found = scanner.finish()
    assert scanner.scanned == 300 and sorted(found) == ["+33612340007", "+33612340010"]
    assert found["+33612340007"]["do_not_contact"] is True
    if size < 100:
        assert scanner.max_buffered < 200  # about one entry, never the body


@pytest.mark.parametrize("cut", [0, 1, len(BODY) // 2, len(BODY) - 1])
def test_a_cut_off_body_is_never_taken_as_complete(cut: int) -> None:
    scanner = HistoryScanner({"+1"})
    for start in range(0, cut, 100):
        scanner.feed(BODY[start : min(cut, start + 100)])
    with pytest.raises(HistoryFormatError):
        scanner.finish()


@pytest.mark.parametrize("body", ["[]", '{"a": 1}', '{"phone_history": []}', '{"phone_history": {}} x'])
def test_a_body_that_is_not_a_history_is_refused(body: str) -> None:
    scanner = HistoryScanner({"+1"})
    with pytest.raises(HistoryFormatError):
        scanner.feed(body)
        scanner.finish()
