"""The exception types for problems a user meets, and how an error reads in one line.

`UserError` is bad input (exit 2); `DiskFull` is a write that found no space or quota left, an environment
failure (exit 1). Both are one plain line on stderr, no traceback (`scaling.cli.main`). `out_of_memory` says
which errors are memory running out (a grid records such a cell failed and goes on).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import Callable


class UserError(Exception):
    """Bad input: usage, spec, a missing or corrupt file. Its message is one plain line."""


OUT_OF_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


class DiskFull(Exception):
    """A write to `target` failed for want of space (ENOSPC) or quota (EDQUOT); whoever raises it has left
    what was there before as it was, which `kept` says ("the earlier file is unchanged")."""

    def __init__(self, reason: str, target: str, kept: str):
        super().__init__(f"{reason} writing {target} ({kept}); free space and rerun")
        self.reason = reason  # one of OUT_OF_SPACE's
        self.target = target  # what was being written: a file, folder or checkpoint, as the user knows it
        self.kept = kept  # what is there instead

    def __reduce__(self):  # rebuilt from its parts where it crosses processes (a worker's, a Ray task's)
        return DiskFull, (self.reason, self.target, self.kept)


def out_of_space(error: BaseException) -> str | None:
    """Why error is a full disk or quota ("no space left on device"), None if it is not one.

    Python's writers raise OSError with the errno; h5py and pyarrow do too, but tensorstore (orbax's
    arrays) raises a ValueError that only says so in its message ("No space left on device
    [os_error_code='28']"), and the demo re-raises a failed cell's reason; so the message (in any case) and
    the chain of causes are read as well.
    """
    while error is not None:
        if isinstance(error, DiskFull):  # a write inside a bigger one (a file in a staged folder): the outer names it
            return error.reason
        number, message = getattr(error, "errno", None), str(error).lower()
        for code, reason in OUT_OF_SPACE.items():
            if number == code or os.strerror(code).lower() in message:
                return reason
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def reported_if_full(target: str, earlier: Callable[[], bool],
                     kept: str = "the earlier file is unchanged") -> Iterator[None]:
    """Within the block, a write that runs out of space becomes a DiskFull naming target: the one place an
    ENOSPC or EDQUOT becomes what the user reads (the outermost write names what the user asked for).
    `earlier()` says, once the block has failed and cleaned up after itself, whether target holds what it
    held before (then `kept` says so) or nothing."""
    try:
        yield
    except Exception as error:
        reason = out_of_space(error)
        if reason is None:
            raise
        raise DiskFull(reason, target, kept if earlier() else "nothing was written there") from None


def out_of_memory(error: BaseException) -> bool:
    """Whether error is the host (MemoryError) or an accelerator (XLA's RESOURCE_EXHAUSTED) running out of
    memory; tensorstore reports a full disk as RESOURCE_EXHAUSTED too, which is not memory."""
    if isinstance(error, MemoryError):
        return True
    return str(error).lstrip().startswith("RESOURCE_EXHAUSTED") and out_of_space(error) is None


def first_line(error: BaseException, with_type: bool = False) -> str:
    """An error's reason in one line for a report or a status: the first line of its message, after its type's
    name with `with_type` ("ValueError: bad value"), or its type's name alone where the message is blank."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    if not line:
        return type(error).__name__
    return f"{type(error).__name__}: {line}" if with_type else line
