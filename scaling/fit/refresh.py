"""A fit folder's diminishing returns and backtest baseline recomputed with the current code from what the
folder holds (its posterior, its fit.toml and the input it names), without refitting: the law's own
predictions in backtest.csv (`mean, lo, hi`) stay as they were sampled.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import tomli_w

from scaling.errors import UserError
from scaling.fit.backtest import PERSISTENCE, backtest_scores
from scaling.fit.groups import group_persistence, group_returns, tested_rows
from scaling.fit.record import MARKER, group_dim, read_request
from scaling.fit.request import Part, prepare


def refreshed_backtest(folder: Path, root: Path = Path(".")) -> tuple[pd.DataFrame, dict[str, dict]]:
    """backtest.csv of the fit in folder with its persistence column, and the backtest scores per group."""
    folder = Path(folder)
    request = read_request(folder, root)
    prepared = prepare(request)
    committed = pd.read_csv(folder / "backtest.csv")
    tables, scores = [], {}
    for part in prepared.parts:
        backtest = _rows_of(committed, part).reset_index(drop=True)
        tested = tested_rows(part)
        if len(backtest) != len(tested) or not np.allclose(backtest["observed"], tested[request.y]):
            raise UserError(f"{folder / 'backtest.csv'}{' group ' + part.label if part.label else ''} does not match the "
                            f"rows of its input {request.input}: refit instead")
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


def write_refreshed(folder: Path, root: Path = Path(".")) -> None:
    """Rewrite folder's returns.csv, backtest.csv and fit.toml's backtest scores with the current code."""
    folder = Path(folder)
    backtest, scores = refreshed_backtest(folder, root)
    returns = refreshed_returns(folder, root)
    record = tomllib.loads((folder / MARKER).read_text())
    returns.to_csv(folder / "returns.csv", index=False)
    backtest.to_csv(folder / "backtest.csv", index=False)
    (folder / MARKER).write_text(tomli_w.dumps(record | {"backtest": scores}))


def _rows_of(table: pd.DataFrame, part: Part) -> pd.DataFrame:
    """The rows of a stacked table that belong to a group (all of them without --by)."""
    mine = np.ones(len(table), bool)
    for column, value in part.key.items():
        mine &= (table[column] == value).to_numpy()
    return table[mine]
