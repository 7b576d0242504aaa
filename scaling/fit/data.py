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

from scaling.errors import UserError, first_line
from scaling.user_files import regular_file
from scaling.fit.expression import ExpressionError, row_mask
from scaling.fit.infer import FitData
from scaling.fit.laws import COVARIATE_RANGES, Law
from scaling.results import group_labels, open_results, results_table, splits_of

SUFFIXES = (".nc", ".csv", ".parquet")
DEFAULT_STEPS_AXIS = "step"  # a one-axis law fitted to results.nc without --x runs over steps
PAST_MEMORIZATION = "past_memorization"  # derived column: ln(step / memorization_step), 0 before it or never
# The column a law's covariate is read from when --x does not name one.
DEFAULT_COVARIATE_COLUMNS = {"chance": "chance", "past": PAST_MEMORIZATION}
COVARIATE_MEANINGS = {"chance": "the evaluation's chance accuracy per row",
                      "past": "ln(step / the run's memorization step), 0 before it and for runs that never memorized"}


def load_table(path: Path, split: str | None = None) -> pd.DataFrame:
    """One row per measurement: the store's hypercube flattened (one split), or a tidy CSV/Parquet table."""
    path = Path(path)
    if path.is_dir():
        inside = path / "results.nc"
        hint = f"; did you mean {inside}?" if inside.is_file() else ""
        raise UserError(f"input {path} is a folder: give a results.nc, a .csv or a .parquet file{hint}")
    regular_file(path, "input")
    if path.suffix not in SUFFIXES:
        raise UserError(f"input {path} must be a results.nc, a .csv or a .parquet table")
    if path.suffix == ".nc":
        return with_past_memorization(_split_table(open_results(path), split, path))
    if split is not None:
        raise UserError("--split applies to a results.nc input; filter a table with --where")
    return with_past_memorization(with_cell_columns(_read(path), path))


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise UserError(f"input {path} is unreadable ({first_line(error, with_type=True)})") from None


CELL_TABLE = "families.parquet"  # a grid's per-cell, split and family table, beside its grades.parquet


def with_cell_columns(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """A grid's per-example table (grades.parquet) with the per-cell columns it lacks (memorization_step,
    base_probe_acc, params, base_loss, ...) joined on `cell_id` from the families.parquet beside it: the
    columns of that table that hold one value per cell. Any other table as it is."""
    beside = path.parent / CELL_TABLE
    if path.name == CELL_TABLE or "cell_id" not in table or not beside.is_file():
        return table
    cells = _read(beside)
    if "cell_id" not in cells:
        return table
    per_cell = [c for c in cells.columns if c not in table and (cells.groupby("cell_id")[c].nunique(dropna=False) <= 1).all()]
    return table.merge(cells.drop_duplicates("cell_id")[["cell_id", *per_cell]], on="cell_id", how="left")


def with_past_memorization(table: pd.DataFrame) -> pd.DataFrame:
    """The table with `past_memorization` = max(0, ln(step / memorization_step)) where it has both columns and
    not that one: 0 before a run memorized and for runs that never did (memorization_step NaN)."""
    if PAST_MEMORIZATION in table or not {"step", "memorization_step"} <= set(table.columns):
        return table
    step = pd.to_numeric(table["step"], errors="coerce").to_numpy(float)
    memorized = pd.to_numeric(table["memorization_step"], errors="coerce").to_numpy(float)
    return table.assign(**{PAST_MEMORIZATION: past_memorization(step, memorized)})


def past_memorization(step: np.ndarray, memorization_step: np.ndarray) -> np.ndarray:
    """max(0, ln(step / memorization_step)): 0 before memorization and where it never happened (NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        past = np.log(np.asarray(step, float) / np.asarray(memorization_step, float))
    return np.where(np.isfinite(past) & (past > 0), past, 0.0)


def _split_table(results, split: str | None, path: Path) -> pd.DataFrame:
    """The chosen split of a results hypercube as rows; --split may be left out when it has one split."""
    splits = splits_of(results)
    if split is None:
        if len(splits) > 1:
            raise UserError(f"{path} has splits {', '.join(splits)}; choose one with --split")
        split = splits[0]
    if split not in splits:
        raise UserError(f"{path} has no split {split!r}; it has {', '.join(splits)}")
    return results_table(results, split)


def query(table: pd.DataFrame, expression: str | None, flag: str) -> pd.DataFrame:
    """The rows matching a row condition (see `scaling.fit.expression`); flag names it in an error. A condition
    that selects none of a table's rows is refused: whatever was to be fitted or drawn from them would be empty."""
    if expression is None:
        return table
    picked = table[row_condition(table, expression, flag)]
    if picked.empty and not table.empty:
        raise UserError(f"{flag} {_quoted(expression)} selects no rows (of {len(table)})")
    return picked


def row_condition(table: pd.DataFrame, expression: str, flag: str) -> pd.Series:
    """A row condition as a boolean mask over the table's rows; flag names it in an error."""
    try:
        mask = row_mask(expression, table)
    except ExpressionError as error:
        raise UserError(f"{flag} {_quoted(expression)} {error}") from None
    return pd.Series(mask, index=table.index)


def _quoted(expression: str, most: int = 60) -> str:
    """The expression as it goes into a one-line error: repr'd, and cut when long."""
    return repr(expression if len(expression) <= most else expression[:most] + "...")


def axis_columns(law: Law, mapping: list[str], table: pd.DataFrame) -> dict[str, str]:
    """The column of each law input: --x NAME=COLUMN, else for an axis the column named like it (or `step`),
    for a covariate its default column (DEFAULT_COVARIATE_COLUMNS)."""
    chosen: dict[str, str] = {}
    for item in mapping:
        axis, sep, column = item.partition("=")
        if not sep or not axis or not column:
            raise UserError(f"--x {item!r} must look like AXIS=COLUMN")
        if axis not in law.inputs:
            covariates = f" and inputs {', '.join(law.covariates)}" if law.covariates else ""
            raise UserError(f"--x {item!r}: law {law.name} has axes {', '.join(law.axes)}{covariates}")
        chosen[axis] = column
    for axis in law.axes:
        if axis not in chosen:
            if axis in table.columns:
                chosen[axis] = axis
            elif len(law.axes) == 1 and DEFAULT_STEPS_AXIS in table.columns:
                chosen[axis] = DEFAULT_STEPS_AXIS
            else:
                raise UserError(f"law {law.name} needs its axis {axis!r}: give --x {axis}=COLUMN")
    for name in law.covariates:
        if name not in chosen:
            default = DEFAULT_COVARIATE_COLUMNS.get(name, name)
            if default not in table.columns:
                raise UserError(f"law {law.name} needs its input {name!r} ({COVARIATE_MEANINGS.get(name, 'a per-row value')}) "
                                f"and the table has no column {default!r}: give --x {name}=COLUMN")
            chosen[name] = default
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
    run: tuple[str, ...] = ()  # the columns that together name a run (a grid cell), when the rows come from a grid
    # The item column when each row is one example's 0/1 grade: an item-level fit (scaling.fit.items), its
    # units a run × family; None: the aggregated likelihoods of models.py. Chosen by `item_column`.
    item: str | None = None
    family: str | None = None  # with `item`: the column of each item's family (its own item spread)

    @property
    def units(self) -> tuple[str, ...]:
        """Item-level: the columns naming a unit with run effects of its own, a run (else a seed) and its family:
        a run's families do not share its luck."""
        runs = list(self.run) or ([self.seed] if self.seed else [])
        return tuple(dict.fromkeys([*runs, *([self.family] if self.family and runs else [])]))

    def likelihood(self, law: Law) -> str:
        """The likelihood these columns are fitted with, as fit.toml names it."""
        if self.item:
            return "item-level Bernoulli"
        if law.response == "loss":
            return "Student-t on log loss"
        return "aggregated Beta-Binomial" if self.n else "Student-t on the accuracy"

    def numeric(self) -> dict[str, str]:
        """Each column that must hold numbers, with the option that chose it."""
        chosen = {column: "--x" for column in self.x.values()}
        chosen[self.y] = "--y"
        if self.n:
            chosen[self.n] = "--n"
        return chosen


ITEM_COLUMN = "key"  # a grid's grades name each evaluation problem here (family and operands)
FAMILY_COLUMN = "family"


def item_column(rows: pd.DataFrame, law: Law, y: str, n: str | None, item: str | None) -> str | None:
    """The item column if the rows are per-example 0/1 grades to fit item-level, else None: the one place this
    is decided. `item` (--item) asks for it, and then every condition is a UserError; without it, a table with a
    `key` column, an accuracy law, a 0/1 --y and no --n is fitted item-level."""
    column = item or ITEM_COLUMN
    if item is None and (column not in rows or n or law.response != "accuracy" or not _zero_one(rows[y])):
        return None
    _require(rows, [column], "--item")
    if n:
        raise UserError(f"--item {column!r} fits one 0/1 grade per row; --n {n!r} is for accuracies over n examples")
    if law.response != "accuracy":
        raise UserError(f"--item {column!r}: law {law.name} fits a loss; an item-level fit needs an accuracy law")
    if not _zero_one(rows[y]):
        bad = rows[y][~rows[y].isin([0, 1]) & rows[y].notna()]
        raise UserError(f"--y column {y!r} holds {bad.iloc[0]!r} at {_row(bad.index[0])}: an item-level fit "
                        f"(--item {column!r}) needs one 0/1 outcome per row")
    return column


def _zero_one(values: pd.Series) -> bool:
    """Whether a column holds 0/1 outcomes (booleans, or numbers that are all 0 or 1)."""
    return values.dtype.kind == "b" or (values.dtype.kind in "iuf" and bool(values.dropna().isin([0, 1]).all()))


def as_numbers(rows: pd.DataFrame, columns: Columns) -> pd.DataFrame:
    """rows with every numeric column as float; text, or a value beyond float32 (what the fit computes
    in), is a UserError naming the column and its first bad row (rows counted from 1 as in the table)."""
    rows = rows.copy()
    for column, flag in columns.numeric().items():
        given = rows[column]
        values = pd.to_numeric(given, errors="coerce") if given.dtype.kind not in "biuf" else given.astype(float)
        text = values.isna() & given.notna()
        if text.any():
            raise UserError(f"{flag} column {column!r} holds {given[text].iloc[0]!r} at {_row(text.idxmax())}: not a number")
        huge = values.abs() > FLOAT32_MAX
        if huge.any():
            raise UserError(f"{flag} column {column!r} holds {values[huge].iloc[0]:g} at {_row(huge.idxmax())}: beyond "
                            f"the float32 range the fit computes in")
        rows[column] = values.astype(float)
    return rows


FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_N = 2**24  # examples behind one accuracy: float32 counts up to here exactly
WHOLE_COUNT_TOLERANCE = 1e-3  # |y·n − round(y·n)|: an accuracy is a count of correct answers out of n


def _row(label) -> str:
    return f"row {label + 1}" if isinstance(label, (int, np.integer)) else f"row {label!r}"


def check_values(rows: pd.DataFrame, law: Law, columns: Columns) -> None:
    """Values the law cannot take are a UserError naming the column and the first such row."""

    def refuse(bad: pd.Series, flag: str, column: str, why: str) -> None:
        if bad.any():
            label = bad.idxmax()
            raise UserError(f"{flag} column {column!r} holds {rows.at[label, column]:g} at {_row(label)}: {why}")

    for axis, column in columns.x.items():
        values = rows[column]
        if axis in law.covariates:
            low, high, why = COVARIATE_RANGES.get(axis, (-np.inf, np.inf, "must be finite"))
            refuse(~np.isfinite(values) | (values < low) | (values >= high), "--x", column, f"law {law.name}'s input {axis}: {why}")
        else:
            refuse(~np.isfinite(values) | (values <= 0), "--x", column, f"law {law.name}'s axis {axis} must be positive and finite")
    y = rows[columns.y]
    if law.response == "loss":
        refuse(~np.isfinite(y) | (y <= 0), "--y", columns.y, f"law {law.name} fits a loss, which must be positive")
    else:
        refuse(~((y >= 0) & (y <= 1)), "--y", columns.y, f"law {law.name} fits an accuracy, which lies in [0, 1]")
    if columns.n:
        n = rows[columns.n]
        refuse(~np.isfinite(n) | (n < 1) | (n != np.round(n)), "--n", columns.n, "a number of examples is a whole number >= 1")
        refuse(n > MAX_N, "--n", columns.n, f"more than {MAX_N} examples behind one accuracy")
        if law.response == "accuracy":
            correct = y * n
            refuse((correct - np.round(correct)).abs() > WHOLE_COUNT_TOLERANCE, "--y", columns.y,
                   f"times --n {columns.n!r} that is not a whole number of correct answers")


def fit_data(rows: pd.DataFrame, law: Law, columns: Columns) -> FitData:
    """The arrays a law is fitted to, from rows already converted (`as_numbers`) and checked (`check_values`)."""
    x = {axis: rows[column].to_numpy(float) for axis, column in columns.x.items()}
    n = rows[columns.n].to_numpy(float) if columns.n else None
    seed = None
    if columns.seed and rows[columns.seed].nunique() > 1:
        seed = pd.factorize(rows[columns.seed], sort=True)[0]
    run, labels = None, None
    if columns.run:
        codes = rows.groupby(list(columns.run), sort=False, dropna=False).ngroup().to_numpy()
        run = codes if codes.max() + 1 < len(codes) else None  # only where rows repeat a run
        labels = group_labels(rows, columns.run).to_numpy(str)  # a run's name, the same in every subset of rows
    return FitData(x=x, y=rows[columns.y].to_numpy(float), n=n, seed=seed, run=run, run_labels=labels)


def groups(rows: pd.DataFrame, by: tuple[str, ...]) -> list[tuple[str, dict, pd.DataFrame]]:
    """(label, value of each --by column, rows) per group, in order of first appearance; one unnamed group
    without --by."""
    if not by:
        return [("", {}, rows)]
    _require(rows, list(by), "--by")
    labels = group_labels(rows, by)
    return [(label, rows.loc[part.index[0], list(by)].to_dict(), rows.loc[part.index])
            for label, part in rows.groupby(labels, sort=False, dropna=False)]
