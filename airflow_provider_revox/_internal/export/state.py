"""Where an incremental export keeps its watermark: the asset state store of its Asset (Airflow 3.3+)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset

from airflow_provider_revox._internal.core import compat
from airflow_provider_revox._internal.export.search import CallSearch
from airflow_provider_revox.exceptions import RevoxConfigError

_WATERMARK = "incremental=True keeps its watermark in the asset state store, which"


def require_asset_state_store() -> None:
    """Raise a clear error when this Airflow has no asset state store.

    Raises:
        RevoxConfigError: Airflow older than 3.3.
    """
    if not compat.has_asset_state_store():
        raise RevoxConfigError(
            compat.needs_airflow_3_3(_WATERMARK) + "; export by search without incremental"
        )


def asset_state(context: Mapping[str, Any], asset: Asset) -> Any:
    """The asset state store accessor of ``asset`` (an outlet of the task).

    Raises:
        RevoxConfigError: the context has no asset state store (Airflow older than 3.3).
    """
    stores = compat.asset_state_store(context)
    if stores is None:
        raise RevoxConfigError(compat.needs_airflow_3_3(_WATERMARK))
    return stores[asset]


def watermark_key(search: CallSearch) -> str:
    """The state key of one filter set's watermark: changing the filters starts a new one."""
    text = json.dumps(search.to_dict(), sort_keys=True, separators=(",", ":"))
    return "revox_watermark_" + hashlib.sha256(text.encode()).hexdigest()[:16]


def call_documents(manifest: Mapping[str, Any]) -> int:
    """How many calls a manifest's set holds: its ``calls`` when it has no call documents, else
    how many call documents (``calls/<id>.json``) it lists."""
    if isinstance(manifest.get("calls"), int):
        return int(manifest["calls"])
    return sum(1 for entry in manifest["files"] if str(entry["path"]).startswith("calls/"))
