"""Backtests: predictions with 90% predictive intervals for held-out rows (or, without a holdout, the
rows fitted), and how often the intervals hold what was observed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.fit.infer import FitData, LawFit

LEVEL = 0.9


def backtest_table(fit: LawFit, rows: pd.DataFrame, data: FitData, x_columns: dict[str, str], held_out: bool) -> pd.DataFrame:
    """The axis columns and observed, mean, lo, hi (90% posterior-predictive interval), held_out."""
    mean_draws, predictive_draws = fit.predict(data.x, data.n)
    lo, hi = np.quantile(predictive_draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
    table = rows[list(dict.fromkeys(x_columns.values()))].reset_index(drop=True).copy()
    table["observed"] = data.y
    table["mean"] = mean_draws.mean(axis=0)
    table["lo"], table["hi"] = lo, hi
    table["held_out"] = held_out
    return table


def backtest_scores(table: pd.DataFrame) -> dict[str, float]:
    """Mean absolute error, mean relative error and 90%-interval coverage of the held-out rows (or all)."""
    scored = table[table["held_out"]] if table["held_out"].any() else table
    error = (scored["mean"] - scored["observed"]).abs()
    inside = (scored["observed"] >= scored["lo"]) & (scored["observed"] <= scored["hi"])
    return {
        "rows": int(len(scored)),
        "mae": float(error.mean()),
        "mean_relative_error": float((error / scored["observed"].abs().clip(lower=1e-12)).mean()),
        "coverage_90": float(inside.mean()),
    }
