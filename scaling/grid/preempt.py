"""Preemption: a `scaling run` stopped by SIGTERM checkpoints its cell at the current step, releases its lock
and exits, so that a rerun resumes there and ends with the same numbers.

SLURM (on preemption, KillWait seconds before SIGKILL), Kubernetes and `timeout` send SIGTERM. While cells are
worked on, `stop_on_signals` replaces its handler by one that only sets a flag, `StopRequest.requested`, which
the trainer reads between optimizer steps: the cell's trunk is checkpointed at that step, the cell is left
unfinished (no cell file: it did not fail), its lock is released, and the process exits with EXIT_STATUS after
one line naming what was saved. A step, an evaluation or a checkpoint write that does not end within
`[run] grace_s` is abandoned: the grace timer releases the locks this process holds and interrupts the main
thread, which unwinds as from Ctrl-C (staging folders removed, the previous checkpoint kept); a main thread
stuck in compiled code that long is ended with the process UNWIND_S later. submitit's time-limit signal (USR2)
takes the same path first, then submitit's own handler requeues the job; `ray.cancel` (SIGINT's handler in a
Ray task) too, where the executor asks for it.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

EXIT_STATUS = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM
UNWIND_S = 2.0  # after grace_s, what the interrupted main thread has to unwind before the process is ended


class Preempted(BaseException):
    """The cells' work stopped at a signal's request; its text says what was saved. A BaseException, so that no
    handler of a cell's own failures records it as one."""

    @classmethod
    def of_cell(cls, cell_id: str, saved_step: int | None, steps: int, phase: str = "") -> Preempted:
        """A cell stopped between steps, its newest checkpoint at trunk step `saved_step` (None: it has none), or,
        inside `phase` (an arm after SFT, e.g. "rl from SFT step 64"), at that phase's step `saved_step`."""
        if saved_step is None:
            return cls(f"cell {cell_id} had no checkpoint yet and starts over; rerun to resume")
        if phase:
            return cls(f"cell {cell_id} checkpointed in {phase}: step {saved_step} of {steps}; rerun to resume")
        return cls(f"cell {cell_id} checkpointed at step {saved_step} of {steps}; rerun to resume")


class _Abandoned(BaseException):
    """The grace period ran out: raised in the main thread, which unwinds from wherever it was."""


class StopRequest:
    """Whether this process was asked to stop, and what to release if the grace period runs out first."""

    def __init__(self, grace_s: float, on_abandon: Callable[[], None] = lambda: None):
        self.grace_s = grace_s  # seconds from the signal to the end of the process, whatever it is doing
        self.signal_name = ""  # the signal that asked, once one has
        self._asked = threading.Event()
        self._abandoned = threading.Event()
        self._unwound = threading.Event()  # the abandoned main thread got out of the work
        self._held: list = []  # CellLocks held while a cell is worked on: released if the grace runs out
        self._on_abandon = on_abandon  # what else to do before the process ends at once (stop worker processes)
        self._timer: threading.Timer | None = None

    def requested(self) -> bool:
        return self._asked.is_set()

    def handle(self, signum: int, frame) -> None:
        """The signal handler: a request, or (once the grace period ran out) the interruption that abandons."""
        if self._abandoned.is_set():
            raise _Abandoned
        self.request(signal.Signals(signum).name)

    def request(self, signal_name: str) -> None:
        """Ask the work to stop; the first request starts the grace period."""
        if self._asked.is_set():
            return
        self.signal_name = signal_name
        self._asked.set()
        self._timer = threading.Timer(self.grace_s, self._abandon)
        self._timer.daemon = True
        self._timer.start()

    @contextmanager
    def holding(self, lock) -> Iterator[None]:
        """While `lock` is held, an abandoning process releases it (so a requeued job elsewhere need not wait
        `[run] stale_after_s` for it)."""
        self._held.append(lock)
        try:
            yield
        finally:
            self._held.remove(lock)

    def cancel(self) -> None:
        """The work ended within the grace period: no abandonment."""
        if self._timer is not None:
            self._timer.cancel()

    def unwound(self) -> None:
        """The abandoned main thread got out of the work: the process ends on its own."""
        self._unwound.set()

    @property
    def abandoned_line(self) -> str:
        return (f"scaling: stopped by {self.signal_name}: abandoned the step under way after grace_s = "
                f"{self.grace_s:g} s; a rerun resumes from the last checkpoint")

    def _abandon(self) -> None:
        """The grace period ran out (the timer's thread): release the locks now, whatever the main thread is doing,
        interrupt it (its handler raises _Abandoned), and end the process if it has not ended UNWIND_S later."""
        for lock in list(self._held):
            lock.release()
        self._on_abandon()
        self._abandoned.set()
        _thread.interrupt_main(signal.SIGTERM)
        if not self._unwound.wait(UNWIND_S):
            print(self.abandoned_line, file=sys.stderr, flush=True)
            os._exit(EXIT_STATUS)


def _chained_signals() -> list[signal.Signals]:
    """USR2 when submitit handles it (its time-limit and preemption signal): stopped gracefully first, then
    passed on to submitit's handler, which requeues the job."""
    usr2 = signal.getsignal(signal.SIGUSR2)
    return [signal.SIGUSR2] if callable(usr2) else []


@contextmanager
def stop_on_signals(grace_s: float, on_abandon: Callable[[], None] = lambda: None,
                    sigint_stops: bool = False) -> Iterator[StopRequest]:
    """Within the block, SIGTERM (and submitit's USR2; SIGINT too if `sigint_stops`) only request a stop; the
    handlers before are restored after. A `Preempted` leaving the block prints its line and exits with
    EXIT_STATUS (a chained USR2 goes to its own handler then). Off the main thread signals cannot be handled:
    the block runs as if none came."""
    stop = StopRequest(grace_s, on_abandon)
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    signals = [signal.SIGTERM, *_chained_signals(), *([signal.SIGINT] if sigint_stops else [])]
    before = {signum: signal.getsignal(signum) for signum in signals}
    for signum in signals:
        signal.signal(signum, stop.handle)
    try:
        yield stop
    except _Abandoned:
        stop.unwound()
        print(stop.abandoned_line, file=sys.stderr, flush=True)
        raise SystemExit(EXIT_STATUS) from None
    except Preempted as preempted:
        stop.cancel()
        print(f"scaling: stopped by {stop.signal_name}: {preempted}", file=sys.stderr, flush=True)
        chained = before[signal.SIGUSR2] if stop.signal_name == "SIGUSR2" else None
        _restore(before)
        if callable(chained):
            chained(signal.SIGUSR2, None)
        raise SystemExit(EXIT_STATUS) from None
    finally:
        stop.cancel()
        _restore(before)


def _restore(handlers: dict) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
