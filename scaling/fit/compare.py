"""`scaling fit --compare`: several laws fitted to the same rows and scored on the same units, by PSIS-LOO
(leaving out whole runs where rows name them) or, with --holdout, by the exact log predictive density of the
held-out rows. On rows of runs the free curves (scaling.fit.free_curves) are scored beside the laws.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Callable

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from scaling.errors import UserError
from scaling.fit import progress
from scaling.fit.data import fit_data
from scaling.fit.free_curves import FREE_CURVES, FREE_CURVES_LINE, free_curves_held_out, free_curves_posterior
from scaling.fit.infer import fit_law
from scaling.fit.laws import get_law
from scaling.fit.models import OBSERVED
from scaling.fit.record import MARKER, WRITER, compare_toml
from scaling.fit.request import FitRequest, Prepared, prepare
from scaling.staging import check_replaceable, publish_folder


def compare_laws(request: FitRequest, names: list[str], say: Callable[[str], None] = print) -> pd.DataFrame:
    """PSIS-LOO comparison of several laws fitted to the same rows (no --by): elpd, its SE, differences, weights.
    On rows of runs (a results file) the baseline `free-curves` (a pooled logistic curve per run) is scored
    with them."""
    if request.by:
        raise UserError("--compare fits all rows together; drop --by (or filter with --where)")
    if request.method == "huber":
        raise UserError("--compare needs a posterior (method nuts or svi), not huber")
    if request.out is not None:
        check_replaceable(Path(request.out), MARKER, WRITER)
    every_axis = {axis for name in names for axis in get_law(name).inputs}
    for item in request.x:
        if item.partition("=")[0] not in every_axis:
            raise UserError(f"--x {item!r}: none of the compared laws has that axis ({', '.join(sorted(every_axis))})")
    if len(set(names)) < 2:
        raise UserError(f"--compare takes two or more different laws, got {','.join(names)}")
    # Each law takes the --x mappings of its own axes (a steps-only law fits against the same rows with its
    # one axis); PSIS-LOO compares them on the same observations. Every law's input is checked before any fit.
    prepared = {name: prepare(dataclasses.replace(request, law=name, x=tuple(
        item for item in request.x if item.partition("=")[0] in get_law(name).inputs))) for name in dict.fromkeys(names)}
    items = next((one.columns.item for one in prepared.values() if one.columns.item), None)
    if items:  # scaling.fit.items scores budgets, not the rows law_model's densities are of
        raise UserError(f"--compare fits aggregated rows; these are per-example 0/1 grades (item column {items!r}): "
                        "give an aggregated table (families.parquet with --n n)")
    if request.holdout is not None:
        return _publish_compare(request, names, holdout_compare(request, prepared, say), say)
    posteriors, converged, schemes = {}, {}, set()
    for index, (name, one) in enumerate(prepared.items()):
        progress.stage(f"law {name}", index, len(prepared))
        data = fit_data(one.rows, one.law, one.columns)
        fit = fit_law(one.law, data, request.method, request.sampler)
        posteriors[name], scheme = leave_out_unit(fit.posterior, data.run)
        converged[name] = fit.converged
        schemes.add(scheme)
    if data.run is not None:  # rows of runs: the baseline every law must beat is a free curve per run
        say(FREE_CURVES_LINE)
        posterior, converged[FREE_CURVES] = free_curves_posterior(request, data.run)
        posteriors[FREE_CURVES], scheme = leave_out_unit(posterior, data.run)
        schemes.add(scheme)
    if len(schemes) > 1:  # laws whose rows name their runs differently cannot be scored on the same units
        raise UserError(f"--compare: the laws' rows split into runs differently ({'; '.join(sorted(schemes))})")
    scheme = schemes.pop()
    say(f"scored by PSIS-LOO, {scheme}")
    with warnings.catch_warnings():  # ArviZ warns of high Pareto k̂ in a paragraph; the table's `warning` says it
        warnings.simplefilter("ignore", UserWarning)
        table = az.compare(posteriors, ic="loo")
    table["converged"] = [converged[name] for name in table.index]
    table["scheme"] = scheme
    columns = ["rank", "elpd_loo", "p_loo", "elpd_diff", "se", "dse", "weight", "converged", "scheme", "warning"]
    say(table[columns[:-2]].to_string(float_format=lambda v: f"{v:.4g}"))
    flagged = [name for name in table.index if table.loc[name, "warning"]]
    if flagged:
        say(f"PSIS-LOO is unreliable for {', '.join(flagged)} (a high Pareto k̂ for some rows: observations "
            "the fit leans on heavily); read their elpd with care")
    if not all(converged.values()):
        say(f"not converged (r_hat, ESS or divergences): {', '.join(n for n, ok in converged.items() if not ok)}; "
            "their elpd is not to be trusted (rerun with more --samples/--warmup)")
    return _publish_compare(request, names, table[columns], say)


def leave_out_unit(posterior: az.InferenceData, runs: np.ndarray | None) -> tuple[az.InferenceData, str]:
    """The posterior with its pointwise log-likelihood summed over each run's rows, so PSIS-LOO leaves out
    whole runs: a run's budgets share its seed's luck, and leaving out one of them while its neighbours stay
    in flatters a law. Without runs (a table of independent rows), rows are the unit."""
    if runs is None:
        return posterior, "leave-one-row-out"
    pointwise = posterior.log_likelihood[OBSERVED]
    codes = xr.DataArray(np.asarray(runs), dims=pointwise.dims[-1:])
    per_run = pointwise.groupby(codes.rename("run")).sum()
    summed = az.InferenceData(posterior=posterior.posterior, log_likelihood=xr.Dataset({OBSERVED: per_run}))
    return summed, f"leave-one-run-out ({per_run.sizes['run']} runs)"


def holdout_compare(request: FitRequest, prepared: dict[str, Prepared], say: Callable[[str], None]) -> pd.DataFrame:
    """Every law (name -> its prepared rows) fitted on the rows not held out and scored on the held-out ones by
    their exact log predictive density (a rollout when --holdout holds out the last budgets: each run keeps its
    own effects), summed per run (or per row, without runs): elpd_holdout, its SE over those units, and each
    law's difference from the best with the SE of that paired difference. On runs, `free-curves` is scored too
    when every held-out row belongs to a run with fitted rows."""
    units, converged = {}, {}
    for index, (name, one) in enumerate(prepared.items()):
        part = one.parts[0]
        progress.stage(f"law {name}", index, len(prepared))
        fit = fit_law(one.law, fit_data(part.train, one.law, one.columns), request.method, request.sampler)
        held = fit_data(part.held_rows, one.law, one.columns)
        units[name] = _unit_elpd(fit.log_predictive(held.x, held.y, held.n, runs=held.run_labels), held.run_labels)
        converged[name] = fit.converged
    one = next(iter(prepared.values()))
    part = one.parts[0]
    held_runs = fit_data(part.held_rows, one.law, one.columns).run_labels
    train_runs = fit_data(part.train, one.law, one.columns).run_labels
    if held_runs is not None and set(held_runs) <= set(train_runs):
        say(FREE_CURVES_LINE)
        log_lik, converged[FREE_CURVES] = free_curves_held_out(request, train_runs, held_runs)
        units[FREE_CURVES] = _unit_elpd(log_lik, held_runs)
    table = pd.DataFrame({name: u for name, u in units.items()})
    elpd = table.sum()
    best = elpd.idxmax()
    k = len(table)
    out = pd.DataFrame({
        "rank": elpd.rank(ascending=False, method="first").astype(int) - 1,
        "elpd_holdout": elpd,
        "elpd_diff": elpd[best] - elpd,
        "se": np.sqrt(k * table.var(ddof=1)),
        "dse": np.sqrt(k * (table[best].to_numpy()[:, None] - table).var(ddof=1)),
        "converged": pd.Series(converged),
    }).sort_values("rank")
    scheme = f"holdout ({int(part.held.sum())} rows, {k} {'runs' if held_runs is not None else 'rows'})"
    out["scheme"] = scheme
    say(f"scored on held-out rows by their exact log predictive density, {scheme}")
    say(out.drop(columns="scheme").to_string(float_format=lambda v: f"{v:.4g}"))
    return out


def _unit_elpd(log_lik: np.ndarray, runs: np.ndarray | None) -> pd.Series:
    """log mean_s p(y_i | draw s) per held-out row, summed per run where rows name runs."""
    pointwise = np.logaddexp.reduce(log_lik, axis=0) - np.log(log_lik.shape[0])
    return pd.Series(pointwise).groupby(np.asarray(runs) if runs is not None else np.arange(len(pointwise))).sum()


def _publish_compare(request: FitRequest, names: list[str], table: pd.DataFrame, say: Callable[[str], None]) -> pd.DataFrame:
    """compare.csv and the request, staged like a fit's outputs (when --out is given)."""
    scheme = str(table["scheme"].iloc[0])
    if request.out is not None:
        def fill(staging: Path) -> None:
            table.rename_axis("law").to_csv(staging / "compare.csv")
            (staging / MARKER).write_text(compare_toml(request, request.out, names,
                                                       "loo" if "elpd_loo" in table else "holdout", scheme))

        publish_folder(request.out, fill, MARKER, WRITER)
        say(f"wrote {request.out}/ (compare.csv, {MARKER})")
    return table
