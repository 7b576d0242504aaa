"""A fit's progress on the terminal: which group (or law) is being fitted, and a bar per NUTS chain
(warmup, then sampling) with the elapsed time, so a slow fit is told apart from a stuck one.

A chain is one compiled program (scaling.fit.infer), so it reports from inside through a host callback
every 1% of its iterations; the callback goes to whichever display is active, none outside
`fit_progress`. The display goes to stderr and draws nothing when stderr is not a terminal (a log, a
pipe), and nothing of it is left behind when a group is done: stdout stays the fit's report alone.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

TICKS = 50  # reports per chain


class FitProgress:
    """The active display: a line for the current stage, a bar per chain."""

    def __init__(self, console: Console):
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True, refresh_per_second=4,
                                 # stdout is the fit's report: never captured into the display's stream
                                 redirect_stdout=False, redirect_stderr=False)
        self.lock = threading.Lock()
        self.stage_task = None
        self.chains: list = []
        self.warmup = 0

    def stage(self, label: str, done: int | None, total: int | None) -> None:
        with self.lock:
            if self.stage_task is None:
                self.stage_task = self.progress.add_task(label, total=total, completed=done or 0)
            else:
                self.progress.update(self.stage_task, description=label, total=total, completed=done or 0)

    def start_chains(self, chains: int, warmup: int, samples: int) -> None:
        with self.lock:
            self._drop_chains()
            self.warmup = warmup
            self.chains = [self.progress.add_task(f"  chain {c + 1} warmup", total=warmup + samples)
                           for c in range(chains)]

    def tick(self, chain: int, done: int) -> None:
        with self.lock:
            if chain < len(self.chains):
                phase = "warmup" if done <= self.warmup else "sampling"
                self.progress.update(self.chains[chain], completed=done, description=f"  chain {chain + 1} {phase}")

    def _drop_chains(self) -> None:
        for task in self.chains:
            self.progress.remove_task(task)
        self.chains = []


_active: FitProgress | None = None


@contextmanager
def fit_progress(enabled: bool = True, console: Console | None = None) -> Iterator[None]:
    """Show the fit's progress within the block (on stderr unless `console` says where)."""
    global _active
    console = console or Console(stderr=True)
    if not enabled or not console.is_terminal:  # nobody to see it: no display, and chains compile no callback
        yield
        return
    display = FitProgress(console)
    with display.progress:
        _active = display
        try:
            yield
        finally:
            _active = None


def active() -> bool:
    """Whether a display is listening (chains compile their progress callback only then)."""
    return _active is not None


def stage(label: str, done: int | None = None, total: int | None = None) -> None:
    """What is being fitted now (`group add`, `law sft`), with `done` of `total` stages finished when
    there are several; nothing without an active display."""
    if _active is not None:
        _active.stage(label, done, total)


def start_chains(chains: int, warmup: int, samples: int) -> None:
    if _active is not None:
        _active.start_chains(chains, warmup, samples)


def tick(chain, done) -> None:
    """Called from inside a compiled chain (jax.debug.callback) with arrays."""
    if _active is not None:
        _active.tick(int(chain), int(done))
