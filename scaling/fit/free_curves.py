"""The free-curve reference `scaling fit --compare` scores beside the laws on rows of runs: one logistic
curve over steps per run, every parameter partially pooled across runs. It is no law of the grid's axes,
only what each run's own budgets show, so a law that cannot beat it explains nothing across runs.
"""

from __future__ import annotations

import dataclasses

import arviz as az
import numpy as np
import pandas as pd

from scaling.fit import progress
from scaling.fit.data import fit_data
from scaling.fit.infer import FitData, LawFit, fit_pooled
from scaling.fit.models import OBSERVED
from scaling.fit.request import FitRequest, Prepared, prepare

FREE_CURVES = "free-curves"  # its name in a comparison table
FREE_CURVE_LAW = "logistic"  # its curve: floor to ceiling, logistic in log steps
# printed before they are fitted
FREE_CURVES_LINE = f"fitting the baseline {FREE_CURVES}: one `{FREE_CURVE_LAW}` curve over steps per run, partially pooled"


def free_curves_posterior(request: FitRequest, runs: np.ndarray) -> tuple[az.InferenceData, bool]:
    """The curves fitted to every row of `prepare`, in its order, with `runs` naming each row's run: a posterior
    whose pointwise log-likelihood is over the same rows as the compared laws' (for PSIS-LOO), and convergence."""
    prepared = _free_curve_rows(request)
    data, fits = _fit(request, prepared, prepared.rows, runs)
    first = fits[0].posterior
    pointwise = np.empty((first.posterior.sizes["chain"], first.posterior.sizes["draw"], len(data.y)))
    for g, fit in enumerate(fits):
        pointwise[..., data.group == g] = fit.posterior.log_likelihood[OBSERVED].values
    posterior = az.from_dict(posterior={"k": first.posterior["k"].values}, log_likelihood={OBSERVED: pointwise},
                             dims={OBSERVED: ["obs"]})
    return posterior, all(fit.converged for fit in fits)


def free_curves_held_out(request: FitRequest, train_runs: np.ndarray, held_runs: np.ndarray) -> tuple[np.ndarray, bool]:
    """The curves fitted to the rows not held out (each held-out row's run among them) and the log predictive
    density of each held-out row under each draw of its run's curve (draws × held-out rows), and convergence."""
    prepared = _free_curve_rows(request)
    part = prepared.parts[0]
    _, fits = _fit(request, prepared, part.train, train_runs)
    held = fit_data(part.held_rows, prepared.law, prepared.columns)
    blocks = []  # (the held-out rows of a run, their log density under each draw of its curve)
    for name, fit in zip(np.unique(train_runs), fits):
        rows = held_runs == name
        if rows.any():
            pick = {a: v[rows] for a, v in held.x.items()}
            blocks.append((rows, fit.log_predictive(pick, held.y[rows], None if held.n is None else held.n[rows])))
    log_lik = np.empty((len(blocks[0][1]) if blocks else 0, len(held.y)))  # no blocks: --holdout held out no rows
    for rows, block in blocks:
        log_lik[:, rows] = block
    return log_lik, all(fit.converged for fit in fits)


def _free_curve_rows(request: FitRequest) -> Prepared:
    """The request's rows prepared for the free curves: FREE_CURVE_LAW over the column --x maps to `step`."""
    steps = next((item.partition("=")[2] for item in request.x if item.partition("=")[0] == "step"), "step")
    return prepare(dataclasses.replace(request, law=FREE_CURVE_LAW, x=(f"x={steps}",)))


def _fit(request: FitRequest, prepared: Prepared, rows: pd.DataFrame, runs: np.ndarray) -> tuple[FitData, list[LawFit]]:
    """One pooled fit of a curve per run (the runs' sorted unique values, in order) to rows, named by runs."""
    progress.stage(f"baseline {FREE_CURVES}")
    data = dataclasses.replace(fit_data(rows, prepared.law, prepared.columns), run=None, seed=None, run_labels=None,
                               group=np.unique(runs, return_inverse=True)[1])
    return data, fit_pooled(prepared.law, data, request.method, request.sampler)
