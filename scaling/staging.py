"""Publishing outputs whole: a reader sees the old file or folder, or all of the new one, never part.

Three ways, one for each kind of output:
- `write_file_atomic`: one file, through a temporary sibling renamed over it;
- `staged_folder`: a command's output folder (a fit, the demo, the paper's figures, a model folder),
  filled aside and renamed into place, replacing an earlier one only if the same command wrote it;
- `publish_once`: a folder that several processes may race to create (a run folder, a cached base):
  the first complete one wins and is never replaced.

A write that runs out of space or quota raises `scaling.errors.DiskFull` naming what was being written, once
its temporary is removed (the earlier file or folder is as it was).

Files are created with mode 0o666 less the umask, as `open` would (not mkstemp's 0o600): results in a
shared folder must be readable by the others who share it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Callable

from scaling.errors import UserError, reported_if_full

TEMPORARY_PREFIX = "."  # temporaries are hidden: listings skip them, and so do most tools
TEMPORARY_SUFFIX = ".tmp"


def temporary_name(name: str) -> str:
    """A hidden, unique sibling name: concurrent writers never share a temporary."""
    return f"{TEMPORARY_PREFIX}{name}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}"


def write_new_file(path: Path, data: bytes) -> None:
    """Create path (it must not exist) holding data, flushed to disk; on a full disk the caller removes it."""
    with reported_if_full(str(path), lambda: False):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())


def write_file_atomic(target: Path, content: bytes | Callable[[BinaryIO], object]) -> None:
    """Replace target by content (bytes, or a function that writes to an open binary file): a temporary
    sibling is written, fsynced and renamed over target, then the folder is synced."""
    target = Path(target)
    with reported_if_full(str(target), target.exists):
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / temporary_name(target.name)
        try:  # made inside the try: a signal handled just after it is made still removes it
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(descriptor, "wb") as out:
                if isinstance(content, bytes):
                    out.write(content)
                else:
                    content(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    fsync_folder(target.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename or creation in folder durable; skipped where folders cannot be opened or synced."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def check_replaceable(out: Path, marker: str | None, writer: str) -> None:
    """Refuse an `out` that is a file, or a non-empty folder this writer did not write (the marker file
    says it did; with no marker, only a new or empty folder will do)."""
    out = Path(out)
    if out.is_file():
        raise UserError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()):
        if marker is None:
            raise UserError(f"--out {out} already exists and is not empty; give a new or empty folder")
        if not (out / marker).is_file():
            raise UserError(f"--out {out} exists and was not written by `{writer}`; choose another folder")


@contextlib.contextmanager
def staged_folder(out: Path, marker: str | None, writer: str) -> Iterator[Path]:
    """A staging folder beside `out` that replaces `out` once the block completes.

    `out` may be new, empty, or an earlier output of the same writer (it holds `marker`); anything else is
    refused before the block runs. An earlier folder is retired only when the new one is complete; on any
    failure, interrupts included, `out` is as it was and the staging folder is gone.
    """
    out = Path(out)
    check_replaceable(out, marker, writer)
    with reported_if_full(str(out), out.exists, "the earlier folder is unchanged"):
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = out.parent / temporary_name(out.name)
        retired = out.parent / temporary_name(out.name)  # where an earlier out waits while the new one moves in
        try:  # made inside the try: a signal handled just after the mkdir still removes it
            staging.mkdir()
            yield staging
            if marker is not None:
                assert (staging / marker).is_file(), f"{writer} wrote no {marker}: its folder could never be replaced"
            if out.exists():
                out.rename(retired)
                staging.rename(out)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                staging.rename(out)
            fsync_folder(out.parent)
        except BaseException:
            # An interrupt between the two renames would leave no out at all: the earlier one goes back.
            if retired.exists() and not out.exists():
                retired.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
            shutil.rmtree(staging, ignore_errors=True)
            raise


def publish_folder(out: Path, fill: Callable[[Path], None], marker: str | None, writer: str) -> None:
    """`fill` a staging folder, then put it in place of `out` (see `staged_folder`)."""
    with staged_folder(out, marker, writer) as staging:
        fill(staging)


def publish_once(target: Path, files: dict[str, bytes] | Callable[[Path], None]) -> bool | None:
    """Give target, absent or an empty folder, its whole content at once: True if this call did, False if
    target already had content (another process won), None where the rename cannot be done here (target
    is a mount point, or on another filesystem): the caller then writes in place.

    The content (files by relative path, or a function that fills a folder) goes into a hidden sibling
    that is renamed onto target; a rename replaces only an absent target or an empty folder, atomically.
    """
    target = Path(target)
    with reported_if_full(str(target), target.exists, "the earlier folder is unchanged"):
        return _publish_once(target, files)


def _publish_once(target: Path, files: dict[str, bytes] | Callable[[Path], None]) -> bool | None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / temporary_name(target.name)
    try:  # made inside the try: a signal handled just after the mkdir still removes it
        staging.mkdir()
        if callable(files):
            files(staging)
        else:
            for rel, data in files.items():
                path = staging / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                write_new_file(path, data)
        if target.is_dir():  # an empty folder made for the output keeps its permissions (a group's shared folder)
            shutil.copymode(target, staging)
        try:
            os.rename(staging, target)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            if error.errno in (errno.EXDEV, errno.EBUSY, errno.EPERM, errno.EACCES) and target.is_dir():
                return None
            raise
        fsync_folder(target.parent)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
