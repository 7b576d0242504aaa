"""A small filesystem that can really be filled, for tests of what a full disk does to every writer.

Where this process may mount (root, as on the development machines and in CI's containers) it is a real
tmpfs of a few MiB, and a full disk is a filler file taking all the space but `leave` bytes: every writer
(Python's, h5py's, pyarrow's, tensorstore's, matplotlib's) meets a real ENOSPC. Elsewhere it falls back to
an ordinary folder whose files cannot be flushed: `os.fsync` of a file in it fails with ENOSPC while it is
"full". Every atomic writer of `scaling` flushes before it renames, so that reaches them; writes by C
libraries that do not flush (a netCDF inside a staged folder) are not reached, and tests that need them
skip with that reason. Each test says which disk it used (`FullDisk.kind`, printed and in its id).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

TMPFS = "tmpfs"  # a real, small filesystem
INJECTED = "injected fsync failure"  # the fallback where mounting is not permitted

CHUNK = 1 << 16


class FullDisk:
    """A folder on a disk that `fill` makes full (but `leave` bytes) and `free` empties again."""

    def __init__(self, path: Path, kind: str):
        self.path = path  # the mount point (or the fallback's folder): write under it
        self.kind = kind  # TMPFS or INJECTED
        self.filler = path / "filler"  # what takes the space up (tmpfs)
        self.full = False  # whether it was filled (and not freed since): the fallback's fsync then fails

    @property
    def real(self) -> bool:
        return self.kind == TMPFS

    def fill(self, leave: int = 0) -> None:
        """Take up all the space but about `leave` bytes (tmpfs counts whole pages)."""
        self.full = True
        if not self.real:
            return
        with open(self.filler, "ab") as out:
            try:
                while True:
                    out.write(os.urandom(CHUNK))
                    out.flush()
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
        os.truncate(self.filler, max(0, self.filler.stat().st_size - leave))

    def free(self) -> None:
        self.full = False
        self.filler.unlink(missing_ok=True)

    def need_real(self, why: str) -> None:
        """Skip a test the fallback cannot serve: writes that never flush are not reached by it."""
        if not self.real:
            pytest.skip(f"needs a real full filesystem ({why}); mounting a tmpfs is not permitted here")

    def listing(self) -> list[str]:
        """Every path under the disk but the filler, relative to it: what writers left behind."""
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p != self.filler)


@contextlib.contextmanager
def full_disk(folder: Path, size: str = "4m", mount: bool = True) -> Iterator[FullDisk]:
    """A FullDisk of `size` at folder (created): a tmpfs mounted there where permitted (and `mount`), unmounted
    after whatever happens; else the fallback, `os.fsync` failing under folder while it is full."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = mount and os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                                  capture_output=True).returncode == 0
    disk = FullDisk(folder, TMPFS if mounted else INJECTED)
    print(f"full disk: {disk.kind} at {folder}")
    if mounted:
        try:
            yield disk
        finally:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)
        return
    flush = os.fsync

    def failing_fsync(descriptor: int) -> None:
        if disk.full and os.readlink(f"/proc/self/fd/{descriptor}").startswith(f"{folder}/"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        flush(descriptor)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", failing_fsync)
        yield disk
