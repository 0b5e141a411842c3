"""The operator that launches a campaign's rows, each row exactly once, whatever other launchers do."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowNotFoundException, AirflowTaskTimeout

from airflow_provider_revox._internal.core import launch as rows_owed
from airflow_provider_revox._internal.core.campaign import CampaignRow, launch_body, validate_campaign_id
from airflow_provider_revox._internal.core.durable import TaskState, scoped_key
from airflow_provider_revox._internal.core.statuses import NOT_LAUNCHED
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.operators.placed import ambiguous
from airflow_provider_revox.exceptions import RevoxConfigError, RevoxError, RevoxPlacementUnknownError

#: Task state key (scoped by the campaign id) of the rows this task instance has launched.
LAUNCHED_KEY = "revox_launched_rows"


class RevoxLaunchCampaignOperator(BaseOperator):
    """Start dialling a campaign's rows (``POST /campaigns/{id}/launch-calls``), each row once.

    **Every row dialled once.** Each try reads the campaign's rows (``GET /campaigns/{id}/rows``)
    and launches exactly the rows its selection names that are still ``not_launched``, by id
    (``rows.mode="only"``, with a ``statuses=["not_launched"]`` filter so the API itself skips a
    row started meanwhile). Rows that left ``not_launched`` (launched by an earlier try, or by
    another launcher sharing the campaign) are never launched again; rows still owed are
    launched whatever happened to the others. After the launch the rows are read again: the
    task succeeds only when none of the rows it launched is still ``not_launched``. When it
    cannot tell (the launch failed after it may have reached Revox and the rows still wait, or
    the rows cannot be read back) it fails with
    :class:`~airflow_provider_revox.exceptions.RevoxPlacementUnknownError` naming the rows, and
    its next try launches exactly those still waiting. The rows launched are recorded in the
    task state store (Airflow 3.3+), per campaign.

    **No orphan dials.** A task that runs past its ``execution_timeout`` cancels the campaign
    (``cancel_on_timeout=True``, the default), and so does a task that is killed
    (``cancel_on_kill=True``, the default): nobody is dialled for a launch that gave up half way.
    ``cancel_on_timeout=False`` leaves the campaign as it is on ``execution_timeout``, whatever
    ``cancel_on_kill`` says; the log says which happened.

    Returns:
        ``{"campaign_id", "launched", "skipped", "already_started", "not_matched",
        "launched_by_task"}``: rows this try started, what the API skipped, selected rows that
        had left ``not_launched`` before this try, rows left out by ``filters``, and the rows
        this task instance started over all its tries (None without a task state store).

    Args:
        campaign_id: the campaign (templated).
        mode: ``ai_first`` (default) or ``speed_dial``.
        filters: selection filters (``outcomes``, ``results``, ``directions``, ``assignee_ids``,
            ``query``; ``statuses`` only as ``["not_launched"]``: rows already dialled are never
            launched again by this operator); default none.
        call_ids: rows to include (``rows_mode="only"``) or leave out (``"all_except"``, default).
        rows_mode: ``only`` or ``all_except``.
        scheduled_at: ISO 8601 time to place the calls at (templated); default now.
        cancel_on_kill: cancel the campaign when the task is killed.
        cancel_on_timeout: cancel the campaign when the task runs past its ``execution_timeout``.
        revox_conn_id: the ``revox`` connection (templated).
    """

    template_fields: Sequence[str] = ("campaign_id", "scheduled_at", "call_ids", "revox_conn_id")
    ui_color = "#ffd6e7"

    def __init__(
        self,
        *,
        campaign_id: str,
        mode: str = "ai_first",
        filters: Mapping[str, Any] | None = None,
        call_ids: Sequence[str] = (),
        rows_mode: str = "all_except",
        scheduled_at: str | None = None,
        cancel_on_kill: bool = True,
        cancel_on_timeout: bool = True,
        revox_conn_id: str = RevoxHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # mode, filters and rows_mode are not templated: a wrong one is refused when the DAG is parsed.
        try:
            launch_body(mode, filters=filters, rows_mode=rows_mode)
        except RevoxConfigError as error:
            raise ValueError(f"{self.task_id}: {error}") from None
        statuses = list((filters or {}).get("statuses") or [])
        if statuses and statuses != [NOT_LAUNCHED]:
            raise ValueError(
                f"{self.task_id}: filters['statuses'] may only be ['not_launched'], not {statuses!r}: "
                "this operator launches rows not yet dialled, each once (RevoxHook.launch_campaign "
                "launches any selection)"
            )
        self.revox_conn_id = revox_conn_id
        self.campaign_id = campaign_id
        self.mode = mode
        self.filters = {key: value for key, value in (filters or {}).items() if key != "statuses"}
        self.call_ids = call_ids
        self.rows_mode = rows_mode
        self.scheduled_at = scheduled_at
        self.cancel_on_kill = cancel_on_kill
        self.cancel_on_timeout = cancel_on_timeout
        self._launching: str | None = None
        # Set when execution_timeout ended the task: cancel_on_timeout decided, not on_kill.
        self._timed_out = False

    @cached_property
    def hook(self) -> RevoxHook:
        """One hook for the task: one connection lookup, one HTTP session."""
        return RevoxHook(revox_conn_id=self.revox_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        """Launch the selected rows still ``not_launched``, then check the API shows them started."""
        try:
            return self._launch_owed(context)
        except AirflowTaskTimeout:
            self._timed_out = True
            if self.cancel_on_timeout:
                self._cancel("the task ran past its execution_timeout (cancel_on_timeout)")
            elif self._launching is not None:
                self.log.warning(
                    "Campaign %s: the task ran past its execution_timeout; the campaign is left as it "
                    "is (cancel_on_timeout=False)",
                    self._launching,
                )
            raise

    def _launch_owed(self, context: Context) -> dict[str, Any]:
        campaign_id = validate_campaign_id(self.campaign_id)
        if isinstance(self.call_ids, str):
            raise RevoxConfigError("call_ids must be a list of call ids, not one string")
        self._launching = campaign_id
        state = TaskState(context)
        state.note_missing(
            self.log,
            "the rows each try launches are read from the campaign's rows (those still not_launched), "
            "not from a record of earlier tries",
        )
        record_key = scoped_key(LAUNCHED_KEY, campaign_id)
        try:
            before = rows_owed.owed_rows(self._rows(campaign_id, ()), list(self.call_ids), self.rows_mode)
            if before.orderless:
                raise RevoxPlacementUnknownError(
                    f"Campaign {campaign_id}: rows {rows_owed.name_rows(before.orderless)} have no call "
                    "order, so no launch can name them; nothing is launched rather than leave them out."
                )
            recorded = self._recorded(state, record_key)
            if before.started:
                self.log.info(
                    "Campaign %s: %d selected rows have left not_launched already (an earlier try or "
                    "another launcher); they are not launched again",
                    campaign_id,
                    len(before.started),
                )
            result: dict[str, Any] = {"launched": 0, "skipped": None, "not_matched": 0}
            if before.owed:
                result = self._launch(campaign_id, before.owed)
                waiting = set(result.pop("waiting"))
                started = [i for i in before.owed if i not in waiting]
                recorded = sorted({*recorded, *started})
                state.set(record_key, json.dumps(recorded))
            else:
                self.log.info("Campaign %s: no selected row is still owed a launch", campaign_id)
            return {
                "campaign_id": campaign_id,
                **result,
                "already_started": len(before.started),
                "launched_by_task": len(recorded) if state.available else None,
            }
        finally:
            self.hook.close()

    def _rows(self, campaign_id: str, owed: Sequence[str]) -> list[CampaignRow]:
        """The campaign's rows; when ``owed`` is given, a failed read fails naming those rows."""
        try:
            return self.hook.get_campaign_rows(campaign_id)
        except RevoxError as error:
            if not owed:
                raise
            raise RevoxPlacementUnknownError(
                f"Campaign {campaign_id}: the launch of rows {rows_owed.name_rows(owed)} cannot be "
                f"checked, the rows could not be read back ({error}). The task's next try reads them "
                "again and launches exactly the rows still not_launched."
            ) from error

    def _launch(self, campaign_id: str, owed: Sequence[str]) -> dict[str, Any]:
        """Launch ``owed`` by id and check with the rows that none of them still waits."""
        self.log.info("Campaign %s: launching %d rows still not_launched", campaign_id, len(owed))
        answer = None
        try:
            answer = self.hook.launch_campaign(
                campaign_id,
                mode=self.mode,
                filters=rows_owed.launch_filters(self.filters),
                call_ids=list(owed),
                rows_mode="only",
                scheduled_at=self.scheduled_at,
            )
        except RevoxError as error:
            if not ambiguous(error):
                raise  # a 4xx, a refused connection or a run of 429s: nothing was launched
            self.log.warning("The launch may have reached Revox (%s); reading the rows to tell", error)
            waiting = rows_owed.still_waiting(self._rows(campaign_id, owed), owed)
            if waiting:
                raise RevoxPlacementUnknownError(
                    f"Campaign {campaign_id}: the launch failed after it may have reached Revox "
                    f"({error}) and rows {rows_owed.name_rows(waiting)} are still not_launched. None "
                    "is launched again now; the task's next try launches exactly the rows still "
                    "not_launched."
                ) from error
        waiting = rows_owed.still_waiting(self._rows(campaign_id, owed), owed)
        if waiting and not self.filters:
            raise RevoxPlacementUnknownError(
                f"Campaign {campaign_id}: Revox answered the launch, yet rows "
                f"{rows_owed.name_rows(waiting)} are still not_launched. The task fails rather than "
                "succeed with rows left out; its next try launches exactly the rows still not_launched."
            )
        if waiting:
            self.log.info(
                "Campaign %s: %d selected rows do not match the filters and stay not_launched",
                campaign_id,
                len(waiting),
            )
        launched = answer.launched if answer is not None else len(owed) - len(waiting)
        self.log.info("Campaign %s launched %d orders", campaign_id, launched)
        return {
            "launched": launched,
            "skipped": answer.skipped.model_dump(mode="json") if answer is not None else None,
            "not_matched": len(waiting),
            "waiting": waiting,
        }

    @staticmethod
    def _recorded(state: TaskState, key: str) -> list[str]:
        """The rows earlier tries of this task instance launched, from the task state store."""
        stored = state.get(key)
        if not stored:
            return []
        try:
            found = json.loads(stored)
        except ValueError:
            return []
        return [str(i) for i in found] if isinstance(found, list) else []

    def on_kill(self) -> None:
        """Cancel the campaign this task launched (``cancel_on_kill``); a failure is only logged.

        After ``execution_timeout`` (Airflow then calls this) ``cancel_on_timeout`` has decided.
        """
        if self.cancel_on_kill and not self._timed_out:
            self._cancel("the task was killed")

    def _cancel(self, why: str) -> None:
        if self._launching is None:
            return
        # A hook of its own: the task's hook may be mid-request when the kill or the timeout comes.
        hook = RevoxHook(revox_conn_id=self.revox_conn_id)
        try:
            hook.cancel_campaign(self._launching)
            self.log.info("Campaign %s cancelled because %s", self._launching, why)
        except (RevoxError, AirflowNotFoundException) as error:
            self.log.warning("Campaign %s could not be cancelled (%s): %s", self._launching, why, error)
        finally:
            hook.close()
