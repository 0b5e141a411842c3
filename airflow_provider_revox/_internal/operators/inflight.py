"""Find the order of a ``POST /call`` still in flight when its task was killed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_provider_revox._internal.core import durable
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox.exceptions import RevoxError


class _Log(Protocol):
    def info(self, message: str, /, *args: Any) -> Any: ...
    def warning(self, message: str, /, *args: Any) -> Any: ...


def find_in_flight(conn_id: str, arguments: Mapping[str, Any], identity: str, log: _Log) -> str:
    """The order a POST still unanswered when the task was killed placed, found by its key, or "".

    Only an order carrying this task's identity is returned (never another DAG's). A hook of its
    own: the task's hook is in the middle of that POST.
    """
    hook = RevoxHook(revox_conn_id=conn_id)
    key = arguments["metadata"][durable.METADATA_KEY]
    try:
        for call in hook.iter_calls(to_phone_number=arguments["phone_number"]):
            if durable.matches(call.metadata, key, identity, durable.SCOPE_TASK):
                log.info("Task killed while placing: call %s found by its idempotency key", call.id)
                return call.id
    except (RevoxError, AirflowNotFoundException) as error:
        log.warning("Task killed while placing; its order could not be looked up: %s", error)
        return ""
    finally:
        hook.close()
    log.warning("Task killed while placing; no order with idempotency key %s is visible", key)
    return ""
