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
from scaling.schema import (ARM_DIMS, ARM_FLOPS, ARM_PREFIX, AXES, AXIS_DEFAULTS, BASE_MEASURES, DATA_VERSION, FLOPS_BY_PHASE,
                            FLOPS_COLUMN, GRADE_COLUMNS, LEGACY_AXES, METRICS, PHASE, POOL_STATS, RL_REWARD)
from scaling.trainer.flops import PHASES

if TYPE_CHECKING:
    from scaling.grid.folder import RunFolder



@dataclass(frozen=True)
class ArmResult:
    """What one arm (schema.ARMS) measured from one SFT budget's model: metrics[split][metric] over its `steps`."""

    arm: str  # "rl" or "rft"
    sft_step: int  # the SFT budget it started from
    steps: tuple[int, ...]  # its own steps at which it was evaluated (0: the SFT model itself)
    metrics: dict[str, dict[str, list[float]]]
    flops_by_phase: tuple[tuple[float, ...], ...]  # per step, the cumulative training FLOPs of each of PHASES
    reward: tuple[float, ...] = ()  # RL: the mean training reward of its steps so far, per step (NaN at step 0)


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
    flops_by_phase: tuple[tuple[float, ...], ...] = ()  # per step, cumulative training FLOPs of each of PHASES
    # (pretraining and SFT; empty: unknown, a failed cell's)
    arms: tuple[ArmResult, ...] = ()  # the arms after SFT ([rl], [rft]), one per arm and SFT budget it started from
    arm_grades: tuple = ()  # every example the arms graded: dicts of arm, sft_step, step (the arm's), split, grade


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
    ds[FLOPS_BY_PHASE] = (("step", PHASE), _phase_flops(result.flops_by_phase, len(result.steps)))
    ds = ds.assign_coords({PHASE: list(PHASES)})
    if result.arms:
        ds = ds.merge(arm_dataset(result.arms, result.splits))
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


def _phase_flops(flops_by_phase, steps: int) -> np.ndarray:
    """FLOPs by phase as a (step, phase) array; NaN where a failed cell never counted them."""
    return np.array(flops_by_phase, float).reshape(steps, len(PHASES)) if len(flops_by_phase) else np.full(
        (steps, len(PHASES)), np.nan)


def arm_dataset(arms: tuple[ArmResult, ...], splits: tuple[str, ...]) -> xr.Dataset:
    """The arms' measurements, dense over (arm, sft_step, arm_step): NaN where an arm has no such point (RL
    started from one budget and RFT from another, or their step axes differ)."""
    names = list(dict.fromkeys(a.arm for a in arms))
    sft_steps = sorted({a.sft_step for a in arms})
    arm_steps = sorted({s for a in arms for s in a.steps})
    shape = (len(names), len(sft_steps), len(arm_steps))
    metrics = {m: np.full((*shape, len(splits)), np.nan) for m in METRICS}
    flops = np.full((*shape, len(PHASES)), np.nan)
    reward = np.full(shape[1:], np.nan)
    for a in arms:
        i, j = names.index(a.arm), sft_steps.index(a.sft_step)
        for k, step in enumerate(a.steps):
            at = (i, j, arm_steps.index(step))
            for m in METRICS:
                metrics[m][at] = [a.metrics[split][m][k] for split in splits]
            flops[at] = a.flops_by_phase[k]
            if a.arm == "rl":  # RFT has no reward (NaN): it must not overwrite RL's at the same (sft_step, arm_step)
                reward[at[1:]] = a.reward[k]
    dims = (*ARM_DIMS, "split")
    return xr.Dataset(
        {ARM_PREFIX + m: (dims, values) for m, values in metrics.items()}
        | {ARM_FLOPS: ((*ARM_DIMS, PHASE), flops), RL_REWARD: (ARM_DIMS[1:], reward)},
        coords={"arm": names, "sft_step": sft_steps, "arm_step": arm_steps, "split": list(splits), PHASE: list(PHASES)},
    )


def grades_table(result: CellResult) -> pd.DataFrame:
    """A cell's per-example grades, one row per example, split and budget, with the training FLOPs (all phases) of
    the model graded."""
    table = pd.DataFrame(list(result.grades), columns=["step", "split", *GRADE_COLUMNS])
    total = dict(zip(result.steps, np.sum(_phase_flops(result.flops_by_phase, len(result.steps)), axis=1)))
    return table.assign(**{FLOPS_COLUMN: table["step"].map(total).astype(float)})


def arm_grades_table(result: CellResult) -> pd.DataFrame:
    """The arms' per-example grades: a grades table's columns plus `arm` and `sft_step` (its `step` is the arm's)."""
    table = pd.DataFrame(list(result.arm_grades), columns=["arm", "sft_step", "step", "split", *GRADE_COLUMNS])
    total = {(a.arm, a.sft_step, step): float(sum(flops)) for a in result.arms
             for step, flops in zip(a.steps, a.flops_by_phase)}
    keys = zip(table["arm"], table["sft_step"], table["step"])
    return table.assign(**{FLOPS_COLUMN: [total[key] for key in keys]})


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
    """The dense hypercube over AXES × step × split; NaN where a cell is missing, `status` says why. An axis `axes`
    leaves out that has a default (schema.AXIS_DEFAULTS) takes that one value."""
    axes = {name: [AXIS_DEFAULTS[name]] for name in AXIS_DEFAULTS} | dict(axes)
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
    by_phase = np.full(shape + [len(steps), len(PHASES)], np.nan)
    for ds in cells:
        if FLOPS_BY_PHASE in ds:  # cell files written before compute was counted by phase have none
            where = tuple(list(axes[name]).index(_axis_value(ds, name, axes[name])) for name in AXES)
            by_phase[where] = ds[FLOPS_BY_PHASE].reindex(step=steps, phase=list(PHASES)).values
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
    cube[FLOPS_BY_PHASE] = ((*AXES, "step", PHASE), by_phase)
    cube = cube.assign_coords({PHASE: list(PHASES)})
    return _with_arms(cube, cells, axes)


def _with_arms(cube: xr.Dataset, cells: list[xr.Dataset], axes: dict[str, list]) -> xr.Dataset:
    """The hypercube with the arms' variables (schema.ARM_VARIABLES but flops_by_phase), the cell axes in front,
    where any cell ran an arm; NaN where a cell did not (or failed)."""
    armed = [ds for ds in cells if ARM_FLOPS in ds]
    if not armed:
        return cube
    coords = {"arm": list(dict.fromkeys(str(a) for ds in armed for a in ds.arm.values)),
              "sft_step": sorted({int(s) for ds in armed for s in ds.sft_step.values}),
              "arm_step": sorted({int(s) for ds in armed for s in ds.arm_step.values})}
    names = [name for name in armed[0].data_vars if "arm_step" in armed[0][name].dims]
    shape = [len(axes[name]) for name in AXES]
    arrays = {}
    for name in names:
        dims = armed[0][name].dims
        sizes = [len(coords[d]) if d in coords else cube.sizes[d] for d in dims]
        arrays[name] = (dims, np.full(shape + sizes, np.nan))
    for ds in armed:
        where = tuple(list(axes[name]).index(_axis_value(ds, name, axes[name])) for name in AXES)
        aligned = ds.reindex({**coords, "split": cube.split.values, PHASE: list(PHASES)})
        for name, (_, array) in arrays.items():
            array[where] = aligned[name].values
    return cube.assign_coords(coords).assign({name: ((*AXES, *dims), array) for name, (dims, array) in arrays.items()})


def _axis_value(ds: xr.Dataset, name: str, values: list):
    """The cell's value on an axis, typed like the axis values (netCDF attributes lose types)."""
    # Cell files written before an axis was renamed carry it under its old name.
    raw = ds.attrs.get(f"axis_{name}", ds.attrs.get(f"axis_{LEGACY_AXES.get(name, name)}", AXIS_DEFAULTS.get(name)))
    for value in values:
        if str(value) == str(raw) or (isinstance(value, (int, float)) and not isinstance(raw, str) and value == raw):
            return value
    raise UserError(f"cell {ds.attrs['cell_id']} has {name}={raw!r}, which is not on the grid's {name} axis")
