"""Credentials in every shape tools and transcripts carry them, and redaction cost at scale."""

from __future__ import annotations

import cProfile
import json
import pstats
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_revox._internal.core.redact import MASK, redact, redact_text

API_KEY = "rvx_live_shapes_key_9Zp4"
MARKER = "PLANTED"

planted = st.integers(min_value=0, max_value=10**8).map(lambda n: f"{MARKER}-{n:08d}")
container = st.sampled_from(
    ["headers", "request_headers", "custom_headers", "query_params", "query_parameters", "params"]
)
credential_name = st.sampled_from(["Authorization", "X-Api-Key", "X-Crm-Key", "api_key", "password", "token"])


def shapes(secret: str, container_name: str, name: str) -> st.SearchStrategy[Any]:
    """One credential, as each tool definition or argument has been seen to carry it."""
    return st.sampled_from(
        [
            {container_name: f"{name}: {secret}"},
            {container_name: f"{name}={secret}&region=eu"},
            {container_name: [{"name": name, "value": secret}]},
            {container_name: {"X-Region": secret}},
            {"entries": [{"key": name, "value": secret}]},
            {"tool_arguments": json.dumps({name: secret, "n": 1})},
            {"tool_arguments": json.dumps({"inner": json.dumps({name: secret})})},
            {"url": f"https://hooks.example/in#{name}={secret}"},
            {"url": f"https://hooks.example/in?{name.replace('_', '%5F')}={secret}"},
            {"url": f"https://{secret}@hooks.example/in"},
            {"note": f"copied {API_KEY} here"},
            {"note": json.dumps({"echo": API_KEY})},
        ]
    )


def wrap(value: Any, path: list[str]) -> Any:
    for name in path:
        value = {name: value} if name else [value]
    return value


@settings(max_examples=300, deadline=None)
@given(
    shape=st.tuples(planted, container, credential_name).flatmap(lambda args: shapes(*args)),
    path=st.lists(st.sampled_from(["", "data", "tools", "x", "config"]), max_size=12),
    as_json=st.booleans(),
)
def test_planted_credentials_in_every_shape_are_masked(shape: Any, path: list[str], as_json: bool) -> None:
    value = wrap(shape, path)
    if as_json:
        value = {"tool_arguments": json.dumps(value)}
    text = json.dumps(redact(value, secrets=(API_KEY,)), ensure_ascii=False)
    assert MARKER not in text
    assert API_KEY not in text
    assert MASK in text
    assert MARKER not in redact_text(json.dumps(value), (API_KEY,))


def realistic_call(turns: int) -> dict[str, Any]:
    """A completed call with ``turns`` turns in both transcripts, tool calls among them."""
    transcript: list[dict[str, Any]] = []
    for index in range(turns):
        if index % 4 == 3:
            arguments: Any = {
                "customer": f"c{index}",
                "filters": {"since": "2024-01-01"},
                "api_key": "s3cr3t",
            }
            if index % 8 == 7:
                arguments = json.dumps(arguments)
            transcript.append({"role": "tool", "tool_name": "crm", "tool_arguments": arguments})
        else:
            transcript.append(
                {
                    "role": "user" if index % 2 else "assistant",
                    "content": f"Turn {index}: the price, the delivery date and the warranty, please. " * 3,
                }
            )
    tool = {"name": "crm", "url": "https://crm.example/in?key=s3cr3t", "headers": {"Authorization": "x"}}
    return {
        "id": "call-1",
        "status": "completed",
        "assistant": {"custom_tools": [tool]},
        "call_attempts": [{"id": "a1", "transcript": transcript, "post_call_transcript": transcript}],
    }


def count_calls(function: Callable[..., Any], *args: Any) -> int:
    """Python function calls made by one run of ``function`` (deterministic, unlike its time)."""
    profiler = cProfile.Profile()
    profiler.runcall(function, *args)
    return int(pstats.Stats(profiler).total_calls)  # type: ignore[attr-defined]


def test_redacting_a_long_call_costs_work_in_proportion_to_its_size() -> None:
    small, large = realistic_call(100), realistic_call(200)
    redact(large, (API_KEY,))  # name checks are cached: count with the caches warm
    cleaned = redact(large, (API_KEY,))
    assert "s3cr3t" not in json.dumps(cleaned)
    small_calls = count_calls(redact, small, (API_KEY,))
    large_calls = count_calls(redact, large, (API_KEY,))
    # Linear: twice the turns, twice the work (give or take the call's fixed part), and a
    # bounded number of calls per turn.
    assert 1.8 * small_calls <= large_calls <= 2.1 * small_calls
    assert large_calls / 400 < 80  # 400 turns: 200 in each transcript


def test_long_hostile_texts_are_read_once() -> None:
    # Texts like these once took time in the square of their length (tens of seconds at this
    # size): a scheme was tried at every letter of a long word, and every secret name re-read
    # the rest of the text as its value.
    word = "a" * 100_000
    assert redact_text(f"{word}@host") == f"{word}@host"
    assert redact_text("/key:" * 20_000) == f"/key:{MASK}"
    assert redact_text("password=/" * 10_000) == f"password={MASK}"
    assert redact_text("x token=" * 12_500) == "x" + f" token={MASK}" * 12_499 + " token="
    assert redact_text("?a" * 50_000 + "&sig=abc") == "?a" * 50_000 + f"&sig={MASK}"
