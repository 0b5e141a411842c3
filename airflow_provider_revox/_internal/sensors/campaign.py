"""A sensor that waits for a Revox campaign to be completed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, cast

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue, conf

from airflow_provider_revox._internal.core import compat
from airflow_provider_revox._internal.core.campaign import Campaign, validate_campaign_id
from airflow_provider_revox._internal.core.redact import redact, redact_message
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.sensors.base import utcnow, validate_poke_interval
from airflow_provider_revox._internal.waiting import campaign as waiting
from airflow_provider_revox._internal.waiting import rounds
from airflow_provider_revox._internal.waiting.outcome import fail_or_skip, read_event
from airflow_provider_revox.exceptions import RevoxError


class RevoxCampaignSensor(BaseSensorOperator):
    """Wait until a Revox campaign is ``completed`` (every order terminal).

    One ``GET /campaigns/{id}`` per poll, however many orders the campaign has. Succeeds when
    the campaign is completed and returns a small summary: ``campaign_id``, ``name``,
    ``status``, ``row_stats``, ``funnel_stats`` and ``statistics`` (the statistics report
    without its per-lead lists, fetched once at the end). A cancelled campaign fails the task
    at once with :class:`~airflow.sdk.exceptions.AirflowFailException` (no task retries), or
    skips it with ``soft_fail=True``. ``paused`` keeps the sensor waiting. Transient API errors
    are waited out, backing off; a final one (unknown campaign, rejected key) fails the task.

    Args:
        campaign_id: the campaign (templated).
        revox_conn_id: the ``revox`` connection (templated).
        deferrable: hand the wait to
            :class:`~airflow_provider_revox.triggers.revox.RevoxCampaignTrigger` instead of
            holding a worker slot (default ``[operators] default_deferrable``).
        poke_interval: seconds between polls (default 60).
        start_from_trigger: with ``deferrable=True``, start and end the wait in the triggerer,
            with no worker run, where Airflow can (3.3+) (default); ``False`` starts it on a
            worker and resumes it on one.
        **kwargs: what :class:`~airflow.sdk.BaseSensorOperator` takes (``timeout``,
            ``soft_fail``, ``mode``, ...).
    """

    template_fields: Sequence[str] = ("campaign_id", "revox_conn_id")
    ui_color = "#ffd6e7"

    def __init__(
        self,
        *,
        campaign_id: str,
        revox_conn_id: str = RevoxHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 60,
        start_from_trigger: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=validate_poke_interval(poke_interval), **kwargs)
        if isinstance(campaign_id, str) and "{{" not in campaign_id:
            validate_campaign_id(campaign_id)  # a literal id: report a bad one when the DAG is parsed
        self.campaign_id = campaign_id
        self.revox_conn_id = revox_conn_id
        self.deferrable = deferrable
        self._last: Campaign | None = None
        self._streak = rounds.FailureStreak()
        self.wants_start_from_trigger = start_from_trigger
        self.start_from_trigger = False
        literal_id = isinstance(campaign_id, str)
        if start_from_trigger and deferrable and literal_id and compat.has_start_from_trigger():
            from airflow.triggers.base import StartTriggerArgs

            # The id may be a template: the triggerer renders it before the trigger runs.
            self.start_trigger_args = StartTriggerArgs(
                trigger_cls="airflow_provider_revox.triggers.revox.RevoxCampaignTrigger",
                next_method="execute_complete",
                trigger_kwargs={
                    "campaign_id": campaign_id,
                    "revox_conn_id": revox_conn_id,
                    "poke_interval": self.poke_interval,
                    **self._ends_in_triggerer(),
                },
                timeout=timedelta(seconds=self.timeout),
            )
            self.start_from_trigger = True

    @cached_property
    def hook(self) -> RevoxHook:
        """One hook for the task: one connection lookup, one HTTP session."""
        return RevoxHook(revox_conn_id=self.revox_conn_id)

    def _secrets(self) -> tuple[str, ...]:
        return self.hook.secrets_to_mask()

    def _ends_in_triggerer(self) -> dict[str, Any]:
        """The trigger kwargs that let the wait end its task there (Airflow 3.3+, unless
        ``start_from_trigger=False``), or none."""
        if not (self.wants_start_from_trigger and compat.has_start_from_trigger()):
            return {}
        return {"end_task": True, "soft_fail": bool(self.soft_fail)}

    def execute(self, context: Context) -> Any:
        """Poke or reschedule through the base class, or look once and defer."""
        validate_campaign_id(self.campaign_id)
        try:
            if not self.deferrable:
                return super().execute(context)
            campaign = self._try_fetch()
            if campaign is not None:
                done = self._check(campaign)
                if done is not None:
                    return done
            # The trigger module is needed only when the wait is handed to the triggerer.
            from airflow_provider_revox._internal.triggers.campaign import RevoxCampaignTrigger

            self.defer(
                trigger=RevoxCampaignTrigger(
                    campaign_id=self.campaign_id,
                    revox_conn_id=self.revox_conn_id,
                    poke_interval=self.poke_interval,
                    # This look counts as the trigger's first: it polls next when one is due.
                    next_poll_at=self._next_poll_at().isoformat(),
                    **self._ends_in_triggerer(),
                ),
                method_name="execute_complete",
                timeout=self.timeout,
            )
        finally:
            self.hook.close()

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Fetch the campaign once and decide: done, cancelled, or keep waiting."""
        campaign = self._try_fetch()
        if campaign is not None:
            done = self._check(campaign)
            if done is not None:
                return PokeReturnValue(is_done=True, xcom_value=done)
        return False

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Take the trigger's event, fail-closed: a missing, unknown or foreign event fails the task."""
        summary = read_event(
            event,
            trigger="RevoxCampaignTrigger",
            what=f"campaign {self.campaign_id}",
            payload_key="summary",
            payload_ok=lambda payload: waiting.summary_ok(payload, self.campaign_id),
            soft_fail=self.soft_fail,
        )
        try:
            summary = {**summary, "statistics": self.hook.get_campaign_statistics(self.campaign_id).small()}
        finally:
            self.hook.close()
        secrets = self._secrets()
        message = redact_message(str((event or {}).get("message") or ""), secrets)
        self.log.info("Campaign %s ended: %s", self.campaign_id, message)
        return cast(dict[str, Any], redact(summary, secrets))

    def _next_interval(self) -> float:
        """Seconds until the next look, after what the last one saw."""
        return waiting.poll_interval(self._last, self.poke_interval, self._streak.count)

    def _next_poll_at(self) -> datetime:
        return utcnow() + timedelta(seconds=self._next_interval())

    def _get_next_poke_interval(
        self, started_at: datetime | float, run_duration: Callable[[], float], poke_count: int
    ) -> float:
        return self._next_interval()

    def _try_fetch(self) -> Campaign | None:
        """The campaign, or None after a transient failure (the hook already retried)."""
        try:
            campaign = self.hook.get_campaign(self.campaign_id)
        except RevoxError as error:
            if not error.transient:
                raise
            if self._streak.failed():
                text = redact_message(str(error), self._secrets())
                self.log.warning(
                    "Campaign %s: %s; will look again, waiting longer each time", self.campaign_id, text
                )
            return None
        if self._streak.recovered():
            self.log.info("Campaign %s: Revox answers again", self.campaign_id)
        if self._last is None or self._last.status != campaign.status:
            self.log.info("%s", waiting.describe(campaign, self._secrets()))
        self._last = campaign
        return campaign

    def _check(self, campaign: Campaign) -> dict[str, Any] | None:
        """The summary when the campaign is completed, None to keep waiting; raises when cancelled."""
        decided = waiting.verdict(campaign)
        if decided == waiting.WAITING:
            return None
        secrets = self._secrets()
        if decided == waiting.FAILED:
            fail_or_skip(self.soft_fail, waiting.describe(campaign, secrets))
        statistics = self.hook.get_campaign_statistics(self.campaign_id).small()
        self.log.info("Campaign %s ended: %s", self.campaign_id, waiting.describe(campaign, secrets))
        return waiting.summary(campaign, statistics, secrets)
