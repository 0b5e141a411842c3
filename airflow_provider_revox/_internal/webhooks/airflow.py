"""The webhook endpoint's Airflow side, in the api-server process: the tokens, and the asset event.

The tokens come from the Revox connection (``[revox] webhook_conn_id``, default
``revox_default``), read through Airflow's secrets backends as the api-server reads any
connection. The event is recorded as Airflow's own REST API records one (``POST
/api/v2/assets/events``): :meth:`AssetManager.register_asset_change` in a session of the
metadata database, on the Asset ``[revox] webhook_asset`` (default ``revox_calls_finished``, the
Asset the example DAG's ``RevoxCallEventTrigger`` watcher feeds). The event's extra has the shape
of the watcher's events, ``{"payload": {"calls": [...], "count": n}}``, marked ``"from_webhook":
true``; its entries carry ``"announced": true`` and no trusted time.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_revox._internal.client.settings import webhook_tokens_from
from airflow_provider_revox._internal.webhooks.app import CachedTokens, Recorder

#: The connection whose tokens the endpoint accepts (``[revox] webhook_conn_id``).
DEFAULT_CONN_ID = "revox_default"
#: The Asset the events are recorded on (``[revox] webhook_asset``).
DEFAULT_ASSET = "revox_calls_finished"

log = logging.getLogger(__name__)


def _option(name: str, default: str) -> str:
    from airflow.configuration import conf

    # Also read from AIRFLOW__REVOX__<NAME>, as any Airflow option.
    value = conf.get("revox", name, fallback=None)
    return str(value) if value else default


def connection_tokens(conn_id: str | None = None) -> tuple[str, ...]:
    """The webhook tokens of the Revox connection, read as the api-server reads connections."""
    from airflow.models.connection import Connection
    from airflow.sdk.log import mask_secret

    chosen = conn_id or _option("webhook_conn_id", DEFAULT_CONN_ID)
    conn = Connection.get_connection_from_secrets(chosen)
    extra = conn.extra_dejson if conn.extra else {}
    tokens = webhook_tokens_from(chosen, extra if isinstance(extra, dict) else {})
    for token in tokens:
        mask_secret(token)
    return tokens


def event_extra(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The asset event's extra: the watcher's shape, ``{"payload": {"calls", "count"}}``."""
    return {"from_webhook": True, "payload": {"calls": calls, "count": len(calls)}}


def asset_recorder(asset_name: str | None = None) -> Recorder:
    """Record one asset event naming ``calls`` on the Asset, in the metadata database."""
    chosen = asset_name or _option("webhook_asset", DEFAULT_ASSET)
    warned: set[str] = set()

    def record(calls: list[dict[str, Any]]) -> bool:
        from airflow.assets.manager import asset_manager
        from airflow.models.asset import AssetModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        try:
            with create_session() as session:
                asset = session.scalar(select(AssetModel).where(AssetModel.name == chosen).limit(1))
                if asset is None:
                    if chosen not in warned:
                        warned.add(chosen)
                        log.warning(
                            "Revox webhooks: no Asset named %r (is the DAG watching it deployed?); the "
                            "watcher's poll names these calls instead",
                            chosen,
                        )
                    return True
                event = asset_manager.register_asset_change(
                    asset=asset, extra=event_extra(calls), source_is_api=True, session=session
                )
                return event is not None
        except Exception:
            log.exception("Revox webhooks: the asset event could not be stored")
            return False

    return record


def plugin_app() -> dict[str, Any]:
    """The plugin's ``fastapi_apps`` entry: the endpoint under ``/revox``, for the api-server."""
    from airflow_provider_revox._internal.webhooks.app import create_app

    return {
        "app": create_app(CachedTokens(connection_tokens), asset_recorder()),
        "url_prefix": "/revox",
        "name": "Revox webhooks",
    }
