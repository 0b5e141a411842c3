"""The deferrable wait for a Revox campaign, run by Airflow's triggerer.

Thin: the verdict, the interval and the summary come from
:mod:`airflow_provider_revox._internal.waiting.campaign`; the one request per poll is the hook's
``GET /campaigns/{id}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_revox._internal.core.call import parse_iso
from airflow_provider_revox._internal.core.campaign import Campaign
from airflow_provider_revox._internal.core.redact import redact_text
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.triggers.ending import delivered, end_kwargs, ends_task, task_end_event
from airflow_provider_revox._internal.waiting import campaign as waiting
from airflow_provider_revox._internal.waiting import rounds
from airflow_provider_revox._internal.waiting.outcome import (
    EVENT_ERROR,
    EVENT_FAILED,
    EVENT_SUCCESS,
    event_payload,
)
from airflow_provider_revox.exceptions import RevoxConfigError, RevoxError, is_transient


class RevoxCampaignTrigger(BaseTrigger):
    """Wait, fully async, until a campaign is completed or cancelled.

    One hook (one HTTP session) for the trigger's whole life and one ``GET /campaigns/{id}`` per
    poll, however many orders the campaign has. It logs each status change once; while the API
    fails it backs off (doubling up to ten minutes) with one warning, then one line when it
    answers again. It sends exactly one event: ``success`` (completed), ``failed`` (cancelled)
    or ``error`` (a final error: unknown campaign, rejected key), each with the campaign's
    summary.

    Args:
        campaign_id: the campaign to wait for.
        revox_conn_id: the ``revox`` connection.
        poke_interval: seconds between polls.
        next_poll_at: ISO 8601 time (with its offset) of the first poll: the sensor has just
            looked before deferring. Polls at once when absent or already passed.
        end_task: end the task from the triggerer (the summary with its statistics as the XCom)
            instead of resuming it on a worker, where Airflow can (3.3+).
        soft_fail: with ``end_task``, skip the task instead of failing it when the campaign is
            cancelled.
    """

    #: Awaited to sleep between polls; tests hand in a faster one.
    pause: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)

    def __init__(
        self,
        *,
        campaign_id: str,
        revox_conn_id: str = RevoxHook.default_conn_name,
        poke_interval: float = 60.0,
        next_poll_at: str | None = None,
        end_task: bool = False,
        soft_fail: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.campaign_id = campaign_id
        self.revox_conn_id = revox_conn_id
        self.poke_interval = float(poke_interval)
        self.next_poll_at = next_poll_at
        self._first_poll_at = _aware_time(next_poll_at)
        self.end_task = bool(end_task)
        self.soft_fail = bool(soft_fail)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and JSON-only kwargs: the trigger's whole state."""
        return (
            "airflow_provider_revox.triggers.revox.RevoxCampaignTrigger",
            {
                "campaign_id": self.campaign_id,
                "revox_conn_id": self.revox_conn_id,
                "poke_interval": self.poke_interval,
                **({"next_poll_at": self.next_poll_at} if self.next_poll_at else {}),
                **end_kwargs(self.end_task, self.soft_fail),
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll the campaign until it ends; yield one event."""
        async for event in delivered(self, self._events()):
            yield event

    async def _events(self) -> AsyncIterator[TriggerEvent]:
        streak = rounds.FailureStreak()
        last: Campaign | None = None
        last_status: str | None = None
        first = waiting.first_pause(self._first_poll_at, datetime.now(timezone.utc))
        if first > 0:
            await self.pause(first)
        async with RevoxHook(revox_conn_id=self.revox_conn_id) as hook:
            while True:
                try:
                    campaign = await hook.aget_campaign(self.campaign_id)
                except RevoxError as error:
                    secrets = hook.secrets_to_mask()
                    if not is_transient(error):
                        message = f"campaign {self.campaign_id}: {error}"
                        event = self._event(EVENT_ERROR, last, message, secrets)
                        if ends_task(self, self.end_task):
                            event = task_end_event(self, dict(event.payload), None, self.soft_fail) or event
                        yield event
                        return
                    if streak.failed():
                        self.log.warning(
                            "Campaign %s: %s; waiting it out, longer each time",
                            self.campaign_id,
                            redact_text(str(error), secrets),
                        )
                else:
                    secrets = hook.secrets_to_mask()
                    if streak.recovered():
                        self.log.info("Campaign %s: Revox answers again", self.campaign_id)
                    last = campaign
                    decided = waiting.verdict(campaign)
                    if decided != waiting.WAITING:
                        kind = EVENT_SUCCESS if decided == waiting.SUCCESS else EVENT_FAILED
                        event = self._event(kind, campaign, waiting.describe(campaign, secrets), secrets)
                        if ends_task(self, self.end_task):
                            event = await self._end(event, campaign, hook, secrets)
                        yield event
                        return
                    if campaign.status != last_status:
                        self.log.info("%s", waiting.describe(campaign, secrets))
                        last_status = campaign.status
                await self.pause(waiting.poll_interval(last, self.poke_interval, streak.count))

    async def _end(
        self, event: TriggerEvent, campaign: Campaign, hook: RevoxHook, secrets: tuple[str, ...]
    ) -> TriggerEvent:
        """The task-end event; on success the XCom carries the statistics, as the sensor's does."""
        payload = dict(event.payload)
        if payload.get("status") != EVENT_SUCCESS:
            return task_end_event(self, payload, None, self.soft_fail) or event
        try:
            statistics = (await hook.aget_campaign_statistics(self.campaign_id)).small()
        except RevoxError:
            return event  # the worker resumes and reads the statistics, retrying as it does
        summary = waiting.summary(campaign, statistics, secrets)
        return task_end_event(self, payload, summary, self.soft_fail) or event

    def _event(
        self, kind: str, campaign: Campaign | None, message: str, secrets: tuple[str, ...]
    ) -> TriggerEvent:
        summary = waiting.summary(campaign) if campaign is not None else {"campaign_id": self.campaign_id}
        payload = event_payload(kind, message, secrets, campaign_id=self.campaign_id, summary=summary)
        return TriggerEvent(payload)  # type: ignore[no-untyped-call]


def _aware_time(text: str | None) -> datetime | None:
    """An ISO 8601 time with its offset; a naive or unreadable one is refused before any request."""
    if not text:
        return None
    try:
        when = parse_iso(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise RevoxConfigError(f"next_poll_at must be an ISO 8601 time with its UTC offset, got {text!r}")
    return when
