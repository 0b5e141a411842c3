"""Operators that move what Revox calls produced into XCom and into object storage."""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx
from airflow.sdk import Asset, AssetAlias, BaseOperator, Context, ObjectStoragePath
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_revox import statuses
from airflow_provider_revox.exceptions import (
    TRANSIENT_ERRORS,
    RevoxAuthError,
    RevoxError,
    RevoxNotFoundError,
)
from airflow_provider_revox.export.tables import (
    TRANSCRIPT_SCHEMA,
    StructuredOutputTable,
    call_document,
    check_transcript_source,
    structured_output_record,
    transcript_rows,
    transcript_turns,
)
from airflow_provider_revox.export.writers import (
    FILE_FORMATS,
    Staging,
    check_file_format,
    import_pyarrow,
    open_row_writer,
    storage_uri,
)
from airflow_provider_revox.hooks import revox as hook_module
from airflow_provider_revox.hooks.revox import RevoxHook, validate_call_id
from airflow_provider_revox.links import RevoxCallLink
from airflow_provider_revox.models import Call, CallAttempt
from airflow_provider_revox.redact import redact, redact_text
from airflow_provider_revox.waiting.events import describe_end
from airflow_provider_revox.waiting.ids import is_templated, normalize_call_ids

DEFAULT_RECORDING_EXTENSION = "wav"
#: Rounds of the hook's own retries a call gets before an export gives up on it.
FETCH_ROUNDS = 3
#: Pause before the second round; the third waits twice as long.
FETCH_ROUND_PAUSE_SECONDS = 5.0
log = logging.getLogger(__name__)
_EXTENSION = re.compile(r"^[a-z0-9]{2,5}$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
# Leading bytes of the audio containers recordings come in, for URLs without a file extension.
_AUDIO_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"RIFF", "wav"),
    (0, b"OggS", "ogg"),
    (0, b"fLaC", "flac"),
    (0, b"ID3", "mp3"),
    (0, b"\xff\xfb", "mp3"),
    (0, b"\xff\xf3", "mp3"),
    (0, b"\x1a\x45\xdf\xa3", "webm"),
    (4, b"ftyp", "m4a"),
)


def _fetch_call(hook: RevoxHook, call_id: str) -> Call:
    """Fetch a call; a failure names the call (and fails for good when retrying cannot help).

    The hook retries each request; a call that still fails transiently after that is asked
    again a few rounds later, so one unlucky call does not fail a ten-thousand-call export.
    """
    for round_number in range(1, FETCH_ROUNDS + 1):
        try:
            return hook.get_call(call_id)
        except (RevoxNotFoundError, RevoxAuthError) as error:
            raise AirflowFailException(f"Revox call {call_id!r} could not be fetched: {error}") from error
        except TRANSIENT_ERRORS as error:
            if round_number == FETCH_ROUNDS:
                raise AirflowException(
                    f"Revox call {call_id!r} could not be fetched in {FETCH_ROUNDS} rounds: {error}"
                ) from error
            pause = FETCH_ROUND_PAUSE_SECONDS * round_number
            log.warning("Revox call %s: %s; asking again in %.0f s", call_id, error, pause)
            hook_module.retry_sleep(pause)
        except RevoxError as error:
            raise AirflowException(f"Revox call {call_id!r} could not be fetched: {error}") from error
    raise AssertionError("unreachable")  # pragma: no cover


class RevoxCallResultsOperator(BaseOperator):
    """Fetch one call order's results into XCom: transcript, structured output and a summary.

    Pushes the XCom keys ``transcript`` (a list of turns with ``attempt_id``, ``turn_index``,
    ``role``, ``content``, ``tool_name``, ``tool_arguments``, ``tool_is_error``; oldest attempt
    first) and ``structured_output`` (a mapping), and returns a summary with ``call_id``,
    ``status``, ``outcome``, ``structured_output`` and ``turns`` (the number of turns).
    Everything is redacted: credentials in the call never reach XCom. Stores the "Revox call"
    extra link.

    Args:
        call_id: the call order (templated).
        revox_conn_id: the ``revox`` connection.
        transcript_source: ``"best"`` (each attempt's post-call transcript when present, else
            its live one), ``"live"`` or ``"post_call"``.
        require_completed: fail (without retries) when the order's status is not ``completed``.
        **kwargs: passed to :class:`~airflow.sdk.BaseOperator`.
    """

    template_fields: Sequence[str] = ("call_id", "revox_conn_id")
    operator_extra_links = (RevoxCallLink(),)
    ui_color = "#e8f1fe"

    def __init__(
        self,
        *,
        call_id: str,
        revox_conn_id: str = RevoxHook.default_conn_name,
        transcript_source: str = "best",
        require_completed: bool = True,
        **kwargs: Any,
    ) -> None:
        """Check the arguments that are known before templates render."""
        super().__init__(**kwargs)
        if not is_templated(call_id):
            validate_call_id(call_id)
        self.call_id = call_id
        self.revox_conn_id = revox_conn_id
        self.transcript_source = check_transcript_source(transcript_source)
        self.require_completed = require_completed

    def execute(self, context: Context) -> dict[str, Any]:
        """Fetch the call, push ``transcript`` and ``structured_output``, return the summary."""
        call_id = validate_call_id(self.call_id)
        with RevoxHook(self.revox_conn_id) as hook:
            secrets = hook.known_secrets()
            RevoxCallLink.persist(context, call_id=call_id, base_url=hook.base_url)
            call = _fetch_call(hook, call_id)
        if self.require_completed and call.status != statuses.COMPLETED:
            raise AirflowFailException(
                f"Revox call {call_id!r} is not completed (status {call.status!r}): {describe_end(call)}"
            )
        turns = transcript_turns(call, self.transcript_source, secrets)
        output: dict[str, Any] = redact(call.result_structured_output, secrets)
        ti = context["ti"]
        ti.xcom_push(key="transcript", value=turns)
        ti.xcom_push(key="structured_output", value=output)
        self.log.info(
            "Revox call %s is %s: %d transcript turn(s), %d structured output field(s)",
            call_id,
            call.status,
            len(turns),
            len(output),
        )
        return {
            "call_id": call_id,
            "status": call.status,
            "outcome": call.outcome,
            "structured_output": output,
            "turns": len(turns),
        }


def _plain_uri(destination: str | ObjectStoragePath) -> str:
    """The destination's URI without a connection id in it, for Asset URIs."""
    if isinstance(destination, ObjectStoragePath):
        return storage_uri(destination).rstrip("/")
    parts = urlsplit(destination)
    if not parts.scheme:
        return f"file://{PurePosixPath(destination)}"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")


@dataclass
class _Fetched:
    call_id: str
    call: Call
    recordings: list[str]


def recording_extension(url: str, first_bytes: bytes = b"") -> str:
    """The file extension of a recording: from its URL path, else its first bytes, else ``wav``."""
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower().lstrip(".")
    if _EXTENSION.match(suffix):
        return suffix
    for offset, signature, extension in _AUDIO_SIGNATURES:
        if first_bytes[offset : offset + len(signature)] == signature:
            return extension
    return DEFAULT_RECORDING_EXTENSION


def _safe_name(text: str) -> str:
    name = _UNSAFE_NAME.sub("_", text).lstrip(".")
    return name or "_"


class RevoxCallsToStorageOperator(BaseOperator):
    """Export call orders to object storage: raw calls, transcripts, structured output, recordings.

    Writes under ``destination`` (any scheme Airflow's object storage knows: ``file://``,
    ``s3://``, ``gs://``, ...):

    * ``calls/<call_id>.json``: each call as the API returned it, redacted;
    * ``transcripts.<ext>``: one row per transcript turn;
    * ``structured_output.<ext>``: one row per call with one typed column per field of the
      assistants' ``structured_output_config`` and a ``validation_errors`` column;
    * with ``include_recordings``, ``recordings/<call_id>/<attempt_id>.<ext>``, streamed.

    Every file is staged and only published once every call was fetched, so a failure leaves
    the previous export untouched; rows follow the order of ``call_ids``, so a rerun writes the
    same files. Returns the written URIs and emits the tables as Asset events.

    Args:
        call_ids: the call orders (templated): an id, a list of ids, a sensor's summary or a list
            of them, a multi-call sensor's result (see :func:`normalize_call_ids`).
        destination: a directory URI or an :class:`~airflow.sdk.ObjectStoragePath` (templated).
        file_format: ``jsonl``, ``json`` or ``parquet`` (needs the ``[parquet]`` extra).
        revox_conn_id: the ``revox`` connection.
        destination_conn_id: the connection of the object store, if it needs one (templated).
        include_recordings: also download each attempt's recording.
        max_concurrency: calls fetched (and recordings downloaded) at the same time.
        transcript_source: ``"best"``, ``"live"`` or ``"post_call"``, as for the results operator.
        **kwargs: passed to :class:`~airflow.sdk.BaseOperator`.
    """

    template_fields: Sequence[str] = ("call_ids", "destination", "destination_conn_id", "revox_conn_id")
    ui_color = "#e8f1fe"

    def __init__(
        self,
        *,
        call_ids: Any,
        destination: str | ObjectStoragePath,
        file_format: str = "jsonl",
        revox_conn_id: str = RevoxHook.default_conn_name,
        destination_conn_id: str | None = None,
        include_recordings: bool = False,
        max_concurrency: int = 8,
        transcript_source: str = "best",
        **kwargs: Any,
    ) -> None:
        """Check the arguments and declare the tables as outlets when the destination is fixed."""
        super().__init__(**kwargs)
        self.file_format = check_file_format(file_format)
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a whole number of at least 1, not {max_concurrency!r}")
        literal = [call_ids] if isinstance(call_ids, str) else call_ids
        if isinstance(literal, list | tuple) and not any(is_templated(v) for v in literal):
            normalize_call_ids(literal)  # plain ids: report a bad one when the DAG is parsed
        self.call_ids = call_ids
        self.destination = destination
        self.revox_conn_id = revox_conn_id
        self.destination_conn_id = destination_conn_id
        self.include_recordings = include_recordings
        self.max_concurrency = max_concurrency
        self.transcript_source = check_transcript_source(transcript_source)
        # Known destination: declare the tables. Templated: an alias the run fills in.
        if not is_templated(str(destination) if isinstance(destination, ObjectStoragePath) else destination):
            self.outlets = [*self.outlets, *self._table_assets(_plain_uri(destination))]
        else:
            self.outlets = [*self.outlets, AssetAlias(self.asset_alias_name)]

    @property
    def asset_alias_name(self) -> str:
        """Name of the Asset alias that collects the tables of a templated destination."""
        return f"revox-export:{self.dag_id}.{self.task_id}"

    def _table_assets(self, base_uri: str) -> list[Asset]:
        return [Asset(uri=f"{base_uri}/{table}.{self.file_format}") for table in self._tables]

    _tables = ("transcripts", "structured_output")

    def _destination_path(self) -> ObjectStoragePath:
        destination = self.destination
        if isinstance(destination, ObjectStoragePath):
            if self.destination_conn_id and destination.conn_id != self.destination_conn_id:
                return ObjectStoragePath(str(destination), conn_id=self.destination_conn_id)
            return destination
        if not isinstance(destination, str) or not destination.strip():
            raise ValueError(f"destination must be a URI or an ObjectStoragePath, not {destination!r}")
        return ObjectStoragePath(destination.strip(), conn_id=self.destination_conn_id)

    def execute(self, context: Context) -> list[str]:
        """Fetch every call, stage every file, publish them together; return their URIs."""
        call_ids = normalize_call_ids(self.call_ids)
        if self.file_format == "parquet":
            import_pyarrow()  # fail before fetching anything when the extra is missing
        destination = self._destination_path()
        shown = redact_text(str(destination))
        self.log.info("Exporting %d Revox call(s) to %s as %s", len(call_ids), shown, self.file_format)
        with RevoxHook(self.revox_conn_id) as hook:
            secrets = hook.known_secrets()
            hook.get_conn()  # one pooled client, created before the worker threads share it
            relatives = self._export(hook, secrets, call_ids, destination)
        uris = [str(destination.joinpath(*PurePosixPath(r).parts)) for r in relatives]
        alias_outlet = AssetAlias(self.asset_alias_name)
        if alias_outlet in self.outlets:  # the destination was templated: name the tables now
            alias = context["outlet_events"][alias_outlet]
            for asset in self._table_assets(storage_uri(destination).rstrip("/")):
                alias.add(asset)
        self.log.info("Wrote %d file(s) for %d call(s) under %s", len(uris), len(call_ids), shown)
        return uris

    def _export(
        self, hook: RevoxHook, secrets: tuple[str, ...], call_ids: list[str], destination: ObjectStoragePath
    ) -> list[str]:
        ext = self.file_format
        table = StructuredOutputTable()
        tables = [f"{name}.{ext}" for name in self._tables]
        calls: list[str] = []
        recordings: list[str] = []
        with (
            Staging(destination) as staging,
            tempfile.TemporaryFile("w+", encoding="utf-8") as spool,
        ):
            transcripts = open_row_writer(staging.stage(tables[0]), ext, TRANSCRIPT_SCHEMA)
            try:
                fetched_calls = self._fetch_in_order(call_ids, lambda cid: self._fetch(hook, staging, cid))
                with closing(fetched_calls):
                    for fetched in fetched_calls:
                        relative = f"calls/{fetched.call_id}.json"
                        staging.stage(relative).write_bytes(call_document(fetched.call, secrets))
                        calls.append(relative)
                        recordings.extend(fetched.recordings)
                        for row in transcript_rows(fetched.call, self.transcript_source, secrets):
                            transcripts.write(row)
                        # Columns are the union of every call's fields, known only at the end:
                        # records wait on local disk, so memory does not grow with the calls.
                        table.add_fields(fetched.call.structured_output_config)
                        record = structured_output_record(fetched.call, secrets)
                        spool.write(json.dumps(record, ensure_ascii=False) + "\n")
            finally:
                transcripts.close()
            spool.seek(0)
            writer = open_row_writer(staging.stage(tables[1]), ext, table.schema)
            try:
                for line in spool:
                    writer.write(table.row(json.loads(line)))
            finally:
                writer.close()
            staging.commit()
        return [*tables, *calls, *recordings]

    def _fetch_in_order(
        self, call_ids: list[str], fetch: Callable[[str], _Fetched]
    ) -> Generator[_Fetched, None, None]:
        """Run ``fetch`` for each id in a bounded pool; yield results in input order.

        A thread pool rather than an event loop: the rows are written by blocking file and
        Parquet writers in this thread while the network work overlaps in the pool, sharing
        the hook's one pooled ``httpx.Client``. At most ``max_concurrency`` calls are in flight
        or waiting to be written, so memory does not grow with the number of calls.
        """
        pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="revox-export")
        window: deque[Future[_Fetched]] = deque()
        remaining = iter(call_ids)
        try:
            for call_id in remaining:
                window.append(pool.submit(fetch, call_id))
                if len(window) >= self.max_concurrency:
                    break
            while window:
                fetched = window.popleft().result()
                for call_id in remaining:
                    window.append(pool.submit(fetch, call_id))
                    break
                yield fetched
        finally:
            # Wait for running downloads before the staging area is discarded or published.
            pool.shutdown(wait=True, cancel_futures=True)

    def _fetch(self, hook: RevoxHook, staging: Staging, call_id: str) -> _Fetched:
        call = _fetch_call(hook, call_id)
        recordings = []
        if self.include_recordings:
            for attempt in reversed(call.attempts_newest_first()):
                if attempt.recording_url:
                    recordings.append(self._download(hook, staging, call_id, attempt))
        return _Fetched(call_id, call, recordings)

    def _download(self, hook: RevoxHook, staging: Staging, call_id: str, attempt: CallAttempt) -> str:
        url = attempt.recording_url or ""
        try:
            with hook.iter_download(url) as chunks:
                iterator = iter(chunks)
                first = next(iterator, b"")
                relative = f"recordings/{call_id}/{_safe_name(attempt.id)}.{recording_extension(url, first)}"
                with staging.stage(relative).open("wb") as file:
                    file.write(first)
                    for chunk in iterator:
                        file.write(chunk)
        except (RevoxError, ValueError, OSError, httpx.HTTPError) as error:
            fail = AirflowFailException if isinstance(error, RevoxNotFoundError) else AirflowException
            raise fail(
                f"Revox call {call_id!r}: recording of attempt {attempt.id!r} "
                f"({redact_text(url)}) could not be downloaded: {redact_text(str(error))}"
            ) from error
        return relative


__all__ = [
    "FILE_FORMATS",
    "RevoxCallResultsOperator",
    "RevoxCallsToStorageOperator",
    "recording_extension",
]
