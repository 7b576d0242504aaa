"""A fit folder's summary labels, diminishing returns and backtest baseline recomputed with the current code
from what the folder holds (its posterior, its fit.toml and the input it names), without refitting
(`scaling fit --refresh FOLDER`): the posterior draws, the law's own predictions in backtest.csv (`mean, lo,
hi`) and the sampler's diagnostics stay as they were sampled. For fits that took an hour, after a release
that reads a posterior better.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import tomli_w

from scaling.errors import UserError
from scaling.fit import identify, models
from scaling.fit.backtest import PERSISTENCE, backtest_scores
from scaling.fit.data import fit_data
from scaling.fit.groups import SUMMARY_COLUMNS, group_persistence, group_returns, item_persistence, tested_rows
from scaling.fit.items import ITEM_SD, ITEM_SD_PRIOR
from scaling.fit.record import MARKER, group_dim, read_request
from scaling.fit.request import Part, prepare
from scaling.staging import write_file_atomic


def refreshed_backtest(folder: Path, root: Path = Path(".")) -> tuple[pd.DataFrame, dict[str, dict]]:
    """backtest.csv of the fit in folder with its persistence column, and the backtest scores per group."""
    folder = Path(folder)
    request = read_request(folder, root)
    prepared = prepare(request)
    committed = pd.read_csv(folder / "backtest.csv")
    tables, scores = [], {}
    for part in prepared.parts:
        backtest = _rows_of(committed, part).reset_index(drop=True)
        if prepared.columns.item:  # a row per budget (run × step × family), observed over its items
            backtest[PERSISTENCE] = item_persistence(prepared.law, prepared.columns, part, backtest)
        else:
            tested = tested_rows(part)
            if len(backtest) != len(tested) or not np.allclose(backtest["observed"], tested[request.y]):
                raise UserError(f"{folder / 'backtest.csv'}{' group ' + part.label if part.label else ''} does not "
                                f"match the rows of its input {request.input}: refit instead")
            backtest[PERSISTENCE] = group_persistence(prepared.law, prepared.columns, part)
        tables.append(backtest)
        scores[part.label or "all"] = backtest_scores(backtest)
    return pd.concat(tables, ignore_index=True), scores


def refreshed_returns(folder: Path, root: Path = Path(".")) -> pd.DataFrame:
    """returns.csv of the fit in folder, from its posterior draws (scaling.fit.returns)."""
    folder = Path(folder)
    request = read_request(folder, root)
    prepared = prepare(request)
    posterior = az.from_netcdf(str(folder / "posterior.nc")).posterior
    dim = group_dim(request.by)
    tables = []
    for part in prepared.parts:
        group = posterior.sel({dim: part.label}) if dim else posterior
        draws = {name: group[name].values.reshape(-1) for name in prepared.law.params}
        table = group_returns(request, prepared.law, prepared.columns, part, draws)
        tables.append(table.assign(**part.key)[[*part.key, *table.columns]])
    return pd.concat(tables, ignore_index=True)


def refreshed_summary(folder: Path, root: Path = Path(".")) -> pd.DataFrame:
    """summary.csv of the fit in folder with contraction, prior_share, prior_tail and `identified` computed from
    its posterior draws and the rows it fitted (scaling.fit.identify); every other column as it was."""
    folder = Path(folder)
    request = read_request(folder, root)
    prepared = prepare(request)
    law = prepared.law
    posterior = az.from_netcdf(str(folder / "posterior.nc")).posterior
    scales = identify.scales_of_posterior(law, posterior.attrs)
    dim = group_dim(request.by)
    tables = []
    for part in prepared.parts:
        draws = posterior.sel({dim: part.label}) if dim else posterior
        x = models.scaled_inputs(law, fit_data(part.train, law, prepared.columns).x, scales)
        table = identify.identification(law, identify.latent_from_posterior(law, draws, scales), x, pooled=request.pool)
        for spread in (name for name in draws.data_vars if name.startswith(ITEM_SD)):  # an item-level fit's
            table.loc[spread] = identify.spread_identification(draws[spread].values, ITEM_SD_PRIOR)
        tables.append(table.reset_index(names="param").assign(**part.key))
    keys = [*request.by, "param"]
    summary = pd.read_csv(folder / "summary.csv")
    old = [column for column in identify.COLUMNS if column in summary]
    relabelled = summary.drop(columns=old).merge(pd.concat(tables, ignore_index=True), on=keys, how="left",
                                                 validate="one_to_one")
    if relabelled["identified"].isna().any():
        raise UserError(f"{folder / 'summary.csv'} names a group or parameter its posterior.nc lacks: refit instead")
    return relabelled[[*request.by, *SUMMARY_COLUMNS, "converged"]]


def write_refreshed(folder: Path, root: Path = Path(".")) -> None:
    """Rewrite folder's summary.csv, returns.csv, backtest.csv and fit.toml's backtest scores with the current
    code: every table is computed before the first is replaced, and each is replaced whole (a full disk stops it
    with the tables not yet replaced as they were)."""
    folder = Path(folder)
    summary = refreshed_summary(folder, root)
    backtest, scores = refreshed_backtest(folder, root)
    returns = refreshed_returns(folder, root)
    record = tomllib.loads((folder / MARKER).read_text())
    write_file_atomic(folder / "summary.csv", summary.to_csv(index=False).encode())
    write_file_atomic(folder / "returns.csv", returns.to_csv(index=False).encode())
    write_file_atomic(folder / "backtest.csv", backtest.to_csv(index=False).encode())
    write_file_atomic(folder / MARKER, tomli_w.dumps(record | {"backtest": scores}).encode())


def _rows_of(table: pd.DataFrame, part: Part) -> pd.DataFrame:
    """The rows of a stacked table that belong to a group (all of them without --by)."""
    mine = np.ones(len(table), bool)
    for column, value in part.key.items():
        mine &= (table[column] == value).to_numpy()
    return table[mine]
