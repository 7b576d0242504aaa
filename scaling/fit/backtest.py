"""Backtests: predictions with 90% predictive intervals for held-out rows (or, without a holdout, the
rows fitted), and how often the intervals hold what was observed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.fit.infer import FitData, LawFit

LEVEL = 0.9
RELATIVE_MIN = 0.05  # relative errors only where |observed| is at least this: an accuracy of 0 has none


def backtest_table(fit: LawFit, rows: pd.DataFrame, data: FitData, x_columns: dict[str, str], held_out: bool) -> pd.DataFrame:
    """The axis columns and observed, mean, lo, hi (90% posterior-predictive interval), held_out."""
    mean_draws, predictive_draws = fit.predict(data.x, data.n, runs=data.run_labels)
    lo, hi = np.quantile(predictive_draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
    table = rows[list(dict.fromkeys(x_columns.values()))].reset_index(drop=True).copy()
    table["observed"] = data.y
    table["mean"] = mean_draws.mean(axis=0)
    table["lo"], table["hi"] = lo, hi
    table["held_out"] = held_out
    return table


def backtest_scores(table: pd.DataFrame) -> dict[str, float]:
    """Mean absolute error, 90%-interval coverage and the mean relative error of the held-out rows (or all);
    the relative error only over rows observed at |value| >= RELATIVE_MIN (`relative_rows` of them; NaN if none)."""
    scored = table[table["held_out"]] if table["held_out"].any() else table
    error = (scored["mean"] - scored["observed"]).abs()
    inside = (scored["observed"] >= scored["lo"]) & (scored["observed"] <= scored["hi"])
    away_from_zero = scored["observed"].abs() >= RELATIVE_MIN
    relative = error[away_from_zero] / scored["observed"][away_from_zero].abs()
    return {
        "rows": int(len(scored)),
        "mae": float(error.mean()),
        "mean_relative_error": float(relative.mean()) if len(relative) else float("nan"),
        "relative_rows": int(away_from_zero.sum()),
        "coverage_90": float(inside.mean()),
    }
