"""`scaling fit`: fit a law from the registry to the store's results or a tidy table, and write the
posterior, summary, diminishing returns, backtest and the spec to rerun it.

Outputs are written into a staging folder and moved into place at the end: a bad input, an
interrupt or an unconverged fit leaves nothing behind, and a folder not written by `scaling fit`
is never overwritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from scaling.fit.console import diagnostics_lines, divergence_verdicts, say_fits, say_request
from scaling.fit.divergence import RULE
from scaling.fit.groups import GroupFit, divergences, fit_groups, stacked, stacked_posterior, summary_table
from scaling.fit.infer import DENSE_MASS, TARGET_ACCEPT
from scaling.fit.record import MARKER, WRITER, fit_toml
from scaling.fit.request import FitRequest, Prepared, prepare
from scaling.staging import check_replaceable, publish_folder


def run_fit(request: FitRequest, say: Callable[[str], None] = print) -> tuple[list[GroupFit], Path | None]:
    """Fit, report, and (when converged or allowed) write the outputs; returns the fits and the folder written."""
    prepared = prepare(request)
    out = Path(request.out or Path("fits") / prepared.law.name)
    check_replaceable(out, MARKER, WRITER)
    say_request(request, prepared, say)
    fits = fit_groups(request, prepared)
    summary = summary_table(fits)
    say_fits(request, prepared.law, fits, summary, say)
    if request.method != "huber":
        for line in diagnostics_lines(request, fits, summary):
            say(line)
        if not all(g.fit.converged for g in fits) and not request.allow_unconverged:
            return fits, None
    _write(request, prepared, fits, summary, out)
    say(f"wrote {out}/ (posterior.nc, summary.csv, returns.csv, backtest.csv, {MARKER})")
    return fits, out


def _write(request: FitRequest, prepared: Prepared, fits: list[GroupFit], summary: pd.DataFrame, out: Path) -> None:
    """The fit folder: the posterior, the summary, returns and backtest tables, and fit.toml, published together."""
    def fill(staging: Path) -> None:
        stacked_posterior(fits, request.by).to_netcdf(str(staging / "posterior.nc"))
        summary.to_csv(staging / "summary.csv", index=False)
        stacked([g.returns for g in fits], fits).to_csv(staging / "returns.csv", index=False)
        stacked([g.backtest for g in fits], fits).to_csv(staging / "backtest.csv", index=False)
        (staging / MARKER).write_text(fit_toml(request, out, prepared.law, _diagnostics(request, fits),
                                               {g.label or "all": g.scores for g in fits}, prepared.columns))

    publish_folder(out, fill, MARKER, WRITER)


def _diagnostics(request: FitRequest, fits: list[GroupFit]) -> dict:
    """fit.toml's diagnostics: convergence, where any divergences sit and their verdict, and how the method ran
    (NUTS's adaptation, what Huber resampled)."""
    judged = {label or "all": v for label, v in divergence_verdicts(request, fits).items() if v.count}
    return ({"converged": all(g.fit.converged for g in fits), "divergences": divergences(request, fits),
             "groups_converged": sum(g.fit.converged for g in fits), "groups": len(fits)}
            | ({"adaptation": {"target_accept": TARGET_ACCEPT, "dense_mass": DENSE_MASS,
                               "warmup": request.sampler.warmup, "chains": request.sampler.chains},
                "divergence_rule": RULE,
                "divergent": {label: {"count": v.count, "draws": v.draws, "where": v.where, "largest_shift_sd": v.shift,
                                      "moved": v.moved, "verdict": "harmless" if v.harmless else "refused"}
                              for label, v in judged.items()}}
               if request.method == "nuts" else {})
            | ({"bootstrap_resampled": sorted({str(g.fit.posterior.posterior.attrs.get("bootstrap_resampled"))
                                               for g in fits})}
               if request.method == "huber" else {}))
