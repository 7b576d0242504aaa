"""From the results hypercube to the tidy table a fit or a figure reads."""

from __future__ import annotations

import pandas as pd
import xarray as xr


def tidy_table(
    results: xr.Dataset, metric: str, split: str, group_by: tuple[str, ...], also: tuple[str, ...] = ()
) -> pd.DataFrame:
    """One row per measured (cell, step) of a split, with a `group` label joining the group_by axes.

    `also` adds other variables of the same split as columns (say `n`, the examples behind an accuracy).
    """
    if metric not in results:
        raise ValueError(f"results have no metric {metric!r}")
    if split not in results.split.values:
        raise ValueError(f"results have no split {split!r}")
    table = results[[metric, *also]].sel(split=split).to_dataframe().reset_index().dropna(subset=[metric])
    table["group"] = table[list(group_by)].astype(str).agg(", ".join, axis=1)
    return table
