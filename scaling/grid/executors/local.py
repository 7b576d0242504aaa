"""The local executor: cells in this process, or in N spawned worker processes sharing the run folder.

Workers take cells through the run folder's lock files, exactly as separate runners would, so a
worker killed mid-cell costs only that cell's progress since its last checkpoint.
"""

from __future__ import annotations

import multiprocessing
import queue as queues
import time

from scaling.grid.spec import Cell, GridSpec
from scaling.grid.folder import RunFolder
from scaling.grid.runner import EventHook, Outcome, work_on_cell


def run_local(folder: RunFolder, spec: GridSpec, spec_text: str, cells: list[Cell], retry_failed: bool,
              workers: int, on_event: EventHook) -> list[Outcome]:
    """Work on every cell; with workers > 1 in that many processes, each starting at its own offset."""
    if workers == 1 or len(cells) <= 1:
        outcomes = []
        for cell in cells:
            outcomes.append(work_on_cell(folder, spec, spec_text, cell, retry_failed, on_event))
            on_event("end", cell, outcomes[-1])
        return outcomes
    workers = min(workers, len(cells))
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
    from scaling.grid.spec import expand
    from scaling.grid.runner import read_run_spec

    folder = RunFolder(run_url)
    spec, text = read_run_spec(folder)
    cells = {cell.cell_id: cell for cell in expand(spec)}

    last_step = [0.0]

    def forward(kind: str, cell: Cell, value) -> None:
        if kind == "step":  # at most a few progress messages a second, however fast the steps
            if time.monotonic() - last_step[0] < 0.25:
                return
            last_step[0] = time.monotonic()
        events.put((kind, cell.cell_id, value))

    for cell_id in cell_ids:
        forward("end", cells[cell_id], work_on_cell(folder, spec, text, cells[cell_id], retry_failed, forward))
