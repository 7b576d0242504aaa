"""Termination signals unwind the program as Ctrl-C does, so nothing partial is left on disk.

SIGTERM (what `timeout`, SLURM, Kubernetes and `kill` send) and SIGHUP (what a closed terminal or a dropped
ssh session sends) end a process without running its `finally` blocks by default, so a staging folder or a
temporary file (`scaling.staging`) would stay behind. With `unwinding_on_termination()` in force, either
signal raises `Terminated` in the main thread instead, as SIGINT raises KeyboardInterrupt: every `finally`
and `except BaseException` block runs, and `scaling.cli.main` reports it in one line with status 128 + the
signal's number (143 for SIGTERM, 129 for SIGHUP).

A signal a process was started ignoring stays ignored (`nohup` ignores SIGHUP; the process then outlives its
terminal, as asked). Once a termination is being unwound, further termination signals are ignored: SLURM and
process managers may send SIGTERM to every process again, and a repeat raised inside a cleanup would leave
it half done. SIGKILL still ends a cleanup that hangs; Ctrl-C (SIGINT) keeps Python's meaning.

`handling(signum, handler)` puts another handler in place for a block and restores the previous one after:
the run's cells use it to stop gracefully at a step instead of unwinding.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

TERMINATING = (signal.SIGTERM, signal.SIGHUP)  # signals that end a process unless handled
RETRY_S = 0.05  # a signal that came during an import is sent again after this many seconds

# Set once a termination is being unwound in this process: from then on, finalizers of objects it cut short in
# their construction (an HDF5 file half opened, say) fail as Python collects them, with tracebacks of a half-made
# object that tell the user nothing; `_revive_swallowed` drops them.
_UNWINDING = threading.Event()

Handler = Callable[[int, FrameType | None], object] | int | None  # what signal.signal takes and returns


class Terminated(BaseException):
    """A termination signal arrived: a BaseException, like KeyboardInterrupt, so that `except Exception` blocks
    (a cell's failure record, say) let it pass and only cleanups see it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum  # the signal's number

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """What a shell reports for a process the signal ended: 128 + the signal's number."""
        return 128 + self.signum


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    """The handler: ignore further termination signals, then unwind by raising Terminated. Python runs it in
    the main thread between bytecodes, so setting dispositions here is safe.

    Not inside an import: an exception raised there leaves the module half made, and a C extension's
    (jaxlib's, torch's) failed initialization turns it into an ImportError, a RuntimeError or a crash of
    the interpreter (seen: SIGSEGV, SIGABRT). The signal is sent again shortly instead, until the import is
    done; commands import their heavy modules lazily, so a signal often lands in one.
    """
    if _importing(frame):
        _send_again(signum)
        return
    for other in TERMINATING:
        signal.signal(other, signal.SIG_IGN)
    _UNWINDING.set()
    raise Terminated(signum)


def _send_again(signum: int) -> None:
    """Send signum to this process again in RETRY_S seconds, from a timer thread."""
    retry = threading.Timer(RETRY_S, os.kill, (os.getpid(), signum))
    retry.daemon = True
    retry.start()


def _revive_swallowed(unraisable, previous_hook: Callable) -> None:
    """A `sys.unraisablehook`: a Terminated raised where Python cannot propagate it (the handler ran inside a
    `__del__` or a weakref callback of the garbage collector, whose exceptions are printed and dropped) would
    lose the signal, and the command would run on to the end. The handler is put back and the signal sent
    again, to land in ordinary code. Once a termination is unwinding, a finalizer's failure is dropped (see
    _UNWINDING); anything else goes to the hook before."""
    if isinstance(unraisable.exc_value, Terminated):
        signum = unraisable.exc_value.signum
        signal.signal(signum, raise_terminated)
        _send_again(signum)
        return
    if not _UNWINDING.is_set():
        previous_hook(unraisable)


def _importing(frame: FrameType | None) -> bool:
    """Whether frame or a caller of it is importlib's import machinery at work."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def handling(signum: int, handler: Handler, after: Handler = None) -> Iterator[None]:
    """handler in place for signum during the block; after it, `after` if given, else the previous handler (the
    default action where the previous one was not set from Python and cannot be named)."""
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, after if after is not None else signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def unwinding_on_termination(ignore_after: bool = False) -> Iterator[None]:
    """SIGTERM and SIGHUP raise Terminated during the block (each one not ignored at the start); the previous
    handlers are restored after, or, with `ignore_after` (the block is the whole program, whose work is done
    when it ends), the signals are ignored: one arriving while the interpreter exits would otherwise kill it
    by the default action, and its status would say it was cut short; the unraisable hook then stays too, for
    the finalizers Python runs as it exits. It stays as well when a Terminated leaves the block: the process
    is on its way out, and the objects the signal cut short are collected after the block (at the next
    collection of a reference cycle, or as the interpreter exits), their finalizers' failures still to be
    dropped. Outside the main thread it does nothing: only the main thread can set handlers, and Python runs
    them there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with contextlib.ExitStack() as stack:
        for signum in TERMINATING:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                stack.enter_context(handling(signum, raise_terminated, signal.SIG_IGN if ignore_after else None))
        previous_hook = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: _revive_swallowed(unraisable, previous_hook)
        try:
            yield
        except Terminated:
            raise  # the hook stays, and _UNWINDING set
        except BaseException:
            _restore(previous_hook, ignore_after)
            raise
        _restore(previous_hook, ignore_after)


def _restore(previous_hook: Callable, ignore_after: bool) -> None:
    """After a block no termination left: the unraisable hook before back (unless the block was the program),
    and a termination caught inside it over."""
    if not ignore_after:
        _UNWINDING.clear()
        sys.unraisablehook = previous_hook
