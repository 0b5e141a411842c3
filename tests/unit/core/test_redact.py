"""Planted credentials never survive redaction, nor any export built on it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_revox._internal.core.redact import MASK, MAX_DEPTH, is_secret_key, redact, redact_text
from airflow_provider_revox._internal.export.tables import (
    call_document,
    structured_output_record,
    transcript_rows,
    transcript_turns,
)
from airflow_provider_revox.hooks.revox import Call

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
    "header_string": "planted-header-string-0009",
    "query_string": "planted-query-string-0010",
    "request_headers": "planted-request-header-0011",
    "userinfo": "planted-userinfo-0012",
    "fragment": "planted-fragment-0013",
    "json_arguments": "planted-json-arguments-0014",
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
                {
                    "name": "crm2",
                    "url": f"https://{PLANTED['userinfo']}@hooks.example/in#access_token={PLANTED['fragment']}",
                    "headers": f"X-Crm-Key: {PLANTED['header_string']}",
                    "query_params": f"api_key={PLANTED['query_string']}&region=eu",
                    "request_headers": [
                        {"name": "Authorization", "value": f"Bearer {PLANTED['request_headers']}"}
                    ],
                },
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
                    {
                        "role": "tool",
                        "tool_name": "crm",
                        "tool_arguments": json.dumps({"api_key": PLANTED["json_arguments"], "echo": API_KEY}),
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
    # Tool arguments sent as JSON text stay JSON text, with the credentials masked.
    arguments = [row["tool_arguments"] for row in transcript_rows(call, secrets=secrets)]
    assert json.loads(arguments[-1]) == {"api_key": MASK, "echo": MASK}


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


# -- credentials the redactor once missed ------------------------------------------------------


def tool_with(**fields: Any) -> dict[str, Any]:
    """A call whose one custom tool carries ``fields``."""
    return {"id": "c", "assistant": {"custom_tools": [{"name": "crm", **fields}]}}


def test_headers_and_query_params_given_as_strings_are_masked_whole() -> None:
    call = tool_with(
        headers="X-Crm-Key: planted-crm-key-0101\r\nX-Team: sales",
        query_params="api_key=planted-query-0102&region=eu",
    )
    tool = redact(call)["assistant"]["custom_tools"][0]
    assert tool == {"name": "crm", "headers": MASK, "query_params": MASK}


def test_query_strings_and_header_lines_in_free_text_are_masked() -> None:
    cleaned = redact_text("api_key=planted-query-0103&region=eu")
    assert cleaned == f"api_key={MASK}&region=eu"
    cleaned = redact_text("send X-Crm-Key: planted-crm-key-0104 and Authorization: Token planted-0105")
    assert cleaned == f"send X-Crm-Key: {MASK} and Authorization: {MASK}"
    cleaned = redact_text("Server=db;User Id=ann;Password=planted-0106;Timeout=5")
    assert cleaned == f"Server=db;User Id=ann;Password={MASK};Timeout=5"


def test_every_value_under_any_headers_or_query_container_is_masked() -> None:
    containers = ["headers", "request_headers", "customHeaders", "Extra-Headers", "query_params"]
    containers += ["queryParameters", "params", "url_params", "query_string"]
    for name in containers:
        cleaned = redact({"tool": {name: {"X-Region": "planted-0110", "n": 3, "none": None}}})
        assert cleaned == {"tool": {name: {"X-Region": MASK, "n": MASK, "none": None}}}, name
    # A tool's parameter schema is not a container of values.
    schema = {"parameters": {"type": "object", "properties": {"slot": {"type": "string"}}}}
    assert redact(schema) == schema


def test_name_value_entries_naming_a_credential_are_masked_anywhere() -> None:
    call = {
        "request_headers": [{"name": "Authorization", "value": "Bearer planted-0111"}],
        "metadata": {
            "env": [
                {"name": "X-Crm-Key", "value": "planted-0112"},
                {"key": "db_password", "value": {"v": "planted-0113"}},
                {"name": "region", "value": "eu"},
            ]
        },
        "query_params": {"key": "planted-0114"},
    }
    cleaned = redact(call)
    assert cleaned == {
        "request_headers": [{"name": "Authorization", "value": MASK}],
        "metadata": {
            "env": [
                {"name": "X-Crm-Key", "value": MASK},
                {"key": "db_password", "value": {"v": MASK}},
                {"name": "region", "value": "eu"},
            ]
        },
        # Without a value field, "key" is the parameter itself: its value is masked.
        "query_params": {"key": MASK},
    }


def test_json_encoded_strings_are_decoded_redacted_and_reencoded() -> None:
    arguments = json.dumps({"user": "ann", "api_key": "planted-0120", "deep": [{"password": "planted-0121"}]})
    turn = {"role": "tool", "tool_arguments": arguments, "content": '  ["x", {"token": "planted-0122"}] '}
    cleaned = redact(turn)
    assert json.loads(cleaned["tool_arguments"]) == {
        "user": "ann",
        "api_key": MASK,
        "deep": [{"password": MASK}],
    }
    assert json.loads(cleaned["content"]) == ["x", {"token": MASK}]
    # JSON inside JSON, and JSON text handed to redact_text (an error body).
    twice = json.dumps({"tool_arguments": arguments})
    assert "planted" not in redact_text(twice)
    assert json.loads(json.loads(redact_text(twice))["tool_arguments"])["api_key"] == MASK
    # Structural rules apply inside the text: containers and credential entries.
    tool = json.dumps(
        {"headers": {"X-Region": "planted-0125"}, "env": [{"name": "X-Crm-Key", "value": "planted-0126"}]}
    )
    assert json.loads(redact_text(tool)) == {
        "headers": {"X-Region": MASK},
        "env": [{"name": "X-Crm-Key", "value": MASK}],
    }
    # Text without credentials is kept byte for byte, whatever its spacing.
    plain = '{"slot":  "10:00",\n "note": "call back"}'
    assert redact({"tool_arguments": plain}) == {"tool_arguments": plain}


def test_json_text_that_does_not_parse_still_has_its_secret_pairs_masked() -> None:
    cut = '{"user": "ann", "password": "planted-0123", "client_secret": "planted-01'
    cleaned = redact_text(cut)
    assert cleaned == f'{{"user": "ann", "password": "{MASK}", "client_secret": "{MASK}"'
    escaped = '"{\\"api_key\\": \\"planted-0124\\", \\"n\\": 1'
    assert "planted" not in redact_text(escaped)


def test_url_fragment_percent_encoded_name_and_userinfo_are_masked() -> None:
    cases = {
        "https://app.example/cb#access_token=planted-0130&state=x": f"https://app.example/cb#access_token={MASK}&state=x",
        "https://api.example/v1?api%5Fkey=planted-0131&page=2": f"https://api.example/v1?api%5Fkey={MASK}&page=2",
        "https://api.example/v1?API%5FKEY=planted-0132": f"https://api.example/v1?API%5FKEY={MASK}",
        "https://planted-0133@hooks.example/in": f"https://{MASK}@hooks.example/in",
        "https://bot:planted-0134@hooks.example/in": f"https://{MASK}@hooks.example/in",
        "see //planted-0135@cdn.example/x": f"see //{MASK}@cdn.example/x",
        # A query value holding an "@" is not user-info.
        "https://crm.example/find?email=ann@example.com": "https://crm.example/find?email=ann@example.com",
    }
    for text, expected in cases.items():
        assert redact_text(text) == expected, text
    assert redact({"url": "https://planted-0136@hooks.example"}) == {"url": f"https://{MASK}@hooks.example"}


def test_known_secrets_are_masked_inside_any_string_key_and_encoding() -> None:
    key = "rvx/live+key=0001"
    payload = {
        "note": f"prefix{key}suffix",
        key: "a key that is the secret",
        "args": json.dumps({"echo": key, "list": [key]}),
        "escaped": json.dumps({"echo": key}).replace("/", "\\/"),
        "url": f"https://crm.example/?q={quote(key, safe='')}",
        "headers": {key: "x"},
        "password": {key: "x"},
    }
    text = json.dumps(redact(payload, secrets=(key,)))
    assert key not in text
    assert json.dumps(key)[1:-1] not in text
    assert quote(key, safe="") not in text
    assert "rvx" not in text
    # redact_text masks it too, and short or empty "secrets" mask nothing.
    assert redact_text(f"x {key} y", (key, "", "ab")) == f"x {MASK} y"


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"next": value}
    return value


def depth_of(value: Any) -> int:
    """Nesting depth of mappings and lists, counted without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def test_deep_nesting_is_masked_beyond_the_limit_instead_of_raising() -> None:
    cleaned = redact({"id": "c", "metadata": _nested(5000, {"token": "planted-0140", "kept": "x"})})
    assert cleaned["id"] == "c"
    assert "planted" not in json.dumps(cleaned)
    assert depth_of(cleaned) <= MAX_DEPTH
    # Under a secret key, in a headers container, and in JSON text.
    for container in ("password", "headers"):
        cleaned = redact({container: _nested(5000, "planted-0141")})
        assert "planted" not in json.dumps(cleaned)
        assert depth_of(cleaned) <= MAX_DEPTH
    arguments = json.loads(redact({"a": json.dumps(_nested(500, {"api_key": "planted-0142"}))})["a"])
    assert "planted" not in json.dumps(arguments)
    assert depth_of(arguments) <= MAX_DEPTH
    # Too deep for the JSON decoder itself: the text is masked whole.
    assert redact_text("[" * 100_000 + "]" * 100_000) == MASK
    # Data within the limit keeps every value.
    shallow = _nested(MAX_DEPTH - 2, {"kept": "visible"})
    assert redact(shallow) == shallow


def test_header_lines_cut_json_and_joined_names_in_text() -> None:
    cases = {
        # A cookie or authorization header line is masked to its end.
        "Cookie: theme=dark; session=planted-0150\nAccept: */*": f"Cookie: {MASK}\nAccept: */*",
        'Authorization: Digest username="ann", response="planted-0151"': f"Authorization: {MASK}",
        # Pretty-printed JSON cut short: the value is on the next line.
        '{\n  "password":\n    "planted-0152",\n  "n": 1': f'{{\n  "password":\n    "{MASK}",\n  "n": 1',
        # Query parameter names in lower case, without separators.
        "https://x.example/?accesstoken=planted-0153&clientsecret=planted-0154": (
            f"https://x.example/?accesstoken={MASK}&clientsecret={MASK}"
        ),
        # JSON escapes slashes: user-info stays recognisable.
        '{"url": "https:\\/\\/bot:planted-0155@hooks.example': f'{{"url": "https:\\/\\/{MASK}@hooks.example',
    }
    for text, expected in cases.items():
        assert redact_text(text) == expected, text


def test_counts_and_plain_names_are_not_mistaken_for_credentials() -> None:
    usage = {
        "max_tokens": 512,
        "prompt_tokens": 10,
        "secretary": "Ann",
        "primary_key": "id",
        "tokenizer": "bpe",
    }
    assert redact(usage) == usage
    assert redact_text("zip code: 75001, ratio 1:2, time 10:00") == "zip code: 75001, ratio 1:2, time 10:00"


def test_basic_credentials_are_masked_but_the_word_basic_is_not() -> None:
    assert redact_text("Basic dXNlcjpwYXNzd29yZA==") == f"Basic {MASK}"
    assert redact_text("use Basic YW5uOmh1bnRlcjI with it") == f"use Basic {MASK} with it"
    said = "I'd like the basic package, with basic information and the Basic Plan"
    assert redact_text(said) == said


def test_one_secret_passed_as_a_plain_string_is_still_masked() -> None:
    assert redact_text(f"key {API_KEY}", API_KEY) == f"key {MASK}"
    assert redact({"note": API_KEY}, API_KEY) == {"note": MASK}


# -- credentials without a colon, and the names session, pin, otp and key --------------------

NO_COLON = "planted-no-colon-0015"


def test_a_credential_after_an_auth_scheme_word_is_masked_with_or_without_a_colon() -> None:
    for text in (
        f"Authorization token {NO_COLON}",
        f"authorization Token: {NO_COLON}",
        f"Authorization: token {NO_COLON}",
        f"Proxy-Authorization Digest {NO_COLON}",
        f"upstream said: Authorization key {NO_COLON} was refused",
        f"Authorization Bearer {NO_COLON}",
    ):
        cleaned = redact_text(text)
        assert NO_COLON not in cleaned and MASK in cleaned, text
    assert redact_text(f"Authorization token {NO_COLON} expired") == "Authorization token *** expired"
    # Prose about authorization or tokens is not a credential.
    for prose in ("Authorization failed for user bob", "the token expired", "Authorization was denied"):
        assert redact_text(prose) == prose


def test_session_pin_otp_and_a_bare_key_are_credentials_by_name_and_in_urls() -> None:
    given = {
        "sessionid": "planted-sessionid-0016",
        "session": "planted-session-0017",
        "session_id": "planted-session-id-0018",
        "pin": "4455",
        "otp": "998877",
        "key": "planted-bare-key-0019",
    }
    plain = {"session_count": 3, "sort_key": "name", "pinned": True}
    assert redact({"extra": given, **plain}) == {"extra": dict.fromkeys(given, MASK), **plain}
    url = "https://crm.example/cb?session=planted-s-0020&pin=4455&otp=998877&key=planted-k-0021&page=2"
    assert redact_text(url) == "https://crm.example/cb?session=***&pin=***&otp=***&key=***&page=2"
    # {key, value} entries keep the parameter's name in "key".
    entries = [{"key": "color", "value": "red"}, {"key": "session", "value": "planted-s-0022"}]
    assert redact({"fields": entries}) == {
        "fields": [{"key": "color", "value": "red"}, {"key": "session", "value": MASK}]
    }


def test_the_providers_own_messages_are_masked_by_value_not_parsed_as_data() -> None:
    from airflow_provider_revox._internal.core.redact import redact_message
    from airflow_provider_revox._internal.waiting.outcome import event_payload

    prose = "Revox connection 'revox_default' has no API key: put it in the API key (password) field"
    assert redact_message(prose) == prose
    assert redact_message(f"call c1: refused {API_KEY}", (API_KEY,)) == "call c1: refused ***"
    # Credentials recognisable by their shape are still masked.
    shaped = "status 'Bearer abcdef123456' from https://bob:hunter2@crm.example/x"
    assert redact_message(shaped) == "status 'Bearer ***' from https://***@crm.example/x"
    payload = event_payload("error", prose, (API_KEY,), summary={"call_id": "c1", "api_key": API_KEY})
    assert payload["message"] == prose  # was "has no API key: *** it in ..."
    assert payload["summary"] == {"call_id": "c1", "api_key": MASK}
