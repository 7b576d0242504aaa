"""One `scaling fit` request and what it reads: the law, the rows of each --by group split into fitted and
held out, and the column roles. Every input problem is found in `prepare`, before anything is printed or fitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scaling.errors import UserError
from scaling.fit import METHODS
from scaling.fit.data import (FAMILY_COLUMN, Columns, as_numbers, axis_columns, check_values, groups, item_column,
                              load_table, query, row_condition)
from scaling.fit.infer import SamplerConfig
from scaling.fit.laws import Law, get_law
from scaling.fit.returns import ReturnsConfig
from scaling.schema import AXES


@dataclass(frozen=True)
class FitRequest:
    """One `scaling fit` invocation."""

    input: Path  # results.nc, or a .csv/.parquet table
    law: str  # a name in scaling.fit.laws.LAWS
    y: str  # the response column or variable
    x: tuple[str, ...] = ()  # AXIS=COLUMN mappings of the law's axes
    n: str | None = None  # examples behind each accuracy (Beta-Binomial likelihood)
    item: str | None = None  # per-example 0/1 grades: the item column (default `key` where --y is 0/1 and no --n)
    by: tuple[str, ...] = ()  # fit each group of these columns (each combination of their values) separately
    pool: bool = False  # with --by: one joint fit, every law parameter partially pooled across the groups
    seed_column: str | None = "seed"  # replicate seeds: partial pooling when present with several values
    where: str | None = None  # a row condition (scaling.fit.expression): the rows to use
    holdout: str | None = None  # a row condition: rows held out of the fit and predicted (the backtest)
    split: str | None = None  # results.nc: the split to fit
    method: str = "nuts"  # nuts, svi or huber
    sampler: SamplerConfig = field(default_factory=SamplerConfig)  # NUTS chains, the SVI run or the Huber bootstrap
    returns: ReturnsConfig = field(default_factory=ReturnsConfig)  # what counts as diminished returns
    allow_unconverged: bool = False  # write the outputs even when diagnostics fail
    out: Path | None = None  # output folder (default fits/LAW)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by", as_columns(self.by))  # "size,diversity" and ["size"] alike


def as_columns(by) -> tuple[str, ...]:
    """--by as a tuple of columns: from a list, a comma-separated string (one or more), or nothing."""
    if by is None:
        return ()
    items = [by] if isinstance(by, str) else list(by)
    return tuple(c.strip() for item in items for c in str(item).split(",") if c.strip())


@dataclass(frozen=True)
class Part:
    """One --by group's rows (all of them when there is no --by), split into fitted and held out."""

    label: str  # the group's label ("" without --by)
    key: dict  # its value of each --by column
    rows: pd.DataFrame  # all of the group's rows, fitted and held out
    held: pd.Series  # --holdout: rows held out of the fit and predicted
    train: pd.DataFrame  # the rows fitted

    @property
    def held_rows(self) -> pd.DataFrame:
        """The rows held out of the fit, in order."""
        return self.rows[self.held].reset_index(drop=True)


@dataclass(frozen=True)
class Prepared:
    """What a fit reads, every input problem found: nothing is printed or fitted before this exists."""

    law: Law
    rows: pd.DataFrame  # the rows of every group, the numeric columns as floats
    columns: Columns  # the role of each column the fit reads
    parts: tuple[Part, ...]  # one per --by group, in order of first appearance
    dropped: int  # rows left out for a missing value in a column the fit reads


def prepare(request: FitRequest) -> Prepared:
    """The law, the rows to fit and the column roles; every input problem is found here, before fitting."""
    if request.method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got {request.method!r}")
    if len(set(request.by)) < len(request.by):
        raise UserError(f"--by names a column twice: {', '.join(request.by)}")
    if request.pool and not request.by:
        raise UserError("--pool pools the groups of --by: give --by COLUMN")
    if request.pool and request.method == "huber":
        raise UserError("--pool needs a posterior (method nuts or svi), not huber")
    law = get_law(request.law)
    table = load_table(request.input, request.split)
    rows = query(table, request.where, "--where")
    x_columns = axis_columns(law, list(request.x), rows)
    if request.y not in rows.columns:
        raise UserError(f"--y: no column {request.y!r}; columns are {', '.join(map(str, rows.columns))}")
    if request.n and request.n not in rows.columns:
        raise UserError(f"--n: no column {request.n!r}; columns are {', '.join(map(str, rows.columns))}")
    for column in request.by:
        if column not in rows.columns:
            raise UserError(f"--by: no column {column!r}; columns are {', '.join(map(str, rows.columns))}")
    seed = request.seed_column if request.seed_column in rows.columns and request.seed_column not in request.by else None
    # Rows of a results hypercube name their run (cell) by its axes, and a grid's tables (grades, families) by
    # `cell_id`; any other table's columns are the user's to interpret.
    run = (tuple(a for a in AXES if a in rows.columns) if Path(request.input).suffix == ".nc"
           else ("cell_id",) if "cell_id" in rows.columns else ())
    item = item_column(rows, law, request.y, request.n, request.item)
    if item and request.method != "nuts":
        raise UserError(f"an item-level fit (one 0/1 grade per row of --item {item!r}) is sampled by NUTS: "
                        f"--method nuts, not {request.method}")
    family = FAMILY_COLUMN if item and FAMILY_COLUMN in rows else None
    columns = Columns(x=x_columns, y=request.y, n=request.n, seed=seed, run=run, item=item, family=family)
    rows = as_numbers(rows, columns)
    complete = rows.dropna(subset=list(columns.numeric()))
    dropped = len(rows) - len(complete)
    if complete.empty:
        raise UserError("no rows left to fit (check --where, --split and missing values)")
    check_values(complete, law, columns)
    rows = complete.reset_index(drop=True)
    held = row_condition(rows, request.holdout, "--holdout") if request.holdout is not None else pd.Series(False, index=rows.index)
    parts = []
    for label, key, part in groups(rows, request.by):
        part_held = held[part.index].reset_index(drop=True)
        part = part.reset_index(drop=True)
        train = part[~part_held].reset_index(drop=True)
        # A pooled group borrows strength from the others, so it needs rows, not a full set of them.
        if len(train) < (1 if request.pool else len(law.params)):
            raise UserError(f"group {label or 'all'}: {len(train)} rows to fit, fewer than the law's {len(law.params)} parameters")
        parts.append(Part(label, key, part, part_held, train))
    if request.pool and len(parts) < 2:
        raise UserError(f"--pool needs at least two groups of --by {','.join(request.by)}; there is one")
    return Prepared(law, rows, columns, tuple(parts), dropped)
