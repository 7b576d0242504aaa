"""What `scaling fit` fits: a tidy table from the store's results.nc or a CSV/Parquet file, filtered,
split into groups, with the law's axes mapped to columns.

Every problem with the input (a missing file, an unknown column, a bad expression, values a law
cannot take) is a UserError naming it, so the command prints one line and exits 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.errors import UserError
from scaling.fit.infer import FitData
from scaling.fit.laws import Law

SUFFIXES = (".nc", ".csv", ".parquet")
DEFAULT_STEPS_AXIS = "step"  # a one-axis law fitted to results.nc without --x runs over steps


def load_table(path: Path, split: str | None = None) -> pd.DataFrame:
    """One row per measurement: the store's hypercube flattened (one split), or a tidy CSV/Parquet table."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input {path} does not exist")
    if path.suffix not in SUFFIXES:
        raise UserError(f"input {path} must be a results.nc, a .csv or a .parquet table")
    if path.suffix == ".nc":
        from scaling.store import open_results

        return _results_table(open_results(path), split, path)
    if split is not None:
        raise UserError("--split applies to a results.nc input; filter a table with --where")
    try:
        return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise UserError(f"input {path} is unreadable ({type(error).__name__}: {str(error).splitlines()[0]})") from None


def _results_table(results, split: str | None, path: Path) -> pd.DataFrame:
    splits = [str(s) for s in results.split.values]
    if split is None:
        if len(splits) > 1:
            raise UserError(f"{path} has splits {', '.join(splits)}; choose one with --split")
        split = splits[0]
    if split not in splits:
        raise UserError(f"{path} has no split {split!r}; it has {', '.join(splits)}")
    one = results.sel(split=split).drop_vars("split")
    metrics = [name for name, var in one.data_vars.items() if "step" in var.dims]
    table = one[metrics].to_dataframe().reset_index()
    # Per-cell variables (memorization step, pool diversity, status) and coordinates join every step's row.
    per_cell = [name for name, var in one.data_vars.items() if "step" not in var.dims]
    cells = one[per_cell].to_dataframe().reset_index()
    keys = [d for d in cells.columns if d in table.columns and d not in per_cell]
    table = table.merge(cells[keys + [c for c in per_cell if c not in table.columns]], on=keys, how="left")
    if "status" in table:  # failed and missing cells hold only NaN: fit the finished ones
        table = table[table["status"].astype(str) == "done"].reset_index(drop=True)
    return table


def query(table: pd.DataFrame, expression: str | None, flag: str) -> pd.DataFrame | pd.Series:
    """Rows matching a pandas query expression (a boolean mask when flag is --holdout)."""
    if expression is None:
        return table
    try:
        mask = table.eval(expression)
    except Exception as error:  # pandas raises many types for a bad expression; all are bad input here
        raise UserError(f"{flag} {expression!r} is not a valid expression on columns "
                        f"{', '.join(map(str, table.columns))} ({type(error).__name__})") from None
    if not (isinstance(mask, pd.Series) and mask.dtype == bool):
        raise UserError(f"{flag} {expression!r} must be a condition (true or false for each row)")
    return table[mask] if flag == "--where" else mask


def axis_columns(law: Law, mapping: list[str], table: pd.DataFrame) -> dict[str, str]:
    """The column of each law axis: --x AXIS=COLUMN, else the column named like the axis (or `step`)."""
    chosen: dict[str, str] = {}
    for item in mapping:
        axis, sep, column = item.partition("=")
        if not sep or not axis or not column:
            raise UserError(f"--x {item!r} must look like AXIS=COLUMN")
        if axis not in law.axes:
            raise UserError(f"--x {item!r}: law {law.name} has axes {', '.join(law.axes)}")
        chosen[axis] = column
    for axis in law.axes:
        if axis not in chosen:
            if axis in table.columns:
                chosen[axis] = axis
            elif len(law.axes) == 1 and DEFAULT_STEPS_AXIS in table.columns:
                chosen[axis] = DEFAULT_STEPS_AXIS
            else:
                raise UserError(f"law {law.name} needs its axis {axis!r}: give --x {axis}=COLUMN")
    _require(table, list(chosen.values()), "--x")
    return chosen


def _require(table: pd.DataFrame, columns: list[str], flag: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise UserError(f"{flag}: no column {missing[0]!r}; columns are {', '.join(map(str, table.columns))}")


@dataclass(frozen=True)
class Columns:
    """Which columns play which role in a fit."""

    x: dict[str, str]  # law axis -> column
    y: str  # the response
    n: str | None = None  # evaluation examples behind an accuracy
    seed: str | None = None  # replicate seeds: hierarchical offsets when it has several values


def fit_data(rows: pd.DataFrame, law: Law, columns: Columns) -> FitData:
    """The arrays a law is fitted to; values the law cannot take are a UserError naming the column."""
    _require(rows, [columns.y] + [c for c in (columns.n, columns.seed) if c], "--y/--n")
    x = {axis: rows[column].to_numpy(float) for axis, column in columns.x.items()}
    for axis, values in x.items():
        if not np.isfinite(values).all() or (values <= 0).any():
            raise UserError(f"law {law.name}: axis {axis} (column {columns.x[axis]!r}) must be positive and finite")
    y = rows[columns.y].to_numpy(float)
    if law.response == "loss" and not ((y > 0) & np.isfinite(y)).all():
        raise UserError(f"law {law.name} fits a loss: --y {columns.y!r} must be positive")
    if law.response == "accuracy" and not ((y >= 0) & (y <= 1)).all():
        raise UserError(f"law {law.name} fits an accuracy: --y {columns.y!r} must lie in [0, 1]")
    n = None
    if columns.n:
        n = rows[columns.n].to_numpy(float)
        if not (n >= 1).all() or not np.allclose(n, np.round(n)):
            raise UserError(f"--n {columns.n!r} must hold whole numbers of examples >= 1")
    seed = None
    if columns.seed and rows[columns.seed].nunique() > 1:
        seed = pd.factorize(rows[columns.seed], sort=True)[0]
    return FitData(x=x, y=y, n=n, seed=seed)


def groups(rows: pd.DataFrame, by: str | None) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per value of the --by column, in order of first appearance; one unnamed group without it."""
    if by is None:
        return [("", rows)]
    _require(rows, [by], "--by")
    return [(str(label), part) for label, part in rows.groupby(by, sort=False)]
