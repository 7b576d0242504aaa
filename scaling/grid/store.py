"""The result store: one netCDF file per cell, merged into the dense hypercube `results.nc`.

Every file is written through the run folder's atomic write, so a reader never sees half of one (a full
disk, here or in the local scratch, leaves the earlier file and raises `scaling.errors.DiskFull` naming it);
`scaling.results` reads the hypercube back.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np
import pandas as pd
import xarray as xr

from scaling.errors import UserError, reported_if_full
from scaling.results import DONE, ENGINE, MISSING, CellStatus
from scaling.schema import AXES, BASE_MEASURES, DATA_VERSION, GRADE_COLUMNS, LEGACY_AXES, METRICS, POOL_STATS

if TYPE_CHECKING:
    from scaling.grid.folder import RunFolder



@dataclass(frozen=True)
class CellResult:
    """What one trained cell measured: metrics[split][metric] over `steps`, and per-cell facts."""

    cell_id: str
    axes: dict  # value of each of AXES
    steps: tuple[int, ...]
    splits: tuple[str, ...]
    metrics: dict[str, dict[str, list[float]]]
    params: int  # non-embedding parameters
    flops: tuple[float, ...]  # training FLOPs spent to reach each step
    wall_seconds: float
    pool_stats: dict = dataclasses.field(default_factory=dict)  # measured diversity of the training pool
    status: CellStatus = DONE  # done, or failed with its reason
    chance: dict = dataclasses.field(default_factory=dict)  # split -> mean chance of its examples (tasks.chance)
    base: dict = dataclasses.field(default_factory=dict)  # the base's measured capability (BASE_MEASURES)
    grades: tuple = ()  # every graded example: dicts of step, split and schema.GRADE_COLUMNS
    curve: tuple = ((), (), ())  # the training curve (scaling.trainer.curve): train steps, mean losses, rates


def memorization_step(steps, train_answer_acc) -> float:
    """The first step at which the train split (the cell's first uncorrupted training items) is answered
    entirely right, NaN if it never is."""
    for step, acc in zip(steps, train_answer_acc):
        if acc >= 1.0:
            return float(step)
    return float("nan")


def steps_past_memorization(steps, memorized: float) -> np.ndarray:
    """Each budget's steps beyond the memorization step: NaN before it (and everywhere if never memorized)."""
    past = np.asarray(steps, float) - memorized
    return np.where(past >= 0, past, np.nan)


CURVES = ("train_loss", "train_lr")  # over train_step: each cell's training curve (scaling.trainer.curve)


def cell_dataset(result: CellResult, attrs: dict[str, str]) -> xr.Dataset:
    """One cell's measurements over (step, split), with its axes, facts and provenance as attributes."""
    data = {
        metric: (("step", "split"), np.array([result.metrics[s][metric] for s in result.splits], float).T)
        for metric in METRICS
    }
    train_acc = result.metrics["train"]["answer_acc"] if "train" in result.splits else []
    ds = xr.Dataset(
        data,
        coords={"step": list(result.steps), "split": list(result.splits), "flops": ("step", list(result.flops))},
    )
    ds["memorization_step"] = memorization_step(result.steps, train_acc)
    ds["steps_past_memorization"] = ("step", steps_past_memorization(result.steps, float(ds["memorization_step"])))
    ds["chance"] = ("split", [float(result.chance.get(s, np.nan)) for s in result.splits])
    ds["wall_seconds"] = result.wall_seconds
    curve_steps, curve_losses, curve_rates = result.curve
    ds = ds.assign_coords(train_step=list(curve_steps))
    ds["train_loss"] = ("train_step", np.asarray(curve_losses, float))
    ds["train_lr"] = ("train_step", np.asarray(curve_rates, float))
    for name in POOL_STATS:
        ds[name] = float(result.pool_stats.get(name, np.nan))
    for name in BASE_MEASURES:
        ds[name] = float(result.base.get(name, np.nan))
    ds.attrs = {
        **attrs,
        "cell_id": result.cell_id,
        "status": str(result.status),
        "params": result.params,
        "data_version": DATA_VERSION,
        **{f"axis_{name}": value for name, value in result.axes.items()},
    }
    return ds


def grades_table(result: CellResult) -> pd.DataFrame:
    """A cell's per-example grades, one row per example, split and budget."""
    return pd.DataFrame(list(result.grades), columns=["step", "split", *GRADE_COLUMNS])


def write_grades(folder: RunFolder, rel: str, table: pd.DataFrame) -> None:
    """A grades table as Parquet at rel in a run folder, atomically."""
    with reported_if_full(folder.path(rel), lambda: folder.exists(rel)), tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / "grades.parquet"
        table.to_parquet(local, index=False)
        folder.put_file_atomic(rel, local)


def read_grades(folder: RunFolder, rel: str) -> pd.DataFrame:
    """A grades table from a run folder; unreadable: a UserError naming it."""
    try:
        return pd.read_parquet(io.BytesIO(folder.read_bytes(rel)))
    except (OSError, ValueError) as error:
        raise UserError(f"grades file {folder.path(rel)} is unreadable or truncated ({type(error).__name__})") from None


def write_dataset(folder: RunFolder, rel: str, ds: xr.Dataset) -> None:
    """Write ds as netCDF at rel in a run folder (local or fsspec), atomically, readable by the folder's
    other users: it is written to a local scratch file, then put in place by the run folder."""
    with reported_if_full(folder.path(rel), lambda: folder.exists(rel)), tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / "dataset.nc"
        ds.to_netcdf(local, engine=ENGINE)
        folder.put_file_atomic(rel, local)


def read_folder_cell(folder: RunFolder, rel: str) -> xr.Dataset:
    """The cell file at rel in a run folder, loaded and checked; corrupt or truncated: a UserError naming it."""
    where = folder.path(rel)
    try:
        raw = folder.read_bytes(rel)
        with xr.open_dataset(io.BytesIO(raw), engine=ENGINE) as ds:
            loaded = ds.load()
    except (OSError, ValueError) as error:
        raise UserError(f"cell file {where} is unreadable or truncated ({type(error).__name__})") from None
    return _checked_cell(loaded, where)


def _checked_cell(loaded: xr.Dataset, where) -> xr.Dataset:
    missing = [name for name in (*METRICS, "memorization_step") if name not in loaded]
    if missing or "cell_id" not in loaded.attrs or "status" not in loaded.attrs:
        raise UserError(f"cell file {where} lacks {', '.join(missing) or 'its cell_id and status attributes'}")
    cell_status(loaded, where)
    return loaded


def cell_status(cell: xr.Dataset, where) -> CellStatus:
    """How the cell in a cell file ended, done or failed; anything else is a UserError naming the file at `where`."""
    text = cell.attrs["status"]
    try:
        status = CellStatus.parse(text)
    except ValueError:
        status = None
    if status is None or not (status.done or status.failed):
        raise UserError(f"cell file {where} is corrupt: its status {text!r} is neither done nor failed")
    return status


def hypercube(cells: Iterable[xr.Dataset], axes: dict[str, list], attrs: dict[str, str]) -> xr.Dataset:
    """The dense hypercube over AXES × step × split; NaN where a cell is missing, `status` says why."""
    cells = list(cells)
    if not cells:
        raise UserError("no cell results to collect")
    steps = sorted({int(s) for ds in cells for s in ds.step.values})
    train_steps = sorted({int(s) for ds in cells if "train_step" in ds.coords for s in ds.train_step.values})
    splits = list(dict.fromkeys(str(s) for ds in cells for s in ds.split.values))
    shape = [len(axes[name]) for name in AXES]
    coords = {name: list(axes[name]) for name in AXES} | {"step": steps, "split": splits}
    metric_arrays = {m: np.full(shape + [len(steps), len(splits)], np.nan) for m in METRICS}
    per_cell = {name: np.full(shape, np.nan) for name in ("memorization_step", "wall_seconds", *POOL_STATS, *BASE_MEASURES)}
    past = np.full(shape + [len(steps)], np.nan)
    chance = np.full(shape + [len(splits)], np.nan)
    curves = {name: np.full(shape + [len(train_steps)], np.nan) for name in CURVES}
    status = np.full(shape, str(MISSING), dtype=object)
    params = np.zeros(len(axes["size"]), np.int64)
    flops = np.full((len(axes["size"]), len(steps)), np.nan)
    for ds in cells:
        where = tuple(list(axes[name]).index(_axis_value(ds, name, axes[name])) for name in AXES)
        status[where] = ds.attrs["status"]
        aligned = ds.reindex(step=steps, split=splits)
        for metric in METRICS:
            metric_arrays[metric][where] = aligned[metric].values
        for name in per_cell:
            per_cell[name][where] = float(ds[name]) if name in ds else np.nan
        if "steps_past_memorization" in aligned:
            past[where] = aligned["steps_past_memorization"].values
        if "chance" in aligned:
            chance[where] = aligned["chance"].values
        if "train_step" in ds.coords:  # cell files written before curves were kept have none
            for name in CURVES:
                curves[name][where] = ds[name].reindex(train_step=train_steps).values
        params[where[0]] = max(params[where[0]], int(ds.attrs["params"]))  # a cell that failed early records 0
        if ds.sizes["step"]:  # a cell that failed before its first budget knows no FLOPs
            flops[where[0]] = aligned["flops"].values
    dims = (*AXES, "step", "split")
    cube = xr.Dataset(
        {m: (dims, a) for m, a in metric_arrays.items()}
        | {name: (AXES, a) for name, a in per_cell.items()}
        | {"steps_past_memorization": ((*AXES, "step"), past), "chance": ((*AXES, "split"), chance)}
        | {"status": (AXES, status.astype(str))}
        | {name: ((*AXES, "train_step"), a) for name, a in curves.items()},
        coords=coords | {"params": ("size", params), "flops": (("size", "step"), flops), "train_step": train_steps},
        attrs=attrs,
    )
    return cube


def _axis_value(ds: xr.Dataset, name: str, values: list):
    """The cell's value on an axis, typed like the axis values (netCDF attributes lose types)."""
    # Cell files written before an axis was renamed carry it under its old name.
    raw = ds.attrs.get(f"axis_{name}", ds.attrs.get(f"axis_{LEGACY_AXES.get(name, name)}"))
    for value in values:
        if str(value) == str(raw) or (isinstance(value, (int, float)) and not isinstance(raw, str) and value == raw):
            return value
    raise UserError(f"cell {ds.attrs['cell_id']} has {name}={raw!r}, which is not on the grid's {name} axis")
