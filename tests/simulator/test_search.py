"""``POST /call/search`` on the simulator: filters, paging, sorting, validation, auth, stats, faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import typing_extensions
from revox.types import CallSearchParams
from typing_extensions import Required

from airflow_provider_revox._internal.client.requests import SEARCH_FILTERS as LIST_FIELDS
from airflow_provider_revox._internal.client.requests import search_args, search_body
from airflow_provider_revox._internal.core import statuses
from airflow_provider_revox._simulator import engine as engine_module
from airflow_provider_revox._simulator.clock import DEFAULT_VIRTUAL_START
from airflow_provider_revox._simulator.errors import InvalidSearch
from airflow_provider_revox._simulator.faults import UNKNOWN_STATUS_VALUE
from airflow_provider_revox._simulator.population import seed_population
from airflow_provider_revox._simulator.render import FROM_PHONE_NUMBER
from airflow_provider_revox._simulator.server import DEFAULTED_HEADER
from airflow_provider_revox.hooks.revox import Call
from airflow_provider_revox.testing import InvalidOrder, SimulatorEngine, SimulatorHandle, running_simulator

PARIS = "+33612345678"
NEW_YORK = "+12127363100"
REQUIRED = (*LIST_FIELDS, "page", "page_size")
#: The fixture's orders, most recently created first.
NEWEST_FIRST = ["c-later", "c-busy", "c-voicemail", "c-human"]


def body(**fields: Any) -> dict[str, Any]:
    return {**{name: [] for name in LIST_FIELDS}, "page": 0, "page_size": 100, **fields}


def search(client: httpx.Client, **fields: Any) -> httpx.Response:
    return client.post("/call/search", json=body(**fields))


def found(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [call["id"] for call in response.json()["calls"]]


@pytest.fixture
def client(simulator: SimulatorHandle) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {simulator.api_key}"}
    with httpx.Client(base_url=simulator.base_url, headers=headers, timeout=5) as http:
        yield http


@pytest.fixture
def orders(simulator: SimulatorHandle) -> SimulatorHandle:
    """Four orders a minute apart, read an hour later: completed x2, errored, scheduled."""
    simulator.place_scripted(
        "c-human", [{"result": "human", "duration": 60}], outcome="interested", post_processing_seconds=30
    )
    simulator.advance(60)
    simulator.place_scripted(
        "c-voicemail", [{"result": "voicemail", "duration": 20}], post_processing_seconds=30
    )
    simulator.advance(60)
    simulator.place_scripted("c-busy", [{"dial_error": "busy"}])
    simulator.advance(60)
    tomorrow = simulator.clock.now() + timedelta(days=1)
    simulator.place_scripted(
        "c-later",
        [{"result": "human", "duration": 30}],
        phone_number=NEW_YORK,
        assistant_id="asst_other",
        scheduled_at=tomorrow.isoformat(),
    )
    simulator.advance(3600)
    expected = {
        "c-human": statuses.COMPLETED,
        "c-voicemail": statuses.COMPLETED,
        "c-busy": statuses.ERRORED,
        "c-later": statuses.SCHEDULED,
    }
    assert {call_id: simulator.engine.status(call_id) for call_id in expected} == expected
    return simulator


# -- contract -----------------------------------------------------------------------------


def test_search_answers_calls_and_total_count(orders: SimulatorHandle, client: httpx.Client) -> None:
    response = search(client)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert set(payload) == {"calls", "total_count"}
    assert payload["total_count"] == 4
    assert [call["id"] for call in payload["calls"]] == NEWEST_FIRST
    parsed = [Call.model_validate(call) for call in payload["calls"]]
    assert [call.status for call in parsed] == ["scheduled", "errored", "completed", "completed"]


def test_each_call_is_byte_equal_to_get_at_the_same_moment(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    seed_population(simulator.engine, 30)
    for seconds in (0, 600, 2 * 3600, 2 * 86400):
        simulator.advance(seconds)
        response = search(client, page_size=1000)
        ids = found(response)
        assert len(ids) == 30
        inner = [client.get(f"/call/{call_id}").content[len(b'{"call":') : -1] for call_id in ids]
        assert response.content == b'{"calls":[' + b",".join(inner) + b'],"total_count":30}'


class RewindableClock:
    """A clock that can go back, so orders can be read before they were placed."""

    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment


def test_orders_placed_after_now_do_not_exist_yet() -> None:
    clock = RewindableClock(DEFAULT_VIRTUAL_START)
    with running_simulator(seed=3, clock=clock) as sim:
        early = sim.place_call(phone_number=PARIS, assistant_id="asst_a")["id"]
        clock.moment += timedelta(minutes=5)
        late = sim.place_call(phone_number=PARIS, assistant_id="asst_a")["id"]
        headers = {"Authorization": f"Bearer {sim.api_key}"}
        with httpx.Client(base_url=sim.base_url, headers=headers, timeout=5) as http:
            assert found(search(http)) == [late, early]
            clock.moment -= timedelta(minutes=1)
            assert found(search(http)) == [early]
            assert found(search(http, call_ids=[late, early])) == [early]
            assert http.get(f"/call/{late}").status_code == 404


def test_a_lagging_index_lists_an_order_only_once_the_lag_has_passed(
    simulator: SimulatorHandle, client: httpx.Client
) -> None:
    simulator.faults.lag_index(90)
    old = simulator.place_call(phone_number=PARIS, assistant_id="asst_a")["id"]
    simulator.advance(120)
    new = simulator.place_call(phone_number=PARIS, assistant_id="asst_a")["id"]
    assert client.get(f"/call/{new}").status_code == 200  # the order exists ...
    assert found(search(client)) == [old]  # ... but the index has not caught up
    assert found(search(client, call_ids=[new, old])) == [old]
    assert search(client).json()["total_count"] == 1
    simulator.advance(89)
    assert found(search(client)) == [old]
    simulator.advance(1)
    assert found(search(client)) == [new, old]
    simulator.faults.lag_index(0)
    assert found(search(client, call_ids=[new])) == [new]


def test_call_ids_skip_unknown_ids_and_duplicates(orders: SimulatorHandle, client: httpx.Client) -> None:
    response = search(client, call_ids=["missing", "c-human", "c-busy", "c-human", "also-missing"])
    assert found(response) == ["c-busy", "c-human"]
    assert response.json()["total_count"] == 2
    assert found(search(client, call_ids=["missing"])) == []
    assert search(client, call_ids=["missing"]).json() == {"calls": [], "total_count": 0}
    # Like every other list, an empty one does not filter.
    assert found(search(client, call_ids=[])) == NEWEST_FIRST


def test_statuses_filter_reads_the_status_now(orders: SimulatorHandle, client: httpx.Client) -> None:
    assert found(search(client, statuses=["completed"])) == ["c-voicemail", "c-human"]
    assert found(search(client, statuses=["errored", "scheduled"])) == ["c-later", "c-busy"]
    assert found(search(client, statuses=["calling", "paused"])) == []
    assert found(search(client, statuses=["completed"], call_ids=["c-human", "c-busy"])) == ["c-human"]
    client.post("/call/c-later/cancel")
    assert found(search(client, statuses=["cancelled"])) == ["c-later"]


def test_assistant_direction_and_origin_filters(orders: SimulatorHandle, client: httpx.Client) -> None:
    assert found(search(client, assistant_ids=["asst_other"])) == ["c-later"]
    assert found(search(client, assistant_ids=["asst_test", "asst_other"])) == NEWEST_FIRST
    assert found(search(client, directions=["outbound"])) == NEWEST_FIRST
    assert found(search(client, directions=["inbound"])) == []
    assert found(search(client, from_phone_numbers=[FROM_PHONE_NUMBER])) == NEWEST_FIRST
    assert found(search(client, from_phone_numbers=["+33100000000"])) == []
    # Simulated orders belong to no campaign and have no assignee.
    assert found(search(client, campaign_ids=["camp_1"])) == []
    assert found(search(client, assignee_ids=["user_1"])) == []


def test_outcomes_and_results_filters_match_none_for_null(
    orders: SimulatorHandle, client: httpx.Client
) -> None:
    assert found(search(client, outcomes=["interested"])) == ["c-human"]
    assert found(search(client, outcomes=["none"])) == ["c-later", "c-busy", "c-voicemail"]
    assert found(search(client, results=["human"])) == ["c-human"]
    assert found(search(client, results=["voicemail", "human"])) == ["c-voicemail", "c-human"]
    # c-busy's only attempt was never answered; c-later has no attempt at all.
    assert found(search(client, results=["none"])) == ["c-later", "c-busy"]
    assert found(search(client, outcomes=["none"], results=["voicemail"])) == ["c-voicemail"]


def test_to_phone_number_and_query(orders: SimulatorHandle, client: httpx.Client) -> None:
    assert found(search(client, to_phone_number=NEW_YORK)) == ["c-later"]
    assert found(search(client, to_phone_number="+336")) == ["c-busy", "c-voicemail", "c-human"]
    assert found(search(client, query="C-VOICE")) == ["c-voicemail"]
    assert found(search(client, query="2127363")) == ["c-later"]
    assert found(search(client, query="")) == NEWEST_FIRST
    assert found(search(client, query="nothing-matches")) == []


def test_pagination_and_total_count(orders: SimulatorHandle, client: httpx.Client) -> None:
    pages = [search(client, page=page, page_size=3).json() for page in range(3)]
    assert [page["total_count"] for page in pages] == [4, 4, 4]
    assert [[call["id"] for call in page["calls"]] for page in pages] == [
        NEWEST_FIRST[:3],
        NEWEST_FIRST[3:],
        [],
    ]
    one = [found(search(client, page=page, page_size=1)) for page in range(4)]
    assert one == [[call_id] for call_id in NEWEST_FIRST]
    filtered = search(client, statuses=["completed"], page=1, page_size=1).json()
    assert filtered["total_count"] == 2 and [c["id"] for c in filtered["calls"]] == ["c-human"]


def test_sorting(orders: SimulatorHandle, client: httpx.Client) -> None:
    assert found(search(client, sort_direction="desc")) == NEWEST_FIRST
    assert found(search(client, sort_direction="asc")) == NEWEST_FIRST[::-1]
    assert found(search(client, sort_by="created_at", sort_direction="asc")) == NEWEST_FIRST[::-1]
    assert found(search(client, sort_by="id", sort_direction="asc")) == sorted(NEWEST_FIRST)
    assert found(search(client, sort_by="id")) == sorted(NEWEST_FIRST, reverse=True)
    assert found(search(client, sort_by="created_at", sort_direction="asc", page=0, page_size=2)) == [
        "c-human",
        "c-voicemail",
    ]


def test_sorting_by_scheduled_at(orders: SimulatorHandle, client: httpx.Client) -> None:
    # Placed last, but due before c-later (tomorrow): the two sorts disagree on it.
    in_two_hours = orders.clock.now() + timedelta(hours=2)
    orders.place_scripted("c-next", [{"result": "human"}], scheduled_at=in_two_hours.isoformat())
    assert found(search(client)) == ["c-next", *NEWEST_FIRST]
    assert found(search(client, sort_by="scheduled_at")) == ["c-later", "c-next", *NEWEST_FIRST[1:]]
    assert found(search(client, sort_by="scheduled_at", sort_direction="asc")) == [
        *NEWEST_FIRST[:0:-1],
        "c-next",
        "c-later",
    ]


def test_ties_on_created_at_follow_placement_order(simulator: SimulatorHandle, client: httpx.Client) -> None:
    placed = [simulator.place_call(phone_number=PARIS, assistant_id="asst_tie")["id"] for _ in range(5)]
    assert found(search(client)) == placed[::-1]
    assert found(search(client, sort_direction="asc")) == placed


# -- validation ---------------------------------------------------------------------------


@pytest.fixture
def strict_client() -> Iterator[httpx.Client]:
    """A client of a simulator that refuses a search missing a field the spec marks required."""
    with running_simulator(strict_search=True) as sim:
        headers = {"Authorization": f"Bearer {sim.api_key}"}
        with httpx.Client(base_url=sim.base_url, headers=headers, timeout=5) as http:
            yield http


def test_the_hook_sends_every_search_field_the_spec_requires() -> None:
    # The simulator takes defaults for these; the vendor's spec (the SDK) marks them required.
    hints = typing_extensions.get_type_hints(CallSearchParams, include_extras=True)
    spec = {name for name, hint in hints.items() if typing_extensions.get_origin(hint) is Required}
    assert set(REQUIRED) == spec
    assert set(search_body(["c-1"], 0, 10)) >= spec
    assert set(search_args(None, 0, None)["json"]) >= spec
    assert set(search_args(["c-1"], 2, 5, {"statuses": ["completed"]})["json"]) >= spec


def test_an_empty_search_takes_the_defaults_and_names_them(
    orders: SimulatorHandle, client: httpx.Client
) -> None:
    response = client.post("/call/search", json={})
    assert found(response) == NEWEST_FIRST
    assert response.json()["total_count"] == 4
    assert response.headers[DEFAULTED_HEADER].split(",") == list(REQUIRED)
    assert DEFAULTED_HEADER not in search(client).headers


def test_the_default_page_is_the_first_hundred(simulator: SimulatorHandle, client: httpx.Client) -> None:
    placed = [simulator.place_call(phone_number=PARIS, assistant_id="asst_many")["id"] for _ in range(101)]
    response = client.post("/call/search", json={"statuses": ["scheduled"]})
    assert found(response) == placed[::-1][:100]
    assert response.json()["total_count"] == 101
    assert "statuses" not in response.headers[DEFAULTED_HEADER].split(",")


@pytest.mark.parametrize("field", REQUIRED)
def test_strict_each_missing_required_field_is_422(strict_client: httpx.Client, field: str) -> None:
    payload = body()
    del payload[field]
    response = strict_client.post("/call/search", json=payload)
    assert response.status_code == 422
    assert response.json() == {
        "error": "invalid_request",
        "message": f"missing required field(s): {field}",
        "status_code": 422,
    }


def test_strict_every_missing_field_is_named(strict_client: httpx.Client) -> None:
    response = strict_client.post("/call/search", json={"page": 0, "statuses": []})
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith("missing required field(s): ")
    named = message.split(": ", 1)[1].split(", ")
    assert named == [name for name in REQUIRED if name not in ("page", "statuses")]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("statuses", "completed", "statuses must be a list of strings, not string"),
        ("assistant_ids", None, "assistant_ids must be a list of strings, not null"),
        ("campaign_ids", {"id": "x"}, "campaign_ids must be a list of strings, not object"),
        ("outcomes", [1], "outcomes[0] must be a string, not integer"),
        ("results", ["human", None], "results[1] must be a string, not null"),
        ("assignee_ids", [["a"]], "assignee_ids[0] must be a string, not list"),
        ("from_phone_numbers", 5, "from_phone_numbers must be a list of strings, not integer"),
        ("statuses", ["completed", "done"], "statuses[1] 'done' is not one of "),
        ("directions", ["sideways"], "directions[0] 'sideways' is not one of inbound, outbound"),
        ("page", "0", "page must be an integer, not string"),
        ("page", True, "page must be an integer, not boolean"),
        ("page", 1.5, "page must be an integer, not number"),
        ("page", None, "page must be an integer, not null"),
        ("page", -1, "page must be at least 0, not -1"),
        ("page_size", 0, "page_size must be between 1 and 1000, not 0"),
        ("page_size", 1001, "page_size must be between 1 and 1000, not 1001"),
        ("page_size", "10", "page_size must be an integer, not string"),
        ("sort_direction", "up", "sort_direction 'up' is not one of asc, desc"),
        ("sort_direction", 1, "sort_direction must be a string, not integer"),
        ("sort_by", "duration", "sort_by 'duration' is not one of created_at, ended_at, id"),
        ("call_ids", "c-human", "call_ids must be a list of strings, not string"),
        ("call_ids", ["c-human", 7], "call_ids[1] must be a string, not integer"),
        ("query", 5, "query must be a string, not integer"),
        ("to_phone_number", [PARIS], "to_phone_number must be a string, not list"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(
    orders: SimulatorHandle, client: httpx.Client, field: str, value: Any, message: str
) -> None:
    response = search(client, **{field: value})
    assert response.status_code == 422
    error = response.json()
    assert error["error"] == "invalid_request" and error["status_code"] == 422
    assert error["message"].startswith(message), error["message"]


def test_unknown_status_error_lists_the_known_ones(client: httpx.Client) -> None:
    message = search(client, statuses=["done"]).json()["message"]
    assert all(status in message for status in statuses.KNOWN)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "request body is empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, not list"),
        (b'"search"', "must be a JSON object, not str"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_400(client: httpx.Client, content: bytes, message: str) -> None:
    response = client.post("/call/search", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request" and message in response.json()["message"]


def test_unknown_fields_and_null_optionals_are_ignored(orders: SimulatorHandle, client: httpx.Client) -> None:
    response = search(
        client,
        tags=["vip"],
        call_ids=None,
        query=None,
        sort_by=None,
        sort_direction=None,
        to_phone_number=None,
    )
    assert found(response) == NEWEST_FIRST


# -- routing, auth, stats -----------------------------------------------------------------


def test_search_is_not_read_as_a_call_id(orders: SimulatorHandle, client: httpx.Client) -> None:
    assert client.get("/call/search").status_code == 404  # GET /call/{id} with id "search"
    assert client.post("/call/search/").status_code == 400  # the route, with an empty body
    assert client.post("/call/search/cancel").status_code == 404
    assert search(client).status_code == 200


def test_missing_or_wrong_key_is_401(orders: SimulatorHandle) -> None:
    url = f"{orders.base_url}/call/search"
    missing = httpx.post(url, json=body())
    wrong = httpx.post(url, json=body(), headers={"Authorization": "Bearer sk_wrong_key_value"})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert wrong.json()["error"] == "unauthorized"
    assert "sk_wrong_key_value" not in wrong.text and orders.api_key not in wrong.text


def test_stats_count_search_requests(orders: SimulatorHandle, client: httpx.Client) -> None:
    orders.reset_stats()
    everyone = [call["id"] for call in search(client).json()["calls"]]
    search(client, call_ids=["c-human", "c-busy"])
    search(client, page=-1)
    httpx.post(f"{orders.base_url}/call/search", json=body())  # no key
    client.get("/call/c-human")
    stats = httpx.get(f"{orders.base_url}/_simulator/stats").json()
    assert stats["by_endpoint"] == {"POST /call/search": 4, "GET /call/{id}": 1}
    assert stats["by_status"] == {"200": 3, "422": 1, "401": 1}
    # Each order a search serves counts as a look at it, as a GET of it does.
    expected = dict.fromkeys(everyone, 1)
    expected["c-human"] += 2
    expected["c-busy"] += 1
    assert len(everyone) > 2 and stats["by_call_id"] == expected
    assert stats["requests_total"] == 5


# -- faults -------------------------------------------------------------------------------


def test_fault_rates_hit_the_search_endpoint(orders: SimulatorHandle, client: httpx.Client) -> None:
    orders.faults.set_rates("503=1.0")
    response = search(client)
    assert response.status_code == 503 and response.json()["error"] == "simulated_fault"
    orders.faults.set_rates("429=1.0:4")
    throttled = search(client)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "4"
    orders.faults.set_rates(None)
    assert found(search(client)) == NEWEST_FIRST
    assert orders.stats()["by_endpoint"]["POST /call/search"] == 3


def test_dropped_search_connection(orders: SimulatorHandle, client: httpx.Client) -> None:
    orders.faults.set_rates("drop=1.0")
    with pytest.raises(httpx.RemoteProtocolError):
        search(client)
    orders.faults.set_rates(None)
    assert found(search(client)) == NEWEST_FIRST


def test_truncated_search_body(orders: SimulatorHandle, client: httpx.Client) -> None:
    whole = search(client).content
    orders.faults.set_rates("truncate=1.0")
    response = search(client)
    assert response.status_code == 200
    assert response.content == whole[: len(whole) // 2]
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_unknown_status_and_extra_fields_on_every_call(orders: SimulatorHandle, client: httpx.Client) -> None:
    clean = search(client).json()
    orders.faults.set_rates("unknown_status=1.0,extra_fields=1.0")
    payload = search(client).json()
    assert payload["request_id"] == "req_simulated" and payload["total_count"] == 4
    assert [call["id"] for call in payload["calls"]] == NEWEST_FIRST
    assert {call["status"] for call in payload["calls"]} == {UNKNOWN_STATUS_VALUE}
    assert all(call["sentiment"]["label"] == "neutral" for call in payload["calls"])
    answered = [call for call in payload["calls"] if call["last_call_attempt"]]
    assert len(answered) == 3
    assert all(call["last_call_attempt"]["carrier"]["name"] == "sim-telecom" for call in answered)
    parsed = Call.model_validate(payload["calls"][0])
    assert not parsed.is_known_status and not parsed.is_terminal
    # The faults changed this response only, not the cached calls behind it.
    orders.faults.set_rates(None)
    assert search(client).json() == clean
    assert client.get("/call/c-human").json()["call"]["status"] == statuses.COMPLETED


def test_unknown_status_alone_keeps_the_envelope(orders: SimulatorHandle, client: httpx.Client) -> None:
    orders.faults.set_rates("unknown_status=1.0")
    payload = search(client, call_ids=["c-human"]).json()
    assert set(payload) == {"calls", "total_count"}
    assert [call["status"] for call in payload["calls"]] == [UNKNOWN_STATUS_VALUE]


# -- engine, without HTTP -----------------------------------------------------------------


def test_engine_search_reads_ids_directly_and_renders_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = SimulatorEngine(seed=2)
    ids = seed_population(engine, 20)
    engine.clock.advance(86400)  # type: ignore[attr-defined]
    engine.set_public_url(engine.public_url)  # empties every render cache
    rendered: list[str] = []
    real = engine_module.render_call

    def counting(plan: Any, moment: Any, link: Any) -> dict[str, Any]:
        rendered.append(plan.spec.call_id)
        return real(plan, moment, link)

    monkeypatch.setattr(engine_module, "render_call", counting)
    wanted = [ids[3], ids[11], "missing"]
    result = engine.search_calls(call_ids=wanted, outcomes=[], results=["none", "human", "voicemail", "IVR"])
    body_bytes = engine.search_json(result)
    assert set(result.call_ids) == set(wanted[:2]) and result.total_count == 2
    assert set(rendered) == set(wanted[:2])
    assert json.loads(body_bytes)["total_count"] == result.total_count


def test_engine_search_at_an_explicit_moment() -> None:
    engine = SimulatorEngine(seed=4)
    start = engine.clock.now()
    first = engine.place_call(phone_number=PARIS, assistant_id="asst_a")["id"]
    engine.clock.advance(60)  # type: ignore[attr-defined]
    second = engine.place_call(phone_number=NEW_YORK, assistant_id="asst_b")["id"]
    assert engine.search_calls().call_ids == (second, first)
    early = engine.search_calls(at=start)
    assert early.call_ids == (first,) and early.at == start
    assert json.loads(engine.search_json(early))["calls"] == [engine.get_call(first, at=start)]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"page_size": 0}, "page_size"),
        ({"statuses": ["nope"]}, "statuses"),
        ({"sort_by": "phone"}, "sort_by"),
        ({"call_ids": "one"}, "call_ids"),
    ],
)
def test_engine_search_rejects_bad_fields(fields: dict[str, Any], message: str) -> None:
    engine = SimulatorEngine()
    with pytest.raises(InvalidSearch, match=message) as raised:
        engine.search_calls(**fields)
    assert raised.value.http_status == 422
    assert not isinstance(raised.value, InvalidOrder)
