"""The local executor: cells in this process, or in N spawned worker processes sharing the run folder.

Workers take cells through the run folder's lock files, exactly as separate runners would, so a
worker killed mid-cell costs only that cell's progress since its last checkpoint.
"""

from __future__ import annotations

import multiprocessing
import queue as queues
import time
from dataclasses import dataclass
from typing import ClassVar

from scaling.errors import DiskFull, UserError
from scaling.grid.executors import Executor, ExecutorOptions
from scaling.grid.folder import RunFolder
from scaling.grid.preempt import Preempted, stop_on_signals
from scaling.grid.runner import EventHook, Outcome, work_on_cells, work_on_cells_by_id
from scaling.grid.spec import Cell, GridSpec

WORKER_EXIT_S = 3.0  # what a worker may take beyond grace_s to end once it stopped (its runtime's teardown)


@dataclass(frozen=True)
class LocalExecutor(Executor):
    """Every cell in this process, or (workers > 1) in that many processes, each starting at its own offset."""

    workers: int = 1  # processes working on cells (1: this one)
    resumable: bool = True  # a stopped run is rerun from its folder; False: the folder is thrown away (see work_on_cells)

    name: ClassVar[str] = "local"
    takes: ClassVar[frozenset[str]] = frozenset({"workers"})

    @classmethod
    def configured(cls, spec: GridSpec, options: ExecutorOptions) -> LocalExecutor:
        return cls(spec.run.workers if options.workers is None else options.workers)

    @property
    def shares_memory(self) -> bool:
        return self.workers == 1

    def run(self, folder: RunFolder, spec: GridSpec, cells: list[Cell], retry_failed: bool,
            on_event: EventHook) -> list[Outcome]:
        if self.workers == 1 or len(cells) <= 1:
            return work_on_cells(folder, spec, cells, retry_failed, on_event, resumable=self.resumable)
        workers = min(self.workers, len(cells))
        # spawn, not fork: a forked JAX runtime deadlocks.
        context = multiprocessing.get_context("spawn")
        events = context.Queue()
        ids = [cell.cell_id for cell in cells]
        processes = [
            context.Process(target=_worker, args=(folder.url, ids[i * len(ids) // workers:] + ids[: i * len(ids) // workers],
                                                  retry_failed, events), daemon=True)
            for i in range(workers)
        ]
        for process in processes:
            process.start()
        by_id = {cell.cell_id: cell for cell in cells}
        outcomes: list[Outcome] = []
        # Workers stop within grace_s of a SIGTERM (forwarded by terminate, if the signal reached only this
        # process); this one waits for them a little longer, and ends at once if even that runs out.
        wait_s = spec.run.grace_s + WORKER_EXIT_S
        with stop_on_signals(wait_s + WORKER_EXIT_S, on_abandon=lambda: _kill(processes)) as stop:
            try:
                while any(p.is_alive() for p in processes) or not events.empty():
                    if stop.requested():
                        _stop(processes, wait_s)
                        raise Preempted(f"its {workers} worker processes stopped (each named its cell above); "
                                        f"rerun to resume")
                    try:
                        kind, cell_id, value = events.get(timeout=0.5)
                    except queues.Empty:
                        continue
                    if kind == "stopped":  # a worker met what stops a runner: the others would meet it too
                        raise value
                    on_event(kind, by_id[cell_id], value)
                    if kind == "end":
                        outcomes.append(value)
            finally:
                _stop(processes, wait_s)
        return outcomes


def _stop(processes: list, wait_s: float) -> None:
    """SIGTERM to the workers still running (each checkpoints its cell and exits), SIGKILL to any still running
    after wait_s."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + wait_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    _kill(processes)


def _kill(processes: list) -> None:
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()


def _worker(run_url: str, cell_ids: list[str], retry_failed: bool, events) -> None:
    """One worker process: every listed cell in order, skipping those another runner holds or finished."""
    last_step = [0.0]

    def forward(kind: str, cell: Cell, value) -> None:
        if kind == "step":  # at most a few progress messages a second, however fast the steps
            if time.monotonic() - last_step[0] < 0.25:
                return
            last_step[0] = time.monotonic()
        events.put((kind, cell.cell_id, value))

    try:
        work_on_cells_by_id(run_url, cell_ids, retry_failed, forward)
    except (UserError, DiskFull) as error:  # told to the parent, which says it in one line as a runner in-process would
        events.put(("stopped", "", error))


EXECUTOR = LocalExecutor
