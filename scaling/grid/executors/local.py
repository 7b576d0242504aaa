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

from scaling.grid.executors import Executor, ExecutorOptions
from scaling.grid.folder import RunFolder
from scaling.grid.runner import EventHook, Outcome, work_on_cells, work_on_cells_by_id
from scaling.grid.spec import Cell, GridSpec


@dataclass(frozen=True)
class LocalExecutor(Executor):
    """Every cell in this process, or (workers > 1) in that many processes, each starting at its own offset."""

    workers: int = 1  # processes working on cells (1: this one)

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
            return work_on_cells(folder, spec, cells, retry_failed, on_event)
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
        try:
            while any(p.is_alive() for p in processes) or not events.empty():
                try:
                    kind, cell_id, value = events.get(timeout=0.5)
                except queues.Empty:
                    continue
                on_event(kind, by_id[cell_id], value)
                if kind == "end":
                    outcomes.append(value)
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
                process.join()
        return outcomes


def _worker(run_url: str, cell_ids: list[str], retry_failed: bool, events) -> None:
    """One worker process: every listed cell in order, skipping those another runner holds or finished."""
    last_step = [0.0]

    def forward(kind: str, cell: Cell, value) -> None:
        if kind == "step":  # at most a few progress messages a second, however fast the steps
            if time.monotonic() - last_step[0] < 0.25:
                return
            last_step[0] = time.monotonic()
        events.put((kind, cell.cell_id, value))

    work_on_cells_by_id(run_url, cell_ids, retry_failed, forward)


EXECUTOR = LocalExecutor
