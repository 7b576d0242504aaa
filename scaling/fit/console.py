"""What `scaling fit` prints of a fit: the request it runs, each group's summary, the answer to a signed
law's question, the spread across pooled groups, the backtest, and the convergence diagnostics. Lines go to
`say` (stdout for the CLI); the progress display goes elsewhere (scaling.fit.progress).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from scaling.fit.backtest import score_name
from scaling.fit.divergence import Divergences
from scaling.fit.groups import GroupFit, divergences
from scaling.fit.identify import MEANINGS
from scaling.fit.infer import MAX_R_HAT, MIN_ESS_BULK
from scaling.fit.laws import Law
from scaling.fit.models import POOL_TAU
from scaling.fit.request import FitRequest, Prepared

SIGNED_QUESTIONS = {"beta": "training past memorization"}  # parameters free in sign whose sign is the finding


def say_request(request: FitRequest, prepared: Prepared, say: Callable[[str], None]) -> None:
    """The rows left out and the fit about to run."""
    law = prepared.law
    if prepared.dropped:
        say(f"left out {prepared.dropped} rows with a missing value in {', '.join(prepared.columns.numeric())}")
    say(f"Fitting {law.name}: {law.formula} to {request.y} ({len(prepared.rows)} rows"
        + (f", {len(prepared.parts)} groups by {', '.join(request.by)}{' (pooled)' if request.pool else ''}" if request.by else "")
        + f") by {request.method}")


def say_fits(request: FitRequest, law: Law, fits: list[GroupFit], summary: pd.DataFrame, say: Callable[[str], None]) -> None:
    """The summary table and what it answers: parameters the data did not determine, signed questions, pooled
    spreads, backtests."""
    say(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for name, meaning in MEANINGS.items():  # the `identified` column's verdicts, one line per label
        flagged = labelled(fits, name)
        if flagged:
            say(f"{name}: {flagged}: {meaning}")
    for g in fits:
        for name, question in SIGNED_QUESTIONS.items():  # the law's answer to its question, a line per group
            if name in law.params:
                p = float((g.fit.posterior.posterior[name].values > 0).mean())
                say(f"P({name} > 0){' ' + g.label if g.label else ''} = {p:.3f}: {question} "
                    f"{'helps' if p > 0.5 else 'hurts'} with probability {max(p, 1 - p):.3f}")
    if request.pool:
        spreads = [(name, fits[0].fit.posterior.posterior[name].values) for name in fits[0].fit.posterior.posterior.data_vars
                   if name.startswith(POOL_TAU)]
        say("spread across groups (sd on the latent scale, 90% interval): " + ", ".join(
            f"{name[len(POOL_TAU):]} {np.median(v):.2g} [{np.quantile(v, 0.05):.2g}, {np.quantile(v, 0.95):.2g}]" for name, v in spreads))
    for g in fits:
        say(backtest_line(g.label, g.scores, bool(g.backtest["held_out"].any())))


def backtest_line(label: str, scores: dict[str, float], held: bool) -> str:
    """A group's backtest: coverage and error (in-sample without held-out rows), and whether the law beats
    persistence, each run's last fitted value carried forward, on the rows persistence predicts."""
    name = lambda score: score_name(score, held)  # noqa: E731
    line = (f"backtest{' ' + label if label else ''}: {scores['rows']} {'held-out' if held else 'fitted (in-sample)'} rows, "
            f"90% interval coverage {scores[name('coverage_90')]:.2f}, mean abs error {scores[name('mae')]:.4g}")
    missing = scores["rows"] - scores["persistence_rows"]
    if not scores["persistence_rows"]:
        return line + "; no persistence baseline (no row has a fitted earlier budget of its run)"
    skill = scores[name("skill")]
    verdict = "the law beats it" if skill > 0 else "the law does NOT beat it"
    return (line + f"; persistence (last fitted value carried forward) {scores[name('mae_persistence')]:.4g} over "
            f"{scores['persistence_rows']} rows{f' ({missing} without one)' if missing else ''}: {verdict} (skill {skill:.2f})")


def labelled(fits: list[GroupFit], name: str) -> str:
    """The parameters labelled `name`, each followed by its groups unless every group's is: "rho, kappa (add)"."""
    groups: dict[str, list[str]] = {}
    for g in fits:
        for param in g.fit.summary.loc[g.fit.summary["identified"] == name, "param"]:
            groups.setdefault(param, []).append(g.label)
    return ", ".join(param if len(where) == len(fits) else f"{param} ({', '.join(where)})" for param, where in groups.items())


def diagnostics_lines(request: FitRequest, fits: list[GroupFit], summary: pd.DataFrame) -> list[str]:
    """Whether every group's sampler converged, against the thresholds it needed, and where any divergences sit
    and what they move (the verdict of scaling.fit.divergence, which a refusal then rests on)."""
    status = "ok" if all(g.fit.converged for g in fits) else "NOT converged"
    lines = [f"Diagnostics: {status} (max r_hat {summary['r_hat'].max():.3f}, needs <= {MAX_R_HAT}; min bulk ESS "
             f"{summary['ess_bulk'].min():.0f}, needs >= {MIN_ESS_BULK}; {divergences(request, fits)} divergences, "
             f"needs 0 or a harmless few)"]
    return lines + [f"divergences{' ' + label if label else ''}: {judged.describe()}"
                    for label, judged in divergence_verdicts(request, fits).items() if judged.count]


def divergence_verdicts(request: FitRequest, fits: list[GroupFit]) -> dict[str, Divergences]:
    """Each sampler run's divergences judged, by the group's label: one per group, or for a pooled fit the one
    joint run, judged by the group whose reported quantities its divergences move most."""
    if request.pool:
        return {"": max((g.fit.divergence for g in fits), key=lambda judged: judged.shift)}
    return {g.label: g.fit.divergence for g in fits}
