"""`scaling status` and `scaling collect`: what a run folder holds, and its cells merged into results.nc."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import xarray as xr

from scaling.grid.spec import Cell, expand, grid_axes
from scaling.grid.locks import is_stale, read_owner
from scaling.provenance import provenance
from scaling.grid.folder import RunFolder
from scaling.grid.runner import (RESULTS_FILE, arm_grades_file, cell_file, checkpoints_dir, finished_status,
                                 grades_file, lock_file, progress_file, read_run_spec)
from scaling.grid.watch import CellProgress
from scaling.grid.store import hypercube, read_folder_cell, read_grades, write_dataset, write_grades
from scaling.errors import UserError
from scaling.schema import ARM_DIMS, AXES, FLOPS_COLUMN, GRADE_COLUMNS

RESULTS = RESULTS_FILE
GRADES = "grades.parquet"  # every graded example of every finished cell, with the cell's axes
ARM_GRADES = "arm_grades.parquet"  # every example the arms after SFT graded ([rl], [rft]), with the cell's axes
FAMILIES = "families.parquet"  # the per-family metrics, aggregated from GRADES: what laws fit per family
STATES = ("done", "running", "failed", "pending", "corrupt")


@dataclass(frozen=True)
class CellState:
    cell: Cell
    state: str  # one of STATES
    detail: str = ""  # the failure reason, the runner holding it, or how far an interrupted cell got
    progress: CellProgress | None = None  # a running cell's latest progress record


def run_status(run_dir: str) -> list[CellState]:
    """Every cell of the run folder's grid with its state."""
    folder = RunFolder(run_dir)
    spec = read_run_spec(folder)
    return [_cell_state(folder, cell, spec.run.stale_after_s) for cell in expand(spec)]


def _cell_state(folder: RunFolder, cell: Cell, stale_after_s: float) -> CellState:
    try:
        status = finished_status(folder, cell.cell_id)
    except UserError as error:
        return CellState(cell, "corrupt", str(error))
    if status is not None:
        return CellState(cell, status.kind, status.reason)
    lock = lock_file(cell.cell_id)
    if folder.exists(lock) and not is_stale(folder, lock, stale_after_s):
        owner = read_owner(folder, lock)
        beat = time.time() - folder.modified(lock)
        detail = f"{owner.host}:{owner.pid}, heartbeat {beat:.0f} s ago" if owner else ""
        if (progress := _progress(folder, cell)) is not None:
            detail += f"; {progress.describe()} (as of {time.time() - progress.updated:.0f} s ago)"
        return CellState(cell, "running", detail, progress)
    checkpoints = checkpoints_dir(folder, cell.cell_id)
    partial = checkpoints.is_dir() and any(checkpoints.iterdir())
    return CellState(cell, "pending", "interrupted: resumes from its checkpoint" if partial else "")


def _progress(folder: RunFolder, cell: Cell) -> CellProgress | None:
    """The running cell's latest progress record, None if it has none (yet) or it cannot be read."""
    try:
        return CellProgress.from_json(folder.read_bytes(progress_file(cell.cell_id)))
    except OSError:  # not written yet, or removed as the cell finished
        return None


def finished(states: list[CellState]) -> bool:
    """Whether no cell is left to run: every one done, failed or corrupt."""
    return not any(s.state in ("running", "pending") for s in states)


def format_status(states: list[CellState]) -> str:
    counts = {name: sum(s.state == name for s in states) for name in STATES}
    controls = sum(bool(s.cell.control) for s in states)
    lines = [" · ".join(f"{counts[name]} {name}" for name in STATES if counts[name] or name != "corrupt")
             + f" (of {len(states)} cells" + (f", {controls} of them positive controls)" if controls else ")")]
    for s in states:
        if s.state != "done" and (s.state != "pending" or s.detail):
            lines.append(f"{s.state:<8} {s.cell.cell_id}  {s.cell.label}" + (f"  — {s.detail}" if s.detail else ""))
    return "\n".join(lines)


def watch_status(run_dir: str, every_s: float, echo: Callable[[str], None]) -> list[CellState]:
    """`scaling status --watch`: the status redrawn in place every `every_s` on a terminal (printed again
    only when it changes otherwise), until no cell is running or pending, or Ctrl-C."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console()
    states = run_status(run_dir)
    try:
        if console.is_terminal:
            with Live(Text(format_status(states)), console=console, auto_refresh=False) as live:
                while not finished(states):
                    time.sleep(every_s)
                    states = run_status(run_dir)
                    live.update(Text(format_status(states)), refresh=True)
        else:
            echo(format_status(states))
            shown = _milestones(states)
            while not finished(states):
                time.sleep(every_s)
                states = run_status(run_dir)
                if _milestones(states) != shown:
                    echo(format_status(states))
                    shown = _milestones(states)
    except KeyboardInterrupt:
        pass
    return states


def _milestones(states: list[CellState]) -> tuple:
    """What a log of the status should record a change of: states, and the budget each running cell is at
    (not its heartbeat's age, which changes at every look)."""
    return tuple((s.cell.cell_id, s.state, s.progress and (s.progress.budget, s.progress.phase)) for s in states)


def _grades(folder: RunFolder, spec, cells: list[Cell], file=grades_file, steps: tuple[str, ...] = ("step",)) -> pd.DataFrame:
    """Every finished cell's grades (`file` names a cell's table: its SFT grades, or its arms'), led by its id, its
    axes, the split it is a positive control for ("": none) and whether each family is in its training pool; the
    training FLOPs of the model graded last (NaN for cells graded before compute was counted)."""
    tables = []
    for cell in cells:
        if not folder.exists(file(cell.cell_id)):  # a cell that failed before grading anything
            continue
        table = read_grades(folder, file(cell.cell_id))
        trained = set(spec.source.control_trained(cell.control) if cell.control else spec.data.trained[:cell.diversity])
        tables.append(table.assign(cell_id=cell.cell_id, **cell.axes, control=cell.control,
                                   trained=table["family"].isin(trained)))
    columns = ["cell_id", *AXES, "control", *steps, "split", "trained", *GRADE_COLUMNS, FLOPS_COLUMN]
    return pd.concat(tables, ignore_index=True).reindex(columns=columns) if tables else pd.DataFrame(columns=columns)


# Each per-family metric and the grade column it averages.
FAMILY_METRICS = {"answer_acc": "answer_correct", "process_acc": "process_score", "chain_acc": "chain_correct"}
# What a positive control shares with the cells whose headroom it measures: the base and the CoT style.
CONTROL_MATCH = ("size", "pretrain_tokens", "cot")


def family_metrics(grades: pd.DataFrame) -> pd.DataFrame:
    """Per cell, budget, split and family: n, answer_acc, process_acc, chain_acc, chance and headroom (what the positive
    control for that split, of the same base and CoT style, answers there; NaN where the grid has none), tidy."""
    keys = ["cell_id", *AXES, "control", "step", "split", "family", "trained"]
    means = {metric: (column, "mean") for metric, column in FAMILY_METRICS.items()}
    table = (grades.groupby(keys, sort=False)
             .agg(n=("answer_correct", "size"), **means, chance=("chance", "mean"))
             .reset_index())
    on = [*CONTROL_MATCH, "step", "split", "family"]
    controls = table[table["control"] == table["split"]]
    headroom = controls.groupby(on, as_index=False).agg(headroom=("answer_acc", "mean"))
    return table.merge(headroom, on=on, how="left")


CELL_MEASURES = ("memorization_step", "base_loss", "base_probe_acc")  # per-cell variables a family's rows carry


def with_cell_measures(families: pd.DataFrame, cube: xr.Dataset) -> pd.DataFrame:
    """The family table with each cell's memorization step, base measures and `params` beside its rows, so a
    law fitted per family (`scaling fit families.parquet --by family`) has what it has on results.nc."""
    names = [name for name in CELL_MEASURES if name in cube]
    if families.empty or not names:
        return families
    per_cell = cube[names].to_dataframe().reset_index()  # coordinates on the cell's axes (`params`) come along
    keys = [axis for axis in AXES if axis in per_cell.columns and axis in families.columns]
    measured = families[families["control"] == ""].merge(
        per_cell[[*keys, *names, *(["params"] if "params" in per_cell else [])]], on=keys, how="left")
    # A control shares its axes' values with a cell of the cube, not its measures: its rows keep NaN.
    return pd.concat([measured, families[families["control"] != ""]], ignore_index=True)


def collect_run(run_dir: str) -> tuple[xr.Dataset, list[CellState]]:
    """Validate every cell file of the run and merge them into RUN_DIR/results.nc (written atomically)."""
    folder = RunFolder(run_dir)
    spec = read_run_spec(folder)
    cells = expand(spec)
    # The hypercube holds the grid's cells; positive controls are not on its axes and reach the grades tables only.
    datasets = [read_folder_cell(folder, cell_file(c.cell_id)) for c in cells
                if not c.control and folder.exists(cell_file(c.cell_id))]
    if not datasets:
        raise UserError(f"{folder.url} has no finished cells to collect yet")
    attrs = provenance(spec.text, spec.source.provenance())
    cube = hypercube(datasets, grid_axes(spec), attrs)
    finished = [c for c in cells if folder.exists(cell_file(c.cell_id))]
    grades = _grades(folder, spec, finished)
    grades.attrs = {key: attrs[key] for key in ("data_sources",) if key in attrs}  # Parquet metadata: what was evaluated
    write_grades(folder, GRADES, grades)
    if spec.arms:
        arm_steps = (*ARM_DIMS[:2], "step")  # the arm, its SFT budget, and its own step
        write_grades(folder, ARM_GRADES, _grades(folder, spec, finished, arm_grades_file, arm_steps))
    write_grades(folder, FAMILIES, with_cell_measures(family_metrics(grades), cube))
    write_dataset(folder, RESULTS, cube)
    return cube, [_cell_state(folder, c, spec.run.stale_after_s) for c in cells]
