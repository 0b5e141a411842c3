"""The ids file: where a large ``RevoxCallsSensor`` result keeps its id lists, read back by the export.

Up to ``max_ids_in_xcom`` orders, the sensor's result lists every completed and failed id, as it
always did. Above it, the full lists go to one JSON file (the sensor's ``ids_path``) and XCom
gets the counts, the first failed ids (failures are what people look at), and the file's URI
and sha256, so that a reader can tell the file is the one this wait wrote::

    {"total": 10000, "counts": {"completed": 9990, "errored": 10}, "completed_ratio": 0.999,
     "completed_count": 9990, "failed_count": 10, "failed": ["c17", ...],
     "ids_uri": "s3://bucket/revox/run-1/ids.json", "ids_sha256": "9f2c..."}

The file holds ids and counts only: never a field of a call. Everything about it lives here:
when it is written, the check of ``ids_path``, its encoding, the write, the read and its checks.
:class:`~airflow_provider_revox.sensors.revox.RevoxCallsSensor` calls :func:`write_ids_file`;
:class:`~airflow_provider_revox.operators.revox.RevoxCallsToStorageOperator` calls
:func:`ids_from_files`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_revox._internal.core.redact import redact_text
from airflow_provider_revox._internal.export.staging import is_local
from airflow_provider_revox._internal.waiting.ids import IDS_URI
from airflow_provider_revox.exceptions import RevoxConfigError, RevoxIdsFileError

#: Orders a wait may list in XCom before its id lists go to ``ids_path``.
DEFAULT_MAX_IDS_IN_XCOM = 1000
#: Failed ids a small result still lists (the rest are in the file).
MAX_FAILED_IN_XCOM = 100
#: Marks the file's layout, so a reader refuses any other JSON.
IDS_FILE_FORMAT = "revox-call-ids/1"

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


def ids_target(ids_path: Any, total: int, max_ids: int | None) -> ObjectStoragePath:
    """Where the id lists of a wait on ``total`` orders go; refuses a wait that has nowhere to put them.

    Args:
        ids_path: the sensor's ``ids_path``: a file URI, an ObjectStoragePath, or None.
        total: the number of orders waited on.
        max_ids: the sensor's ``max_ids_in_xcom``.

    Raises:
        RevoxConfigError: naming the problem, before any request.
    """
    path = ids_path
    if isinstance(path, str):
        path = path.strip() or None
    check_capacity(total, max_ids, path is not None)
    if isinstance(path, ObjectStoragePath):
        return path
    if not isinstance(path, str):
        raise RevoxConfigError(f"ids_path must be a file URI or an ObjectStoragePath, not {path!r}")
    try:
        target = ObjectStoragePath(path)
        target.fs  # noqa: B018  (a scheme without its provider fails here, not after the wait)
    except ValueError as error:
        raise RevoxConfigError(f"ids_path {redact_text(path)!r} is not a usable URI: {error}") from None
    if not target.protocol and not target.is_absolute():
        # Relative to the worker's directory: the export, on another worker, would not find it.
        raise RevoxConfigError(
            f"ids_path {redact_text(path)!r} must be absolute or a URI such as file:///..."
        )
    return target


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


def _write_whole(path: ObjectStoragePath, data: bytes) -> None:
    """Write ``data`` so that a reader sees the previous file or the new one, never a part of one.

    A sibling is written, then renamed over ``path``: an atomic rename on a local disk, and a
    single object put on an object store (whose rename is a copy of a complete object).
    """
    if is_local(path):
        # Object stores have no directories, and making one there could create a bucket.
        path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        staging.write_bytes(data)
        staging.rename(path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def write_ids_file(path: ObjectStoragePath, result: Mapping[str, Any]) -> dict[str, Any]:
    """Write a full result's id lists to ``path`` (whole); return the small result XCom keeps."""
    data = encode_ids_file(result)
    _write_whole(path, data)
    return small_result(result, uri=str(path), sha256=sha256_of(data))


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


def read_ids_file(result: Mapping[str, Any]) -> dict[str, Any]:
    """The id lists of a ``RevoxCallsSensor`` result that keeps them in a file, checked.

    Raises:
        RevoxIdsFileError: the file is missing, unreadable, or not the one the result names.
    """
    uri = result[IDS_URI]
    if not isinstance(uri, str) or not uri.strip():
        raise RevoxIdsFileError(f"call_ids: the sensor result's {IDS_URI} is not a URI: {uri!r}")
    shown = redact_text(uri)
    try:
        data = ObjectStoragePath(uri).read_bytes()
    except FileNotFoundError:
        problem = "does not exist"
    except (OSError, ValueError) as error:
        problem = f"cannot be read: {redact_text(str(error))}"
    else:
        return decode_ids_file(data, result, shown)
    raise _bad(shown, problem)


def ids_from_files(value: Any) -> Any:
    """``call_ids`` with each sensor result that keeps its ids in a file replaced by those ids."""
    if is_file_result(value):
        return read_ids_file(value)
    if isinstance(value, list):
        return [ids_from_files(item) for item in value]
    return value
