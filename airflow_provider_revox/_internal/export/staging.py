"""Staging an export's files and publishing them as one set: a manifest, then ``_SUCCESS``.

The storage operator publishes each run as one load folder through
:class:`~airflow_provider_revox._internal.export.loads.LoadStaging`, which builds on this.

Files are first written to a staging area, then published together once everything
succeeded. Publishing is not one atomic step on any store, so the set carries its own proof:

1. ``_SUCCESS`` is removed first: from here on, readers know the set is changing;
2. every file is published (``os.replace`` on a local file system, one ``put_file`` each on an
   object store);
3. ``_manifest.json`` lists every file of the set with its size, sha256 and row count;
4. files of the previous set that the new manifest does not list are deleted;
5. ``_SUCCESS`` is written last; it holds the sha256 of the manifest it vouches for.

A reader waits for ``_SUCCESS``, reads the manifest and (to be safe against a rerun starting
meanwhile) checks the manifest's sha256 against ``_SUCCESS``: it never reads a mix of two
runs. A failure or a kill anywhere in between leaves no ``_SUCCESS`` until a run succeeds.

Local staging sits in ``<destination>/.revox-staging/<run>/`` (the same file system as the
targets, so publishing is a rename), each run in its own folder with a lease file; another
export sweeps only leases that are stale (not renewed for :data:`STALE_AFTER_SECONDS`, or left
by a process of this host that is gone), never a folder it did not create. Object-store
exports stage on local disk. Local publishes to one destination take turns (a file lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: Where a local export stages its files, under the destination, until it publishes them.
STAGING_DIR = ".revox-staging"
#: Written last: its presence says the files the manifest lists are one complete set.
SUCCESS_MARKER = "_SUCCESS"
#: The list of the published set: each file's path, size, sha256 and (for tables) row count.
MANIFEST = "_manifest.json"
#: Folders that hold only files of the export: whatever the manifest does not list goes.
OWNED_FOLDERS = ("calls", "recordings")
#: A run's lease not renewed for this long is a dead run's: its staging may be swept.
STALE_AFTER_SECONDS = 3600.0
LEASE_FILE = "lease.json"
# Marks a staging root this package created (a user's own folder of that name has none).
_ROOT_MARK = ".created-by-revox-export"
_HASH_CHUNK = 1 << 20
#: Characters of a manifest's text encoded, hashed and written at a time.
_MANIFEST_BLOCK = 1 << 16


def storage_uri(path: ObjectStoragePath) -> str:
    """The plain URI of ``path`` (``file:///...``, ``s3://bucket/key``), without its connection id."""
    protocol = path.protocol or "file"
    text = path.path
    if protocol == "file":
        return f"file://{text if text.startswith('/') else '/' + text}"
    return f"{protocol}://{text.lstrip('/')}"


def is_local(destination: ObjectStoragePath) -> bool:
    """Whether a path is on this machine's disk (no scheme, or ``file://``), not an object store."""
    from fsspec.implementations.local import LocalFileSystem

    return not destination.protocol or isinstance(destination.fs, LocalFileSystem)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(manifest: Mapping[str, Any], path: Path) -> str:
    """Write ``manifest`` to ``path`` as the set publishes it; return the sha256 of its bytes.

    The bytes are ``json.dumps(manifest, indent=2, sort_keys=True) + "\\n"``, encoded and hashed
    a block at a time: the whole text of a 10,000-file manifest (and the thousands of pieces
    the encoder joins it from) never sits in memory beside the manifest itself.
    """
    digest = hashlib.sha256()
    pieces: list[str] = []
    size = 0
    with path.open("wb") as file:

        def flush() -> None:
            data = "".join(pieces).encode()
            digest.update(data)
            file.write(data)
            pieces.clear()

        for piece in json.JSONEncoder(indent=2, sort_keys=True).iterencode(manifest):
            pieces.append(piece)
            size += len(piece)
            if size >= _MANIFEST_BLOCK:
                flush()
                size = 0
        pieces.append("\n")
        flush()
    return digest.hexdigest()


def _inside(relative: str) -> bool:
    path = Path(relative)
    return (
        bool(path.parts)
        and not path.is_absolute()
        and ".." not in path.parts
        and path.parts[0] != STAGING_DIR
    )


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, but someone else's
        return False
    return False


class _Lease:
    """A run's claim on its staging folder: pid and host inside, renewal time as the file's mtime."""

    def __init__(self, folder: Path, clock: Callable[[], float]) -> None:
        self.path = folder / LEASE_FILE
        self._clock = clock
        self._renewed = clock()
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": self._renewed}
        self.path.write_text(json.dumps(info) + "\n", encoding="utf-8")
        os.utime(self.path, (self._renewed, self._renewed))

    def renew(self, every: float) -> None:
        now = self._clock()
        if now - self._renewed >= every:
            with contextlib.suppress(OSError):
                os.utime(self.path, (now, now))
            self._renewed = now

    @staticmethod
    def is_stale(folder: Path, now: float, stale_after: float) -> bool:
        """Whether ``folder`` is a staging folder of ours whose run is over; False if not ours."""
        lease = folder / LEASE_FILE
        try:
            renewed = lease.stat().st_mtime
            info = json.loads(lease.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False  # no lease: not a folder we made (or one being made right now)
        if now - renewed >= stale_after:
            return True
        same_host = isinstance(info, dict) and info.get("host") == socket.gethostname()
        pid = info.get("pid") if isinstance(info, dict) else None
        return same_host and isinstance(pid, int) and pid != os.getpid() and _process_gone(pid)


class Staging(contextlib.AbstractContextManager["Staging"]):
    """Files staged for a destination and published all together, or not at all.

    Use as a context manager: leaving it with an exception discards everything staged.
    Staging a file is thread-safe, so downloads can run in worker threads.

    Args:
        destination: a directory-like path.
        clock: seconds since the epoch, for leases (tests pass a fake one).
        stale_after: seconds after which another run's unrenewed lease counts as dead.
    """

    def __init__(
        self,
        destination: ObjectStoragePath,
        *,
        clock: Callable[[], float] = time.time,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> None:
        """Claim a staging folder for ``destination``; sweep dead runs' folders."""
        self.destination = destination
        self._local = is_local(destination)
        self._lock = threading.Lock()
        #: Each staged relative path and the number of its local file (see :meth:`_local_file`):
        #: a small int per file, where a Path object cost half a kilobyte per call of an export.
        self._staged: dict[str, int] = {}
        self._rows: dict[str, int] = {}
        #: Calls the set holds, when it has no call documents to count them by.
        self.calls: int | None = None
        self._count = 0
        self._stale_after = stale_after
        self._made: set[Any] = set()  # folders already made at the destination
        self._lease: _Lease | None = None
        self._tmpdir: Path | None
        if self._local:
            # One folder per run under the destination: renames stay on one file system.
            self._root = Path(destination.path, STAGING_DIR)
            if not self._root.is_dir():
                self._root.mkdir(parents=True, exist_ok=True)
                (self._root / _ROOT_MARK).touch()
            self._sweep(clock())
            self._tmpdir = self._root / uuid.uuid4().hex[:12]
            self._tmpdir.mkdir()
            self._lease = _Lease(self._tmpdir, clock)
        else:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="revox-export-"))

    def _sweep(self, now: float) -> None:
        for folder in self._root.iterdir():
            if folder.is_dir() and _Lease.is_stale(folder, now, self._stale_after):
                shutil.rmtree(folder, ignore_errors=True)

    def stage(self, relative: str) -> Path:
        """Return a local path to write ``relative`` (such as ``calls/abc.json``) to before publishing.

        Staging the same relative path again replaces the earlier file.
        """
        parts = Path(relative).parts
        if not _inside(relative) or relative in (SUCCESS_MARKER, MANIFEST):
            raise ValueError(f"not a relative file path inside the destination: {relative!r}")
        with self._lock:
            self._count += 1
            if self._tmpdir is None:
                raise RuntimeError("staging used after commit or discard")
            local = self._tmpdir / f"{self._count}-{parts[-1]}"
            previous = self._staged.pop(relative, None)
            self._staged[relative] = self._count
            if self._lease is not None:
                self._lease.renew(every=self._stale_after / 10)
        if previous is not None:
            self._local_file(relative, previous).unlink(missing_ok=True)
        return local

    def _local_file(self, relative: str, number: int) -> Path:
        """The local file of ``relative``, staged as the ``number``-th file."""
        if self._tmpdir is None:
            raise RuntimeError("staging used after commit or discard")
        return self._tmpdir / f"{number}-{PurePosixPath(relative).name}"

    def set_rows(self, relative: str, rows: int) -> None:
        """Record the number of rows of a staged table, for the manifest."""
        self._rows[relative] = rows

    def manifest(self) -> dict[str, Any]:
        """The manifest of what is staged now: every file, by path (so a rerun writes the same bytes)."""
        files = []
        for relative, number in sorted(self._staged.items()):
            local = self._local_file(relative, number)
            entry: dict[str, Any] = {
                "path": relative,
                "bytes": local.stat().st_size,
                "sha256": _sha256(local),
            }
            if relative in self._rows:
                entry["rows"] = self._rows[relative]
            files.append(entry)
        counted = {"calls": self.calls} if self.calls is not None else {}
        return {"version": 1, "files": files, **counted}

    def commit(self) -> dict[str, Any]:
        """Publish every staged file, then the manifest, then ``_SUCCESS``; return the manifest."""
        if self._tmpdir is None:
            raise RuntimeError("staging used after commit or discard")
        manifest = self.manifest()
        sha256 = write_manifest(manifest, manifest_local := self._tmpdir / MANIFEST)
        (success_local := self._tmpdir / SUCCESS_MARKER).write_text(sha256 + "\n", encoding="utf-8")
        with self._publish_lock():
            previous = self._published_paths()
            self._remove(SUCCESS_MARKER)
            for relative, number in list(self._staged.items()):
                self._publish(self._local_file(relative, number), relative)
                del self._staged[relative]
            self._publish(manifest_local, MANIFEST)
            listed = {entry["path"] for entry in manifest["files"]}
            for relative in sorted(previous - listed):
                self._remove(relative)
            self._publish(success_local, SUCCESS_MARKER)
        self._cleanup()
        return manifest

    @contextlib.contextmanager
    def _publish_lock(self) -> Iterator[None]:
        if not self._local:
            yield
            return
        # A lock on the staging folder itself: no lock file to leave behind.
        handle = os.open(self._root, os.O_RDONLY)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)

    def _published_paths(self) -> set[str]:
        """What the last set left: its manifest's files, and anything in the folders we own."""
        paths: set[str] = set()
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
            previous = json.loads(self.destination.joinpath(MANIFEST).read_bytes())
            paths.update(str(entry["path"]) for entry in previous["files"] if isinstance(entry, Mapping))
        for folder in OWNED_FOLDERS:
            base = self.destination.joinpath(folder)
            prefix = base.path.rstrip("/") + "/"
            for found in base.fs.find(base.path):
                if found.startswith(prefix):
                    paths.add(f"{folder}/{found[len(prefix) :]}")
        # A manifest is data read back from storage: never let it point outside the destination.
        return {p for p in paths if p not in (MANIFEST, SUCCESS_MARKER) and _inside(p)}

    def _target(self, relative: str) -> str:
        # Plain strings: building an ObjectStoragePath per file took most of a 10,000-file publish.
        return f"{self.destination.path.rstrip('/')}/{relative}"

    def _publish(self, local: Path, relative: str) -> None:
        target = self._target(relative)
        if self._local:
            final = Path(target)
            if final.parent not in self._made:
                final.parent.mkdir(parents=True, exist_ok=True)
                self._made.add(final.parent)
            os.replace(local, final)
        else:
            fs = self.destination.fs
            parent = fs._parent(target)
            if parent not in self._made:
                fs.makedirs(parent, exist_ok=True)
                self._made.add(parent)
            fs.put_file(str(local), target)

    def _remove(self, relative: str) -> None:
        target = self._target(relative)
        if not self._local:
            fs = self.destination.fs
            if fs.exists(target):
                fs.rm_file(target)
            return
        final = Path(target)
        final.unlink(missing_ok=True)
        # Drop folders the removal emptied (recordings/<call id>/), up to the destination.
        top = Path(self.destination.path)
        for parent in final.parents:
            if parent == top or top not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def discard(self) -> None:
        """Delete every staged file; nothing at the destination changes."""
        if self._tmpdir is not None:
            for relative, number in self._staged.items():
                self._local_file(relative, number).unlink(missing_ok=True)
        self._staged.clear()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmpdir is None:
            return
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._tmpdir = None
        if self._local:
            # Remove the root only when it is ours and nothing but its marks is left in it.
            left = {p.name for p in self._root.iterdir()} if self._root.is_dir() else set()
            if left == {_ROOT_MARK}:
                with contextlib.suppress(OSError):
                    (self._root / _ROOT_MARK).unlink()
                    self._root.rmdir()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Discard whatever is still staged (everything, after an error)."""
        self.discard()


def read_published(destination: ObjectStoragePath) -> dict[str, Any] | None:
    """The manifest of the complete set published at ``destination``, or None while there is none.

    What a reader does: no ``_SUCCESS``, no set; a ``_SUCCESS`` that does not vouch for the
    manifest present (a rerun is publishing), no set either.
    """
    try:
        marker = destination.joinpath(SUCCESS_MARKER).read_text().strip()
        manifest_bytes = destination.joinpath(MANIFEST).read_bytes()
    except OSError:  # no marker or no manifest: no complete set
        return None
    if hashlib.sha256(manifest_bytes).hexdigest() != marker:
        return None
    manifest: dict[str, Any] = json.loads(manifest_bytes)
    return manifest
