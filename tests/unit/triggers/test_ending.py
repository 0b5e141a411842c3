"""Waits that start and end in the triggerer (Airflow 3.3's start_from_trigger and task-end
events): what the sensors hand the scheduler, what the triggers send, over real HTTP against the
simulator, and the fallback where Airflow lacks the feature."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

from airflow_provider_revox._internal.core import compat
from airflow_provider_revox._internal.hooks import revox as hook_module
from airflow_provider_revox.hooks.revox import RevoxHook
from airflow_provider_revox.operators.revox import RevoxCallLink
from airflow_provider_revox.sensors.revox import RevoxCallSensor, RevoxCallsSensor, RevoxCampaignSensor
from airflow_provider_revox.testing import ALWAYS_OPEN_RETRY_CONFIG, SimulatorHandle, running_simulator
from airflow_provider_revox.triggers.revox import RevoxCallsTrigger, RevoxCallTrigger, RevoxCampaignTrigger

PUBLIC = "airflow_provider_revox.triggers.revox."
#: The feature itself, where this Airflow has it; the fallback's tests run on every version.
NEEDS_3_3 = pytest.mark.skipif(
    not compat.has_start_from_trigger(),
    reason=compat.needs_airflow_3_3("Starting and ending a wait in the triggerer"),
)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorHandle]:
    """A simulator on a manual clock; the hook retries once and never really sleeps."""
    with running_simulator(seed=7) as handle:
        monkeypatch.setenv("AIRFLOW_CONN_REVOX_DEFAULT", handle.connection_json(max_retries=1))

        async def no_sleep(seconds: float) -> None:
            pass

        monkeypatch.setattr(hook_module, "retry_asleep", no_sleep)
        yield handle


def finished_call(sim: SimulatorHandle, call_id: str, **extra: Any) -> str:
    extra.setdefault("attempts", [{"result": "human", "duration": 60}])
    sim.place_scripted(call_id, **extra)
    sim.finish(call_id)
    return call_id


def errored_call(sim: SimulatorHandle, call_id: str) -> str:
    attempts = [{"dial_error": "number_non_attributed"}]
    return finished_call(sim, call_id, attempts=attempts, final_status="errored")


async def events_of(trigger: Any, *, in_triggerer: bool = True) -> list[TriggerEvent]:
    """The trigger's events; ``in_triggerer`` gives it the id a real triggerer gives each trigger."""
    trigger.min_sleep = 0.01
    if in_triggerer:
        trigger.trigger_id = 41
    return [event async for event in trigger.run()]


# -- what the sensors hand the scheduler ------------------------------------------------------


@NEEDS_3_3
def test_a_deferrable_call_sensor_starts_in_the_triggerer_with_its_trigger_kwargs() -> None:
    sensor = RevoxCallSensor(task_id="w", call_id="c-1", deferrable=True, soft_fail=True, poke_interval=15)
    args = sensor.start_trigger_args
    assert sensor.start_from_trigger is True
    assert args is not None
    assert args.trigger_cls == PUBLIC + "RevoxCallTrigger"
    assert args.next_method == "execute_complete"
    assert args.timeout is None
    assert args.trigger_kwargs == {
        "call_id": "c-1",
        "revox_conn_id": "revox_default",
        "poke_interval": 15.0,
        "fail_on_statuses": ["errored", "cancelled"],
        "deadline_at": None,
        "deadline_fixed": False,
        "stop_at": None,
        "end_task": True,
        "soft_fail": True,
    }
    # The kwargs build the trigger the triggerer will run.
    trigger = RevoxCallTrigger(**args.trigger_kwargs)
    assert trigger.serialize()[0] == PUBLIC + "RevoxCallTrigger"


@NEEDS_3_3
def test_the_start_survives_dag_serialization() -> None:
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("start_in_triggerer", schedule=None) as dag:
        RevoxCallSensor(task_id="w", call_id="{{ params.call_id }}", deferrable=True)
    task = DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("w")
    assert task.start_from_trigger is True
    assert task.start_trigger_args.trigger_cls == PUBLIC + "RevoxCallTrigger"
    stored = task.start_trigger_args.trigger_kwargs
    kwargs = stored.get("__var", stored)  # kept as Airflow encodes a dict, decoded by the triggerer
    assert kwargs["call_id"] == "{{ params.call_id }}"
    assert kwargs["deadline_fixed"] is False
    assert kwargs["end_task"] is True


@NEEDS_3_3
def test_the_triggerer_renders_the_sensors_templates_into_the_trigger() -> None:
    sensor = RevoxCallSensor(task_id="w", call_id="{{ params.call_id }}", deferrable=True)
    trigger = RevoxCallTrigger(**sensor.start_trigger_args.trigger_kwargs)
    # What the triggerer does before run(): the task instance, then Airflow's own rendering.
    trigger.task_instance = SimpleNamespace(task=sensor, task_id="w")  # type: ignore[assignment]
    assert set(trigger.template_fields) == {"call_id", "revox_conn_id"}
    trigger.render_template_fields(context={"params": {"call_id": "c-77"}})  # type: ignore[arg-type]
    assert trigger.call_id == "c-77"


@NEEDS_3_3
def test_batch_and_campaign_sensors_start_in_the_triggerer() -> None:
    batch = RevoxCallsSensor(task_id="b", call_ids=["c-1", "c-2", "c-1"], deferrable=True)
    assert batch.start_from_trigger is True
    assert batch.start_trigger_args.trigger_cls == PUBLIC + "RevoxCallsTrigger"
    assert batch.start_trigger_args.trigger_kwargs["call_ids"] == ["c-1", "c-2"]
    campaign = RevoxCampaignSensor(task_id="c", campaign_id="camp-1", deferrable=True, timeout=60)
    assert campaign.start_from_trigger is True
    assert campaign.start_trigger_args.trigger_cls == PUBLIC + "RevoxCampaignTrigger"
    assert campaign.start_trigger_args.trigger_kwargs == {
        "campaign_id": "camp-1",
        "revox_conn_id": "revox_default",
        "poke_interval": 60.0,
        "end_task": True,
        "soft_fail": False,
    }


def test_what_a_trigger_cannot_be_given_starts_on_a_worker() -> None:
    many = RevoxCallsSensor(
        task_id="b",
        call_ids=[f"c-{i}" for i in range(3)],
        deferrable=True,
        max_ids_in_xcom=2,
        ids_path="/tmp/x",
    )
    opted_out = RevoxCallSensor(task_id="o", call_id="c-1", deferrable=True, start_from_trigger=False)
    not_deferred = RevoxCallSensor(task_id="p", call_id="c-1")
    # An explicit timeout is turned into the trigger's real-time deadline on a worker.
    timed = RevoxCallSensor(task_id="t", call_id="c-1", deferrable=True, timeout=600)
    sensors = [many, opted_out, not_deferred, timed]
    assert [sensor.start_from_trigger for sensor in sensors] == [False, False, False, False]


def test_without_the_feature_every_sensor_starts_on_a_worker(without_start_from_trigger: None) -> None:
    sensors = [
        RevoxCallSensor(task_id="w", call_id="c-1", deferrable=True),
        RevoxCallsSensor(task_id="b", call_ids=["c-1"], deferrable=True),
        RevoxCampaignSensor(task_id="c", campaign_id="camp-1", deferrable=True),
    ]
    assert [sensor.start_from_trigger for sensor in sensors] == [False, False, False]
    assert [sensor.start_trigger_args for sensor in sensors] == [None, None, None]


# -- what the triggers send --------------------------------------------------------------------


@NEEDS_3_3
async def test_the_call_trigger_ends_the_task_with_the_summary_as_its_xcom(sim: SimulatorHandle) -> None:
    call_id = finished_call(sim, "end-ok", outcome="interested")
    plain = await events_of(RevoxCallTrigger(call_id=call_id), in_triggerer=False)
    ended = await events_of(RevoxCallTrigger(call_id=call_id, end_task=True))
    assert len(ended) == 1
    assert isinstance(ended[0], TaskSuccessEvent)
    url = f"{sim.base_url.removesuffix('/api')}/dashboard/calls/{call_id}"
    assert ended[0].xcoms == {
        "return_value": plain[0].payload["summary"],
        "revox_call_link": {"call_id": call_id, "url": url},
        # What the api-server reads for the extra link: no worker's task runner stores it here.
        "_link_RevoxCallLink": url,
    }
    assert RevoxCallLink().xcom_key in ended[0].xcoms
    assert ended[0].xcoms["return_value"]["status"] == "completed"
    assert ended[0].xcoms["return_value"]["outcome"] == "interested"


@NEEDS_3_3
async def test_a_failed_call_skips_the_task_with_soft_fail_or_resumes_to_fail_without_retries(
    sim: SimulatorHandle,
) -> None:
    call_id = errored_call(sim, "end-err")
    skipped = await events_of(RevoxCallTrigger(call_id=call_id, end_task=True, soft_fail=True))
    failed = await events_of(RevoxCallTrigger(call_id=call_id, end_task=True))
    assert isinstance(skipped[0], TaskSkippedEvent)
    # Airflow would retry a TaskFailedEvent: the worker fails a dead order without retries.
    assert type(failed[0]) is TriggerEvent
    assert failed[0].payload["status"] == "failed"
    assert "number_non_attributed" in failed[0].payload["message"]


@NEEDS_3_3
async def test_an_error_fails_the_task_with_the_message_in_its_log(
    sim: SimulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    failing = RevoxCallTrigger(call_id="no-such-call", end_task=True)
    failing._log = logging.getLogger("revox.test.ending")  # the triggerer's log, as caplog sees it
    with caplog.at_level(logging.INFO, logger="revox.test.ending"):
        events = await events_of(failing)
    assert isinstance(events[0], TaskFailedEvent)
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("no-such-call" in text for text in failures), failures


async def test_a_placements_timeout_still_resumes_on_a_worker(sim: SimulatorHandle) -> None:
    placed = sim.place_call(phone_number="+33612345678", assistant_id="asst_test")
    sim.engine.pause(placed["id"])
    trigger = RevoxCallTrigger(
        call_id=placed["id"],
        end_task=True,
        resume_on_timeout=True,
        deadline_at="2000-01-01T00:00:00+00:00",
        deadline_fixed=True,
    )
    events = await events_of(trigger)
    assert type(events[0]) is TriggerEvent
    assert events[0].payload["status"] == "timeout"


async def test_run_inline_or_without_the_feature_the_trigger_sends_the_plain_event(
    sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    call_id = finished_call(sim, "end-plain")
    # dag.test() runs the trigger inline, with no trigger id, and resumes the task with the payload.
    inline = await events_of(RevoxCallTrigger(call_id=call_id, end_task=True), in_triggerer=False)
    from airflow_provider_revox._internal.core import compat

    monkeypatch.setattr(compat, "has_start_from_trigger", lambda: False)
    older = await events_of(RevoxCallTrigger(call_id=call_id, end_task=True))
    assert [type(inline[0]), type(older[0])] == [TriggerEvent, TriggerEvent]
    assert inline[0].payload["status"] == older[0].payload["status"] == "success"


@NEEDS_3_3
async def test_the_batch_trigger_ends_the_task_with_the_sensors_result(sim: SimulatorHandle) -> None:
    ids = [finished_call(sim, "end-b1"), finished_call(sim, "end-b2"), errored_call(sim, "end-b3")]
    ended = await events_of(RevoxCallsTrigger(call_ids=ids, min_completed_ratio=0.5, end_task=True))
    assert isinstance(ended[0], TaskSuccessEvent)
    result = ended[0].xcoms["return_value"]
    assert result["completed_ratio"] == pytest.approx(2 / 3)
    assert result["total"] == 3
    assert result["counts"] == {"completed": 2, "errored": 1}
    assert result["completed"] == ["end-b1", "end-b2"]
    assert result["failed"] == ["end-b3"]
    short = await events_of(RevoxCallsTrigger(call_ids=ids, end_task=True, soft_fail=True))
    assert isinstance(short[0], TaskSkippedEvent)


@NEEDS_3_3
async def test_a_rendered_id_that_is_not_one_fails_the_task_before_any_request(sim: SimulatorHandle) -> None:
    sim.reset_stats()
    events = await events_of(RevoxCallTrigger(call_id="['a', 'b']", end_task=True))
    assert isinstance(events[0], TaskFailedEvent)
    assert sim.stats()["by_endpoint"] == {}


@NEEDS_3_3
async def test_the_campaign_trigger_ends_the_task_with_its_statistics(
    revox_simulator: SimulatorHandle,
) -> None:
    with RevoxHook() as hook:
        created = hook.create_campaign(
            name="Ends",
            assistant_id="asst_demo",
            contacts=[{"to_phone_number": "+33612345601"}],
            call_retry_config=ALWAYS_OPEN_RETRY_CONFIG,
        )
        hook.launch_campaign(created.id)
    ends = [
        revox_simulator.engine.terminal_at(i)
        for i in revox_simulator.engine.campaigns.campaign(created.id).call_ids
    ]
    revox_simulator.clock.set(max(end for end in ends if end is not None))
    ended = await events_of(RevoxCampaignTrigger(campaign_id=created.id, poke_interval=1, end_task=True))
    assert isinstance(ended[0], TaskSuccessEvent)
    xcom = ended[0].xcoms["return_value"]
    assert xcom["campaign_id"] == created.id
    assert xcom["status"] == "completed"
    assert "statistics" in xcom


@NEEDS_3_3
async def test_the_xcoms_go_through_the_triggerers_xcom_channel_as_a_workers_do(
    sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Airflow stores a task-end event's own XComs JSON-encoded twice: a downstream task would pull
    # text. Pushed through the triggerer's channel first, the event then carries none.
    from airflow.sdk.execution_time.xcom import XCom

    pushed: list[tuple[str, Any, dict[str, Any]]] = []

    async def aset(key: str, value: Any, **where: Any) -> None:
        pushed.append((key, value, where))

    monkeypatch.setattr(XCom, "aset", aset)
    call_id = finished_call(sim, "end-push")
    trigger = RevoxCallTrigger(call_id=call_id, end_task=True)
    trigger.task_instance = SimpleNamespace(  # type: ignore[assignment]
        dag_id="d", task_id="w", run_id="r", map_index=-1
    )
    events = await events_of(trigger)
    assert isinstance(events[0], TaskSuccessEvent)
    assert events[0].xcoms is None
    assert [(key, where) for key, _, where in pushed] == [
        ("return_value", {"dag_id": "d", "task_id": "w", "run_id": "r", "map_index": -1}),
        ("revox_call_link", {"dag_id": "d", "task_id": "w", "run_id": "r", "map_index": -1}),
        ("_link_RevoxCallLink", {"dag_id": "d", "task_id": "w", "run_id": "r", "map_index": -1}),
    ]
    assert pushed[0][1]["call_id"] == call_id and pushed[0][1]["status"] == "completed"
