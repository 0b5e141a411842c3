"""The campaign endpoints of the simulated API (served by :class:`~.server.SimulatorServer`).

* ``POST /campaigns`` -> ``{"campaign": {...}}``: every contact becomes an order in ``not_launched``;
* ``GET /campaigns`` -> ``{"campaigns": [...]}`` (only the ``CampaignBook.list_limit`` newest when set);
  ``GET /campaigns/{id}`` -> ``{"campaign": {...}}``
  with ``status``, ``is_cancelled``, ``row_stats`` and ``funnel_stats``;
* ``GET /campaigns/{id}/rows`` -> ``{"rows": [...]}``, each row with its order as ``call``;
* ``GET /campaigns/{id}/statistics`` -> ``{"statistics": {...}}``;
* ``POST /campaigns/{id}/launch-calls`` (``mode``, ``selection``, ``scheduled_at``) ->
  ``{"launched": n, "skipped": {...}, "session": null}``;
* ``POST /campaigns/{id}/cancel``, ``/pause``, ``/resume`` -> ``{"success": true}``;
* ``PATCH /assistants/{id}`` (``webhook_url``) -> ``{"assistant": {...}}``, for the webhook sender.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from airflow_provider_revox._simulator.campaign_view import render_campaign, render_rows, render_statistics
from airflow_provider_revox._simulator.engine import SimulatorEngine
from airflow_provider_revox._simulator.replies import Reply, body_fields, json_body, json_reply

Handler = Callable[[Request, str | None, bytes], Reply]
#: What a ``POST /campaigns`` body may set; other keys are ignored.
CAMPAIGN_FIELDS = (
    "name",
    "assistant_id",
    "contacts",
    "call_retry_config",
    "from_phone_number",
    "max_concurrent_calls",
)
LAUNCH_FIELDS = ("mode", "selection", "scheduled_at")


def campaign_routes(engine: SimulatorEngine) -> list[tuple[str, str, str, Handler]]:
    """``(path, endpoint name, method, handler)`` of every campaign endpoint."""
    book = engine.campaigns

    def one(request: Request) -> Any:
        return book.campaign(request.path_params["campaign_id"])

    def create(request: Request, call_id: str | None, body: bytes) -> Reply:
        payload = json_body(body)
        campaign_id = book.create(**body_fields(payload, CAMPAIGN_FIELDS, book.create))
        return json_reply(
            200, {"campaign": render_campaign(engine, book.campaign(campaign_id), engine.moment())}
        )

    def listing(request: Request, call_id: str | None, body: bytes) -> Reply:
        moment = engine.moment()
        ids = book.ids()
        if book.list_limit is not None:
            ids = ids[-book.list_limit :] if book.list_limit > 0 else []
        found = [render_campaign(engine, book.campaign(i), moment) for i in ids]
        return json_reply(200, {"campaigns": found})

    def view(name: str, render: Callable[..., Any]) -> Handler:
        def handle(request: Request, call_id: str | None, body: bytes) -> Reply:
            return json_reply(200, {name: render(engine, one(request), engine.moment())})

        return handle

    def launch(request: Request, call_id: str | None, body: bytes) -> Reply:
        payload = json_body(body)
        fields = body_fields(payload, LAUNCH_FIELDS, book.launch)
        return json_reply(200, book.launch(request.path_params["campaign_id"], **fields))

    def action(name: str) -> Handler:
        def act(request: Request, call_id: str | None, body: bytes) -> Reply:
            getattr(book, name)(request.path_params["campaign_id"])
            return json_reply(200, {"success": True})

        return act

    def assistant(request: Request, call_id: str | None, body: bytes) -> Reply:
        # PATCH /assistants/{id}: only ``webhook_url`` is kept (the webhook sender reads it).
        url = json_body(body).get("webhook_url")
        assistant_id = request.path_params["assistant_id"]
        if isinstance(url, str) and url:
            engine.assistant_webhooks[assistant_id] = url
        return json_reply(200, {"assistant": {"id": assistant_id, "webhook_url": url}})

    base = "/api/campaigns"
    return [
        ("/api/assistants/{assistant_id}", "PATCH /assistants/{id}", "PATCH", assistant),
        (base, "POST /campaigns", "POST", create),
        (base, "GET /campaigns", "GET", listing),
        (f"{base}/{{campaign_id}}", "GET /campaigns/{id}", "GET", view("campaign", render_campaign)),
        (f"{base}/{{campaign_id}}/rows", "GET /campaigns/{id}/rows", "GET", view("rows", render_rows)),
        (
            f"{base}/{{campaign_id}}/statistics",
            "GET /campaigns/{id}/statistics",
            "GET",
            view("statistics", render_statistics),
        ),
        (f"{base}/{{campaign_id}}/launch-calls", "POST /campaigns/{id}/launch-calls", "POST", launch),
        *(
            (f"{base}/{{campaign_id}}/{name}", f"POST /campaigns/{{id}}/{name}", "POST", action(name))
            for name in ("cancel", "pause", "resume")
        ),
    ]
