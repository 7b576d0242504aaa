"""Model-free answers to the study's questions, from per-example grades and results tables: what a run gains by
training past memorization, accuracy per condition, the article's table; every interval with its unit and label
(report/intervals.py): across runs (or bases) from three on, over runs and items, or items only.

A run memorizes at the first budget where it answers every one of its `train` split's items
(`memorization_step`). Its post-memorization gain at factor f is its accuracy on a split at the budget
f · m minus its accuracy at m, on the same evaluation examples (paired: the grid evaluates every budget on
one set). Runs whose budgets stop before f · m, or that never memorized, are listed with the reason, never
dropped silently.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.report import transfer
from scaling.report.intervals import MIN_UNITS, alike_interval, binomial_interval, counted, mean_across
from scaling.schema import AXES, BASE_MEASURES

# Chance of the per-cell base measures that have one, which no results file records. The probe's: the mean over
# its 160 items of 1 / their choices (scaling.trainer.probe over scaling.tasks.corpus.probe_items; two choices for
# a comparison, three or four otherwise). tests/report/test_claims.py recomputes it from the items.
BASE_MEASURE_CHANCE = {"base_probe_acc": 0.31875}
# What, besides its measures, tells bases apart: the grid records no base identity, and a base's measures (its
# held-out loss to the last digit) are its fingerprint: a pretrained base is one per size and pretraining budget,
# shared by every seed, and a random initialization is drawn by the run's seed, shared by that seed's conditions.
BASE_AXES = ("size", "pretrain_tokens")


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


def summarize_gains(gains: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per condition and factor: runs in it, runs that reached f · m, the mean gain in points with its 90%
    t-interval across the reaching runs and its label (`interval`: NaN ends below three runs or where they all
    gained alike), and the share of reaching runs whose gain is positive.

    The interval describes SFT runs of the condition measured on this evaluation set: every run is paired on the
    same items, so it says nothing about new items of the split, and where the runs share a base (a pretrained
    one) nothing about other bases."""
    rows = []
    for keys, group in gains.groupby([*by, "factor"], sort=True):
        reached = group[group["reached"]]
        mean, lo, hi, interval = mean_across(reached["gain"])
        rows.append({**dict(zip([*by, "factor"], keys if isinstance(keys, tuple) else (keys,))), "runs": len(group),
                     "reached": len(reached), "gain": mean, "lo": lo, "hi": hi, "interval": interval,
                     "share_positive": float((reached["gain"] > 0).mean()) if len(reached) else np.nan})
    return pd.DataFrame(rows)


def _label(table: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Each row's value of the columns as one label ("xs, 1000000"; the value alone for one column)."""
    if not columns:
        return pd.Series("", index=table.index)
    return table[columns].astype(str).agg(", ".join, axis=1)


def condition_means(table: pd.DataFrame, x: list[str], hue: list[str], metric: str = "answer_acc") -> pd.DataFrame:
    """Per split, step and condition (the values of `x` and `hue`): the runs in it and the mean of `metric` with
    its 90% t-interval across runs and its label (`interval`: NaN ends below three runs or where they all agree).
    `table` has one row per run, split and step (a results table with `split`).

    The interval describes SFT runs of the condition on this evaluation set (every run is graded on the same
    items: nothing about new items; runs sharing a pretrained base: nothing about other bases). A measure of the
    base itself (schema.BASE_MEASURES) is taken once per distinct base (`bases`), the unit of its interval, and
    stands beside its own chance (BASE_MEASURE_CHANCE; NaN for a loss), not the split's."""
    labelled = table.assign(x=_label(table, x), hue=_label(table, hue))
    of_base = metric in BASE_MEASURES
    rows = []
    for (split, step, x_value, hue_value), group in labelled.groupby(["split", "step", "x", "hue"], sort=False):
        measured = group[group[metric].notna()]
        units = distinct_bases(measured) if of_base else measured
        mean, lo, hi, interval = mean_across(units[metric], "base" if of_base else "run")
        rows.append({"split": split, "step": step, "x": x_value, "hue": hue_value, "runs": len(measured),
                     **({"bases": len(units)} if of_base else {}), "mean": mean, "lo": lo, "hi": hi,
                     "interval": interval,
                     "chance": (BASE_MEASURE_CHANCE.get(metric, np.nan) if of_base else
                                group["chance"].mean() if "chance" in group else np.nan)})
    return pd.DataFrame(rows)


def distinct_bases(runs: pd.DataFrame) -> pd.DataFrame:
    """One row of `runs` per distinct base they started from: the same size and pretraining (BASE_AXES) and the
    same measures (schema.BASE_MEASURES) to the last digit are one base."""
    return runs.drop_duplicates([c for c in (*BASE_AXES, *BASE_MEASURES) if c in runs.columns])


def memorization_table(results: pd.DataFrame, grades: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its cell id (from the grades), grid axes and memorization step (from a results table)."""
    axes = [a for a in AXES if a in results.columns and a in grades.columns]
    cells = grades[["cell_id", *axes]].drop_duplicates()
    steps = results[[*axes, "memorization_step"]].drop_duplicates()
    return cells.merge(steps, on=axes, how="left").sort_values(axes).reset_index(drop=True)


def accuracy_rows(rows: list[tuple[str, pd.DataFrame]], splits: dict[str, str],
                  relative_to: str | None = None) -> pd.DataFrame:
    """The article's table: one row per (label, per-example grades) and a column group per split, each with
    the examples answered right (`k`) of `n`, the accuracy, its 90% interval with its label and the mean chance
    of guessing those answers. `splits` maps a column's name (e.g. "ID") to the split it reads.

    `relative_to` (the label of a row, say the SFT row) adds the article's "training compute (relative)": each
    row's training FLOPs (`training_flops`, in `flops`) over that row's, in `compute`. A row whose grades carry no
    `flops` (a base's baseline.parquet: its pretraining is recorded nowhere) has NaN there.

    The runs of a row are graded on the same items, so their rows are not one binomial sample: several runs get
    the crossed bootstrap over runs and items (report/transfer.py: "runs and items"), one run the exact binomial
    interval over its items ("items only": new items, this run), two runs the bootstrap over items with the runs
    held fixed ("items only: 2 runs"); where every answer agrees, the exact interval over the distinct items."""
    records = []
    for label, grades in rows:
        runs = int(grades["cell_id"].nunique()) if "cell_id" in grades else 1
        record = {"row": label, "runs": runs}
        for column, split in splits.items():
            here = grades[grades["split"] == split]
            k, n = int(here["answer_correct"].sum()), len(here)
            lo, hi, interval = row_interval(here, runs)
            record.update({f"{column}_k": k, f"{column}_n": n, f"{column}_acc": k / n if n else np.nan,
                           f"{column}_lo": lo, f"{column}_hi": hi, f"{column}_interval": interval,
                           f"{column}_chance": here["chance"].mean()})
        records.append(record)
    table = pd.DataFrame(records)
    if relative_to is None:
        return table
    spent = [training_flops(grades) for _, grades in rows]
    unit = spent[[label for label, _ in rows].index(relative_to)]
    table.insert(2, "flops", spent)
    table.insert(3, "compute", [value / unit if unit > 0 else np.nan for value in spent])
    return table


def training_flops(grades: pd.DataFrame) -> float:
    """The mean training FLOPs (all phases: pretraining, SFT and any arm after it) of the models whose grades
    these are, each model once (a cell at a step, of an arm from an SFT step); NaN where the grades carry none."""
    if "flops" not in grades or grades.empty:
        return np.nan
    model = [column for column in ("cell_id", "arm", "sft_step", "step") if column in grades]
    return float(grades.drop_duplicates(model)["flops"].mean())


def _distinct_items(here: pd.DataFrame) -> int:
    """The distinct evaluation items among graded rows (one run's rows, without item columns: each row one)."""
    named = [column for column in transfer.ITEM if column in here]
    return len(here[named].drop_duplicates()) if len(named) == len(transfer.ITEM) else len(here)


def row_interval(here: pd.DataFrame, runs: int) -> tuple[float, float, str]:
    """The interval of one row's graded examples of a split, and its label (see accuracy_rows): the rule of
    report/transfer.py's tables, so one row reads alike in every table."""
    if here.empty:
        return np.nan, np.nan, "n/a: no items"
    if here["answer_correct"].nunique() == 1:  # every answer alike: the bootstrap has nothing to resample
        return alike_interval(bool(here["answer_correct"].iloc[0]), _distinct_items(here))
    if runs == 1:
        return *binomial_interval(int(here["answer_correct"].sum()), len(here)), "items only"
    lo, hi = transfer.accuracy_interval(here)  # below MIN_UNITS runs the runs are held fixed: items only
    return lo, hi, "runs and items" if runs >= MIN_UNITS else f"items only: {counted(runs, 'run')}"


BACKTEST_SCORES = ("rows", "mae", "coverage_90", "persistence_rows", "mae_persistence", "skill")


def backtest_scores(fit: str, record: dict) -> pd.DataFrame:
    """One row per group of a fit's `[backtest]` scores (its fit.toml, read as a dict): held-out scores where the fit
    held rows out, else the in-sample ones (`in_sample` says which), so the law's error stands beside that of
    carrying each run's last fitted value forward (`skill` above 0: the law beats it)."""
    rows = []
    for group, scores in record.get("backtest", {}).items():
        in_sample = "mae" not in scores
        suffix = "_in_sample" if in_sample else ""
        rows.append({"fit": fit, "group": group, "in_sample": in_sample,
                     **{name: scores.get(name if name.endswith("rows") else name + suffix, np.nan)
                        for name in BACKTEST_SCORES}})
    return pd.DataFrame(rows)
