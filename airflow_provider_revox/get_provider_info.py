"""Provider metadata read by Airflow's ProvidersManager through the entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_revox import __version__

DEFAULT_BASE_URL = "https://www.getrevox.com/api"


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow discovers (no Airflow imports: it runs at discovery)."""
    return {
        "package-name": "airflow-provider-revox",
        "name": "Revox",
        "description": "Revox AI phone calls: place call orders, wait for them and move transcripts "
        "and structured_output into your warehouse.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Revox",
                "external-doc-url": "https://www.getrevox.com",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Revox", "python-modules": ["airflow_provider_revox.hooks.revox"]}],
        "sensors": [
            {
                "integration-name": "Revox",
                "python-modules": ["airflow_provider_revox.sensors.revox"],
            }
        ],
        "operators": [
            {
                "integration-name": "Revox",
                "python-modules": ["airflow_provider_revox.operators.revox"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Revox",
                "python-modules": ["airflow_provider_revox.triggers.revox"],
            }
        ],
        "extra-links": ["airflow_provider_revox.operators.revox.RevoxCallLink"],
        "connection-types": [
            {
                "connection-type": "revox",
                "hook-class-name": "airflow_provider_revox.hooks.revox.RevoxHook",
                "hook-name": "Revox",
                "conn-fields": {
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 60},
                        "description": "Overall deadline of one request, in seconds (at most 3600).",
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "schema": {"type": ["integer", "null"], "default": 5},
                        "description": "Retries on 429, 5xx, timeouts and dropped connections.",
                    },
                    "max_requests_per_second": {
                        "label": "Max requests per second",
                        "schema": {"type": ["number", "null"], "minimum": 0},
                        "description": "The most this process sends, shared by every task and trigger "
                        "of this connection in it. Empty or 0: no ceiling.",
                    },
                    "adaptive_rate": {
                        "label": "Adaptive rate",
                        "schema": {"type": ["boolean", "null"], "default": True},
                        "description": "A 429 answer cuts this process's request rate, which then grows "
                        "back slowly: processes sharing one Revox account converge to its limit.",
                    },
                    "allow_insecure_http": {
                        "label": "Allow plain http",
                        "schema": {"type": ["boolean", "null"], "default": False},
                        "description": "Send the API key over plain http:// to a host that is not "
                        "loopback. Only on a network you trust.",
                    },
                    "max_response_mb": {
                        "label": "Max response size (MiB)",
                        "schema": {"type": ["number", "null"], "default": 64, "exclusiveMinimum": 0},
                        "description": "Largest API answer read into memory; a larger one fails the "
                        "request with a clear error.",
                    },
                    "max_recording_mb": {
                        "label": "Max recording size (MiB)",
                        "schema": {"type": ["number", "null"], "default": 2048, "exclusiveMinimum": 0},
                        "description": "Largest recording downloaded.",
                    },
                    "download_timeout": {
                        "label": "Download timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 900, "exclusiveMinimum": 0},
                        "description": "Overall deadline of one recording download.",
                    },
                    "batch_polls": {
                        "label": "Batch polls",
                        "schema": {"type": ["boolean", "null"], "default": True},
                        "description": "Fetch the call orders that waits poll at about the same moment "
                        "with one POST /call/search instead of one GET each. Falls back to GETs by itself "
                        "when the API has no usable search.",
                    },
                    "webhook_base_url": {
                        "label": "Webhook base URL",
                        "schema": {"type": ["string", "null"]},
                        "description": "The https URL the Airflow api-server is reached at from the "
                        "internet; Revox's webhooks go to <this>/revox/webhooks?token=<token>.",
                    },
                    "webhook_token": {
                        "label": "Webhook token",
                        "schema": {"type": ["string", "null"]},
                        "description": "The secret in the webhook URL (RevoxHook.new_webhook_token() "
                        "makes one). Empty: the webhook endpoint refuses every call.",
                    },
                    "webhook_previous_token": {
                        "label": "Previous webhook token",
                        "schema": {"type": ["string", "null"]},
                        "description": "Still accepted while a rotation reaches Revox; empty it after.",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "port"],
                    "relabeling": {"password": "API key", "host": "Base URL"},
                    "placeholders": {"host": DEFAULT_BASE_URL, "password": "Your Revox API key"},
                },
            }
        ],
    }
