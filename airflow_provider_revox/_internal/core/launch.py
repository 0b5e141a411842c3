"""Which rows of a campaign a launch still owes: pure decisions over the rows the API lists.

A launch (``POST /campaigns/{id}/launch-calls``) dials the rows its selection names. Several
launchers may share a campaign, and a try may die or meet a run of 429s after another launcher
started some rows, so "has any row left ``not_launched``?" says nothing about this launch's own
rows. The rows a launch owes are those its row selection names that are still ``not_launched``,
read from ``GET /campaigns/{id}/rows``; each try launches exactly those (by id, with ``only``)
and reads the rows again to check that none of them is still waiting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_revox._internal.core.campaign import CampaignRow
from airflow_provider_revox._internal.core.statuses import NOT_LAUNCHED

#: Rows named in a message before "and N more".
NAMED_ROWS = 20


@dataclass(frozen=True)
class Owed:
    """The rows a launch's selection names, sorted by what the API says of them.

    Attributes:
        owed: call ids of the selected rows still ``not_launched``: what this launch must start.
        started: call ids of the selected rows that have left ``not_launched`` (launched by an
            earlier try or by another launcher, or cancelled): never launched again.
        orderless: row ids of selected rows the API lists without a call order: they cannot be
            named in a launch, so a launch cannot account for them.
    """

    owed: tuple[str, ...]
    started: tuple[str, ...]
    orderless: tuple[str, ...]


def selected(rows: Iterable[CampaignRow], call_ids: Sequence[str], rows_mode: str) -> list[CampaignRow]:
    """The rows a row selection names: ``only`` those ``call_ids``, or ``all_except`` them."""
    named = set(call_ids)
    only = rows_mode == "only"
    return [row for row in rows if (row.call_id in named) == only]


def owed_rows(rows: Iterable[CampaignRow], call_ids: Sequence[str], rows_mode: str) -> Owed:
    """Split the selected rows into those still owed a launch, those started, those without an order."""
    owed: list[str] = []
    started: list[str] = []
    orderless: list[str] = []
    for row in selected(rows, call_ids, rows_mode):
        if row.call is None:
            orderless.append(row.id)
        elif row.call.status == NOT_LAUNCHED:
            owed.append(row.call.id)
        else:
            started.append(row.call.id)
    return Owed(tuple(owed), tuple(started), tuple(orderless))


def still_waiting(rows: Iterable[CampaignRow], asked: Iterable[str]) -> list[str]:
    """The call ids among ``asked`` whose row the API still lists as ``not_launched``.

    A row the API no longer lists at all counts as still waiting: nothing shows it was started.
    """
    wanted = set(asked)
    seen: set[str] = set()
    waiting: list[str] = []
    for row in rows:
        call_id = row.call_id
        if call_id in wanted:
            seen.add(call_id)
            if row.call is not None and row.call.status == NOT_LAUNCHED:
                waiting.append(call_id)
    return waiting + sorted(wanted - seen)


def launch_filters(filters: Mapping[str, Any]) -> dict[str, Any]:
    """The user's filters with ``statuses`` set to ``not_launched``.

    The API then starts a named row only if it is still waiting when the launch reaches it, so a
    row another launcher started between our read and our launch is never dialled twice.
    """
    return {**filters, "statuses": [NOT_LAUNCHED]}


def name_rows(call_ids: Sequence[str]) -> str:
    """``a, b, c`` or ``a, b, ... and 7 more``: the rows a message names, bounded."""
    shown = ", ".join(call_ids[:NAMED_ROWS])
    rest = len(call_ids) - NAMED_ROWS
    return f"{shown} and {rest} more" if rest > 0 else shown
