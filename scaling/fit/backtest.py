"""Backtests: predictions with 90% predictive intervals for held-out rows (or, without a holdout, the
rows fitted), how often the intervals hold what was observed, and the baseline a law must beat.

The baseline is persistence: each row predicted by its run's last fitted value carried forward (the run's
observed value at its largest fitted budget below the row's). A law that forecasts later budgets worse
than "nothing changes from here" has not earned its extrapolation, so every backtest scores both, on the
same rows, and the law's skill against persistence: 1 − MAE / MAE of persistence (above 0: the law wins).

Scores of a backtest without held-out rows are in-sample, and named so (`mae_in_sample`,
`coverage_90_in_sample`, ...): only held-out rows give `mae`, `coverage_90` and `skill`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.fit.infer import FitData, LawFit

LEVEL = 0.9
RELATIVE_MIN = 0.05  # relative errors only where |observed| is at least this: an accuracy of 0 has none
PERSISTENCE = "persistence"  # backtest.csv's column of the persistence baseline's prediction
IN_SAMPLE = "_in_sample"  # the suffix of a score measured on the rows fitted


def backtest_table(fit: LawFit, rows: pd.DataFrame, data: FitData, x_columns: dict[str, str], held_out: bool,
                   baseline: np.ndarray) -> pd.DataFrame:
    """The axis columns and observed, mean, lo, hi (90% posterior-predictive interval), held_out, and the
    persistence baseline's prediction of each row (`persistence`; NaN where it has none)."""
    mean_draws, predictive_draws = fit.predict(data.x, data.n, runs=data.run_labels)
    lo, hi = np.quantile(predictive_draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
    table = rows[list(dict.fromkeys(x_columns.values()))].reset_index(drop=True).copy()
    table["observed"] = data.y
    table["mean"] = mean_draws.mean(axis=0)
    table["lo"], table["hi"] = lo, hi
    table["held_out"] = held_out
    table[PERSISTENCE] = baseline
    return table


def persistence(tested: pd.DataFrame, fitted: pd.DataFrame, y: str, run: list[str], along: str | None) -> np.ndarray:
    """The persistence prediction of each tested row: the observed `y` of the same run (the same values in the
    `run` columns; one run when there are none) at its largest fitted `along` value below the row's own (the
    mean of the run's fitted rows there). NaN for a run the fit never saw, a row at or before its run's first
    fitted budget, and every row without a budget axis (`along` None): nothing to carry forward."""
    if along is None or tested.empty or fitted.empty:
        return np.full(len(tested), np.nan)
    last = fitted.groupby([*run, along], dropna=False, sort=False)[y].mean().rename("_carried").reset_index()
    order = tested[[*run, along]].assign(_row=np.arange(len(tested)))
    carried = pd.merge_asof(order.astype({along: float}).sort_values(along), last.astype({along: float}).sort_values(along),
                            on=along, by=run or None, allow_exact_matches=False, direction="backward")
    return carried.sort_values("_row")["_carried"].to_numpy(float)


def score_name(name: str, held_out: bool) -> str:
    """A score's name in fit.toml: as it is for held-out rows, with IN_SAMPLE for the rows fitted."""
    return name if held_out else name + IN_SAMPLE


def backtest_scores(table: pd.DataFrame) -> dict[str, float]:
    """Mean absolute error, 90%-interval coverage and the mean relative error of the held-out rows (or, named
    `..._in_sample`, of all rows when none is held out); the relative error only over rows observed at
    |value| >= RELATIVE_MIN (`relative_rows` of them; NaN if none). Beside them persistence (`PERSISTENCE`):
    its MAE over the `persistence_rows` it predicts, and the law's skill there, 1 − the law's MAE on those rows
    / persistence's (NaN without such rows)."""
    held_out = bool(table["held_out"].any())
    scored = table[table["held_out"]] if held_out else table
    error = (scored["mean"] - scored["observed"]).abs()
    inside = (scored["observed"] >= scored["lo"]) & (scored["observed"] <= scored["hi"])
    away_from_zero = scored["observed"].abs() >= RELATIVE_MIN
    relative = error[away_from_zero] / scored["observed"][away_from_zero].abs()
    carried = scored[PERSISTENCE].notna() if PERSISTENCE in scored else pd.Series(False, index=scored.index)
    baseline = (scored[PERSISTENCE][carried] - scored["observed"][carried]).abs().mean() if carried.any() else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        skill = 1.0 - error[carried].mean() / baseline if carried.any() else np.nan
    named = lambda name: score_name(name, held_out)  # noqa: E731
    return {
        "rows": int(len(scored)),
        named("mae"): float(error.mean()),
        named("mean_relative_error"): float(relative.mean()) if len(relative) else float("nan"),
        "relative_rows": int(away_from_zero.sum()),
        named("coverage_90"): float(inside.mean()),
        "persistence_rows": int(carried.sum()),
        named("mae_persistence"): float(baseline),
        named("skill"): float(skill),
    }
