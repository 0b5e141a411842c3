"""The simulator's HTML pages: an index of its orders and campaigns, and one page per order.

The real dashboard lives at ``<origin>/dashboard/calls/<id>``; the simulator answers the same
path with a small HTML page, so the "Revox call" extra link works offline. ``/`` and
``/dashboard`` list what the simulator holds, each order linked to its page. Every value is
escaped.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

from airflow_provider_revox._simulator.campaign_view import render_campaign

if TYPE_CHECKING:
    from airflow_provider_revox._simulator.engine import SimulatorEngine

#: How many orders the index page lists, newest first.
INDEX_CALLS = 500


def _cell(value: Any) -> str:
    return escape("" if value is None else str(value))


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body><h1>{title}</h1>{body}</body></html>"
    )


def _table(headings: tuple[str, ...], rows: list[str]) -> str:
    head = "".join(f"<th>{heading}</th>" for heading in headings)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def index_page(
    now: str, speed: str, calls: list[dict[str, Any]], total_calls: int, campaigns: list[dict[str, Any]]
) -> str:
    """The simulator's front page: its clock, then its orders (newest first) and campaigns.

    Args:
        now: the simulator's time (ISO 8601); ``speed`` its clock speed (0 for a manual clock).
        calls: the newest orders as ``GET /call/{id}`` shows them; ``total_calls`` how many exist.
        campaigns: the campaigns as ``GET /campaigns/{id}`` shows them.
    """
    call_rows = [
        "<tr>"
        f'<td><a href="/dashboard/calls/{escape(call["id"], quote=True)}">'
        f"<code>{_cell(call['id'])}</code></a></td>"
        + "".join(
            f"<td>{_cell(call.get(key))}</td>"
            for key in ("status", "to_phone_number", "created_at", "calls_count", "outcome")
        )
        + "</tr>"
        for call in calls
    ]
    shown = f"the newest {len(calls)} of {total_calls}" if len(calls) < total_calls else str(total_calls)
    campaign_rows = [
        "<tr>"
        + "".join(f"<td>{_cell(campaign.get(key))}</td>" for key in ("id", "name", "status"))
        + f"<td>{_cell((campaign.get('row_stats') or {}).get('total'))}</td></tr>"
        for campaign in campaigns
    ]
    body = (
        f"<p>Revox simulator: the API is under <code>/api</code>; simulated time <code>{_cell(now)}</code>"
        f" (clock speed {_cell(speed)}; 0 is a manual clock). Request counts: "
        '<a href="/api/_simulator/stats">/api/_simulator/stats</a>.</p>'
        f"<h2>Calls ({_cell(shown)})</h2>"
        + (
            _table(("Call", "Status", "To", "Created", "Attempts", "Outcome"), call_rows)
            if calls
            else "<p>No calls yet: place one with <code>POST /api/call</code>.</p>"
        )
        + f"<h2>Campaigns ({len(campaigns)})</h2>"
        + (
            _table(("Campaign", "Name", "Status", "Rows"), campaign_rows)
            if campaigns
            else "<p>No campaigns.</p>"
        )
    )
    return _page("Revox simulator", body)


def engine_index(engine: SimulatorEngine, speed: str) -> str:
    """:func:`index_page` of what ``engine`` holds now, read at one moment."""
    newest = engine.search_calls(page_size=INDEX_CALLS)
    calls = [engine.get_call(call_id, newest.at) for call_id in newest.call_ids]
    book = engine.campaigns
    campaigns = [render_campaign(engine, book.campaign(i), newest.at) for i in book.ids()]
    return index_page(newest.at.isoformat(), speed, calls, newest.total_count, campaigns)


def call_page(call_id: str, call: dict[str, Any] | None) -> str:
    """An HTML page about one order: id, status, outcome and each attempt (None: no such order)."""
    title = f"Revox call {_cell(call_id)}"
    if call is None:
        body = f"<p>No call with id <code>{_cell(call_id)}</code> on this simulator.</p>"
    else:
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{_cell(attempt.get(key))}</td>"
                for key in ("id", "status", "result", "started_at", "ended_at", "end_reason", "dial_error")
            )
            + "</tr>"
            for attempt in call.get("call_attempts") or []
        )
        body = (
            f"<dl><dt>Id</dt><dd><code>{_cell(call.get('id'))}</code></dd>"
            f"<dt>Status</dt><dd>{_cell(call.get('status'))}</dd>"
            f"<dt>To</dt><dd>{_cell(call.get('to_phone_number'))}</dd>"
            f"<dt>Next dial</dt><dd>{_cell(call.get('next_call_at'))}</dd>"
            f"<dt>Outcome</dt><dd>{_cell(call.get('outcome'))}</dd>"
            f"<dt>Attempts</dt><dd>{_cell(call.get('calls_count'))}</dd></dl>"
            "<table><tr><th>Attempt</th><th>Status</th><th>Result</th><th>Started</th>"
            f"<th>Ended</th><th>End reason</th><th>Dial error</th></tr>{rows}</table>"
        )
    return _page(title, f'<p><a href="/dashboard">Revox simulator</a></p>{body}')
