"""RunFolder on a local path, a file:// URL and memory://: atomic writes, exclusive create, listing, times."""

import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from scaling.grid.folder import RunFolder

KINDS = ("path", "file_url", "memory")


@pytest.fixture(params=KINDS)
def folder(request, tmp_path):
    if request.param == "path":
        yield RunFolder(tmp_path / "run")
    elif request.param == "file_url":
        yield RunFolder((tmp_path / "run").as_uri())
    else:
        memory = RunFolder(f"memory://run-{uuid.uuid4().hex}")
        yield memory
        memory.remove_tree("")


def all_files(folder: RunFolder) -> list[str]:
    """Every file under the folder, hidden ones included, as the filesystem itself lists them."""
    if not folder.fs.exists(folder.root):
        return []
    return sorted(folder.fs.find(folder.root))


def test_locations_are_normalised(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = RunFolder("runs/x/")
    assert relative.is_local and relative.local_path == tmp_path / "runs" / "x"
    assert relative.url == str(tmp_path / "runs" / "x")
    assert relative.path("a/b.nc") == str(tmp_path / "runs" / "x" / "a" / "b.nc")
    url = RunFolder((tmp_path / "y").as_uri() + "/")
    assert url.is_local and url.local_path == tmp_path / "y" and not url.url.endswith("/")
    memory = RunFolder("memory://somewhere/deep")
    assert not memory.is_local and memory.local_path is None
    assert memory.path("c.txt") == memory.root + "/c.txt"


def test_paths_may_not_leave_the_folder(folder):
    for bad in ("../outside", "a/../../b", "/absolute"):
        with pytest.raises(ValueError):
            folder.path(bad)


def test_atomic_write_creates_parents_and_leaves_no_temporary(folder):
    folder.write_bytes_atomic("a/b/cell.bin", b"first")
    folder.write_bytes_atomic("a/b/cell.bin", b"second")
    assert folder.read_bytes("a/b/cell.bin") == b"second"
    assert folder.read_text("a/b/cell.bin") == "second"
    assert all_files(folder) == [folder.path("a/b/cell.bin")]


def test_failed_write_leaves_no_temporary_and_no_file(folder):
    with pytest.raises(TypeError):
        folder.write_bytes_atomic("a/cell.bin", "text is not bytes")
    assert not folder.exists("a/cell.bin")
    assert all_files(folder) == []


def test_put_file_atomic_copies_a_local_file(folder, tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(bytes(range(256)) * 100)
    folder.put_file_atomic("cells/one.bin", source)
    assert folder.read_bytes("cells/one.bin") == source.read_bytes()
    assert all_files(folder) == [folder.path("cells/one.bin")]


def test_readers_never_see_a_partial_file(tmp_path):
    folder = RunFolder(tmp_path / "run")
    size = 4 << 20
    folder.write_bytes_atomic("big.bin", b"a" * size)
    stop = threading.Event()

    def rewrite():
        letter = 0
        while not stop.is_set():
            folder.write_bytes_atomic("big.bin", (b"b", b"c")[letter] * size)
            letter ^= 1

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(100):
            seen = folder.read_bytes("big.bin")
            assert len(seen) == size and seen.count(seen[:1]) == size
    finally:
        stop.set()
        writer.join()


def test_create_exclusive_only_once(folder):
    assert folder.create_exclusive("locks/cell.lock", b"mine")
    assert not folder.create_exclusive("locks/cell.lock", b"yours")
    assert folder.read_bytes("locks/cell.lock") == b"mine"


def test_exists_and_remove(folder):
    assert not folder.exists("x.txt")
    folder.write_bytes_atomic("x.txt", b"1")
    assert folder.exists("x.txt")
    folder.remove("x.txt")
    assert not folder.exists("x.txt")
    folder.remove("x.txt")  # missing is fine by default
    with pytest.raises(FileNotFoundError):
        folder.remove("x.txt", missing_ok=False)
    with pytest.raises(FileNotFoundError):
        folder.read_bytes("x.txt")


def test_remove_tree(folder):
    folder.write_bytes_atomic("tree/a.txt", b"1")
    folder.write_bytes_atomic("tree/sub/b.txt", b"2")
    folder.write_bytes_atomic("kept.txt", b"3")
    folder.remove_tree("tree")
    assert not folder.exists("tree/a.txt") and not folder.exists("tree/sub/b.txt")
    assert folder.exists("kept.txt")
    folder.remove_tree("tree")  # absent is fine


def test_list_is_sorted_filtered_and_flat(folder):
    for name in ("b.lock", "a.lock", "c.nc", "sub/d.lock"):
        folder.write_bytes_atomic(f"cells/{name}", b"")
    if folder.is_local:  # a temporary left by a writer that is still busy, as a crashed one would leave
        (folder.local_path / "cells" / ".e.lock.123.tmp").write_bytes(b"")
    else:
        folder.fs.pipe_file(folder.path("cells/.e.lock.123.tmp"), b"")
    assert folder.list("cells") == ["a.lock", "b.lock", "c.nc"]
    assert folder.list("cells", suffix=".lock") == ["a.lock", "b.lock"]
    assert folder.list("absent") == []


def test_modified_and_touch(folder):
    folder.write_bytes_atomic("t.txt", b"keep me")
    before = folder.modified("t.txt")
    assert abs(before - time.time()) < 5
    if folder.is_local:
        os.utime(folder.local_path / "t.txt", (before - 100, before - 100))
        before -= 100
    else:
        time.sleep(0.05)
    folder.touch("t.txt")
    after = folder.modified("t.txt")
    assert after > before and abs(after - time.time()) < 5
    assert folder.read_bytes("t.txt") == b"keep me"
    with pytest.raises(FileNotFoundError):
        folder.touch("absent.txt")


def test_local_files_are_readable_by_others_under_the_umask(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_bytes_atomic("shared.bin", b"x")
    folder.create_exclusive("shared.lock", b"x")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("shared.bin", "shared.lock"):
        assert Path(tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask
