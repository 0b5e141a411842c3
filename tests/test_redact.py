"""Planted credentials never survive redaction, nor any export built on it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_revox.export.tables import (
    call_document,
    structured_output_record,
    transcript_rows,
    transcript_turns,
)
from airflow_provider_revox.models import Call
from airflow_provider_revox.redact import MASK, is_secret_key, redact, redact_text

API_KEY = "rvx_live_connection_key_0001"
PLANTED = {
    "llm_api_key": "sk-planted-llm-0001",
    "tool_auth": "planted-tool-bearer-0002",
    "tool_query": "planted-query-key-0003",
    "nested_token": "planted-token-0004",
    "nested_secret": "planted-secret-0005",
    "nested_password": "planted-password-0006",
    "url_key": "planted-url-key-0007",
    "header_list": "planted-header-list-0008",
}


def planted_call() -> dict[str, Any]:
    """A call response carrying other people's credentials in every place they have been seen."""
    return {
        "id": "call-planted",
        "status": "completed",
        "llm_model": {"type": "custom", "api_key": PLANTED["llm_api_key"], "api_url": "https://llm.example"},
        "assistant": {
            "id": "a1",
            "structured_output_config": [{"name": "budget", "type": "number"}],
            "custom_tools": [
                {
                    "name": "crm",
                    "url": f"https://crm.example/hook?api_key={PLANTED['url_key']}&page=1",
                    "headers": {"Authorization": f"Bearer {PLANTED['tool_auth']}", "X-Team": "sales"},
                    "query_params": {"code": PLANTED["tool_query"]},
                },
                {"name": "erp", "headers": [{"key": "X-Api-Key", "value": PLANTED["header_list"]}]},
            ],
        },
        "metadata": {"crm": {"deep": [{"refresh_token": PLANTED["nested_token"]}]}},
        "structured_output": {"budget": 10, "vendor": {"client_secret": PLANTED["nested_secret"]}},
        "call_attempts": [
            {
                "id": "att-1",
                "started_at": "2024-05-01T09:00:00Z",
                "transcript": [
                    {"role": "user", "content": f"my key is {API_KEY}"},
                    {
                        "role": "tool",
                        "tool_name": "login",
                        "tool_arguments": {"user": "ann", "password": PLANTED["nested_password"]},
                    },
                ],
            }
        ],
    }


def assert_clean(text: str) -> None:
    for name, value in PLANTED.items():
        assert value not in text, f"{name} leaked"
    assert API_KEY not in text


def test_every_planted_secret_is_masked_and_the_rest_kept() -> None:
    payload = planted_call()
    cleaned = redact(payload, secrets=(API_KEY,))
    assert_clean(json.dumps(cleaned))
    assert cleaned["llm_model"] == {"type": "custom", "api_key": MASK, "api_url": "https://llm.example"}
    tool = cleaned["assistant"]["custom_tools"][0]
    assert tool["headers"] == {"Authorization": MASK, "X-Team": MASK}
    assert tool["query_params"] == {"code": MASK}
    assert tool["url"] == f"https://crm.example/hook?api_key={MASK}&page=1"
    assert cleaned["assistant"]["custom_tools"][1]["headers"] == [{"key": "X-Api-Key", "value": MASK}]
    assert cleaned["call_attempts"][0]["transcript"][0]["content"] == f"my key is {MASK}"
    assert cleaned["structured_output"]["budget"] == 10
    # The input is never modified.
    assert payload["llm_model"]["api_key"] == PLANTED["llm_api_key"]


def test_every_export_of_a_planted_call_is_clean() -> None:
    call = Call.from_response(planted_call())
    secrets = (API_KEY,)
    assert_clean(call_document(call, secrets).decode())
    assert_clean(json.dumps(list(transcript_rows(call, secrets=secrets)), default=str))
    assert_clean(json.dumps(transcript_turns(call, secrets=secrets)))
    assert_clean(json.dumps(structured_output_record(call, secrets)))


def test_free_text_credentials_are_masked() -> None:
    text = (
        "GET https://user:hunter22@api.example/x?sig=abc123&id=7 with Authorization: Bearer "
        "abc.def.ghi and key rvx_live_connection_key_0001"
    )
    cleaned = redact_text(text, (API_KEY,))
    assert "hunter22" not in cleaned
    assert "abc123" not in cleaned
    assert "abc.def.ghi" not in cleaned
    assert API_KEY not in cleaned
    assert "id=7" in cleaned


SECRET_KEYS = ["token", "secret", "password", "api_key", "apiKey", "accessToken", "X-Auth-Token", "PASSWORD"]
PLAIN_KEYS = st.sampled_from(["name", "data", "items", "config", "x", "value", "meta"])


def _nest(depth: int, secret_key: str, marker: str, plain: list[str]) -> Any:
    """Put ``{secret_key: marker}`` ``depth`` levels down, alternating mappings and lists."""
    value: Any = {secret_key: marker, "kept": "visible"}
    for level in range(depth):
        value = [value] if level % 2 else {plain[level % len(plain)]: value}
    return value


@settings(max_examples=150, deadline=None)
@given(
    depth=st.integers(min_value=0, max_value=12),
    secret_key=st.sampled_from(SECRET_KEYS),
    plain=st.lists(PLAIN_KEYS, min_size=1, max_size=4),
    marker=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=24),
)
def test_secret_keys_are_masked_at_any_depth(
    depth: int, secret_key: str, plain: list[str], marker: str
) -> None:
    planted = {"call": {"id": "c", "extra": _nest(depth, secret_key, f"zz{marker}", plain)}}
    text = json.dumps(redact(planted))
    assert f"zz{marker}" not in text
    assert "visible" in text


def test_secret_key_names() -> None:
    for key in [*SECRET_KEYS, "Authorization", "client_secret", "privateKey", "x-api-key"]:
        assert is_secret_key(key), key
    for key in ("name", "budget", "content", "role", "tool_name", "status"):
        assert not is_secret_key(key), key
