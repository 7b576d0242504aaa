"""The results hypercube as a file format: open a `results.nc`, and flatten one split of it to a table.

Written by the grid's store (`scaling.grid.store`), read by fits and figures: this module is the one
reader, so every consumer sees the same rows (finished cells only) under the same names. A cell's
status, stored as text in its cell file and in the hypercube's `status` variable, is read as a
`CellStatus` here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import xarray as xr

from scaling.errors import UserError
from scaling.user_files import regular_file
from scaling.schema import ARM_DIMS, AXES, AXIS_DEFAULTS, LEGACY_AXES, PHASE

ENGINE = "h5netcdf"
# What can become of a cell: trained to its last budget; failed (recorded in its file); not computed by this
# attempt (another runner holds or finished it); no file yet (a hypercube's hole).
KINDS = ("done", "failed", "skipped", "missing")
GIVE_REASONS = ("failed", "skipped")  # the kinds that say why, after a colon


@dataclass(frozen=True)
class CellStatus:
    """A cell's status, stored as the text "done", "failed: <reason>", "skipped: <why>" or "missing"."""

    kind: str  # one of KINDS
    reason: str = ""  # why it failed or was skipped; none for done and missing

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind
        assert not self.reason or self.kind in GIVE_REASONS, f"{self.kind} takes no reason"

    @classmethod
    def parse(cls, text: str) -> CellStatus:
        """The status a file stores as text; text of no kind is a ValueError (the file is corrupt)."""
        kind, colon, reason = str(text).partition(": ")
        if kind not in KINDS or bool(colon) != (kind in GIVE_REASONS):
            raise ValueError(f"{text!r} is no cell status")
        return cls(kind, reason)

    @property
    def done(self) -> bool:
        return self.kind == "done"

    @property
    def failed(self) -> bool:
        return self.kind == "failed"

    def __str__(self) -> str:
        """As files store it: exactly the text it was parsed from."""
        return f"{self.kind}: {self.reason}" if self.kind in GIVE_REASONS else self.kind


DONE = CellStatus("done")
MISSING = CellStatus("missing")


def open_results(path) -> xr.Dataset:
    """The results hypercube at path (a `results.nc`), loaded into memory, axes under today's names."""
    path = regular_file(path, "results file")
    try:
        with xr.open_dataset(path, engine=ENGINE) as ds:
            loaded = ds.load()
    except (OSError, ValueError) as error:
        raise UserError(f"results file {path} is unreadable or truncated ({type(error).__name__})") from None
    # Files written before an axis was renamed keep its old name: read them under the new one.
    loaded = loaded.rename({old: new for new, old in LEGACY_AXES.items() if old in loaded.dims})
    return with_default_axes(loaded)


def with_default_axes(results: xr.Dataset) -> xr.Dataset:
    """`results` with each axis added since it was written (schema.AXIS_DEFAULTS: adapter) as a dim of that one value,
    on every variable over the cells, placed where AXES puts it."""
    for axis, value in AXIS_DEFAULTS.items():
        if axis in results.dims or "seed" not in results.dims:
            continue
        before = AXES[AXES.index(axis) + 1]  # the axis it precedes, which every cell variable has
        results = results.assign({name: var.expand_dims({axis: [value]}, axis=var.dims.index(before))
                                  for name, var in results.data_vars.items() if before in var.dims})
        results = results.assign_coords({axis: [value]})
    return results


def splits_of(results: xr.Dataset) -> list[str]:
    return [str(s) for s in results.split.values]


def results_table(results: xr.Dataset, split: str) -> pd.DataFrame:
    """One row per finished cell and budget of a split: the grid axes, `step`, every metric, the per-cell
    variables (memorization step, pool diversity, status) and the coordinates (`params`, `flops`).

    Failed and missing cells hold only NaN and are left out.
    """
    if split not in splits_of(results):
        raise UserError(f"the results have no split {split!r}; they have {', '.join(splits_of(results))}")
    # The arms after SFT and compute by phase have dims of their own (schema.ARM_DIMS, PHASE): tables of them are
    # the arms' (arm_grades.parquet), never rows of this one.
    own = [name for name, var in results.data_vars.items() if set(var.dims) & {*ARM_DIMS, PHASE}]
    one = results.drop_vars(own).drop_dims([d for d in (*ARM_DIMS, PHASE) if d in results.dims])
    one = one.sel(split=split).drop_vars("split")
    metrics = [name for name, var in one.data_vars.items() if "step" in var.dims]
    table = one[metrics].to_dataframe().reset_index()
    # Training curves (over train_step) are not per budget: a figure reads them from the dataset itself.
    per_cell = [name for name, var in one.data_vars.items() if "step" not in var.dims and "train_step" not in var.dims]
    cells = one[per_cell].to_dataframe().reset_index()
    keys = [d for d in cells.columns if d in table.columns and d not in per_cell]
    table = table.merge(cells[keys + [c for c in per_cell if c not in table.columns]], on=keys, how="left")
    if "status" in table:
        table = table[table["status"].map(lambda text: CellStatus.parse(text).done)]
    return table.reset_index(drop=True)


def group_labels(table: pd.DataFrame, by: tuple[str, ...]) -> pd.Series:
    """Each row's group as one label, `size=tiny, diversity=2` (the value alone when by is one column)."""
    if len(by) == 1:
        return table[by[0]].astype(str)
    return table[list(by)].astype(str).apply(lambda row: ", ".join(f"{k}={v}" for k, v in row.items()), axis=1)
