"""Files a user names (data sources, checked files, specs, tables, checkpoints): regular files only, and JSON
lines read as a stream with a bound on each line.

A special file is no input: /dev/zero never ends, a FIFO blocks its reader until some writer comes, and a
device, socket or folder is not data. `os.stat` tells them apart without opening them, so they are refused
by name before any read; a JSON-lines file is read one bounded line at a time, so a huge file or one
without newlines never fills memory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from scaling.errors import UserError

# The longest line a JSON-lines reader takes, newline included. Real SFT rows (a prompt, a long chain of
# thought, a completion) run to tens of kilobytes; a longer line is a binary or corrupt file, or one without
# newlines, which would otherwise be read whole into memory before a single record could be refused.
MAX_LINE_BYTES = 1 << 20

_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind_of(mode: int) -> str:
    """What a file's `st_mode` says it is, in words: "a regular file", "a folder", "a FIFO", ..."""
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def _refuse_special(mode: int, path: Path, what: str) -> None:
    """UserError naming what path is, unless its mode is a regular file's."""
    if not stat.S_ISREG(mode):
        raise UserError(f"{what} {path} is {kind_of(mode)}, not a regular file")


def file_mode(path: str | Path, what: str) -> int:
    """The `st_mode` of what path names (links followed, nothing opened); a UserError naming `what` and path where
    there is nothing there, or nothing this process may look at."""
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except OSError as error:
        raise UserError(f"{what} {path} is unreadable ({error.strerror or type(error).__name__})") from None


def regular_file(path: str | Path, what: str) -> Path:
    """path, once `os.stat` (links followed, nothing opened) shows a regular file; else a UserError that names
    `what` (say "[data] source") and what the path is: missing, a FIFO, a device, a folder..."""
    path = Path(path)
    _refuse_special(file_mode(path, what), path, what)
    return path


def lines(path: str | Path, what: str) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, the line's bytes) of a regular file, read as a stream; a line longer than
    MAX_LINE_BYTES is a UserError naming the file and line."""
    path = regular_file(path, what)
    try:
        # Non-blocking, so a path swapped for a FIFO since the check cannot block the open; checked again below.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise UserError(f"{what} {path} is unreadable ({error.strerror or type(error).__name__})") from None
    with os.fdopen(descriptor, "rb") as handle:
        _refuse_special(os.fstat(descriptor).st_mode, path, what)
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise UserError(f"{path} line {number} is longer than {MAX_LINE_BYTES >> 20} MiB (a JSON line holds "
                                f"one record; is this a binary file?)")
            yield number, raw
