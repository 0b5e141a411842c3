"""What a webhook body names (any shape), and the token check."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_revox._internal.core.webhook import (
    MAX_IDS,
    Announced,
    announced_calls,
    new_token,
    shape_of,
    token_matches,
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # The call object itself, as Revox's call resource reads.
        ({"id": "call_1", "status": "completed", "webhook_url": "https://x"}, [("call_1", "completed")]),
        # An envelope: the event's own id is not a call's, the call's is.
        (
            {"type": "call.completed", "event_id": "evt_9", "call": {"id": "call_2", "status": "errored"}},
            [("call_2", "errored")],
        ),
        ({"event": "done", "call_id": "call_3"}, [("call_3", None)]),
        ({"data": {"object": {"id": "call_4", "status": "COMPLETED"}}}, [("call_4", "completed")]),
        (
            [{"id": "call_5"}, {"call_id": "call_6", "status": "cancelled"}],
            [("call_5", None), ("call_6", "cancelled")],
        ),
        (
            {"calls": [{"id": "a"}, {"id": "b"}], "call_ids": ["c", "a"]},
            [("c", None), ("a", None), ("b", None)],
        ),
        ({"call_id": "x", "call": {"id": "x", "status": "completed"}}, [("x", "completed")]),
    ],
)
def test_call_ids_are_taken_from_whatever_shape_arrives(body: Any, expected: list[tuple[str, Any]]) -> None:
    assert sorted((a.id, a.status) for a in announced_calls(body)) == sorted(expected)


@pytest.mark.parametrize(
    "body",
    [
        None,
        42,
        "call_1",
        {"hello": "world"},
        {"metadata": {"id": "meta_1"}},  # an id under a key that holds no call
        {"call_id": "has space"},
        {"call_id": "x" * 129},
        {"call_id": 12},
        {"id": ["nested"]},
    ],
)
def test_unknown_shapes_and_unusable_ids_give_nothing_and_never_raise(body: Any) -> None:
    assert announced_calls(body) == []


def test_a_deep_or_huge_body_is_bounded() -> None:
    deep: Any = {"call_id": "bottom"}
    for _ in range(200):
        deep = {"call": deep}
    assert announced_calls(deep) == []  # past the depth walked
    many = {"calls": [{"id": f"c{n}"} for n in range(MAX_IDS + 50)]}
    assert len(announced_calls(many)) == MAX_IDS


def test_an_entry_is_marked_announced_with_the_status_only_when_given() -> None:
    assert Announced("c1").entry() == {"id": "c1", "announced": True}
    assert Announced("c1", "completed").entry() == {"id": "c1", "announced": True, "status": "completed"}


def test_the_shape_names_keys_and_types_never_values() -> None:
    shape = shape_of({"secret_value": "sk_live_123", "n": [1]})
    assert "sk_live_123" not in shape and shape == "{n: [int...], secret_value: str}"


def test_the_token_matches_only_a_long_configured_token() -> None:
    token, previous = new_token(), new_token()
    assert len(token) >= 43 and token != previous
    assert token_matches(token, [token])
    assert token_matches(previous, [token, previous])  # during a rotation
    assert not token_matches(token[:-1], [token])
    assert not token_matches(token + "x", [token])
    assert not token_matches("", [token])
    assert not token_matches(None, [token])
    assert not token_matches("short", ["short"])  # a short configured token matches nothing
    assert not token_matches(token, [])
