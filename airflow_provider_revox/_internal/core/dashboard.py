"""Where a call order is shown in the Revox dashboard: pure, for the extra link and the triggers."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

DEFAULT_DASHBOARD = "https://www.getrevox.com"
#: Where the task stores the call it worked on (``{"call_id", "url"}``), for the "Revox call" link.
LINK_XCOM_KEY = "revox_call_link"
#: Where Airflow 3 keeps the link's resolved URL: a worker's task runner stores it as the task
#: ends (``_link_<link class>``) and the api-server shows only that. A task the triggerer ends
#: never runs that step, so its trigger stores the URL there itself.
RESOLVED_LINK_XCOM_KEY = "_link_RevoxCallLink"


def dashboard_origin(base_url: str | None) -> str:
    """The dashboard's origin for an API base URL: the same URL without its ``/api`` path.

    ``https://www.getrevox.com/api`` gives ``https://www.getrevox.com``; a simulator at
    ``http://127.0.0.1:8089/api`` gives ``http://127.0.0.1:8089``. Credentials in the URL are
    dropped.
    """
    if not base_url or "://" not in base_url:
        return DEFAULT_DASHBOARD
    parts = urlsplit(base_url.strip())
    host = parts.netloc.rpartition("@")[2]
    segments = [s for s in parts.path.split("/") if s]
    if "api" in segments:
        segments = segments[: len(segments) - 1 - segments[::-1].index("api")]
    path = "".join(f"/{s}" for s in segments)
    return f"{parts.scheme}://{host}{path}"


def call_dashboard_url(call_id: str, base_url: str | None = None) -> str:
    """The dashboard page of a call order, e.g. ``https://www.getrevox.com/dashboard/calls/<call_id>``."""
    return f"{dashboard_origin(base_url)}/dashboard/calls/{quote(str(call_id), safe='')}"
