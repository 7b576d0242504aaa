"""Model-free answers to the study's questions, from per-example grades: what a run gains by training past
memorization, with the run (not the example, not the seed value) as the unit of its interval.

A run memorizes at the first budget where it answers every one of its `train` split's items
(`memorization_step`). Its post-memorization gain at factor f is its accuracy on a split at the budget
f · m minus its accuracy at m, on the same evaluation examples (paired: the grid evaluates every budget on
one set). Runs whose budgets stop before f · m, or that never memorized, are listed with the reason, never
dropped silently.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from scaling.schema import AXES

LEVEL = 0.9  # the intervals' coverage, as everywhere in the fits


def post_memorization_gains(grades: pd.DataFrame, memorization: pd.DataFrame, split: str,
                            factors: tuple[int, ...] = (4, 16)) -> pd.DataFrame:
    """One row per run and factor: its memorization step m, the budget f · m, the paired accuracies on `split`
    at both, their difference (`gain`, in points of accuracy), the examples compared, and `reached` (False
    with a `reason` when the run never memorized or its budgets stop before f · m).

    `grades` is a run's `grades.parquet` (cell_id, step, split, key, answer_correct, ...); `memorization` has
    one row per cell: `cell_id`, `memorization_step` (NaN if never) and the grid axes."""
    axes = [a for a in AXES if a in memorization.columns]
    here = grades[grades["split"] == split]
    if here.empty:
        raise ValueError(f"no grades of split {split!r}")
    steps_of = here.groupby("cell_id")["step"].unique()
    rows = []
    for cell in memorization.itertuples(index=False):
        run = {"cell_id": cell.cell_id, **{a: getattr(cell, a) for a in axes}, "memorization_step": cell.memorization_step}
        budgets = set(int(s) for s in steps_of.get(cell.cell_id, []))
        for factor in factors:
            row = {**run, "factor": factor, "step": np.nan, "n": 0, "acc_at_memorization": np.nan, "acc": np.nan,
                   "gain": np.nan, "reached": False, "reason": ""}
            m = cell.memorization_step
            if not np.isfinite(m):
                row["reason"] = "never memorized"
            elif int(m) * factor not in budgets:
                row["reason"] = f"budgets end at {max(budgets)}, before {factor} x {int(m)}"
            else:
                at_m, at_f = (here[(here["cell_id"] == cell.cell_id) & (here["step"] == s)] for s in (int(m), int(m) * factor))
                paired = at_m.merge(at_f, on=["family", "key"], suffixes=("_m", "_f"))
                row.update(step=int(m) * factor, n=len(paired), acc_at_memorization=paired["answer_correct_m"].mean(),
                           acc=paired["answer_correct_f"].mean(), reached=True)
                row["gain"] = 100 * (row["acc"] - row["acc_at_memorization"])
            rows.append(row)
    return pd.DataFrame(rows)


def run_level_mean(values, level: float = LEVEL) -> tuple[float, float, float]:
    """The mean of per-run values and its `level` t-interval across runs (runs are the unit: with three runs the
    interval is wide, as it should be); (mean, NaN, NaN) for fewer than two runs."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def summarize_gains(gains: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per condition and factor: runs in it, runs that reached f · m, the mean gain in points with its 90%
    interval across runs, and the share of reaching runs whose gain is positive."""
    rows = []
    for keys, group in gains.groupby([*by, "factor"], sort=True):
        reached = group[group["reached"]]
        mean, lo, hi = run_level_mean(reached["gain"])
        rows.append({**dict(zip([*by, "factor"], keys if isinstance(keys, tuple) else (keys,))), "runs": len(group),
                     "reached": len(reached), "gain": mean, "lo": lo, "hi": hi,
                     "share_positive": float((reached["gain"] > 0).mean()) if len(reached) else np.nan})
    return pd.DataFrame(rows)


def _label(table: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Each row's value of the columns as one label ("xs, 1000000"; the value alone for one column)."""
    if not columns:
        return pd.Series("", index=table.index)
    return table[columns].astype(str).agg(", ".join, axis=1)


def condition_means(table: pd.DataFrame, x: list[str], hue: list[str], metric: str = "answer_acc") -> pd.DataFrame:
    """Per split, step and condition (the values of `x` and `hue`): the runs in it and the mean of `metric` with
    its 90% interval across runs. `table` has one row per run, split and step (a results table with `split`)."""
    labelled = table.assign(x=_label(table, x), hue=_label(table, hue))
    rows = []
    for (split, step, x_value, hue_value), group in labelled.groupby(["split", "step", "x", "hue"], sort=False):
        mean, lo, hi = run_level_mean(group[metric])
        rows.append({"split": split, "step": step, "x": x_value, "hue": hue_value, "runs": int(group[metric].notna().sum()),
                     "mean": mean, "lo": lo, "hi": hi,
                     "chance": group["chance"].mean() if "chance" in group else np.nan})
    return pd.DataFrame(rows)


def memorization_table(results: pd.DataFrame, grades: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its cell id (from the grades), grid axes and memorization step (from a results table)."""
    axes = [a for a in AXES if a in results.columns and a in grades.columns]
    cells = grades[["cell_id", *axes]].drop_duplicates()
    steps = results[[*axes, "memorization_step"]].drop_duplicates()
    return cells.merge(steps, on=axes, how="left").sort_values(axes).reset_index(drop=True)


def binomial_interval(correct: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact (Clopper-Pearson) `level` interval of a proportion of `correct` in `n`: never outside [0, 1],
    and wide, as it should be, where n is small or the proportion sits at 0 or 1."""
    if n == 0:
        return np.nan, np.nan
    tail = (1 - level) / 2
    lo = stats.beta.ppf(tail, correct, n - correct + 1) if correct > 0 else 0.0
    hi = stats.beta.ppf(1 - tail, correct + 1, n - correct) if correct < n else 1.0
    return float(lo), float(hi)


def accuracy_rows(rows: list[tuple[str, pd.DataFrame]], splits: dict[str, str]) -> pd.DataFrame:
    """The article's table: one row per (label, per-example grades) and a column group per split, each with
    the examples answered right (`k`) of `n`, the accuracy, its binomial 90% interval and the mean chance of
    guessing those answers. `splits` maps a column's name (e.g. "ID") to the split it reads. Several runs in a
    row pool their examples (a binomial interval then understates how runs differ: say so beside it)."""
    records = []
    for label, grades in rows:
        record = {"row": label, "runs": int(grades["cell_id"].nunique()) if "cell_id" in grades else 1}
        for column, split in splits.items():
            here = grades[grades["split"] == split]
            k, n = int(here["answer_correct"].sum()), len(here)
            lo, hi = binomial_interval(k, n)
            record.update({f"{column}_k": k, f"{column}_n": n, f"{column}_acc": k / n if n else np.nan,
                           f"{column}_lo": lo, f"{column}_hi": hi, f"{column}_chance": here["chance"].mean()})
        records.append(record)
    return pd.DataFrame(records)
