"""The do-not-contact gate of the placing operators: read the phone history once, screen, report.

The decisions are :mod:`airflow_provider_revox._internal.core.contact_gate`'s; this module does
their I/O: one streamed read of ``GET /calls/phone-history`` per task, a warning per
do-not-contact number dialled by an explicit override, the "X of Y skipped" line, and the
rejects file lines of the skipped contacts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_provider_revox._internal.core import contacts as reading
from airflow_provider_revox._internal.core.contact_gate import ContactPolicy, Screened, screen
from airflow_provider_revox._internal.core.redact import redact, redact_text
from airflow_provider_revox._internal.hooks.revox import RevoxHook

#: Rejected rows shown in the task log (the rejects file has them all).
LOGGED_REJECTS = 20


def policy(
    *,
    dial_do_not_contact: Any = False,
    skip_reached_human_within_days: Any = None,
    skip_called_within_hours: Any = None,
    skip_already_in_campaign: Any = False,
    task_id: str = "",
) -> ContactPolicy:
    """The gate's policy from operator arguments.

    Raises:
        ValueError: naming the argument, when the DAG is parsed.
    """
    try:
        return ContactPolicy(
            dial_do_not_contact=dial_do_not_contact,
            skip_reached_human_within_days=skip_reached_human_within_days,
            skip_called_within_hours=skip_called_within_hours,
            skip_already_in_campaign=skip_already_in_campaign,
        )
    except ValueError as error:
        raise ValueError(f"{task_id}: {error}" if task_id else str(error)) from None


def run(
    hook: RevoxHook,
    log: logging.Logger | Any,
    contacts: Sequence[Mapping[str, Any]],
    rules: ContactPolicy,
    *,
    now: datetime | None = None,
    campaign_name: str | None = None,
) -> Screened:
    """Read the phone history of ``contacts``' numbers once and screen them at ``now``.

    By default ``now`` is the API's clock as its answer reported it (the history's times are the
    API's), else the worker's.

    Raises:
        RevoxPhoneHistoryError: the history could not be read whole (nobody is dialled).
    """
    numbers = {str(contact["to_phone_number"]) for contact in contacts}
    history = hook.phone_history(numbers)
    log.info(
        "Phone history read: %d numbers in %d chunks (%d bytes); %d of this task's %d numbers are in it",
        history.numbers_scanned,
        history.chunks_read,
        history.bytes_read,
        len(history.entries),
        len(numbers),
    )
    moment = now if now is not None else hook.server_clock.now()
    result = screen(contacts, history.entries, rules, moment, campaign_name)
    for number in result.overridden:
        log.warning("Dialling %s although it is marked do-not-contact: dial_do_not_contact=True", number)
    (log.warning if result.skipped else log.info)("Do-not-contact gate: %s", result.summary())
    return result


def skipped_rejects(result: Screened, rows: Sequence[int], secrets: Sequence[str]) -> list[dict[str, Any]]:
    """The rejects file lines of the skipped contacts; ``rows`` gives each contact's input row."""
    return [
        {
            "row": rows[index] if index < len(rows) else index + 1,
            "input": redact(contact, secrets),
            "reason": f"skipped: {verdict.reason} ({verdict.detail})",
            "skipped": verdict.reason,
        }
        for index, contact, verdict in result.skipped
    ]


def write_rejects(
    log: logging.Logger | Any,
    target: str | ObjectStoragePath | None,
    rejects: Sequence[Mapping[str, Any]],
    secrets: Sequence[str],
) -> str | None:
    """Log the first rejects and write them all to ``target`` (if any); the path written, or None."""
    if not rejects:
        return None
    for reject in rejects[:LOGGED_REJECTS]:
        log.warning("Contact row %s rejected: %s", reject["row"], redact_text(str(reject["reason"]), secrets))
    if target is None:
        return None
    path = ObjectStoragePath(target)
    reading.write_rejects(path, rejects)
    log.warning("%d rejected rows written to %s", len(rejects), path)
    return str(path)


def read_contacts(op: Any, context: Any) -> tuple[reading.Sorted, Any]:
    """The checked contacts of a ``RevoxCreateCampaignOperator`` and where its rejects go.

    The rejects are written here only when the task fails (past ``max_rejected_rows``, or no valid
    contact); otherwise :func:`screen_contacts` writes them with the gate's skipped contacts.
    """
    secrets = op.hook.known_secrets()
    source: ObjectStoragePath | None = None
    if op.contacts_path is not None:
        source = ObjectStoragePath(op.contacts_path)
        rows: Any = reading.read_rows(source, reading.file_format(source, op.contacts_format))
    else:
        if isinstance(op.contacts, str | bytes) or not isinstance(op.contacts, Sequence):
            raise AirflowFailException(f"contacts must be a list of rows, not {type(op.contacts).__name__}")
        rows = op.contacts
    result = reading.sort_rows(
        rows,
        op.prompt_variable_columns,
        secrets,
        max_rejected=op.max_rejected_rows,
        progress=lambda so_far: op.log.info(
            "Read %d contact rows: %d contacts, %d rejected",
            so_far.rows,
            len(so_far.contacts),
            len(so_far.rejects),
        ),
    )
    op.log.info(
        "Read %d contact rows%s: %d contacts, %d rejected",
        result.rows,
        " (stopped early)" if result.stopped_early else "",
        len(result.contacts),
        len(result.rejects),
    )
    target = op.rejects_path or (reading.rejects_beside(source) if source is not None else None)
    if not result.stopped_early and result.contacts:
        return result, target
    shown = write_rejects(op.log, target, result.rejects, secrets)
    if result.stopped_early:
        raise AirflowFailException(
            f"more than max_rejected_rows={op.max_rejected_rows} contact rows rejected: the read "
            f"stopped at row {result.rows}" + (f"; see {shown}" if shown else "")
        )
    raise AirflowFailException("no valid contacts to create the campaign with")


def screen_contacts(op: Any, rows: reading.Sorted, target: Any) -> tuple[Screened, str | None]:
    """Run the gate over a campaign's contacts, write every reject (bad rows and skipped contacts).

    Raises:
        AirflowSkipException: every contact is skipped: no campaign is created.
        RevoxPhoneHistoryError: the history could not be read whole.
    """
    secrets = op.hook.known_secrets()
    screened = run(op.hook, op.log, rows.contacts, op.contact_policy, campaign_name=op.name)
    rejects = rows.rejects + skipped_rejects(screened, rows.contact_rows, secrets)
    shown = write_rejects(op.log, target, sorted(rejects, key=lambda reject: reject["row"]), secrets)
    if not screened.kept:
        raise AirflowSkipException(f"No campaign created: {screened.summary()}, none left to call")
    return screened, shown
