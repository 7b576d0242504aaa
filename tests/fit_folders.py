"""Fit folders written before `summary.csv` had its identification columns, relabelled from their posterior.nc and
input table without refitting (scaling.fit.identify): for committed fits that take an hour to rerun.

    PYTHONPATH=$PWD:$PWD/tests python -c "from pathlib import Path; from fit_folders import relabelled_summary as r;
        f = Path('fits/NAME'); r(f).to_csv(f / 'summary.csv', index=False)"
"""

import tomllib
from pathlib import Path

import arviz as az
import pandas as pd

from scaling.fit import identify, models
from scaling.fit.data import fit_data
from scaling.fit.groups import SUMMARY_COLUMNS
from scaling.fit.record import group_dim
from scaling.fit.request import FitRequest, prepare


def relabelled_summary(folder: Path) -> pd.DataFrame:
    """The folder's summary.csv with contraction, prior_share, prior_tail and identified computed from its posterior
    draws and the rows it fitted (fit.toml's request, held-out rows left out); every other column as it was."""
    spec = tomllib.loads((folder / "fit.toml").read_text())["fit"]
    request = FitRequest(input=folder / spec["input"], law=spec["law"], y=spec["y"], x=tuple(spec.get("x", ())),
                         n=spec.get("n"), by=tuple(spec.get("by", ())), pool=spec.get("pool", False),
                         seed_column=spec.get("seed_column"), where=spec.get("where"), holdout=spec.get("holdout"),
                         split=spec.get("split"))
    prepared = prepare(request)
    law = prepared.law
    posterior = az.from_netcdf(folder / "posterior.nc").posterior
    scales = identify.scales_of_posterior(law, posterior.attrs)
    dim = group_dim(request.by)
    tables = []
    for part in prepared.parts:
        draws = posterior.sel({dim: part.label}) if dim else posterior
        x = models.scaled_inputs(law, fit_data(part.train, law, prepared.columns).x, scales)
        table = identify.identification(law, identify.latent_from_posterior(law, draws, scales), x, pooled=request.pool)
        tables.append(table.reset_index(names="param").assign(**part.key))
    keys = [*request.by, "param"]
    summary = pd.read_csv(folder / "summary.csv")
    relabelled = summary.drop(columns=["contraction"]).merge(pd.concat(tables, ignore_index=True), on=keys, how="left",
                                                             validate="one_to_one")
    assert relabelled["identified"].notna().all(), "a summary row has no group or parameter in the posterior"
    return relabelled[[*request.by, *SUMMARY_COLUMNS, "converged"]]
