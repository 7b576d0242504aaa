"""The capability ladder: bases of rising capability, each fine-tuned on the same training set past memorization,
read at multiples of each base's own memorization step.

A base memorizes at the first budget where it answers every item of its `train` split (`memorization_step`, as
report/claims.py reads it). `rungs` gives, per base, split and multiple f of that step, the accuracy of the model
at f · m on the split's items with its interval, the split's chance and, where the run folder trained one, the
headroom of the split's positive control: what a model trained on that distribution reaches.

`ceilings` answers the ladder's question, whichever way it falls: does the more capable base reach higher
out-of-distribution accuracy? Each base's ceiling on a split is its accuracy at the largest multiple every
base reached (fixed before looking: no base's best budget is picked after the fact), and each base is compared
with the base below it on the ladder on the same items, paired. The bases are one run each: the intervals count
items ("items only"), so they say nothing about another seed's run of the same base.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.report.claims import row_interval
from scaling.report.intervals import LEVEL

FACTORS = (1, 2, 4)  # the multiples of the memorization step the issue asks for
DRAWS = 2000  # bootstrap draws of the paired difference over items
ITEM = ("family", "key")  # what names one evaluation item across run folders (same data, same evaluation seed)
VERDICTS = ("higher", "lower", "no difference detected", "not measurable")  # the words `ceilings` may say


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """`table` (a results table or grades) with `base`: the rung's name, its `size`, and its adapter where it
    fine-tuned one (a LoRA cell of a base is a rung of its own)."""
    adapter = table["adapter"] if "adapter" in table else pd.Series("full", index=table.index)
    return table.assign(base=[size if a == "full" else f"{size} ({a})" for size, a in zip(table["size"], adapter)])


def base_rows(results: pd.DataFrame, grades: pd.DataFrame) -> pd.DataFrame:
    """One row per rung of a run folder (its cells of the grid, not its positive controls): the cell id, the rung
    (`base`, see `labelled`), its measured capability before SFT (base_probe_acc, base_loss) and its memorization
    step (NaN: never), weakest first by that measured capability. `results` is results_table(..., "train") of the
    folder, `grades` its grades.parquet."""
    grades, results = labelled(grades), labelled(results)
    cells = grades[grades["control"] == ""][["cell_id", "base", "size"]].drop_duplicates()
    measures = [c for c in ("base_probe_acc", "base_loss", "memorization_step") if c in results]
    per_base = results[["base", *measures]].drop_duplicates("base")
    rows = cells.merge(per_base, on="base", how="left")
    if "base_probe_acc" in rows:
        rows = rows.sort_values("base_probe_acc", kind="stable")
    return rows.reset_index(drop=True)


def rungs(bases: pd.DataFrame, grades: pd.DataFrame, splits: list[str], factors: tuple[int, ...] = FACTORS
          ) -> pd.DataFrame:
    """Per rung (a row of `base_rows`; `grades` labelled alike), split and factor: the step f · m, the items right of those graded (k of n),
    the accuracy with its 90% interval and label, the mean chance, the control's headroom on the split (NaN where
    the folder has no control for it), and `reached` with a `reason` where the run never memorized or its budgets
    stop before f · m."""
    rows = []
    for base in bases.itertuples(index=False):
        own = grades[grades["cell_id"] == base.cell_id]
        budgets = set(int(s) for s in own["step"].unique())
        m = base.memorization_step
        for split in splits:
            headroom = _headroom(grades, base.size, split)  # a control trains its base in full
            for factor in factors:
                row = {"base": base.base, "base_probe_acc": getattr(base, "base_probe_acc", np.nan),
                       "base_loss": getattr(base, "base_loss", np.nan), "memorization_step": m, "split": split,
                       "factor": factor, "step": np.nan, "k": 0, "n": 0, "acc": np.nan, "lo": np.nan, "hi": np.nan,
                       "interval": "", "chance": np.nan, "headroom": headroom, "reached": False, "reason": ""}
                if not np.isfinite(m):
                    row["reason"] = "never memorized"
                elif int(m) * factor not in budgets:
                    row["reason"] = f"budgets end at {max(budgets)}, before {factor} x {int(m)}"
                else:
                    here = own[(own["step"] == int(m) * factor) & (own["split"] == split)]
                    lo, hi, interval = row_interval(here, runs=1)
                    row.update(step=int(m) * factor, k=int(here["answer_correct"].sum()), n=len(here),
                               acc=here["answer_correct"].mean() if len(here) else np.nan, lo=lo, hi=hi,
                               interval=interval, chance=here["chance"].mean() if len(here) else np.nan, reached=True)
                rows.append(row)
    return pd.DataFrame(rows)


def _headroom(grades: pd.DataFrame, size: str, split: str) -> float:
    """Accuracy on `split` of that base's positive control for it at its last budget (NaN: no control)."""
    control = grades[(grades["control"] == split) & (grades["size"] == size) & (grades["split"] == split)]
    if control.empty:
        return np.nan
    return float(control[control["step"] == control["step"].max()]["answer_correct"].mean())


def ceilings(ladder: pd.DataFrame, grades: pd.DataFrame, splits: list[str], seed: int = 0) -> pd.DataFrame:
    """Per split, each base against the base below it (in `ladder`'s order of bases: the ladder as given, weakest
    first): both accuracies at the largest factor every base reached, the paired difference on their common items
    with its 90% bootstrap interval over items, the split's chance and whether the upper base's own interval lies
    above it (a base higher than its neighbour may still be guessing), and the verdict: "higher" (the interval lies above 0), "lower"
    (below), "no difference detected", or "not measurable" with the reason (a base never reached that factor, the
    two share no items, or neither leaves zero)."""
    order = list(dict.fromkeys(ladder["base"]))
    rng = np.random.default_rng(seed)
    rows = []
    for split in splits:
        here = ladder[ladder["split"] == split]
        reached_by_all = [f for f in sorted(here["factor"].unique())
                          if here[here["factor"] == f]["reached"].all()]
        factor = reached_by_all[-1] if reached_by_all else None
        for lower, upper in zip(order, order[1:]):
            row = {"split": split, "lower": lower, "upper": upper, "factor": factor, "n": 0, "acc_lower": np.nan,
                   "acc_upper": np.nan, "difference": np.nan, "lo": np.nan, "hi": np.nan, "verdict": "not measurable",
                   "reason": "", "chance": np.nan, "upper_above_chance": False}
            if factor is None:
                row["reason"] = "no multiple of the memorization step reached by every base"
                rows.append(row)
                continue
            paired = _paired(grades, here, split, factor, lower, upper)
            if paired.empty:
                row["reason"] = "no items in common"
                rows.append(row)
                continue
            a, b = paired["right_lower"].to_numpy(float), paired["right_upper"].to_numpy(float)
            draws = rng.integers(0, len(a), size=(DRAWS, len(a)))
            differences = b[draws].mean(axis=1) - a[draws].mean(axis=1)
            tail = (1 - LEVEL) / 2
            upper_rung = here[(here["base"] == upper) & (here["factor"] == factor)].iloc[0]
            row.update(n=len(a), acc_lower=a.mean(), acc_upper=b.mean(), difference=b.mean() - a.mean(),
                       lo=float(np.quantile(differences, tail)), hi=float(np.quantile(differences, 1 - tail)),
                       chance=upper_rung["chance"], upper_above_chance=bool(upper_rung["lo"] > upper_rung["chance"]))
            if not (a.any() or b.any()):
                row["reason"] = "neither base answers any item: no difference can show"
            else:
                row["verdict"] = ("higher" if row["lo"] > 0 else "lower" if row["hi"] < 0
                                  else "no difference detected")
            rows.append(row)
    return pd.DataFrame(rows)


def _paired(grades: pd.DataFrame, ladder_split: pd.DataFrame, split: str, factor: int, lower: str,
            upper: str) -> pd.DataFrame:
    """Both bases' answers on their common items of `split` at f · m of each (`right_lower`, `right_upper`)."""
    answers = []
    for base in (lower, upper):
        step = ladder_split[(ladder_split["base"] == base) & (ladder_split["factor"] == factor)]["step"].iloc[0]
        own = grades[(grades["base"] == base) & (grades["control"] == "") & (grades["split"] == split)
                     & (grades["step"] == step)]
        answers.append(own[[*ITEM, "answer_correct"]].drop_duplicates(list(ITEM)))
    return answers[0].merge(answers[1], on=list(ITEM), suffixes=("_lower", "_upper")).rename(
        columns={"answer_correct_lower": "right_lower", "answer_correct_upper": "right_upper"})
