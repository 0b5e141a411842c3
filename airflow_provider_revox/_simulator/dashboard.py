"""The page the "Revox call" extra link opens when the connection points at the simulator.

The real dashboard lives at ``<origin>/dashboard/calls/<id>``; the simulator answers the same
path with a small HTML page, so the link works offline. Every value is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any


def _cell(value: Any) -> str:
    return escape("" if value is None else str(value))


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
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body><h1>{title}</h1><p>Revox simulator</p>{body}</body></html>"
    )
