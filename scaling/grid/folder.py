"""A run folder that may be a local path or an fsspec URL (`file://`, `memory://`, `s3://`, ...).

The grid runner reads and writes results through `RunFolder` alone, so one code path serves a local
disk, a shared network filesystem and an object store. Paths given to its methods are relative to the
folder's root and use "/" separators on every platform.

Writes are atomic: a reader sees the old file, the new file, or no file, never half of one. On a local
filesystem that means `scaling.staging.write_file_atomic` (a temporary in the same folder, fsync,
rename); elsewhere a temporary sibling moved into place (an object store's put is atomic by itself,
the move keeps other backends honest). A write that finds the disk or quota full removes its temporary
and raises `scaling.errors.DiskFull` naming the file.
"""

from __future__ import annotations

import datetime
import errno
import os
import shutil
import stat
from pathlib import Path, PurePosixPath
from typing import Callable

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from scaling import staging
from scaling.errors import reported_if_full
from scaling.user_files import regular_file



class RunFolder:
    """A folder of run results on any fsspec filesystem; every method takes a path relative to its root."""

    def __init__(self, location: str | os.PathLike):
        text = os.fspath(location)
        if isinstance(location, os.PathLike) or "://" not in text:
            # A plain path: made absolute now, so a later chdir cannot move the run folder.
            text = str(Path(text).expanduser().resolve())
        stripped = text.rstrip("/")
        # As given, less a trailing "/"; a bare root ("/", "memory://") keeps its slashes.
        self.url: str = stripped if stripped and not stripped.endswith(":") else text
        fs, root = url_to_fs(self.url)
        self.fs = fs
        self.root: str = root.rstrip("/") or "/"
        self.is_local: bool = isinstance(self.fs, LocalFileSystem)
        self.local_path: Path | None = Path(self.root) if self.is_local else None

    def __repr__(self) -> str:
        return f"RunFolder({self.url!r})"

    def path(self, rel: str) -> str:
        """The full path of rel inside the filesystem (what `fs` methods take)."""
        parts = _relative_parts(rel)
        return "/".join([self.root.rstrip("/"), *parts]) if parts else self.root

    def exists(self, rel: str) -> bool:
        if self.is_local:
            return self._local(rel).exists()
        return self.fs.exists(self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        """The file's contents; FileNotFoundError when it is absent."""
        if self.is_local:
            local = self._local(rel)
            if not stat.S_ISREG(os.stat(local).st_mode):  # absent: FileNotFoundError, as callers expect
                regular_file(local, "run folder file")  # a FIFO or a device put here would block or never end: named
            return local.read_bytes()
        return self.fs.cat_file(self.path(rel))

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def write_bytes_atomic(self, rel: str, data: bytes) -> None:
        """Write data to rel so that readers see either the old file or all of the new one."""
        if self.is_local:
            staging.write_file_atomic(self._local(rel), data)
        else:
            self._replace_remote_atomic(rel, lambda temporary: self.fs.pipe_file(temporary, data))

    def put_file_atomic(self, rel: str, local_file: Path) -> None:
        """Copy a file from this machine's disk to rel, atomically like `write_bytes_atomic`."""
        local_file = Path(local_file)
        if self.is_local:
            with open(local_file, "rb") as source:
                staging.write_file_atomic(self._local(rel), lambda out: shutil.copyfileobj(source, out))
        else:
            self._replace_remote_atomic(rel, lambda temporary: self.fs.put_file(str(local_file), temporary))

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Create rel holding data only if it does not exist: True if this call created it, False if it existed.

        A local reader sees the whole file or none (see `_create_local_exclusive`); elsewhere a reader
        may see it short or empty, which lock readers allow for (see `scaling.grid.locks`).
        """
        if self.is_local:
            return _create_local_exclusive(self._local(rel), data)
        full = self.path(rel)
        # The exists check answers the common case with one cheap request. It is also the only check on
        # backends without exclusive create: fsspec's base `pipe_file(mode="create")` is itself
        # exists-then-write, so there this is best effort and two writers may both succeed. Backends
        # that implement "create" (memory, and object stores with conditional writes) refuse atomically.
        if self.fs.exists(full):
            return False
        self.fs.makedirs(self.fs._parent(full), exist_ok=True)
        try:
            self.fs.pipe_file(full, data, mode="create")
        except FileExistsError:
            return False
        return True

    def initialize(self, files: dict[str, bytes], last: str) -> bool:
        """Give a new (absent or empty) folder its first files, all at once: True if this call did, False if
        the folder already had content (another runner's, or a user's).

        Locally the files are written into a hidden sibling folder that is renamed onto this one, so racing
        runners see no folder or a complete one, never a folder being filled. Where that rename cannot be
        used (an object store; a folder that is a mount point) the files are written in place with `last`
        created exclusively and written after the others: a reader that finds `last` finds everything.
        """
        assert last in files
        if self.is_local:
            published = staging.publish_once(self.local_path, {'/'.join(_relative_parts(rel)): data for rel, data in files.items()})
            if published is not None:
                return published
        for rel, data in files.items():
            if rel != last:
                self.write_bytes_atomic(rel, data)
        return self.create_exclusive(last, files[last])

    def remove(self, rel: str, missing_ok: bool = True) -> None:
        if self.is_local:
            self._local(rel).unlink(missing_ok=missing_ok)
            return
        full = self.path(rel)
        # Some object stores answer a delete of a missing key with success, so absence is checked here.
        if not missing_ok and not self.fs.exists(full):
            raise FileNotFoundError(full)
        try:
            self.fs.rm_file(full)
        except FileNotFoundError:
            pass

    def remove_tree(self, rel: str) -> None:
        """Remove the folder rel and everything under it; nothing happens if it is absent."""
        if self.is_local:
            folder = self._local(rel)
            try:
                shutil.rmtree(folder)
            except FileNotFoundError:
                if folder.exists():  # only a folder that is gone altogether counts as removed
                    raise
            return
        try:
            self.fs.rm(self.path(rel), recursive=True)
        except FileNotFoundError:
            pass

    def list(self, rel_dir: str = "", suffix: str = "") -> list[str]:
        """Sorted names of the files directly in rel_dir ending with suffix, temporary files left out."""
        if self.is_local:
            try:
                with os.scandir(self._local(rel_dir)) as entries:
                    names = [entry.name for entry in entries if entry.is_file()]
            except (FileNotFoundError, NotADirectoryError):
                return []
        else:
            try:
                entries = self.fs.ls(self.path(rel_dir), detail=True)
            except FileNotFoundError:
                return []
            names = [PurePosixPath(entry["name"]).name for entry in entries if entry["type"] == "file"]
        return sorted(n for n in names if n.endswith(suffix) and not n.startswith(staging.TEMPORARY_PREFIX))

    def modified(self, rel: str) -> float:
        """When rel was last modified, in seconds since the epoch (by the filesystem's clock)."""
        if self.is_local:
            return self._local(rel).stat().st_mtime
        when = self.fs.modified(self.path(rel))
        if when.tzinfo is None:  # fsspec backends that return naive datetimes mean UTC
            when = when.replace(tzinfo=datetime.timezone.utc)
        return when.timestamp()

    def touch(self, rel: str) -> None:
        """Set rel's modification time to now, keeping its contents; FileNotFoundError when it is absent."""
        if self.is_local:
            os.utime(self._local(rel))
            return
        full = self.path(rel)
        # Object stores cannot change a timestamp in place: rewriting the same bytes is the portable way.
        self.fs.pipe_file(full, self.fs.cat_file(full))

    def _local(self, rel: str) -> Path:
        assert self.local_path is not None
        return self.local_path.joinpath(*_relative_parts(rel))

    def _replace_remote_atomic(self, rel: str, upload: Callable[[str], None]) -> None:
        full = self.path(rel)
        parent = self.fs._parent(full)
        temporary = f"{parent.rstrip('/')}/{staging.temporary_name(PurePosixPath(full).name)}"
        with reported_if_full(f"{self.url}/{rel}", lambda: self.fs.exists(full)):
            self.fs.makedirs(parent, exist_ok=True)
            try:
                upload(temporary)
                self.fs.mv(temporary, full)
            except BaseException:
                try:
                    self.fs.rm_file(temporary)
                except FileNotFoundError:
                    pass
                raise


def _relative_parts(rel: str) -> list[str]:
    """The components of a relative "/"-separated path; anything that could leave the root is refused."""
    parts = [part for part in rel.split("/") if part not in ("", ".")]
    if rel.startswith("/") or "\\" in rel or ".." in parts:
        raise ValueError(f"run folder paths are relative and stay inside the folder, got {rel!r}")
    return parts


def _create_local_exclusive(target: Path, data: bytes) -> bool:
    """Exactly one creator wins, and a reader never sees the file short: the data go to a temporary
    sibling first, which is hard-linked to target (link, like O_CREAT|O_EXCL, fails where target exists;
    both are atomic on local filesystems and NFSv3 and later). Where hard links are unsupported the file
    is created with O_EXCL and written after."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / staging.temporary_name(target.name)
    try:
        with reported_if_full(str(target), target.exists):  # named as the file it makes, not its temporary
            staging.write_new_file(temporary, data)
        try:
            os.link(temporary, target)
        except FileExistsError:
            return False
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            return _create_local_exclusive_in_place(target, data)
    finally:
        temporary.unlink(missing_ok=True)
    staging.fsync_folder(target.parent)
    return True


def _create_local_exclusive_in_place(target: Path, data: bytes) -> bool:
    try:
        staging.write_new_file(target, data)
    except FileExistsError:
        return False
    except BaseException:
        # A half-written file would block everyone until judged stale; better to leave none.
        target.unlink(missing_ok=True)
        raise
    staging.fsync_folder(target.parent)
    return True
