"""`scaling run GRID.toml`: validate the spec, then run its unfinished cells on the chosen executor.

Everything that can be wrong with the input (the spec, the run folder, a corrupt cell file) is found
before the first write, so bad input exits 2 with nothing written.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from scaling.grid.executors import Executor, ExecutorOptions, choose_executor
from scaling.errors import UserError
from scaling.grid.spec import Cell, GridSpec, expand, grid_axes, grid_size, load_spec
from scaling.grid.folder import RunFolder
from scaling.grid.logs import check_log_installed
from scaling.grid.runner import RUNNING_ELSEWHERE, SPEC, Outcome, check_same_grid, needs_work, open_run

# The most cells one run takes. A run makes every cell's id and reads each one's file to find what is left
# (about 3 s per 100,000 cells before any work), status and collect walk them all, and results.nc is a dense
# hypercube over the axes; and at the tiny preset's minute a cell, 100,000 cells are already ten weeks of one
# process. A dry run still describes a bigger grid (its count and totals come from its few shapes), then refuses.
MAX_CELLS = 100_000


@dataclass(frozen=True)
class RunReport:
    folder: str  # the run folder's URL
    cells: int  # cells in the grid
    outcomes: tuple[Outcome, ...]  # one per cell this run tried

    @property
    def computed(self) -> list[str]:
        return [o.cell_id for o in self.outcomes if o.computed]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status.failed]


def run_grid(spec_path: Path, out: str | None = None, executor: str | None = None, workers: int | None = None,
             address: str | None = None, retry_failed: bool = False, dry_run: bool = False,
             console: Console | None = None) -> RunReport:
    """Run (or, with dry_run, describe) the grid in spec_path into out (default runs/NAME)."""
    spec = load_spec(spec_path)
    for line in spec.source.notes():  # what decontamination left out of the benchmark splits, before any work
        print(line)
    chosen = choose_executor(executor or spec.run.executor, spec, ExecutorOptions(workers, address))
    check_log_installed(spec.run.log)
    out = out or os.path.join("runs", spec.name)
    if dry_run:
        from scaling.grid.estimate import describe_grid

        if RunFolder(out).exists(SPEC):  # refused as the run would refuse it, not described as all to run
            check_same_grid(spec, RunFolder(out))
        estimates = describe_grid(spec, print)
        check_grid_size(spec)  # after the description: planning a grid too big to run still wants its count
        return RunReport(out, sum(e.count for e in estimates), ())
    return run_spec(spec, out, chosen, retry_failed, console)


def check_grid_size(spec: GridSpec) -> None:
    """Refuse a grid of more than MAX_CELLS cells, counted from its axes (none made), naming its longest axis."""
    cells = grid_size(spec)
    if cells > MAX_CELLS:
        axis, values = max(grid_axes(spec).items(), key=lambda item: len(item[1]))
        raise UserError(f"grid {spec.name} has {cells:,} cells, more than the {MAX_CELLS:,} a run takes: give an axis "
                        f"fewer values ([axes] {axis} has {len(values):,}) or split the grid into several specs")


def run_spec(spec: GridSpec, out: str | os.PathLike, executor: Executor, retry_failed: bool = False,
             console: Console | None = None, say: Callable[[str], None] | None = None) -> RunReport:
    """Run spec's unfinished cells into the run folder out on executor, its progress drawn on console and what
    happened told to say (default: the console)."""
    console = console or Console(stderr=True, soft_wrap=True)
    say = say or console.print
    check_grid_size(spec)
    existing = RunFolder(out)
    executor.check(existing.url)
    cells = expand(spec)
    # Read-only checks first: a corrupt cell file is named here, before grid.toml is written.
    pending = [c for c in cells if needs_work(existing, c.cell_id, retry_failed)] if _has_cells(existing) else cells
    with executor.ready() if pending else nullcontext():
        folder = open_run(spec, out)
        say(f"Grid {spec.name}: {len(cells)} cells, {len(cells) - len(pending)} finished, "
            f"{len(pending)} to run on the {executor.name} executor; results in {folder.url}")
        if not pending:
            return RunReport(folder.url, len(cells), ())
        with GridProgress(console, len(cells), len(cells) - len(pending)) as progress:
            outcomes = executor.run(folder, spec, pending, retry_failed, progress.on_event)
    report = RunReport(folder.url, len(cells), tuple(outcomes))
    unfinished = [c for c in cells if needs_work(folder, c.cell_id, retry_failed=False)]
    say(f"Computed {len(report.computed)} cells here ({len(report.failed)} failed); "
        f"{len(cells) - len(unfinished)}/{len(cells)} finished in {folder.url}"
        + (f"; {len(unfinished)} still running elsewhere or interrupted: rerun to continue" if unfinished else ""))
    return report


def _has_cells(folder: RunFolder) -> bool:
    try:
        return bool(folder.list("cells", ".nc"))
    except OSError:
        return False


class GridProgress:
    """Cells done of total with an ETA, and each running cell's step, budget, speed and ETA, on the terminal
    (rich draws nothing live when the console is not one); a line per finished cell either way."""

    def __init__(self, console: Console, total: int, finished: int):
        self.console, self.started, self.latest = console, {}, {}
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self.cells = self.progress.add_task("cells", total=total, completed=finished)
        self.ended: set[str] = set()  # cells this run saw finish (worker processes each report every cell)

    def __enter__(self) -> GridProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.progress.__exit__(*exc_info)

    def on_event(self, kind: str, cell: Cell, value) -> None:
        if kind == "start":
            task = self.progress.add_task(f"  {cell.label}", total=value)
            self.started[cell.cell_id] = (task, time.monotonic())
        elif kind == "step" and cell.cell_id in self.started:
            self.latest[cell.cell_id] = value
            self.progress.update(self.started[cell.cell_id][0], completed=value.steps_done,
                                 description=f"  {cell.label} · {value.describe()}")
        elif kind == "end":
            task, began = self.started.pop(cell.cell_id, (None, None))
            last = self.latest.pop(cell.cell_id, None)
            if task is not None:
                self.progress.remove_task(task)
            outcome: Outcome = value
            if outcome.status != RUNNING_ELSEWHERE and cell.cell_id not in self.ended:
                self.ended.add(cell.cell_id)
                self.progress.advance(self.cells)
            if outcome.computed or outcome.status.failed:
                facts = [f"{time.monotonic() - began:.0f} s"] if began is not None else []  # ray/slurm report ends only
                if last is not None and last.mean_tokens_per_s > 0:
                    facts.append(f"{last.mean_tokens_per_s:,.0f} tok/s")
                took = f" ({', '.join(facts)})" if facts else ""
                self.console.print(f"cell {cell.cell_id} {outcome.status}{took} {cell.label}", highlight=False)
