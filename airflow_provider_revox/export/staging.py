"""Staging an export's files and publishing them together, or not at all.

Files are first written to a staging area, then published together once everything
succeeded, so a failed export never leaves a half-written file over a good one:

* on a local file system the staging files sit in ``<destination>/.revox-staging/<run>/`` (the
  same file system as their targets) and are renamed into place (``os.replace`` is atomic on
  POSIX); what a killed run left there is swept away by the next export to that destination;
* on object stores (s3://, gs://, ...) they are staged on local disk and uploaded with one
  ``put_file`` each: an object only becomes visible once its upload completes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: Where a local export stages its files, under the destination, until it publishes them.
STAGING_DIR = ".revox-staging"


def storage_uri(path: ObjectStoragePath) -> str:
    """The plain URI of ``path`` (``file:///...``, ``s3://bucket/key``), without its connection id."""
    protocol = path.protocol or "file"
    text = path.path
    if protocol == "file":
        return f"file://{text if text.startswith('/') else '/' + text}"
    return f"{protocol}://{text.lstrip('/')}"


def _is_local(destination: ObjectStoragePath) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return not destination.protocol or isinstance(destination.fs, LocalFileSystem)


class Staging:
    """Files staged for a destination and published all together, or not at all.

    Use as a context manager: leaving it with an exception discards everything staged.
    Staging a file is thread-safe, so downloads can run in worker threads.
    """

    def __init__(self, destination: ObjectStoragePath) -> None:
        """Stage files for ``destination`` (a directory-like path)."""
        self.destination = destination
        self._local = _is_local(destination)
        self._token = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._staged: dict[str, Path] = {}
        self._count = 0
        self._tmpdir: Path | None
        if self._local:
            # One directory per run under the destination: renames stay on one file system, and
            # a run killed before publishing leaves nothing next to the published files.
            root = Path(destination.path, STAGING_DIR)
            if root.is_dir():
                shutil.rmtree(root, ignore_errors=True)  # leftovers of killed runs
            self._tmpdir = root / self._token
            self._tmpdir.mkdir(parents=True)
        else:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="revox-export-"))

    def stage(self, relative: str) -> Path:
        """Return a local path to write ``relative`` (such as ``calls/abc.json``) to before publishing.

        Staging the same relative path again replaces the earlier file.
        """
        parts = Path(relative).parts
        if not parts or Path(relative).is_absolute() or ".." in parts:
            raise ValueError(f"not a relative file path inside the destination: {relative!r}")
        with self._lock:
            self._count += 1
            assert self._tmpdir is not None, "staging used after commit or discard"
            local = self._tmpdir / f"{self._count}-{parts[-1]}"
            previous = self._staged.pop(relative, None)
            self._staged[relative] = local
        if previous is not None:
            previous.unlink(missing_ok=True)
        return local

    def commit(self) -> list[ObjectStoragePath]:
        """Publish every staged file, in staging order; return their destination paths."""
        published = []
        for relative, local in list(self._staged.items()):
            target = self.destination.joinpath(*Path(relative).parts)
            if self._local:
                final = Path(target.path)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(local, final)
            else:
                fs = target.fs
                fs.makedirs(fs._parent(target.path), exist_ok=True)
                fs.put_file(str(local), target.path)
            published.append(target)
            del self._staged[relative]
        self._cleanup()
        return published

    def discard(self) -> None:
        """Delete every staged file; nothing at the destination changes."""
        for local in self._staged.values():
            local.unlink(missing_ok=True)
        self._staged.clear()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            if self._local:
                with contextlib.suppress(OSError):  # not empty: another run is staging there
                    self._tmpdir.parent.rmdir()
            self._tmpdir = None

    def __enter__(self) -> Staging:
        """Return the staging area."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Discard whatever is still staged (everything, after an error)."""
        self.discard()


__all__ = ["STAGING_DIR", "Staging", "storage_uri"]
