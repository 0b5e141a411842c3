"""Staging and publishing an export as one set, on local disk and on an in-memory object store.

A reader here does what the export guide (docs/guides/export.md) tells readers to do: wait for
``_SUCCESS``, read the manifest it vouches for, and read the files the manifest lists. Whatever
fails, it never gets a mix of two runs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io.store import attach
from fsspec.implementations.memory import MemoryFileSystem

from airflow_provider_revox._internal.export.staging import (
    MANIFEST,
    STAGING_DIR,
    STALE_AFTER_SECONDS,
    SUCCESS_MARKER,
    Staging,
    read_published,
)


def reader_view(destination: ObjectStoragePath) -> dict[str, bytes] | None:
    """The published set as a careful reader sees it, or None while there is no complete set."""
    manifest = read_published(destination)
    if manifest is None:
        return None
    files = {}
    for entry in manifest["files"]:
        data = destination.joinpath(entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{entry['path']} is from another run"
        assert len(data) == entry["bytes"]
        files[entry["path"]] = data
    return files


def load_folders(base: Path) -> list[Path]:
    """The load folders under a local export base, oldest first, as ``_loads.jsonl`` lists them."""
    table = base / "_loads.jsonl"
    listed = [json.loads(line)["folder"] for line in table.read_text().splitlines()] if table.exists() else []
    on_disk = sorted(p.name for p in base.iterdir() if p.name.startswith("load=")) if base.exists() else []
    assert sorted(listed) == on_disk, f"_loads.jsonl lists {listed}, the folder holds {on_disk}"
    return [base / name for name in listed]


def only_load(base: Path) -> Path:
    """The one load folder under a local export base that one export wrote."""
    (folder,) = load_folders(base)
    return folder


def local_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def publish(destination: ObjectStoragePath, files: dict[str, bytes], **kwargs: Any) -> dict[str, Any]:
    with Staging(destination, **kwargs) as staging:
        for relative, data in files.items():
            staging.stage(relative).write_bytes(data)
        staging.set_rows("transcripts.jsonl", 2)
        return staging.commit()


OLD = {"transcripts.jsonl": b"old 1\nold 2\n", "calls/c1.json": b"{1}", "calls/c2.json": b"{2}"}
NEW = {"transcripts.jsonl": b"new 1\nnew 2\n", "calls/c1.json": b"{1'}", "calls/c2.json": b"{2'}"}


# -- publishing as one set (manifest, _SUCCESS last) ------------------------------------------


def test_local_publish_is_a_rename_with_a_manifest_and_success_written_last(tmp_path: Path) -> None:
    destination = ObjectStoragePath(f"file://{tmp_path}/out")
    with Staging(destination) as staging:
        local = staging.stage("calls/c1.json")
        # Staged on the destination's file system, so publishing is a rename.
        assert local.parent.parent == tmp_path / "out" / STAGING_DIR
        local.write_text("new")
        staging.stage("transcripts.jsonl").write_text("a\nb\n")
        staging.set_rows("transcripts.jsonl", 2)
        manifest = staging.commit()
    assert manifest == {
        "version": 1,
        "files": [
            {"path": "calls/c1.json", "bytes": 3, "sha256": hashlib.sha256(b"new").hexdigest()},
            {
                "path": "transcripts.jsonl",
                "bytes": 4,
                "sha256": hashlib.sha256(b"a\nb\n").hexdigest(),
                "rows": 2,
            },
        ],
    }
    tree = local_tree(tmp_path / "out")
    assert sorted(tree) == sorted([MANIFEST, SUCCESS_MARKER, "calls/c1.json", "transcripts.jsonl"])
    assert json.loads(tree[MANIFEST]) == manifest
    assert tree[SUCCESS_MARKER].decode().strip() == hashlib.sha256(tree[MANIFEST]).hexdigest()
    assert reader_view(destination) == {"calls/c1.json": b"new", "transcripts.jsonl": b"a\nb\n"}


def test_a_local_publish_that_dies_midway_never_shows_readers_a_mix(tmp_path: Path) -> None:
    destination = ObjectStoragePath(str(tmp_path))
    publish(destination, OLD)
    assert reader_view(destination) == OLD
    # Something in the way of the last file: its rename fails after the first files moved in,
    # as a kill between two renames would leave them.
    (tmp_path / "calls" / "c2.json").unlink()
    (tmp_path / "calls" / "c2.json" / "in-the-way").mkdir(parents=True)
    with pytest.raises(OSError):
        publish(destination, NEW)
    assert (tmp_path / "transcripts.jsonl").read_bytes() == NEW["transcripts.jsonl"]  # half published
    assert not (tmp_path / SUCCESS_MARKER).exists()
    assert reader_view(destination) is None  # ... but no reader takes it
    # The next run publishes a whole set again.
    (tmp_path / "calls" / "c2.json" / "in-the-way").rmdir()
    (tmp_path / "calls" / "c2.json").rmdir()
    publish(destination, NEW)
    assert reader_view(destination) == NEW
    assert sorted(local_tree(tmp_path)) == sorted([*NEW, MANIFEST, SUCCESS_MARKER])


class FailingMemoryFileSystem(MemoryFileSystem):
    """An in-memory object store whose ``put_file`` fails on the n-th call once armed."""

    fail_on: int | None = None
    puts = 0

    def put_file(self, lpath: Any, rpath: Any, *args: Any, **kwargs: Any) -> None:
        type(self).puts += 1
        if type(self).fail_on is not None and type(self).puts == type(self).fail_on:
            raise ConnectionResetError(f"upload of {rpath} broke off")
        super().put_file(lpath, rpath, *args, **kwargs)


@pytest.fixture
def failing_store() -> FailingMemoryFileSystem:
    fs = FailingMemoryFileSystem()
    # The first store attached for a protocol stays for the whole process: put ours in it.
    attach("memory", fs=fs).fs = fs
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]
    FailingMemoryFileSystem.fail_on = None
    FailingMemoryFileSystem.puts = 0
    return fs


def test_an_upload_failing_on_the_third_put_never_shows_readers_a_mix(
    failing_store: FailingMemoryFileSystem,
) -> None:
    destination = ObjectStoragePath("memory://bucket/export")
    publish(destination, OLD)
    assert reader_view(destination) == OLD
    FailingMemoryFileSystem.puts = 0
    FailingMemoryFileSystem.fail_on = 3
    with pytest.raises(ConnectionResetError):
        publish(destination, NEW)
    assert FailingMemoryFileSystem.puts == 3
    published = {p: failing_store.cat_file(p) for p in failing_store.find("/bucket/export")}
    assert published["/bucket/export/calls/c1.json"] == NEW["calls/c1.json"]  # two uploads went in
    assert reader_view(destination) is None
    FailingMemoryFileSystem.fail_on = None
    publish(destination, NEW)
    assert reader_view(destination) == NEW


def test_a_reader_does_not_take_a_manifest_the_marker_does_not_vouch_for(tmp_path: Path) -> None:
    destination = ObjectStoragePath(str(tmp_path))
    publish(destination, OLD)
    (tmp_path / MANIFEST).write_text(json.dumps({"version": 1, "files": []}))  # another run's
    assert reader_view(destination) is None


def test_a_failed_export_leaves_the_previous_set_intact(tmp_path: Path) -> None:
    destination = ObjectStoragePath(str(tmp_path))
    publish(destination, OLD)
    before = local_tree(tmp_path)
    with pytest.raises(RuntimeError), Staging(destination) as staging:
        staging.stage("transcripts.jsonl").write_text("half")
        raise RuntimeError("fetch failed")
    assert local_tree(tmp_path) == before
    assert reader_view(destination) == OLD


def test_restaging_a_path_replaces_the_earlier_file(tmp_path: Path) -> None:
    with Staging(ObjectStoragePath(str(tmp_path))) as staging:
        first = staging.stage("a.json")
        first.write_text("1")
        staging.stage("a.json").write_text("2")
        assert not first.exists()
        staging.commit()
    assert local_tree(tmp_path) == {
        "a.json": b"2",
        MANIFEST: (tmp_path / MANIFEST).read_bytes(),
        SUCCESS_MARKER: (tmp_path / SUCCESS_MARKER).read_bytes(),
    }


def test_staging_refuses_paths_outside_the_destination_and_the_set_s_own_files(tmp_path: Path) -> None:
    with Staging(ObjectStoragePath(str(tmp_path))) as staging:
        for bad in ("../escape.json", "/etc/passwd", "", SUCCESS_MARKER, MANIFEST, f"{STAGING_DIR}/x"):
            with pytest.raises(ValueError, match="not a relative file path"):
                staging.stage(bad)


# -- the published set is exactly what the manifest lists ---------------------------------------


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_rerun_with_fewer_files_removes_the_ones_it_no_longer_lists(
    where: str, tmp_path: Path, failing_store: FailingMemoryFileSystem
) -> None:
    destination = ObjectStoragePath(str(tmp_path) if where == "local" else "memory://bucket/out")
    publish(destination, {**OLD, "recordings/c2/a1.wav": b"RIFF"})
    publish(destination, {"transcripts.jsonl": b"x\n", "calls/c1.json": b"{1}"})
    assert reader_view(destination) == {"transcripts.jsonl": b"x\n", "calls/c1.json": b"{1}"}
    if where == "local":
        assert sorted(local_tree(tmp_path)) == sorted(
            [MANIFEST, SUCCESS_MARKER, "calls/c1.json", "transcripts.jsonl"]
        )
        assert not (tmp_path / "recordings").exists()  # emptied folders go too
    else:
        assert sorted(failing_store.find("/bucket/out")) == [
            "/bucket/out/_SUCCESS",
            "/bucket/out/_manifest.json",
            "/bucket/out/calls/c1.json",
            "/bucket/out/transcripts.jsonl",
        ]


def test_a_previous_manifest_never_removes_files_outside_the_destination(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not the export's")
    destination = ObjectStoragePath(str(tmp_path / "out"))
    publish(destination, OLD)
    listed = [{"path": p} for p in (str(outside), "../outside.txt", f"{STAGING_DIR}/x", "calls/c1.json")]
    (tmp_path / "out" / MANIFEST).write_text(json.dumps({"version": 1, "files": listed}))
    publish(destination, {"transcripts.jsonl": b"x\n"})
    assert outside.read_text() == "not the export's"
    assert reader_view(destination) == {"transcripts.jsonl": b"x\n"}


def test_files_of_the_user_outside_the_export_s_folders_are_kept(tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("mine")
    destination = ObjectStoragePath(str(tmp_path))
    publish(destination, OLD)
    publish(destination, {"calls/c1.json": b"{1}"})
    assert (tmp_path / "README.txt").read_text() == "mine"
    assert not (tmp_path / "transcripts.jsonl").exists()  # listed by the previous manifest


# -- concurrent runs and staging leases --------------------------------------------------------


def test_concurrent_exports_to_one_destination_keep_each_other_s_staging(tmp_path: Path) -> None:
    destination = ObjectStoragePath(str(tmp_path))
    first = Staging(destination)
    first.stage("calls/a.json").write_text("a")
    second = Staging(destination)  # starts while the first is still staging
    second.stage("calls/b.json").write_text("b")
    first.stage("transcripts.jsonl").write_text("first")
    first.commit()
    assert reader_view(destination) == {"calls/a.json": b"a", "transcripts.jsonl": b"first"}
    second.commit()
    assert reader_view(destination) == {"calls/b.json": b"b"}
    assert not (tmp_path / STAGING_DIR).exists()


def test_concurrent_commits_take_turns(tmp_path: Path) -> None:
    destination = ObjectStoragePath(str(tmp_path))
    runs = [Staging(destination) for _ in range(4)]
    for index, run in enumerate(runs):
        for name in ("transcripts.jsonl", "calls/c1.json", "calls/c2.json"):
            run.stage(name).write_text(f"run {index}")
    threads = [threading.Thread(target=run.commit) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    view = reader_view(destination)
    assert view is not None and len(set(view.values())) == 1  # all files from one run


def test_only_stale_staging_is_swept(tmp_path: Path) -> None:
    destination = ObjectStoragePath(str(tmp_path))
    now = [1_000_000.0]
    killed = Staging(destination, clock=lambda: now[0])
    killed.stage("calls/a.json").write_text("left behind by a run that was killed")
    killed_folder = next(p for p in (tmp_path / STAGING_DIR).iterdir() if p.is_dir())
    now[0] += STALE_AFTER_SECONDS / 2
    live = Staging(destination, clock=lambda: now[0])
    assert killed_folder.is_dir()  # not stale yet: it may be a slow run
    now[0] += STALE_AFTER_SECONDS / 2
    live.stage("calls/b.json").write_text("b")  # a live run renews its lease as it stages
    later = Staging(destination, clock=lambda: now[0])
    assert not killed_folder.exists()
    live.commit()
    later.discard()
    assert reader_view(destination) == {"calls/b.json": b"b"}


def test_a_dead_process_s_staging_is_swept_at_once(tmp_path: Path) -> None:
    destination = ObjectStoragePath(str(tmp_path))
    dead = Staging(destination)
    dead.stage("calls/a.json").write_text("a")
    folder = next(p for p in (tmp_path / STAGING_DIR).iterdir() if p.is_dir())
    lease = json.loads((folder / "lease.json").read_text())
    # The same lease, written by a process of this host that has ended.
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    finished = int(ended.stdout)
    (folder / "lease.json").write_text(json.dumps({**lease, "pid": finished}))
    with Staging(destination):
        assert not folder.exists()


def test_a_folder_of_that_name_we_did_not_create_is_never_deleted(tmp_path: Path) -> None:
    own = tmp_path / STAGING_DIR
    (own / "notes").mkdir(parents=True)
    (own / "notes" / "todo.txt").write_text("mine")
    (own / "plan.txt").write_text("mine too")
    destination = ObjectStoragePath(str(tmp_path))
    publish(destination, OLD, clock=lambda: 4_000_000_000.0)
    publish(destination, OLD, clock=lambda: 5_000_000_000.0)
    assert (own / "notes" / "todo.txt").read_text() == "mine"
    assert sorted(p.name for p in own.iterdir()) == ["notes", "plan.txt"]
    assert reader_view(destination) == OLD


# -- memory per staged file ------------------------------------------------------------------

#: Frames kept per allocation: enough to reach this test's own frame from inside pathlib.
STACK_FRAMES = 32
MEGABYTE = 1_000_000


def test_a_staged_file_costs_the_staging_little_memory_until_it_is_published(tmp_path: Path) -> None:
    # An export of 10,000 calls stages 10,000 documents: what the staging keeps per file is part
    # of the export's memory per call (a Path per file was half a kilobyte).
    import tracemalloc

    destination = ObjectStoragePath(f"file://{tmp_path}/out")
    with Staging(destination) as staging:
        names = [f"calls/call-{i:05d}.json" for i in range(3000)]
        tracemalloc.start(STACK_FRAMES)
        try:
            before = tracemalloc.take_snapshot()
            for name in names:
                staging.stage(name).touch()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        # Not the interpreter's own tables: pathlib interns every path part, and the process-wide
        # table of interned strings grows by one block when the loop crosses its threshold (one
        # block of 7.7 MB, in 4 full runs of 4 on Airflow 3.4). What a staging keeps per file is
        # small blocks by the thousand, never a megabyte in one. Only allocations under this
        # test's frames count: tracemalloc traces every thread of the worker's process.
        mine = [tracemalloc.Filter(True, __file__, all_frames=True)]
        stats = after.filter_traces(mine).compare_to(before.filter_traces(mine), "traceback")
        kept = sum(stat.size_diff for stat in stats if stat.size_diff < MEGABYTE * max(stat.count_diff, 1))
        assert 0 < kept / len(names) < 150
        staging.stage(names[0]).write_bytes(b"again")  # restaged: the earlier file goes
        manifest = staging.commit()
    assert [entry["path"] for entry in manifest["files"]] == sorted(names)
    assert (tmp_path / "out" / names[0]).read_bytes() == b"again"
    assert sum(1 for _ in (tmp_path / "out" / "calls").iterdir()) == len(names)
    assert not (tmp_path / "out" / STAGING_DIR).exists()


def test_a_discarded_staging_deletes_its_staged_files(tmp_path: Path) -> None:
    destination = ObjectStoragePath(f"file://{tmp_path}/out")
    staging = Staging(destination)
    local = staging.stage("calls/c1.json")
    local.write_text("x")
    staging.discard()
    assert not local.exists()
    assert not (tmp_path / "out").joinpath("calls").exists()


def test_the_manifest_is_written_as_json_dumps_writes_it_and_its_sha256_is_of_those_bytes(
    tmp_path: Path,
) -> None:
    from airflow_provider_revox._internal.export.staging import write_manifest

    manifest = {
        "version": 1,
        "files": [{"path": f"calls/c{i}.json", "bytes": i, "sha256": "ab" * 32} for i in range(5000)],
        "load": {"folder": "load=x", "note": "é ✓"},
    }
    sha256 = write_manifest(manifest, tmp_path / "m.json")
    data = (tmp_path / "m.json").read_bytes()
    assert data == (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    assert sha256 == hashlib.sha256(data).hexdigest()
    assert len(data) > 1 << 16  # written in several blocks
