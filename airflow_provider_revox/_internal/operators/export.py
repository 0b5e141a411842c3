"""The operator that exports call orders to object storage (see :mod:`airflow_provider_revox.export`)."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import Asset, AssetAlias, BaseOperator, Context, ObjectStoragePath

from airflow_provider_revox._internal.core.redact import redact_text
from airflow_provider_revox._internal.export.delta import (
    DELTA,
    DELTA_INSTALL_HINT,
    delta_target,
    export_to_delta,
    import_deltalake,
    read_watermark,
    watermark_table,
)
from airflow_provider_revox._internal.export.fetch import FetchedCall, Sleep
from airflow_provider_revox._internal.export.ids_file import ids_from_files
from airflow_provider_revox._internal.export.incremental import NewCalls
from airflow_provider_revox._internal.export.loads import LOADS_TABLE, Load, published_mark
from airflow_provider_revox._internal.export.recordings import RECORDINGS_DIR
from airflow_provider_revox._internal.export.run import TABLES, ExportOptions, check_tables, export_calls
from airflow_provider_revox._internal.export.search import (
    CallSearch,
    calls_by_search,
    rendered_search,
    search_argument,
)
from airflow_provider_revox._internal.export.staging import MANIFEST, storage_uri
from airflow_provider_revox._internal.export.state import (
    asset_state,
    call_documents,
    require_asset_state_store,
    watermark_key,
)
from airflow_provider_revox._internal.export.tables import check_transcript_source
from airflow_provider_revox._internal.export.writers import (
    FILE_FORMATS,
    PARQUET_INSTALL_HINT,
    check_file_format,
    import_pyarrow,
)
from airflow_provider_revox._internal.hooks.revox import RevoxHook
from airflow_provider_revox._internal.operators.lineage import export_lineage, openlineage_facets
from airflow_provider_revox._internal.waiting.cursor import Watermark, later_mark
from airflow_provider_revox._internal.waiting.ids import (
    is_templated,
    normalize_call_ids,
)

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage


def _plain_uri(destination: str | ObjectStoragePath) -> str:
    """The destination's URI without a connection id in it, for Asset URIs."""
    if isinstance(destination, ObjectStoragePath):
        return storage_uri(destination).rstrip("/")
    parts = urlsplit(destination)
    if not parts.scheme:
        return f"file://{PurePosixPath(destination)}"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")


#: Items read per request from a mapped task's results.
_XCOM_PAGE = 1000


def _read_mapped(value: Any) -> Any:
    """Read a mapped task's lazy results page by page, up to the length Airflow reports.

    Iterating the lazy sequence asks for one item after the last to find its end, and
    Airflow logs that miss as an ERROR ("XCom not found ... offset=N") on every run.
    """
    if isinstance(value, list | tuple):
        return [_read_mapped(item) for item in value]
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        length = len(value)
        return [item for start in range(0, length, _XCOM_PAGE) for item in value[start : start + _XCOM_PAGE]]
    return value


class RevoxCallsToStorageOperator(BaseOperator):
    """Export call orders to object storage: raw calls, transcripts, structured output, recordings.

    Each run adds one load under ``destination`` (any scheme Airflow's object storage knows:
    ``file://``, ``s3://``, ``gs://``, ...), a folder ``load=<run id made safe>-<hash>/`` listed in
    ``_loads.jsonl`` once complete (see :func:`~airflow_provider_revox.export.read_loads`):
    a rerun or retry of the same DAG run replaces its own load, never another's, and a run with
    no calls adds nothing. In the load's folder:

    * ``calls/<call_id>.json``: each call as the API returned it, redacted;
    * ``transcripts.<ext>``: one row per transcript turn;
    * ``structured_output.<ext>``: one row per call with one typed column per field of the
      assistants' ``structured_output_config`` and a ``validation_errors`` column;
    * with ``include_recordings``, ``recordings/<call_id>/<attempt_id>.<ext>``, streamed.

    Every file is staged and only published once every call was fetched; the load is published
    with ``_manifest.json`` (each file's size, sha256 and row count) and ``_SUCCESS`` last, and
    listed in the base's table of loads (a reader checks a load with
    :func:`~airflow_provider_revox.export.read_published` and lists them with
    :func:`~airflow_provider_revox.export.read_loads`). Rows follow the order of ``call_ids``, so
    a rerun writes the same files. Returns a small summary (counts, the tables' URIs, the
    manifest's URI; nothing per call, so XCom stays small) and emits the tables as Asset events.

    With ``file_format="delta"`` the four tables are Delta tables under ``destination``, each
    load merged on the tables' natural keys in one commit per table.

    Args:
        call_ids: the call orders (templated): an id, a list of ids, a sensor's summary or a list
            of them, a multi-call sensor's result (its ``completed`` and ``failed`` lists); a result
            that keeps its ids in a file (``ids_uri``) is read from that file, checked against
            its sha256 and counts before any request. Read in
            searches of up to 100 ids; only an id a search does not return is fetched alone.
        search: instead of ``call_ids``, the orders matching these filters (a
            :class:`~airflow_provider_revox._internal.export.search.CallSearch` or a dict: ``campaign_ids``,
            ``statuses``, ``outcomes``, ``results``, ``assistant_ids``, ``directions``,
            ``to_phone_number``, ``query``), read page by page (templated: each value may be a
            template, or the whole an XComArg). Checked when the DAG is parsed, and once
            rendered before any request: a value still holding ``{{`` is refused by name.
        incremental: with ``search``, export only the orders that reached a terminal status
            since the last successful run, each once across runs, reruns and retries. The
            watermark lives in the asset state store (Airflow 3.3+) of the destination's Asset,
            written only once the files are published; with ``delta``, in the custom metadata
            of the commit that adds the rows it covers.
        tables: the tables to write: ``transcripts`` and ``structured_output`` by default, and
            the warehouse-ready ``calls`` (one row per order) and ``attempts`` (one per attempt).
        call_documents: also write each order's redacted document as ``calls/<call id>.json``
            (the default). False writes the tables only (about 0.3 ms of disk work less per
            call); the ``calls`` table then holds the orders and its ``document_file`` is empty.
            Delta tables never have documents.
        destination: a directory URI or an :class:`~airflow.sdk.ObjectStoragePath` (templated).
        file_format: ``jsonl``, ``json``, ``parquet`` (needs the ``[parquet]`` extra) or ``delta``
            (the ``[delta]`` extra; a local path or ``s3://``, keys from an ``aws`` connection).
        revox_conn_id: the ``revox`` connection.
        destination_conn_id: the connection of the object store, if it needs one (templated);
            for ``delta`` on ``s3://``, an ``aws`` connection (key id, secret, ``endpoint_url``).
        include_recordings: also download each attempt's recording.
        max_concurrency: calls fetched (and recordings downloaded) at the same time.
        transcript_source: ``"best"``, ``"live"`` or ``"post_call"``, as for the results operator.
        sleep: how to pause between fetch rounds after transient failures (tests pass a no-op).
        **kwargs: passed to :class:`~airflow.sdk.BaseOperator`.
    """

    template_fields: Sequence[str] = (
        "call_ids",
        "search",
        "destination",
        "destination_conn_id",
        "revox_conn_id",
    )
    ui_color = "#e8f1fe"

    def __init__(
        self,
        *,
        call_ids: Any = None,
        destination: str | ObjectStoragePath,
        file_format: str = "jsonl",
        revox_conn_id: str = RevoxHook.default_conn_name,
        destination_conn_id: str | None = None,
        include_recordings: bool = False,
        max_concurrency: int = 8,
        transcript_source: str = "best",
        sleep: Sleep = time.sleep,
        search: CallSearch | Mapping[str, Any] | None = None,
        incremental: bool = False,
        tables: Sequence[str] = TABLES,
        call_documents: bool = True,
        **kwargs: Any,
    ) -> None:
        """Check the arguments and declare the tables as outlets when the destination is fixed."""
        super().__init__(**kwargs)
        if file_format != DELTA and file_format not in FILE_FORMATS:
            formats = ", ".join((*FILE_FORMATS, DELTA))
            raise ValueError(f"file_format must be one of {formats}, not {file_format!r}")
        self.file_format = file_format if file_format == DELTA else check_file_format(file_format)
        # The format is not templated: a missing extra is named when the DAG is parsed. Looked up,
        # not imported, so parsing stays cheap.
        needs = {"parquet": ("pyarrow", PARQUET_INSTALL_HINT), DELTA: ("deltalake", DELTA_INSTALL_HINT)}
        if file_format in needs and importlib.util.find_spec(needs[file_format][0]) is None:
            package, hint = needs[file_format]
            raise ValueError(f"{self.task_id}: file_format={file_format!r} needs {package}: {hint}")
        if file_format == DELTA and include_recordings:
            raise ValueError(
                "file_format='delta' writes the four tables only: include_recordings needs a file format"
            )
        if (call_ids is None) == (search is None):
            raise ValueError("give either call_ids or search, not both and not neither")
        self.search = search_argument(search)
        if incremental and self.search is None:
            raise ValueError("incremental=True needs search=: it exports the matching calls that ended since")
        self.incremental = bool(incremental)
        self.tables = check_tables(tables)
        if not isinstance(call_documents, bool):
            raise ValueError(f"call_documents must be True or False, not {call_documents!r}")
        self.call_documents = call_documents
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a whole number of at least 1, not {max_concurrency!r}")
        literal = [call_ids] if isinstance(call_ids, str) else call_ids
        if (
            call_ids is not None
            and isinstance(literal, list | tuple)
            and not any(is_templated(v) for v in literal)
        ):
            normalize_call_ids(literal)  # plain ids: report a bad one when the DAG is parsed
        self.call_ids = call_ids
        self.destination = destination
        self.revox_conn_id = revox_conn_id
        self.destination_conn_id = destination_conn_id
        self.include_recordings = include_recordings
        self.max_concurrency = max_concurrency
        self.transcript_source = check_transcript_source(transcript_source)
        self.sleep = sleep
        # Known destination: declare the tables. Templated: an alias the run fills in.
        if not is_templated(str(destination) if isinstance(destination, ObjectStoragePath) else destination):
            self.outlets = [*self.outlets, *self._table_assets(_plain_uri(destination))]
            if self.incremental and not self.is_delta:
                self.outlets = [*self.outlets, self.state_asset]
        elif self.incremental:
            raise ValueError("incremental=True needs a fixed destination: its Asset keeps the watermark")
        else:
            self.outlets = [*self.outlets, AssetAlias(self.asset_alias_name)]
        if self.incremental and not self.is_delta:
            require_asset_state_store()  # Delta tables keep the watermark in their own commits

    @property
    def is_delta(self) -> bool:
        """Whether the tables are written as Delta tables rather than files of loads."""
        return self.file_format == DELTA

    @property
    def asset_alias_name(self) -> str:
        """Name of the Asset alias that collects the tables of a templated destination."""
        return f"revox-export:{self.dag_id}.{self.task_id}"

    @property
    def state_asset(self) -> Asset:
        """The Asset of the destination itself, whose asset state store keeps the watermark."""
        return Asset(uri=_plain_uri(self.destination))

    def _table_assets(self, base_uri: str) -> list[Asset]:
        if self.is_delta:
            return [Asset(uri=f"{base_uri}/{table}") for table in self.tables]
        return [Asset(uri=f"{base_uri}/{table}.{self.file_format}") for table in self.tables]

    def _destination_path(self) -> ObjectStoragePath:
        destination = self.destination
        if isinstance(destination, ObjectStoragePath):
            if self.destination_conn_id and destination.conn_id != self.destination_conn_id:
                return ObjectStoragePath(str(destination), conn_id=self.destination_conn_id)
            return destination
        if not isinstance(destination, str) or not destination.strip():
            raise ValueError(f"destination must be a URI or an ObjectStoragePath, not {destination!r}")
        return ObjectStoragePath(destination.strip(), conn_id=self.destination_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        """Fetch every call, stage every file, publish them as one load; return a small summary.

        The summary's size does not grow with the calls: ``destination`` (the base), ``load``
        (the load's folder name; None when there were no calls: nothing was published),
        ``calls``, ``files``, ``recordings``, ``rows`` (per table), ``tables`` (table name to the
        URI of this load's file), ``manifest`` (the URI of this load's ``_manifest.json``) and
        ``loads`` (the URI of ``_loads.jsonl``). Delta: ``destination``, ``load``, ``calls``,
        ``rows``, ``tables`` (table name to the Delta table's URI) and ``versions`` (each
        table's version after this load's commit).
        """
        if self.file_format == "parquet":
            import_pyarrow()  # fail before fetching anything when the extra is missing
        if self.is_delta:
            import_deltalake()
        destination = self._destination_path()
        shown = redact_text(str(destination))
        options = ExportOptions(
            file_format=self.file_format,
            transcript_source=self.transcript_source,
            include_recordings=self.include_recordings,
            max_concurrency=self.max_concurrency,
            sleep=self.sleep,
            tables=self.tables,
            call_documents=self.call_documents,
        )
        load = self._load(context)
        extra: dict[str, Any] = {}
        search = rendered_search(self.search)  # checked before any request
        # Ids kept in a sensor's file are read and checked before any request.
        call_ids: list[str] = []
        if search is None:
            call_ids = normalize_call_ids(ids_from_files(_read_mapped(self.call_ids)))
        with RevoxHook(self.revox_conn_id) as hook:
            calls: Sequence[str] | Iterator[FetchedCall]
            if search is None:
                self.log.info(
                    "Exporting %d Revox call(s) to %s as %s", len(call_ids), shown, self.file_format
                )
                calls = call_ids
            elif not self.incremental:
                self.log.info("Exporting the Revox calls matching %s to %s", search.to_dict(), shown)
                calls = (
                    FetchedCall(call.id, call) for call in calls_by_search(hook, search.filters(), self.sleep)
                )
            if search is not None and self.incremental:
                result, extra = self._export_new(hook, context, destination, options, load, search)
            elif self.is_delta:
                result = self._export_delta(hook, calls, destination, options, load)
            else:
                result = export_calls(hook, calls, destination, options, load)
            # Lineage names each table by its identity across loads, as the Asset outlets do.
            self.revox_lineage = export_lineage(
                hook.base_url,
                call_ids if search is None else (),
                storage_uri(destination),
                result,
                search=search.filters() if search is not None else None,
            )
        alias_outlet = AssetAlias(self.asset_alias_name)
        if alias_outlet in self.outlets:  # the destination was templated: name the tables now
            alias = context["outlet_events"][alias_outlet]
            for asset in self._table_assets(storage_uri(destination).rstrip("/")):
                alias.add(asset)
        if self.is_delta:
            return {**result.pop("summary"), **extra}
        return {**self._summary(destination, load, result), **extra}

    def _load(self, context: Context) -> Load:
        """The load this task run writes: its DAG run's, so a retry or rerun replaces only its own."""
        ti = context.get("ti")
        if ti is None:  # called outside a task run: a load of its own, named by the time
            moment = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M%S.%fZ")
            return Load(getattr(self, "dag_id", "") or "", self.task_id, f"direct__{moment}")
        map_index = getattr(ti, "map_index", -1)
        return Load(ti.dag_id, ti.task_id, ti.run_id, -1 if map_index is None else int(map_index))

    def _summary(
        self, destination: ObjectStoragePath, load: Load, manifest: dict[str, Any]
    ) -> dict[str, Any]:
        files = manifest["files"]
        count = call_documents(manifest)
        published = manifest.get("load") is not None
        # The tables only: a dict over every file would hold an entry per call document.
        rows = {entry["path"]: entry["rows"] for entry in files if "rows" in entry}
        tables = {name: f"{name}.{self.file_format}" for name in self.tables}
        self.log.info(
            "Wrote %d file(s) for %d call(s) under %s; rows: %s",
            len(files),
            count,
            redact_text(str(destination / load.name)) if published else redact_text(str(destination)),
            ", ".join(f"{name} {rows.get(path) or 0}" for name, path in tables.items()),
        )
        folder = destination / load.name
        return {
            "destination": str(destination),
            "load": load.name if published else None,
            "calls": count,
            "files": len(files),
            "recordings": sum(1 for entry in files if entry["path"].startswith(f"{RECORDINGS_DIR}/")),
            "rows": {name: rows.get(path, 0) for name, path in tables.items()},
            "tables": {name: str(folder / path) for name, path in tables.items()} if published else {},
            "manifest": str(folder / MANIFEST) if published else None,
            "loads": str(destination / LOADS_TABLE),
        }

    def _export_delta(
        self,
        hook: RevoxHook,
        calls: Sequence[str] | Iterator[FetchedCall],
        destination: ObjectStoragePath,
        options: ExportOptions,
        load: Load,
        watermark: Callable[[], tuple[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Merge the calls into the Delta tables; return a lineage manifest with the summary in it."""
        target = delta_target(destination, self.destination_conn_id)
        done = export_to_delta(hook, calls, target, options, load, watermark)
        self.log.info(
            "Merged %d call(s) into the Delta tables under %s (versions %s)",
            done["calls"],
            redact_text(str(destination)),
            done["versions"],
        )
        summary = {
            "destination": str(destination),
            "load": load.name if done["versions"] else None,
            "calls": done["calls"],
            "rows": done["rows"],
            "tables": {name: target.table_uri(name) for name in self.tables},
            "versions": done["versions"],
        }
        # Lineage sees each Delta table as one dataset with the columns this load wrote.
        schemas = done["schemas"] if done["versions"] else {}
        return {"files": [{"path": name} for name in schemas], "schemas": schemas, "summary": summary}

    def _export_new(
        self,
        hook: RevoxHook,
        context: Context,
        destination: ObjectStoragePath,
        options: ExportOptions,
        load: Load,
        search: CallSearch,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Export the calls that ended since the watermark; advance it with (or after) the data."""
        key = watermark_key(search)
        if self.is_delta:
            target = delta_target(destination, self.destination_conn_id)
            start = Watermark.from_state(read_watermark(target, watermark_table(self.tables), key))
        else:
            store = asset_state(context, self.state_asset)
            # A run killed after publishing its load and before storing its mark left the mark in
            # that load: take whichever is further along, so those calls are not exported twice.
            start = later_mark(
                Watermark.from_state(store.get(key)), Watermark.from_state(published_mark(destination, key))
            )
        self.log.info(
            "Exporting the Revox calls matching %s that ended since %s to %s",
            search.to_dict(),
            start.ended_at.isoformat() if start.ended_at else "the beginning",
            redact_text(str(destination)),
        )
        new = NewCalls(hook, search.filters(), start, sleep=self.sleep)
        found = (FetchedCall(call.id, call) for call in new)
        if self.is_delta:
            # The watermark goes in the same commit as the rows it covers.
            result = self._export_delta(
                hook, found, destination, options, load, lambda: (key, new.watermark.to_state())
            )
        else:
            result = export_calls(
                hook, found, destination, options, load, lambda: (key, new.watermark.to_state())
            )
            # Only now, with the files published: a failed run leaves the watermark where it was.
            store.set(key, new.watermark.to_state())
        after = new.watermark
        return result, {"watermark": after.to_state()["ended_at"], "sorted": new.sorted}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any] | None:
        """OpenLineage's view of the run: the calls read, and each file written (tables with schemas).

        None without the OpenLineage provider.
        """
        return openlineage_facets(getattr(self, "revox_lineage", None))
