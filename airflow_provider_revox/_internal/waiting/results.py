"""A batch wait's result, small enough for XCom whatever the batch's size.

Up to ``max_ids_in_xcom`` orders, the result lists every completed and failed id, as it
always did. Above it, the full lists go to one JSON file (the sensor's ``ids_path``) and XCom
gets the counts, the first failed ids (failures are what people look at), and the file's URI
and sha256, so that a reader can tell the file is the one this wait wrote::

    {"total": 10000, "counts": {"completed": 9990, "errored": 10}, "completed_ratio": 0.999,
     "completed_count": 9990, "failed_count": 10, "failed": ["c17", ...],
     "ids_uri": "s3://bucket/revox/run-1/ids.json", "ids_sha256": "9f2c..."}

The file holds ids and counts only: never a field of a call. Pure: encoding, decoding and
checks; the sensor writes the file and the export reads it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from airflow_provider_revox.exceptions import RevoxConfigError, RevoxIdsFileError

#: Orders a wait may list in XCom before its id lists go to ``ids_path``.
DEFAULT_MAX_IDS_IN_XCOM = 1000
#: Failed ids a small result still lists (the rest are in the file).
MAX_FAILED_IN_XCOM = 100
#: Marks the file's layout, so a reader refuses any other JSON.
IDS_FILE_FORMAT = "revox-call-ids/1"
#: The key that tells a small result from a full one.
IDS_URI = "ids_uri"

_LISTS = ("completed", "failed")


def validate_max_ids(value: Any) -> int | None:
    """Check ``max_ids_in_xcom``: a whole number of at least 0, or None for no limit.

    Raises:
        RevoxConfigError: naming the value.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RevoxConfigError(f"max_ids_in_xcom must be a whole number of at least 0 or None, not {value!r}")
    return value


def ids_go_to_file(total: int, max_ids: int | None) -> bool:
    """Whether a wait on ``total`` orders writes its id lists to a file instead of XCom.

    Decided by the number of orders, known before the first request, so a DAG always gets
    the same shape of result whatever the orders do.
    """
    return max_ids is not None and total > max_ids


def check_capacity(total: int, max_ids: int | None, has_path: bool) -> None:
    """Refuse a wait whose ids would not fit in XCom and that has nowhere else to put them.

    Raises:
        RevoxConfigError: when ``total`` exceeds ``max_ids`` and no ``ids_path`` is given.
    """
    if ids_go_to_file(total, max_ids) and not has_path:
        raise RevoxConfigError(
            f"{total} call orders are more than max_ids_in_xcom={max_ids} and no ids_path is set: "
            "give ids_path (a file URI such as s3://bucket/revox/{{ run_id }}/ids.json) for the "
            "id lists, or raise max_ids_in_xcom (None keeps every id in XCom)"
        )


def encode_ids_file(result: Mapping[str, Any]) -> bytes:
    """The file's bytes for a full result: the format marker, the counts and the id lists."""
    document = {
        "format": IDS_FILE_FORMAT,
        "total": result["total"],
        "counts": result["counts"],
        "completed": result["completed"],
        "failed": result["failed"],
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def sha256_of(data: bytes) -> str:
    """The hex sha256 a small result records for its file."""
    return hashlib.sha256(data).hexdigest()


def small_result(result: Mapping[str, Any], *, uri: str, sha256: str) -> dict[str, Any]:
    """What XCom keeps of a full result whose id lists went to the file at ``uri``."""
    failed = list(result["failed"])
    return {
        "total": result["total"],
        "counts": dict(result["counts"]),
        "completed_ratio": result["completed_ratio"],
        "completed_count": len(result["completed"]),
        "failed_count": len(failed),
        "failed": failed[:MAX_FAILED_IN_XCOM],
        IDS_URI: uri,
        "ids_sha256": sha256,
    }


def is_file_result(value: Any) -> bool:
    """Whether ``value`` is a small result whose id lists are in a file."""
    return isinstance(value, Mapping) and IDS_URI in value


def _bad(uri: str, problem: str) -> RevoxIdsFileError:
    return RevoxIdsFileError(f"the call ids file {uri} {problem}; rerun the sensor that wrote it")


def decode_ids_file(data: bytes, reference: Mapping[str, Any], uri: str) -> dict[str, Any]:
    """The full id lists of a small result, from its file's bytes, checked against the result.

    The file must be the one the result names: the same sha256 and the same counts.

    Args:
        data: the file's bytes.
        reference: the small result (``ids_sha256``, ``total``, ``completed_count``, ``failed_count``).
        uri: the file's URI, for messages.

    Returns:
        ``{"total", "counts", "completed", "failed"}``.

    Raises:
        RevoxIdsFileError: naming the file and what is wrong with it.
    """
    expected = reference.get("ids_sha256")
    if not isinstance(expected, str):
        raise _bad(uri, "is named by a result without ids_sha256")
    if sha256_of(data) != expected:
        raise _bad(uri, "does not match the sensor's result (another sha256: overwritten or damaged)")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise _bad(uri, "is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != IDS_FILE_FORMAT:
        raise _bad(uri, f"is not a {IDS_FILE_FORMAT} file")
    lists: dict[str, list[str]] = {}
    for key in _LISTS:
        ids = document.get(key)
        if not isinstance(ids, list) or not all(isinstance(call_id, str) for call_id in ids):
            raise _bad(uri, f"has no list of {key} ids")
        lists[key] = ids
    if (
        document.get("total") != reference.get("total")
        or len(lists["completed"]) != reference.get("completed_count")
        or len(lists["failed"]) != reference.get("failed_count")
    ):
        raise _bad(uri, "lists other counts than the sensor's result")
    return {"total": document["total"], "counts": document.get("counts"), **lists}
