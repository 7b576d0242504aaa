"""The fits of one `scaling fit` request: a fit per --by group (or one pooled fit of them all), each with its
diminishing returns and backtest, and their outputs stacked into one table (or posterior) led by the group.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from scaling.fit import progress
from scaling.fit.backtest import PERSISTENCE, backtest_scores, backtest_table, persistence
from scaling.fit.data import DEFAULT_STEPS_AXIS, Columns, fit_data
from scaling.fit.identify import COLUMNS as IDENTIFY_COLUMNS
from scaling.fit.infer import LawFit, fit_law, fit_pooled
from scaling.fit.items import POPULATIONS, budget_table, fit_items, fit_items_pooled, item_backtest, item_data
from scaling.fit.laws import Law
from scaling.fit.models import POOL_TAU
from scaling.fit.record import group_dim
from scaling.fit.request import FitRequest, Part, Prepared
from scaling.fit.returns import PAST, MemorizedRun, fraction_axes, returns_table

# contraction, prior_share, prior_tail and the `identified` label: see scaling.fit.identify
SUMMARY_COLUMNS = ["param", "mean", "sd", "hdi_5%", "hdi_95%", "r_hat", "ess_bulk", *IDENTIFY_COLUMNS, "p_positive"]


@dataclass(frozen=True)
class GroupFit:
    """One group's fit and what is read from it."""

    label: str  # the group's label (see scaling.results.group_labels; "" without --by)
    key: dict  # the group's value of each --by column
    fit: LawFit
    returns: pd.DataFrame  # diminishing returns (scaling.fit.returns)
    backtest: pd.DataFrame  # predictions of the held-out rows (of the fitted ones without --holdout)
    scores: dict[str, float]  # the backtest's coverage and error


def fit_groups(request: FitRequest, prepared: Prepared) -> list[GroupFit]:
    """One fit per --by group (or one pooled fit of them all): fitted on the rows not held out,
    backtested on the held-out ones."""
    law, columns, parts = prepared.law, prepared.columns, prepared.parts
    if request.pool:
        progress.stage(f"{len(parts)} groups, pooled")
        joint = pd.concat([part.train for part in parts], ignore_index=True)
        codes = np.concatenate([np.full(len(part.train), g) for g, part in enumerate(parts)])
        fits = (fit_items_pooled(law, items_of(joint, law, columns, codes), request.sampler) if columns.item else
                fit_pooled(law, dataclasses.replace(fit_data(joint, law, columns), group=codes), request.method, request.sampler))
    else:
        fits = []
        for index, part in enumerate(parts, start=1):
            progress.stage(f"group {part.label}" if part.label else law.name, index - 1, len(parts))
            fits.append(fit_items(law, items_of(part.train, law, columns), request.sampler) if columns.item
                        else fit_law(law, fit_data(part.train, law, columns), request.method, request.sampler))
    results = []
    for part, fit in zip(parts, fits):
        held_out = bool(part.held.any())
        tested = tested_rows(part)
        if columns.item:
            backtest = item_backtest(fit, items_of(tested, law, columns), columns.x, held_out)
            backtest[PERSISTENCE] = item_persistence(law, columns, part, backtest)
        else:
            backtest = backtest_table(fit, tested, fit_data(tested, law, columns), columns.x, held_out,
                                      group_persistence(law, columns, part))
        returns = group_returns(request, law, columns, part, fit.draws())
        results.append(GroupFit(part.label, part.key, fit, returns, backtest, backtest_scores(backtest)))
    return results


def items_of(rows: pd.DataFrame, law, columns: Columns, group: np.ndarray | None = None):
    """Per-example grades as the item model reads them, its units those of `Columns.units` whether or not the
    groups are pooled (`group`: each row's code)."""
    return item_data(rows, law, columns.x, columns.y, columns.item, columns.units, columns.family, group)


def tested_rows(part: Part) -> pd.DataFrame:
    """The rows a group's backtest predicts: the held-out ones, or the rows fitted when none is held out."""
    return part.held_rows if part.held.any() else part.train


def group_returns(request: FitRequest, law: Law, columns: Columns, part: Part, draws: dict[str, np.ndarray]) -> pd.DataFrame:
    """A group's diminishing returns from its posterior draws (scaling.fit.returns), at the rows it fitted."""
    x_train = fit_data(part.train, law, columns).x
    runs = memorized_runs(part.rows, part.train, columns, steps_of(columns))
    returns = returns_table(law, draws, x_train, request.returns, runs, steps_of(columns),
                            fraction_axes({a: columns.x[a] for a in law.axes}, x_train))
    # Item-level, the law's parameters are those of a problem of item effect 0, not of the evaluation set's average.
    return returns.assign(population=POPULATIONS["median"]) if columns.item else returns


def group_persistence(law: Law, columns: Columns, part: Part) -> np.ndarray:
    """The persistence baseline's prediction of each tested row of a group (scaling.fit.backtest.persistence)."""
    along = budget_axis(law, columns)
    return persistence(tested_rows(part), part.train, columns.y, run_keys(columns, along), columns.x.get(along))


def item_persistence(law: Law, columns: Columns, part: Part, backtest: pd.DataFrame) -> np.ndarray:
    """The persistence baseline of an item-level backtest's budgets: each run's accuracy over its items at its
    largest fitted budget before the row's (scaling.fit.backtest.persistence, on budgets rather than examples)."""
    fitted = budget_table(items_of(part.train, law, columns), columns.x)
    return persistence(backtest, fitted, "observed", ["run"], columns.x.get(budget_axis(law, columns)))


def steps_of(columns: Columns) -> str | None:
    """The law axis read from the grid's `step` column (training steps, where runs memorize), if any."""
    return next((a for a, c in columns.x.items() if c == DEFAULT_STEPS_AXIS), None)


def budget_axis(law: Law, columns: Columns) -> str | None:
    """The law axis a run advances along, whose last fitted value persistence carries forward: its steps, else
    a one-axis law's only axis (tokens, checkpoints); None when neither (a law of sizes)."""
    return steps_of(columns) or (law.axes[0] if len(law.axes) == 1 else None)


def run_keys(columns: Columns, along: str | None) -> list[str]:
    """The columns naming one run's series of measurements along its budget: the grid's run columns (a cell) or
    else the seed, with every input column but the budget's and `past` (which follows the budget): a cell
    measured on several families (each with its chance) is a series per family. Item-level, the fit's units
    (a run × family: Columns.units)."""
    if columns.item:  # per-example rows: a covariate (each problem's chance) varies within one run's budget
        return list(columns.units)
    inputs = [c for a, c in columns.x.items() if a not in (along, PAST)]
    return list(dict.fromkeys([*(columns.run or ([columns.seed] if columns.seed else [])), *inputs]))


def memorized_runs(rows: pd.DataFrame, fitted: pd.DataFrame, columns: Columns, steps_axis: str | None) -> list[MemorizedRun]:
    """Each run among the rows (`run_keys`), at its own law-axis values, with its memorization step and its
    largest budget among the `fitted` rows: none without a memorization_step column."""
    if steps_axis is None or "memorization_step" not in rows:
        return []
    others = {axis: column for axis, column in columns.x.items() if axis != steps_axis}
    keys = run_keys(columns, steps_axis)
    step = columns.x[steps_axis]
    if not keys:
        return [MemorizedRun({axis: float(rows[column].iloc[0]) for axis, column in others.items()},
                             float(rows["memorization_step"].iloc[0]), float(fitted[step].max()))]
    firsts = rows.groupby(keys, sort=False, dropna=False).first().reset_index()
    last = fitted.groupby(keys, sort=False, dropna=False)[step].max().rename("_last_fitted").reset_index()
    firsts = firsts.merge(last, on=keys, how="left")
    return [MemorizedRun({axis: float(run[column]) for axis, column in others.items()}, float(run["memorization_step"]),
                         float(run["_last_fitted"])) for _, run in firsts.iterrows()]


def divergences(request: FitRequest, fits: list[GroupFit]) -> int:
    """Divergent transitions: of each group's fit, or of the one joint fit that a pooled fit's groups share."""
    return fits[0].fit.divergences if request.pool else sum(g.fit.divergences for g in fits)


def summary_table(fits: list[GroupFit]) -> pd.DataFrame:
    """Every group's summary rows (with whether the data determined each parameter) and whether its fit converged."""
    return stacked([g.fit.summary[SUMMARY_COLUMNS].assign(converged=g.fit.converged) for g in fits], fits)


def stacked(frames: list[pd.DataFrame], fits: list[GroupFit]) -> pd.DataFrame:
    """One table of every group's rows, each led by its value of every --by column."""
    if not fits[0].key:
        return frames[0].reset_index(drop=True)
    return pd.concat([frame.assign(**g.key)[[*g.key, *frame.columns]] for frame, g in zip(frames, fits)],
                     ignore_index=True)


def stacked_posterior(fits: list[GroupFit], by: tuple[str, ...]) -> az.InferenceData:
    """One fit's InferenceData as it is; several groups' posteriors stacked along the --by dimension (the
    column itself, or `group` for several columns: see scaling.fit.record.group_dim)."""
    if not by:
        return fits[0].fit.posterior
    # What the summaries report (an item-level fit's item spreads among them), where every group has it.
    params = [name for name in fits[0].fit.summary["param"] if all(name in g.fit.posterior.posterior for g in fits)]
    joined = xr.concat([g.fit.posterior.posterior[params] for g in fits],
                       dim=pd.Index([g.label for g in fits], name=group_dim(by)))
    first = fits[0].fit.posterior.posterior
    joined = joined.assign({name: first[name] for name in first.data_vars if name.startswith(POOL_TAU)})  # shared
    return az.InferenceData(posterior=joined)
