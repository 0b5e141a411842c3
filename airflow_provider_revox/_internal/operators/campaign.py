"""Operators that create, pause, resume and cancel Revox campaigns (the launch: ``launch.py``).

Creating a campaign is durable across task retries: the campaign's name carries this task
instance's idempotency key and the creating task's identity (``"<name> [<key> @ <dag_id>/<task_id>]"``;
the API has no campaign metadata), the campaign id goes into the task state store (Airflow 3.3+),
and a retry reattaches to the stored id, or finds the campaign by its name with
``GET /campaigns``, before creating one. A listing that may be truncated cannot prove the
campaign absent: the task then fails with ``RevoxPlacementUnknownError`` and creates nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context, ObjectStoragePath

from airflow_provider_revox._internal.core import contacts as reading
from airflow_provider_revox._internal.core.campaign import (
    Campaign,
    validate_campaign_id,
    validate_name,
)
from airflow_provider_revox._internal.core.contact_gate import Screened
from airflow_provider_revox._internal.core.durable import (
    SCOPE_SHARED,
    SCOPE_TASK,
    TaskState,
    check_scope,
    idempotency_key,
    scoped_key,
    task_identity,
)
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.operators import gate
from airflow_provider_revox.exceptions import RevoxApiError, RevoxPlacementUnknownError

#: Task state key (scoped by the idempotency key) of the campaign a create made.
CREATED_KEY = "revox_campaign_id"

#: The most campaigns ``GET /campaigns`` is taken to return: a listing this long may be truncated.
LIST_LIMIT = 20


def tagged_name(name: str, key: str, identity: str | None = None) -> str:
    """The name carrying the key and the creating task: ``"<name> [<key> @ <dag_id>/<task_id>]"``.

    Without ``identity`` (the shared scope) only the key: ``"<name> [<key>]"``.
    """
    return f"{name} [{key} @ {identity}]" if identity else f"{name} [{key}]"


class _CampaignOperator(BaseOperator):
    """The connection and the one hook every campaign operator uses."""

    def __init__(self, *, revox_conn_id: str = RevoxHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.revox_conn_id = revox_conn_id

    @cached_property
    def hook(self) -> RevoxHook:
        """One hook for the task: one connection lookup, one HTTP session."""
        return RevoxHook(revox_conn_id=self.revox_conn_id)


class RevoxCreateCampaignOperator(_CampaignOperator):
    """Create a campaign from a list of contacts or a contacts file; nothing is dialled yet.

    Contacts come from ``contacts`` (a list of rows, or an XCom holding one) or from
    ``contacts_path``, a file on any object storage Airflow knows: CSV, JSON Lines or Parquet
    (the ``[parquet]`` extra), told apart by the name's ending or ``contacts_format``. A row
    carries ``to_phone_number`` (a valid E.164 number) and either ``prompt_variables`` (a map
    of strings) or flat columns, of which ``prompt_variable_columns`` (default: every column
    except ``to_phone_number``) become prompt variables.

    Bad rows are counted and written as JSON Lines (``row``, ``input``, ``reason``) to
    ``rejects_path``, by default ``<contacts file>.rejects.jsonl`` beside the input (rows from
    a list are only logged unless ``rejects_path`` is given). More than ``max_rejected_rows``
    (default 0: one bad row fails the task, so nobody is silently left out) fails the task
    before anything is created.

    Durable: see the module's docstring. The key is derived from the dag, task, run and map
    index; ``idempotency_key`` overrides it. The name also carries the creating task's identity,
    so a campaign another DAG created under the same name and key is never reattached to,
    unless ``idempotency_scope="shared"``. When the key may have been used before (a retry, or
    a fixed ``idempotency_key``) and ``GET /campaigns`` returns ``list_limit`` campaigns or more
    without this one, the listing may be truncated: the task fails with
    :class:`~airflow_provider_revox.exceptions.RevoxPlacementUnknownError` and creates nothing;
    its next try looks again.

    **Do-not-contact gate.** Before creating, the task reads the organisation's phone history
    once (streamed) and leaves out every number marked do-not-contact, and those its policies
    name (see :class:`~airflow_provider_revox.operators.revox.RevoxPlaceCallOperator`, and
    ``skip_already_in_campaign``). Skipped contacts go to the rejects file with their reason
    (``"skipped": "<reason>"``); the log and the result say "X of Y skipped" by reason. When
    every contact is skipped, nothing is created and the task is skipped. A history that cannot
    be read whole fails the task with ``RevoxPhoneHistoryError`` and creates nothing.

    Returns:
        ``{"campaign_id", "name", "contacts", "rejected", "rejects_path", "reattached",
        "skipped"}``; ``skipped`` is ``{"total", "skipped", "by_reason",
        "dialled_do_not_contact"}`` (None when reattached).

    Args:
        name: the campaign's name (templated); the key is appended to it.
        assistant_id: the assistant that makes the calls (templated).
        contacts: rows (templated; an XComArg works).
        contacts_path: a contacts file URI or ObjectStoragePath (templated).
        contacts_format: ``csv``, ``jsonl`` or ``parquet`` when the name does not tell.
        prompt_variable_columns: the columns of a flat row that become prompt variables.
        rejects_path: where bad rows are written (templated).
        max_rejected_rows: bad rows tolerated before the task fails.
        call_retry_config: the campaign's retry config (else the assistant's).
        from_phone_number: the caller number (E.164).
        max_concurrent_calls: attempts live at once.
        idempotency_key: a fixed key instead of the derived one.
        idempotency_scope: ``"task"`` (default): the key identifies a campaign of this task of
            this DAG; ``"shared"``: a campaign of any DAG with the same name and key is reattached to.
        list_limit: the most campaigns ``GET /campaigns`` returns (default 20); a listing this
            long may be truncated, so it cannot prove a campaign absent.
        dial_do_not_contact: dial numbers marked do-not-contact anyway (a warning per number).
        skip_reached_human_within_days: skip numbers a person answered within this many days.
        skip_called_within_hours: skip numbers called within this many hours.
        skip_already_in_campaign: skip numbers a campaign of this ``name`` already called.
        revox_conn_id: the ``revox`` connection (templated).
    """

    template_fields: Sequence[str] = (
        "name",
        "assistant_id",
        "contacts",
        "contacts_path",
        "rejects_path",
        "idempotency_key",
        "revox_conn_id",
    )
    ui_color = "#ffd6e7"

    def __init__(
        self,
        *,
        name: str,
        assistant_id: str,
        contacts: Sequence[Mapping[str, Any]] | None = None,
        contacts_path: str | ObjectStoragePath | None = None,
        contacts_format: str | None = None,
        prompt_variable_columns: Sequence[str] | None = None,
        rejects_path: str | ObjectStoragePath | None = None,
        max_rejected_rows: int = 0,
        call_retry_config: Mapping[str, Any] | None = None,
        from_phone_number: str | None = None,
        max_concurrent_calls: int | None = None,
        idempotency_key: str | None = None,
        idempotency_scope: str = SCOPE_TASK,
        list_limit: int = LIST_LIMIT,
        dial_do_not_contact: bool = False,
        skip_reached_human_within_days: float | None = None,
        skip_called_within_hours: float | None = None,
        skip_already_in_campaign: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.contact_policy = gate.policy(
            dial_do_not_contact=dial_do_not_contact,
            skip_reached_human_within_days=skip_reached_human_within_days,
            skip_called_within_hours=skip_called_within_hours,
            skip_already_in_campaign=skip_already_in_campaign,
            task_id=self.task_id,
        )
        if isinstance(list_limit, bool) or not isinstance(list_limit, int) or list_limit < 1:
            raise ValueError(f"list_limit must be a whole number >= 1, not {list_limit!r}")
        self.idempotency_scope = check_scope(idempotency_scope)
        self.list_limit = list_limit
        if (contacts is None) == (contacts_path is None):
            raise ValueError("give exactly one of contacts and contacts_path")
        if (
            isinstance(max_rejected_rows, bool)
            or not isinstance(max_rejected_rows, int)
            or max_rejected_rows < 0
        ):
            raise ValueError(f"max_rejected_rows must be a whole number >= 0, not {max_rejected_rows!r}")
        if contacts_format is not None and contacts_format not in set(reading.FORMATS.values()):
            raise ValueError(f"contacts_format must be csv, jsonl or parquet, not {contacts_format!r}")
        self.name = name
        self.assistant_id = assistant_id
        self.contacts = contacts
        self.contacts_path = contacts_path
        self.contacts_format = contacts_format
        self.prompt_variable_columns = (
            list(prompt_variable_columns) if prompt_variable_columns is not None else None
        )
        self.rejects_path = rejects_path
        self.max_rejected_rows = max_rejected_rows
        self.call_retry_config = call_retry_config
        self.from_phone_number = from_phone_number
        self.max_concurrent_calls = max_concurrent_calls
        self.idempotency_key = idempotency_key

    def execute(self, context: Context) -> dict[str, Any]:
        """Reattach to this task's campaign, or validate the contacts and create it."""
        validate_name(self.name)
        key = idempotency_key(context, self.idempotency_key)
        shared = self.idempotency_scope == SCOPE_SHARED
        name = tagged_name(self.name, key, None if shared else task_identity(context))
        state = TaskState(context)
        state.note_missing(self.log, f"each try first looks for a campaign named {name!r}, reattaching to it")
        # Scoped by the key: a clear with a new idempotency_key never reattaches to the old campaign.
        created_key = scoped_key(CREATED_KEY, name)
        try:
            stored = state.get(created_key)
            if stored is not None:
                campaign = self.hook.get_campaign(stored)
                self.log.info("Campaign %s was created by an earlier try; reattaching", campaign.id)
                return self._result(campaign, None, reattached=True)
            sorted_rows, target = self._read(context)
            found = self._find(name, context)
            if found is not None:
                self.log.info("Campaign %s named %r exists already; reattaching", found.id, name)
                state.set(created_key, found.id)
                gate.write_rejects(self.log, target, sorted_rows.rejects, self.hook.known_secrets())
                return self._result(found, None, reattached=True)
            screened, rejects_at = self._screen(sorted_rows, target)
            campaign = self.hook.create_campaign(
                name=name,
                assistant_id=self.assistant_id,
                contacts=screened.kept,
                call_retry_config=self.call_retry_config,
                from_phone_number=self.from_phone_number,
                max_concurrent_calls=self.max_concurrent_calls,
            )
            state.set(created_key, campaign.id)
            self.log.info("Created campaign %s with %d contacts", campaign.id, len(screened.kept))
            result = self._result(campaign, (sorted_rows, rejects_at), reattached=False)
            result.update(contacts=len(screened.kept), skipped=screened.counts())
            return result
        finally:
            self.hook.close()

    def _find(self, name: str, context: Context) -> Campaign | None:
        """The campaign an earlier try created under this key and task, if the API has it.

        Only an exact name matches: it carries the key and (in the task scope) this task's identity.

        Raises:
            RevoxPlacementUnknownError: the campaign may exist but the listing may be truncated.
        """
        listed = self.hook.list_campaigns()
        matches = [campaign for campaign in listed if campaign.name == name]
        if matches:
            return matches[0]
        ti = context.get("ti")
        used_before = self.idempotency_key is not None or getattr(ti, "try_number", 1) > 1
        if used_before and len(listed) >= self.list_limit:
            raise RevoxPlacementUnknownError(
                f"Cannot tell whether campaign {name!r} exists already: GET /campaigns returned "
                f"{len(listed)} campaigns (list_limit={self.list_limit}), so the listing may be "
                "truncated and not finding it there proves nothing. No campaign is created rather "
                "than risk a second one; the task's next try looks again."
            )
        return None

    def _read(self, context: Context) -> tuple[reading.Sorted, Any]:
        """The checked contacts and where rejects go; fails past ``max_rejected_rows`` (rejects written)."""
        return gate.read_contacts(self, context)

    def _screen(self, rows: reading.Sorted, target: Any) -> tuple[Screened, str | None]:
        """The do-not-contact gate: the contacts left to dial (every reject written)."""
        return gate.screen_contacts(self, rows, target)

    def _result(
        self, campaign: Campaign, read: tuple[reading.Sorted, str | None] | None, *, reattached: bool
    ) -> dict[str, Any]:
        sorted_rows, rejects_at = read if read is not None else (None, None)
        return {
            "campaign_id": campaign.id,
            "name": campaign.name,
            "contacts": len(sorted_rows.contacts) if sorted_rows else campaign.row_stats.total,
            "rejected": len(sorted_rows.rejects) if sorted_rows else None,
            "rejects_path": rejects_at,
            "reattached": reattached,
        }


class _ActionOperator(_CampaignOperator):
    """Pause, resume or cancel a campaign: one request, retried (the same effect when repeated)."""

    template_fields: Sequence[str] = ("campaign_id", "revox_conn_id")
    ui_color = "#ffd6e7"
    action = ""

    def __init__(self, *, campaign_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.campaign_id = campaign_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Send the action; fail when the API does not confirm it."""
        campaign_id = validate_campaign_id(self.campaign_id)
        endpoint = getattr(self.hook, f"{self.action}_campaign")
        try:
            if not endpoint(campaign_id):
                raise RevoxApiError(f"Revox did not confirm the {self.action} of campaign {campaign_id}")
        finally:
            self.hook.close()
        self.log.info("Campaign %s: %s confirmed", campaign_id, self.action)
        return {"campaign_id": campaign_id, "action": self.action, "success": True}


class RevoxPauseCampaignOperator(_ActionOperator):
    """Pause every order's retry loop of a campaign (``campaign_id`` templated)."""

    action = "pause"


class RevoxResumeCampaignOperator(_ActionOperator):
    """Resume a paused campaign (``campaign_id`` templated)."""

    action = "resume"


class RevoxCancelCampaignOperator(_ActionOperator):
    """Cancel a campaign: no order of it is dialled again (``campaign_id`` templated)."""

    action = "cancel"
