"""Generated call payloads through models, redaction and every writer.

Each example is a small campaign of call responses in realistic but hostile shapes: extra
fields, nulls wherever a field is optional, status and role values nobody has documented,
huge and non-ASCII transcripts, deeply nested tool arguments, timestamps in every form the
API has been seen to use (and some it should never use), and other people's credentials
planted at random depths. They go through ``Call.from_response``, the export rows and the
JSON Lines, JSON and Parquet writers into a temporary directory, and the test checks that

* nothing raises;
* every output file parses back and holds exactly one transcript row per turn the model
  yields (counted independently from the raw payload as well) and one structured row per call;
* no planted secret and not the connection's API key appears in any output byte.

Payloads that are not call orders at all fail with pydantic's ``ValidationError`` only.
"""

from __future__ import annotations

import json
import re
import string
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._internal.export.tables import (
    TRANSCRIPT_SCHEMA,
    StructuredOutputTable,
    call_document,
    structured_output_record,
    transcript_rows,
)
from airflow_provider_revox._internal.export.writers import FILE_FORMATS, open_row_writer
from airflow_provider_revox.hooks.revox import Call

API_KEY = "rvx_live_fuzz_connection_key_7Q2w"
# Every planted credential carries this marker, so one search finds any that survived.
MARKER = "PLANTED"
LEAK = re.compile(rf"{MARKER}|{re.escape(API_KEY)}")

# -- leaves ------------------------------------------------------------------------------------

planted = st.integers(min_value=0, max_value=10**8).map(lambda n: f"sk-{MARKER}-{n:08d}")

#: Key names that hold credentials, in the spellings seen in the wild.
secret_key = st.sampled_from(
    [
        "api_key",
        "apiKey",
        "API_KEY",
        "X-Api-Key",
        "x-api-key",
        "stripe_api_key",
        "token",
        "access_token",
        "refreshToken",
        "X-Auth-Token",
        "secret",
        "client_secret",
        "secretKey",
        "password",
        "PASSWORD",
        "db_password",
        "userPassword",
        "authorization",
        "Authorization",
        "Proxy-Authorization",
        "private_key",
    ]
)
plain_key = st.sampled_from(
    ["name", "data", "items", "config", "value", "meta", "notes", "customer", "crm", "x", "ids", "é", "名前"]
)
# Text that can never contain the marker by accident (no upper-case letters).
free_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Lu")),
    max_size=40,
)
plain_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(),  # NaN and Infinity too: the API's JSON may carry them, strict JSON may not
    free_text,
)


# Free text carrying a credential the way people paste them: key, bearer token, URL.
# (Built with map, not flatmap: a strategy made per draw costs Hypothesis a validation each time.)
text_with_secret = st.tuples(
    planted,
    st.sampled_from(
        [
            "my key is {key}, thanks",
            "Authorization: Bearer {secret}",
            "see https://crm.example/hook?api_key={secret}&page=2",
            "posted to https://bot:{secret}@hooks.example/in",
            "{key}",
        ]
    ),
).map(lambda pair: pair[1].format(secret=pair[0], key=API_KEY))


def _plant(value: Any, key: str, secret: str) -> Any:
    if isinstance(value, dict):
        return {**value, key: secret}
    if isinstance(value, list):
        return [*value, {key: secret}]
    return {"wrapped": value, key: secret}


def json_tree(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Nested JSON with credentials under secret-named keys at random depths."""
    return st.recursive(
        plain_scalar,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(plain_key, children, max_size=3),
            st.builds(_plant, children, secret_key, planted),
            st.builds(lambda d, s: {"note": d, "copied": s}, children, text_with_secret),
        ),
        max_leaves=max_leaves,
    )


def deep(depth: int, secret: str, key: str) -> Any:
    """A credential ``depth`` levels down, alternating objects and arrays."""
    value: Any = {key: secret, "kept": "visible"}
    for level in range(depth):
        value = [value, level] if level % 2 else {"level": level, "next": value}
    return value


deep_tree = st.builds(deep, st.integers(min_value=0, max_value=80), planted, secret_key)

timestamp = st.one_of(
    st.none(),
    st.just({}),
    st.just(""),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["2024-05-01T09:00:00Z", "2024-05-01 09:00:00.123+02:00", "not a time", "0000-00-00"]),
    st.integers(min_value=0, max_value=4_000_000_000),  # epoch seconds
    st.integers(min_value=0, max_value=4_000_000_000_000),  # epoch milliseconds
    st.integers(min_value=10**15, max_value=4 * 10**15),  # epoch microseconds
    st.floats(allow_nan=False, allow_infinity=False),
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value, or null (the API sends null for many fields its page calls required)."""
    return st.one_of(st.none(), strategy)


def optional_fields(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with its required fields, any subset of the optional ones, and unknown extras."""
    extras = st.dictionaries(st.sampled_from(["x_billing", "sentiment", "trace", "v2"]), json_tree(4))
    return st.tuples(st.fixed_dictionaries(required, optional=optional), extras).map(
        lambda pair: {**pair[1], **pair[0]}
    )


ident = st.text(alphabet=string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=24)
role = st.sampled_from(["user", "assistant", "tool", "human_agent", "system", "narrator"])
huge_text = st.builds(lambda chunk, times: chunk * times, free_text.filter(bool), st.integers(100, 2000))
content = st.one_of(free_text, huge_text, text_with_secret)
tool_arguments = st.one_of(json_tree(), deep_tree, free_text, st.lists(plain_scalar, max_size=4))

turn = optional_fields(
    {},
    {
        "role": maybe(role),
        "content": maybe(content),
        "tool_name": maybe(ident),
        "tool_arguments": maybe(tool_arguments),
        "tool_is_error": maybe(st.booleans()),
        "tool_output": json_tree(4),
    },
)
# Long transcripts are a few generated turns repeated, to stay fast.
transcript = st.builds(lambda turns, times: turns * times, st.lists(turn, max_size=5), st.integers(1, 10))

attempt = optional_fields(
    {"id": ident},
    {
        "status": maybe(st.sampled_from([*sorted(statuses.ATTEMPT_LIVE), "completed", "error", "dialing"])),
        "result": maybe(st.sampled_from(["human", "voicemail", "IVR", "unknown", "fax"])),
        "dial_error": maybe(st.sampled_from(["busy", "no_answer", "sip_603"])),
        "end_reason": maybe(st.sampled_from(["tool_end_call", "voicemail", "alien_abduction"])),
        "started_at": timestamp,
        "answered_at": timestamp,
        "ended_at": timestamp,
        "recording_url": maybe(st.just("https://cdn.example/rec.wav?sig=abc123")),
        "transcript": maybe(transcript),
        "post_call_transcript": maybe(transcript),
        "structured_output": maybe(json_tree(6).map(lambda v: v if isinstance(v, dict) else {"v": v})),
    },
)

FIELD_TYPES = ["string", "number", "integer", "boolean", "enum", "date", "datetime", "currency", "Text", None]
field_config = st.fixed_dictionaries(
    {
        "name": st.sampled_from(
            ["confirmed", "budget", "day", "when", "notes", "status", "call_id", "interest"]
        )
    },
    optional={
        "type": st.sampled_from(FIELD_TYPES),
        "required": st.booleans(),
        "description": maybe(free_text),
        "enum_options": maybe(st.lists(st.sampled_from(["high", "low", "none"]), max_size=3)),
    },
)
output_value = st.one_of(
    plain_scalar,
    st.dates().map(str),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["high", "low", "42"]),
    json_tree(4),
)
structured_output = st.builds(
    lambda values, hidden: _plant(values, *hidden) if hidden else values,
    st.dictionaries(
        st.sampled_from(["confirmed", "budget", "day", "when", "notes", "interest", "x"]), output_value
    ),
    st.one_of(st.none(), st.tuples(secret_key, planted)),
)


HEADER_SHAPES: list[Any] = [
    lambda secret, key: {key: secret, "X-Team": "sales"},
    lambda secret, key: {"Authorization": f"Bearer {secret}"},
    lambda secret, key: [{"key": key, "value": secret}],
    lambda secret, key: [{"name": "X-Custom", "value": secret}],
    lambda secret, key: [[key, secret]],
    lambda secret, key: {"nested": {"inner": secret}},
]


def headers_shape(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Tool headers or query parameters as an object, a list of key/value objects, or pairs."""
    return st.builds(
        lambda shape, secret, key: shape(secret, key), st.sampled_from(HEADER_SHAPES), planted, keys
    )


custom_tool = st.builds(
    lambda name, headers, query, url: {"name": name, "url": url, "headers": headers, "query_params": query},
    ident,
    maybe(headers_shape(secret_key)),
    maybe(headers_shape(plain_key)),
    maybe(planted.map(lambda s: f"https://tools.example/run?token={s}&x=1")),
)
llm_model = st.one_of(
    st.none(),
    st.just({"type": "dedicated-instance", "name": "gpt-4.1"}),
    planted.map(lambda s: {"type": "custom", "api_key": s, "api_url": "https://llm.example/v1"}),
)
retry_config = maybe(
    st.fixed_dictionaries(
        {},
        optional={
            "calling_windows": maybe(
                st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "calling_window_start_time": maybe(
                                st.sampled_from(["09:00", "6pm", "25:99", ""])
                            ),
                            "calling_window_end_time": maybe(st.sampled_from(["17:00", "9:30 PM", "noon"])),
                            "retry_delay_seconds": maybe(st.floats(min_value=-10, max_value=1e6)),
                        },
                    ),
                    max_size=3,
                )
            ),
            "max_retry_attempts": maybe(st.integers(-3, 10)),
            "timezone": maybe(st.sampled_from(["Europe/Paris", "Mars/Olympus", ""])),
            "allowed_days": maybe(st.lists(st.sampled_from(["monday", "Sat", "funday"]), max_size=3)),
        },
    )
)
assistant = optional_fields(
    {},
    {
        "id": maybe(ident),
        "name": maybe(free_text),
        "llm_model": llm_model,
        "custom_tools": maybe(st.lists(custom_tool, max_size=3)),
        "structured_output_config": maybe(st.lists(field_config, max_size=5)),
        "call_retry_config": retry_config,
        "created_at": timestamp,
    },
)
call_payload = optional_fields(
    {"id": ident},
    {
        "status": maybe(st.sampled_from([*sorted(statuses.KNOWN), "awaiting_carrier_review", "DONE"])),
        "calls_count": maybe(st.integers(0, 10)),
        "call_attempts": maybe(st.lists(attempt, max_size=3)),
        "last_call_attempt": maybe(attempt),
        "call_retry_config": retry_config,
        "assistant": maybe(assistant),
        "to_phone_number": maybe(st.sampled_from(["+33612345678", "+1 212 555 0123", "not a number"])),
        "outcome": maybe(st.one_of(st.sampled_from(["interested", "new_outcome"]), content)),
        "outcome_summary": maybe(content),
        "metadata": maybe(json_tree().map(lambda v: v if isinstance(v, dict) else {"v": v})),
        "structured_output": maybe(structured_output),
        "llm_model": llm_model,
        "created_at": timestamp,
        "updated_at": timestamp,
        "next_call_at": timestamp,
    },
)
envelope = st.one_of(call_payload, call_payload.map(lambda call: {"call": call}))


# -- the export --------------------------------------------------------------------------------


def expected_turns(payload: dict[str, Any]) -> int:
    """Turns of the ``best`` transcript, counted from the raw payload without the models."""
    call = payload.get("call", payload)
    attempts = list(call.get("call_attempts") or [])
    last = call.get("last_call_attempt")
    if last is not None and all(a["id"] != last["id"] for a in attempts):
        attempts.append(last)
    return sum(len(a.get("post_call_transcript") or a.get("transcript") or []) for a in attempts)


def export(calls: list[Call], file_format: str, directory: Path) -> dict[str, Path]:
    """Write the campaign as the storage operator does: call documents and both tables."""
    secrets = (API_KEY,)
    paths = {
        "transcripts": directory / f"transcripts.{file_format}",
        "structured_output": directory / f"structured_output.{file_format}",
    }
    table = StructuredOutputTable()
    records = []
    writer = open_row_writer(paths["transcripts"], file_format, TRANSCRIPT_SCHEMA, batch_rows=50)
    try:
        for index, call in enumerate(calls):
            document = directory / f"call-{index}.json"
            document.write_bytes(call_document(call, secrets))
            paths[document.name] = document
            for row in transcript_rows(call, "best", secrets):
                writer.write(row)
            table.add_fields(call.structured_output_config)
            records.append(structured_output_record(call, secrets))
    finally:
        writer.close()
    writer = open_row_writer(paths["structured_output"], file_format, table.schema)
    try:
        for record in records:
            # The operator spools records as JSON lines: they must survive that round trip.
            writer.write(table.row(json.loads(json.dumps(record, ensure_ascii=False))))
    finally:
        writer.close()
    return paths


def read_rows(path: Path, file_format: str) -> list[dict[str, Any]]:
    if file_format == "parquet":
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return rows
    text = path.read_text(encoding="utf-8")
    if file_format == "json":
        loaded: list[dict[str, Any]] = strict_json(text)
        return loaded
    # Only "\n" ends a JSON Lines record; U+2028 or U+0085 inside a string are not line ends.
    return [strict_json(line) for line in text.split("\n") if line]


def strict_json(text: str | bytes) -> Any:
    """Parse as strict JSON parsers do: NaN and Infinity are refused."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def assert_no_leak(data: bytes | str, where: str) -> None:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    found = LEAK.search(text)
    assert found is None, f"credential left in {where}: ...{text[max(0, found.start() - 60) : found.end()]}"


def check_campaign(payloads: list[dict[str, Any]]) -> None:
    calls = [Call.from_response(p) for p in payloads]
    turns = [(call.id, index) for call in calls for _, index, _ in call.iter_turns("best")]
    assert len(turns) == sum(expected_turns(p) for p in payloads)
    for file_format in FILE_FORMATS:
        with tempfile.TemporaryDirectory() as tmp:
            paths = export(calls, file_format, Path(tmp))
            transcripts = read_rows(paths["transcripts"], file_format)
            structured = read_rows(paths["structured_output"], file_format)
            assert [(r["call_id"], r["turn_index"]) for r in transcripts] == turns
            assert [r["call_id"] for r in structured] == [c.id for c in calls]
            assert [r["status"] for r in structured] == [c.status for c in calls]
            for name, path in paths.items():
                assert_no_leak(path.read_bytes(), f"{file_format} {name}")
                if name.endswith(".json"):
                    strict_json(path.read_bytes())
            # Parquet pages may be compressed: look at the decoded values too.
            assert_no_leak(
                json.dumps([transcripts, structured], default=str, ensure_ascii=False), file_format
            )


# -- tests -------------------------------------------------------------------------------------

# Epoch microseconds and out-of-range numbers once crashed the timestamp parser.
EPOCH_MICROSECONDS = {"id": "c-us", "status": "completed", "updated_at": 1_714_555_200_000_000}
OUT_OF_RANGE = {"id": "c-far", "created_at": 1e20, "call_attempts": [{"id": "a", "started_at": -1e17}]}
YEAR_10000 = {"id": "c-y", "call_attempts": [{"id": "a", "ended_at": "9999-12-31T23:59:59-14:00"}]}
# Bare JSON scalars as tool arguments once made the whole call unreadable.
SCALAR_ARGUMENTS = {
    "id": "c-scalar",
    "call_attempts": [
        {"id": "a", "transcript": [{"role": "tool", "tool_arguments": v} for v in (False, 42, 1.5)]}
    ],
}
# Line and paragraph separators inside text must not split a JSON Lines record.
SEPARATORS = {
    "id": "c-sep",
    "outcome": "a\u2028b\x85c\u2029d",
    "call_attempts": [{"id": "a", "transcript": [{"content": "x\u2028y"}]}],
}


@settings(max_examples=120, deadline=None)
@given(payloads=st.lists(envelope, min_size=1, max_size=4))
@example(payloads=[EPOCH_MICROSECONDS, OUT_OF_RANGE, YEAR_10000])
@example(payloads=[SCALAR_ARGUMENTS, SEPARATORS])
def test_generated_campaigns_export_exactly_and_leak_nothing(payloads: list[dict[str, Any]]) -> None:
    check_campaign(payloads)


@settings(max_examples=30, deadline=None)
@given(depth=st.integers(min_value=50, max_value=150), secret=planted, key=secret_key)
def test_deeply_nested_tool_arguments(depth: int, secret: str, key: str) -> None:
    turn = {"role": "tool", "tool_name": "crm", "tool_arguments": deep(depth, secret, key)}
    payload = {
        "id": "c-deep",
        "status": "completed",
        "call_attempts": [{"id": "a", "transcript": [turn] * 3}],
    }
    check_campaign([payload])


@pytest.mark.parametrize("timestamp_value", [1_714_555_200_000_000, 1e20, -1e17, float("nan"), float("inf")])
def test_unreadable_epoch_timestamps_become_none(timestamp_value: float) -> None:
    call = Call.from_response({"id": "c", "status": "completed", "updated_at": timestamp_value})
    assert call.updated_at is None
    assert call.ended_at is None


not_a_call = st.one_of(
    plain_scalar,
    st.lists(plain_scalar, max_size=3),
    st.dictionaries(plain_key, plain_scalar, max_size=3),  # no id
    st.builds(lambda v: {"id": v, "status": "completed"}, st.one_of(st.none(), st.integers(), st.booleans())),
    st.builds(lambda v: {"call": {"id": v}}, st.one_of(st.none(), st.floats(), st.lists(st.integers()))),
)


@settings(max_examples=100, deadline=None)
@given(payload=not_a_call)
def test_payloads_that_are_not_calls_raise_validation_error(payload: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        Call.from_response(payload)
    assert any(error["loc"][:1] in ((), ("id",)) for error in raised.value.errors())
