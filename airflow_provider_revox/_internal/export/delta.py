"""Delta Lake tables (``file_format="delta"``): each load merged into four transactional tables.

Layout: ``<base>/transcripts``, ``<base>/structured_output``, ``<base>/calls`` and
``<base>/attempts``, each a Delta table (Parquet files and a ``_delta_log``), written with the
``deltalake`` package (the Rust implementation; the ``[delta]`` extra), on a local path or on S3
or an S3-compatible store with the keys of an Airflow ``aws`` connection.

* **One commit per table and load.** The rows of a load are fetched and staged on local disk
  first; only then is each table changed, by one ``MERGE`` committed atomically. A failure or a
  kill before a table's commit leaves that table at its previous version: a reader of any Delta
  client sees the version before the load or the version after, never part of it.
* **Merged on natural keys**: ``calls`` on ``call_id``; ``attempts`` on ``call_id`` and
  ``attempt_id``; ``transcripts`` on ``call_id``, ``attempt_id`` and ``turn_index``;
  ``structured_output`` on ``call_id``. A call delivered twice updates its rows, never
  duplicates them; a transcript or attempt row of a re-delivered call that its new version no
  longer has is deleted in the same commit.
* **Order**: transcripts, structured_output, attempts, then calls last. Delta has no commit
  across tables: a failure between two tables' commits leaves the earlier ones with the load's
  rows; the retry merges the same rows again (merging is idempotent) and the tables agree.
* **Watermark in the same commit.** An incremental export writes its watermark in the custom
  metadata of the commit that adds the rows it covers (the ``calls`` table's, or the last table
  written when ``calls`` is not exported), and reads it back from that table's history at the
  next run: the data and the watermark move together or not at all.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from airflow_provider_revox._internal.core.redact import redact_text
from airflow_provider_revox._internal.export.fetch import FetchedCall
from airflow_provider_revox._internal.export.loads import Load
from airflow_provider_revox._internal.export.run import ExportOptions, stage_tables
from airflow_provider_revox._internal.hooks.revox import RevoxHook

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

DELTA = "delta"
DELTA_INSTALL_HINT = "pip install 'airflow-provider-revox[delta]'"
#: The columns that name one row of each table: a row with the same values is updated, not added.
MERGE_KEYS: Mapping[str, tuple[str, ...]] = {
    "transcripts": ("call_id", "attempt_id", "turn_index"),
    "structured_output": ("call_id",),
    "attempts": ("call_id", "attempt_id"),
    "calls": ("call_id",),
}
#: Tables whose rows of a re-delivered call are replaced as a whole (rows it no longer has go).
CHILD_TABLES = frozenset({"transcripts", "attempts"})
#: The order tables are committed in: ``calls`` last, with the watermark.
COMMIT_ORDER = ("transcripts", "structured_output", "attempts", "calls")
#: Custom commit metadata: the load's name, and the watermark under this prefix and its key.
LOAD_KEY = "revox.load"
WATERMARK_PREFIX = "revox.watermark."
#: Commits read back when looking for the last watermark.
HISTORY_LIMIT = 1000


def import_deltalake() -> ModuleType:
    """Import ``deltalake``, the optional ``[delta]`` extra.

    Raises:
        ImportError: naming the command that installs the extra.
    """
    try:
        import deltalake
    except ImportError as exc:
        raise ImportError(
            f"Delta export needs deltalake, which is not installed: {DELTA_INSTALL_HINT}"
        ) from exc
    return deltalake


@dataclass(frozen=True)
class DeltaTarget:
    """Where the Delta tables live: a base URI and the store's options (never shown: keys)."""

    base: str
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)

    def table_uri(self, table: str) -> str:
        """The URI of one table: ``<base>/<table>``."""
        return f"{self.base.rstrip('/')}/{table}"

    def secrets(self) -> tuple[str, ...]:
        """The values an error message must never show."""
        hidden = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
        return tuple(v for k, v in self.storage_options.items() if k in hidden and v)


def storage_options(connection: Any) -> dict[str, str]:
    """``deltalake``'s S3 options from an Airflow ``aws`` connection.

    Login and password are the key id and secret; the extra may give ``endpoint_url`` (an
    S3-compatible server; ``http://`` is allowed then), ``region_name``, ``aws_session_token``
    and ``delta_storage_options`` (more of deltalake's options, as given).
    """
    extra = connection.extra_dejson if connection is not None else {}
    options: dict[str, str] = {}
    if connection is not None and connection.login:
        options["AWS_ACCESS_KEY_ID"] = str(connection.login)
    if connection is not None and connection.password:
        options["AWS_SECRET_ACCESS_KEY"] = str(connection.password)
    if extra.get("aws_session_token"):
        options["AWS_SESSION_TOKEN"] = str(extra["aws_session_token"])
    endpoint = extra.get("endpoint_url") or extra.get("host")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = str(endpoint)
        if str(endpoint).startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    region = extra.get("region_name") or (extra.get("config_kwargs") or {}).get("region_name")
    options["AWS_REGION"] = str(region or "us-east-1")
    # Anything else deltalake takes (a locking provider, ``AWS_S3_ALLOW_UNSAFE_RENAME`` for a
    # store without conditional writes, ...), as the connection's extra ``delta_storage_options``.
    more = extra.get("delta_storage_options")
    if isinstance(more, Mapping):
        options.update({str(key): str(value) for key, value in more.items()})
    return options


def delta_target(destination: ObjectStoragePath, conn_id: str | None) -> DeltaTarget:
    """The Delta tables' base for ``destination``: a local path, or ``s3://`` with ``conn_id``'s keys."""
    protocol = destination.protocol or "file"
    if protocol == "file":
        path = destination.path
        return DeltaTarget(path if path.startswith("/") else "/" + path)
    if protocol not in ("s3", "s3a"):
        raise ValueError(f"file_format='delta' writes to a local path or to s3://, not {protocol}://")
    connection = None
    if conn_id:
        from airflow.sdk import BaseHook

        connection = BaseHook.get_connection(conn_id)
    return DeltaTarget(f"s3://{destination.path.lstrip('/')}", storage_options(connection))


def watermark_table(tables: Sequence[str]) -> str:
    """The table whose commits carry the watermark: ``calls``, else the last one committed."""
    ordered = [name for name in COMMIT_ORDER if name in tables]
    return "calls" if "calls" in ordered else ordered[-1]


def read_watermark(target: DeltaTarget, table: str, key: str) -> Any:
    """The watermark stored under ``key`` by the newest commit of ``table`` that has one; None if none."""
    deltalake = import_deltalake()
    uri = target.table_uri(table)
    if not deltalake.DeltaTable.is_deltatable(uri, storage_options=target.storage_options):
        return None
    history = deltalake.DeltaTable(uri, storage_options=target.storage_options).history(HISTORY_LIMIT)
    for commit in sorted(history, key=lambda c: int(c.get("version", -1)), reverse=True):
        stored = commit.get(WATERMARK_PREFIX + key)
        if isinstance(stored, str):
            return json.loads(stored)
    return None


class _Scratch:
    """Local scratch space for one load's staged tables; nothing here is published as such."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def stage(self, relative: str) -> Path:
        path = self._folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def _recording(calls: Iterable[FetchedCall], seen: list[str]) -> Iterator[FetchedCall]:
    for fetched in calls:
        seen.append(fetched.call_id)
        yield fetched


def _merge(
    target: DeltaTarget, table: str, path: Path, call_ids: Sequence[str], metadata: Mapping[str, str]
) -> int:
    """Merge the staged Parquet file of ``table`` into its Delta table in one commit; its new version."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    deltalake = import_deltalake()
    uri, options = target.table_uri(table), target.storage_options
    staged = pq.ParquetFile(path)
    # Streamed batch by batch: memory does not grow with the load.
    source = pa.RecordBatchReader.from_batches(staged.schema_arrow, staged.iter_batches())
    properties = deltalake.CommitProperties(custom_metadata=dict(metadata))
    if not deltalake.DeltaTable.is_deltatable(uri, storage_options=options):
        deltalake.write_deltalake(
            uri, source, mode="append", storage_options=options, commit_properties=properties
        )
        return int(deltalake.DeltaTable(uri, storage_options=options).version())
    keys = MERGE_KEYS[table]
    merger = (
        deltalake.DeltaTable(uri, storage_options=options)
        .merge(
            source,
            predicate=" AND ".join(f"t.{key} = s.{key}" for key in keys),
            source_alias="s",
            target_alias="t",
            merge_schema=True,
            commit_properties=properties,
        )
        .when_matched_update_all()
        .when_not_matched_insert_all()
    )
    if table in CHILD_TABLES and call_ids:
        # Rows of this load's calls that the new version of the call no longer has.
        listed = ", ".join("'" + call_id.replace("'", "''") + "'" for call_id in call_ids)
        merger = merger.when_not_matched_by_source_delete(predicate=f"t.call_id IN ({listed})")
    merger.execute()
    return int(deltalake.DeltaTable(uri, storage_options=options).version())


def export_to_delta(
    hook: RevoxHook,
    calls: Sequence[str] | Iterable[FetchedCall],
    target: DeltaTarget,
    options: ExportOptions,
    load: Load,
    watermark: Callable[[], tuple[str, Any]] | None = None,
) -> dict[str, Any]:
    """Fetch every call, stage its rows, then merge each table in one commit; return a summary.

    Args:
        hook: the hook to fetch with.
        calls: ids, or calls already fetched.
        target: where the tables live.
        options: the tables and transcript source (``file_format`` is ignored: staged as Parquet).
        load: the task run this load belongs to, recorded in each commit.
        watermark: called once every call is staged: the state key and the watermark to write in
            the watermark table's commit (incremental exports).

    Returns:
        ``calls``, ``rows`` (per table), ``versions`` (each table's version after the load;
        empty when there were no calls: nothing is committed then) and ``schemas`` (each
        table's columns).
    """
    import_deltalake()
    seen: list[str] = []
    if isinstance(calls, Sequence) and all(isinstance(item, str) for item in calls):
        seen.extend(str(item) for item in calls)
        source: Sequence[str] | Iterable[FetchedCall] = calls
    else:
        source = _recording(calls, seen)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="revox-delta-") as scratch:
        staged = stage_tables(
            hook, source, _Scratch(Path(scratch)), replace(options, file_format="parquet"), documents=False
        )
        if staged.calls == 0:
            return {"calls": 0, "rows": staged.rows, "versions": {}, "schemas": staged.schemas}
        call_ids = sorted(set(seen))
        metadata = {LOAD_KEY: load.name}
        carrier = watermark_table(tuple(staged.names))
        versions: dict[str, int] = {}
        for table in COMMIT_ORDER:
            if table not in staged.names:
                continue
            extra = dict(metadata)
            if table == carrier and watermark is not None:
                key, value = watermark()
                extra[WATERMARK_PREFIX + key] = json.dumps(value, sort_keys=True)
            try:
                versions[table] = _merge(target, table, Path(scratch, staged.names[table]), call_ids, extra)
            except Exception as error:
                # The store's error may quote a request: keep the keys out of logs and XCom.
                text = redact_text(str(error), target.secrets())
                raise RuntimeError(f"Delta commit to the {table} table failed: {text}") from None
    return {"calls": staged.calls, "rows": staged.rows, "versions": versions, "schemas": staged.schemas}
