"""Append-only loads: every export adds one folder under a fixed base and one line to ``_loads.jsonl``.

Layout of a base folder (JSON Lines, JSON or Parquet)::

    <base>/
      _loads.jsonl                      the table of loads, one JSON object per complete load
      load=<run>-<hash>/                one folder per load (a Hive-style partition: column "load")
        transcripts.parquet ...         the load's tables
        calls/<call_id>.json            its call documents (and recordings/)
        _manifest.json, _SUCCESS        its proof, as in staging
      .revox-staging/                   local staging (hidden: starts with a dot)

A load's name comes from the task that wrote it (DAG, task, map index and run id), so a rerun or
a retry of one DAG run replaces its own load and no other; a load with no calls publishes nothing
and leaves ``_loads.jsonl`` as it was.

What a reader sees, at every moment:

* **Local file system.** The load is built whole under ``.revox-staging/`` and published by
  renaming its folder: a reader listing ``<base>/load=*/`` sees every file of a load or none of
  it. A rerun of the same DAG run swaps its folder: its old folder is renamed away and the new
  one renamed in, so for an instant the load is absent (never half there). ``_loads.jsonl`` is
  replaced by a rename after the folder is in place.
* **Object stores** (S3, GCS, ...) have no rename: the files of a load are uploaded one by one
  into its folder, then ``_manifest.json``, then ``_SUCCESS``, then ``_loads.jsonl`` is
  replaced in one PUT. A reader listing the folders can see a load while it is being uploaded
  (each file whole: one PUT each). A failed upload removes what it put of a new load; a killed
  one can leave a folder without ``_SUCCESS``. Readers on object stores therefore read
  ``_loads.jsonl`` (or check ``_SUCCESS`` in each folder): a load is listed there only once
  complete, and the previous loads are never touched.

``_loads.jsonl`` is rewritten whole each time (local: under the publish lock, then a rename;
object store: one PUT). Two exports publishing to one object-store base at the same instant can
lose one of the two lines; the load's own folder and ``_SUCCESS`` stay, and
:func:`read_loads` adds any complete load folder that the table misses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_revox._internal.export.staging import (
    MANIFEST,
    SUCCESS_MARKER,
    Staging,
    read_published,
    write_manifest,
)
from airflow_provider_revox._internal.waiting.cursor import Watermark, later_mark

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: The table of loads at the base: one JSON object per complete load, in publish order.
LOADS_TABLE = "_loads.jsonl"
#: Each load's folder starts with this (a Hive-style partition: readers get a ``load`` column).
LOAD_PREFIX = "load="
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Load:
    """Which task run a load belongs to: the same DAG run, task and map index name the same load.

    Attributes:
        dag_id: the DAG.
        task_id: the export task.
        run_id: the DAG run (a retry keeps it, so a retry replaces its own load).
        map_index: the mapped task's index, -1 when not mapped.
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1

    @property
    def name(self) -> str:
        """The folder name: ``load=<run id made safe>-<10 hex digits of the whole identity>``.

        The readable part is the run id with anything but letters, digits, ``.``, ``_`` and
        ``-`` replaced by ``_``; the hash keeps two DAGs (or tasks) with the same run id apart.
        """
        safe = _UNSAFE.sub("_", self.run_id).strip("._")[:80] or "run"
        identity = "\x00".join((self.dag_id, self.task_id, str(self.map_index), self.run_id))
        return f"{LOAD_PREFIX}{safe}-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"

    @property
    def value(self) -> str:
        """The folder name without ``load=``: the ``load`` column a Hive-partitioned reader gets."""
        return self.name[len(LOAD_PREFIX) :]

    def describe(self) -> dict[str, Any]:
        """The load's identity, as written in its manifest and its line of ``_loads.jsonl``."""
        return {
            "load": self.value,
            "folder": self.name,
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "map_index": self.map_index,
        }


def _now(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), tz=timezone.utc).isoformat()


def _table_bytes(entries: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries).encode()


def _parse_table(data: bytes) -> list[dict[str, Any]]:
    entries = []
    for line in data.decode("utf-8").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("folder"), str):
                entries.append(entry)
    return entries


def _read_table(base: ObjectStoragePath) -> list[dict[str, Any]]:
    try:
        data = base.joinpath(LOADS_TABLE).read_bytes()
    except OSError:
        return []
    return _parse_table(data)


def load_entry(
    manifest: Mapping[str, Any], published_at: str, manifest_sha256: str | None = None
) -> dict[str, Any]:
    """The line of ``_loads.jsonl`` for a load whose manifest is ``manifest``.

    ``manifest_sha256`` is the sha256 of the manifest's published bytes when the caller has it
    (they are not encoded again); otherwise it is computed here.
    """
    if manifest_sha256 is None:
        manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
    files = manifest.get("files", [])
    documents = sum(1 for entry in files if str(entry.get("path", "")).startswith("calls/"))
    marks = {"watermarks": manifest["watermarks"]} if manifest.get("watermarks") else {}
    return {
        **manifest.get("load", {}),
        **marks,
        "published_at": published_at,
        "calls": counted if isinstance(counted := manifest.get("calls"), int) else documents,
        "files": len(files),
        "rows": {str(entry["path"]).rsplit(".", 1)[0]: entry["rows"] for entry in files if "rows" in entry},
        "manifest_sha256": manifest_sha256,
    }


def published_mark(base: ObjectStoragePath, key: str) -> Any:
    """The furthest watermark under ``key`` that a complete load under ``base`` published, or None.

    The watermark travels with the load's manifest, so a run killed after publishing its load and
    before storing its watermark does not make the next run export that load's calls again.
    """
    mark = Watermark()
    for entry in read_loads(base):
        state = (entry.get("watermarks") or {}).get(key)
        if state is not None:
            mark = later_mark(mark, Watermark.from_state(state))
    return mark.to_state() if mark.ended_at is not None else None


def read_loads(base: ObjectStoragePath) -> list[dict[str, Any]]:
    """The complete loads under ``base``, oldest publish first: what a careful reader iterates.

    Each entry has ``load`` (the folder name without ``load=``: the value of the ``load``
    column that DuckDB, Spark or pyarrow read from the folder names), ``folder``, ``dag_id``,
    ``task_id``, ``run_id``, ``map_index``, ``published_at``, ``calls``, ``files``, ``rows`` (per table) and
    ``manifest_sha256`` (the sha256 that the load's ``_SUCCESS`` holds: a reader that loaded a
    load before sees a rerun replaced it when this changes). A load folder with a valid
    ``_SUCCESS`` that the table misses (two concurrent publishes on an object store) is added at
    the end; a listed load whose folder has no valid ``_SUCCESS`` any more is left out.
    """
    entries = _read_table(base)
    listed = {entry["folder"] for entry in entries}
    found: dict[str, dict[str, Any] | None] = {}
    with contextlib.suppress(OSError):
        for child in base.iterdir():
            if child.name.startswith(LOAD_PREFIX):
                found[child.name] = read_published(child)
    complete = [e for e in entries if found.get(e["folder"]) is not None]
    for name in sorted(set(found) - listed):
        manifest = found[name]
        if manifest is not None and manifest.get("load", {}).get("folder") == name:
            complete.append(load_entry(manifest, published_at=""))
    return complete


class LoadStaging(Staging):
    """Stages one load and publishes it as ``<base>/load=<...>/``, then lists it in ``_loads.jsonl``.

    Staging is as in :class:`~airflow_provider_revox._internal.export.staging.Staging`; only
    publishing differs (see the module docstring for what readers see).

    Args:
        base: the fixed folder that holds every load.
        load: which task run this load is.
        clock: seconds since the epoch, for leases and ``published_at``.
    """

    def __init__(
        self, base: ObjectStoragePath, load: Load, *, clock: Callable[[], float] = time.time
    ) -> None:
        """Claim a staging folder under ``base``; nothing is visible until :meth:`commit`."""
        super().__init__(base, clock=clock)
        self.base = base
        self.load = load
        self._clock = clock
        if not self._local:
            # Object stores: the inherited publish writes straight into the load's folder.
            self.destination = base.joinpath(load.name)

    #: ``{key: watermark state}`` this load's rows reach, published with them (incremental exports).
    watermarks: dict[str, Any] | None = None

    def manifest(self) -> dict[str, Any]:
        """The staged files' manifest, with the load's identity under ``load`` and, for an
        incremental export, the watermark its rows reach under ``watermarks``."""
        marks = {"watermarks": self.watermarks} if self.watermarks else {}
        return {**super().manifest(), "load": self.load.describe(), **marks}

    def commit(self) -> dict[str, Any]:
        """Publish the load's folder whole (local) or file by file (object store), then list it."""
        return self._commit_local() if self._local else self._commit_remote()

    def _commit_local(self) -> dict[str, Any]:
        if self._tmpdir is None:
            raise RuntimeError("staging used after commit or discard")
        manifest = self.manifest()
        tree = self._tmpdir / "tree"
        made: set[str] = set()
        for relative, number in list(self._staged.items()):
            # Plain strings, and each folder made once: ten thousand call documents share one.
            folder, _, _ = relative.rpartition("/")
            if folder not in made:
                (tree / folder).mkdir(parents=True, exist_ok=True)
                made.add(folder)
            os.replace(self._local_file(relative, number), f"{tree}/{relative}")
            del self._staged[relative]
        sha256 = write_manifest(manifest, tree / MANIFEST)
        (tree / SUCCESS_MARKER).write_text(sha256 + "\n", encoding="utf-8")
        final = Path(self.base.path, self.load.name)
        with self._publish_lock():
            if final.exists():
                # A rerun of this DAG run: its earlier load goes aside, the new one takes its name.
                os.replace(final, self._tmpdir / "replaced")
            os.replace(tree, final)
            self._list(manifest, sha256)
        self._cleanup()
        return manifest

    def _commit_remote(self) -> dict[str, Any]:
        folder = self.base.joinpath(self.load.name)
        existed = read_published(folder) is not None or bool(self._published_paths())
        try:
            manifest = super().commit()
        except BaseException:
            if not existed:
                # A new load that failed midway: take back what it put, so no one lists it.
                with contextlib.suppress(OSError):
                    folder.fs.rm(folder.path, recursive=True)
            raise
        self._list(manifest)
        return manifest

    def _list(self, manifest: Mapping[str, Any], manifest_sha256: str | None = None) -> None:
        """Put the load's line in ``_loads.jsonl`` (replacing its own earlier line), atomically."""
        entries = [e for e in _read_table(self.base) if e["folder"] != self.load.name]
        entries.append(load_entry(manifest, _now(self._clock), manifest_sha256))
        data = _table_bytes(entries)
        if self._local:
            assert self._tmpdir is not None
            local = self._tmpdir / LOADS_TABLE
            local.write_bytes(data)
            os.replace(local, Path(self.base.path, LOADS_TABLE))
        else:
            self.base.joinpath(LOADS_TABLE).write_bytes(data)  # one PUT: all or nothing

    def _cleanup(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir / "replaced", ignore_errors=True)
        super()._cleanup()
