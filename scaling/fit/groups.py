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
from scaling.fit.backtest import backtest_scores, backtest_table
from scaling.fit.data import Columns, fit_data
from scaling.fit.infer import LawFit, fit_law, fit_pooled
from scaling.fit.items import POPULATIONS, fit_items, fit_items_pooled, item_backtest, item_data
from scaling.fit.models import POOL_TAU
from scaling.fit.record import group_dim
from scaling.fit.request import FitRequest, Prepared
from scaling.fit.returns import MemorizedRun, returns_table

SUMMARY_COLUMNS = ["param", "mean", "sd", "hdi_5%", "hdi_95%", "r_hat", "ess_bulk", "contraction", "p_positive"]


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
        tested = part.held_rows if held_out else part.train
        backtest = (item_backtest(fit, items_of(tested, law, columns), columns.x, held_out) if columns.item
                    else backtest_table(fit, tested, fit_data(tested, law, columns), columns.x, held_out))
        steps_axis = next((a for a, c in columns.x.items() if c == "step"), None)
        x_train = fit_data(part.train, law, columns).x
        runs = memorized_runs(part.rows, columns, steps_axis)
        returns = returns_table(law, fit.draws(), x_train, request.returns, runs, steps_axis)
        if columns.item:  # the law's parameters are those of an item of effect 0
            returns = returns.assign(population=POPULATIONS["median"])
        results.append(GroupFit(part.label, part.key, fit, returns, backtest, backtest_scores(backtest)))
    return results


def items_of(rows: pd.DataFrame, law, columns: Columns, group: np.ndarray | None = None):
    """Per-example grades as the item model reads them, its units those of `Columns.units` whether or not the
    groups are pooled (`group`: each row's code)."""
    return item_data(rows, law, columns.x, columns.y, columns.item, columns.units, columns.family, group)


def memorized_runs(rows: pd.DataFrame, columns: Columns, steps_axis: str | None) -> list[MemorizedRun]:
    """Each run among the rows (a grid cell, named by its axes; else a combination of the law's other axes
    and the seed), at its own law-axis values, with its memorization step: none without that column."""
    if steps_axis is None or "memorization_step" not in rows:
        return []
    others = {axis: column for axis, column in columns.x.items() if axis != steps_axis}
    keys = list(columns.run) or list(dict.fromkeys([*others.values(), *([columns.seed] if columns.seed else [])]))
    firsts = rows.groupby(keys, sort=False, dropna=False).first().reset_index() if keys else rows.iloc[:1]
    return [MemorizedRun({axis: float(run[column]) for axis, column in others.items()}, float(run["memorization_step"]))
            for _, run in firsts.iterrows()]


def divergences(request: FitRequest, fits: list[GroupFit]) -> int:
    """Divergent transitions: of each group's fit, or of the one joint fit that a pooled fit's groups share."""
    return fits[0].fit.divergences if request.pool else sum(g.fit.divergences for g in fits)


def summary_table(fits: list[GroupFit]) -> pd.DataFrame:
    """Every group's summary rows (with each parameter's posterior contraction) and whether its fit converged."""
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
