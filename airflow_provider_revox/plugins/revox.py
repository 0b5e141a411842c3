"""The provider's Airflow plugin: Revox call-completion webhooks on the Airflow api-server.

Registered through the ``airflow.plugins`` entry point, so installing the provider is enough: the
api-server serves ``POST /revox/webhooks?token=<token>``. A webhook with the Revox connection's
``webhook_token`` becomes one asset event on the Asset the ``RevoxCallEventTrigger`` watcher
feeds (``[revox] webhook_asset``, default ``revox_calls_finished``), naming the calls the body
names; the consumer reads them from the API by id. See the Webhooks guide.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_revox._internal.webhooks.airflow import plugin_app

__all__ = ["RevoxWebhookPlugin"]


class RevoxWebhookPlugin(AirflowPlugin):
    """Serves the Revox webhook endpoint (``/revox/webhooks?token=<token>``) on the api-server."""

    name = "revox_webhooks"
    fastapi_apps: list[Any] = [plugin_app()]
