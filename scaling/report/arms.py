"""What an arm after SFT bought, against more SFT at no less compute: `scaling arms RUN_DIR`.

Each point of an arm (RL or RFT, from the SFT model at `sft_step`, after `step` of its own steps) is set beside
two models of the same cells: the SFT model it started from, and the *matched* SFT model, the first SFT budget
whose training FLOPs (every phase: pretraining, SFT, the arm's sampling and updates) reach the arm point's. Where
the grid's SFT budgets stop short of that compute there is no matched model, and the row says so instead of
extrapolating. Three differences of accuracy follow, each with its LEVEL interval:
- `arm_gain`: the arm point minus its starting model (what the arm's compute bought);
- `sft_gain`: the matched SFT model minus the same starting model (what the same or more compute bought in SFT);
- `arm_vs_sft`: the arm point minus the matched SFT model, and `p_arm_better`, the share of bootstrap draws in
  which the arm is ahead.
The three models were graded on the same items by the same runs (cells), so each difference is paired: the
crossed bootstrap of report/transfer.py draws run weights and item weights once per draw and recomputes every
accuracy of the row on them; the interval counts runs and items. Below MIN_UNITS runs the runs are held fixed
(items only), as everywhere in the report. Where every graded answer of either model agrees (all wrong, all right)
the bootstrap has nothing to resample on that side and a difference's interval would shrink, to a point where both
agree: its interval then takes the ends of both models' intervals, each at BOTH (the exact one over the distinct
items where the answers agree), as transfer's does, and its label (`*_interval`) says so. Per unit of compute: `arm_gain_per_pflop` and `sft_gain_per_pflop`, the
gains over the extra FLOPs each spent past the starting model, in points of accuracy per 10^15 FLOPs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling.errors import UserError
from scaling.report.intervals import LEVEL, MIN_UNITS, alike_interval, counted
from scaling.report.transfer import BOTH, DRAWS, ITEM, RUNS_AND_ITEMS, TRAINING_SPLIT, resample_counts

PFLOP = 1e15  # the compute unit gains are quoted per
ENDS = f"ends of both at {BOTH:.0%}"  # the label of a difference bounded by its two models' intervals
NEEDED = ("cell_id", "step", "split", *ITEM, "answer_correct", "flops")
ARM_NEEDED = (*NEEDED, "arm", "sft_step")


@dataclass(frozen=True)
class Graded:
    """One model point's grades as a runs x items table, the shape every bootstrap draw weights."""

    right_CxI: np.ndarray  # answers right per run and item
    graded_CxI: np.ndarray  # answers graded per run and item (0 where a run did not grade the item)
    flops: float  # mean training FLOPs of the model points behind it (one per run)

    @property
    def acc(self) -> float:
        return float(self.right_CxI.sum() / self.graded_CxI.sum())

    @property
    def alike(self) -> bool:
        """Every graded answer the same (all wrong or all right): no bootstrap draw differs from another."""
        return self.right_CxI.sum() in (0, self.graded_CxI.sum())

    def interval(self, draws: np.ndarray, level: float) -> tuple[float, float]:
        """Its accuracy's `level` interval: over the bootstrap draws, or exact over its distinct items where every
        answer agrees."""
        if self.alike:
            return alike_interval(self.acc == 1.0, int((self.graded_CxI > 0).any(0).sum()), level)[:2]
        lo, hi = np.nanquantile(draws, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    def acc_draws(self, run_weights_DxC: np.ndarray, item_weights_DxI: np.ndarray) -> np.ndarray:
        """The accuracy under each draw's run and item weights."""
        right = np.einsum("dc,ci,di->d", run_weights_DxC, self.right_CxI, item_weights_DxI)
        graded = np.einsum("dc,ci,di->d", run_weights_DxC, self.graded_CxI, item_weights_DxI)
        with np.errstate(invalid="ignore", divide="ignore"):
            return right / graded


def _graded(rows: pd.DataFrame, runs: pd.Index, items: pd.MultiIndex) -> Graded:
    """The grades of one model point (one step of one arm or of SFT) laid out over the given runs and items."""
    keyed = rows.assign(item=list(zip(*(rows[c] for c in ITEM))))
    table = keyed.groupby(["cell_id", "item"])["answer_correct"].agg(["sum", "size"])
    index = pd.MultiIndex.from_product([runs, list(items)], names=["cell_id", "item"])
    table = table.reindex(index, fill_value=0)
    shape = (len(runs), len(items))
    return Graded(table["sum"].to_numpy(float).reshape(shape), table["size"].to_numpy(float).reshape(shape),
                  float(rows.groupby("cell_id")["flops"].first().mean()))


def arm_comparison(grades: pd.DataFrame, arm_grades: pd.DataFrame, split: str, draws: int = DRAWS,
                   seed: int = 0) -> pd.DataFrame:
    """One row per arm, starting SFT budget and arm step past 0, on one evaluation split: the three accuracies,
    their FLOPs, the matched SFT budget, the three differences with LEVEL intervals, `p_arm_better`, the gains
    per PFLOP, `runs`, `items` and the interval's label. `grades` and `arm_grades` are a run's grades.parquet and
    arm_grades.parquet (positive controls, which run no arms, are left out)."""
    for name, table, needed in (("grades", grades, NEEDED), ("arm grades", arm_grades, ARM_NEEDED)):
        if missing := [c for c in needed if c not in table.columns]:
            raise UserError(f"arms: the {name} have no column {missing[0]!r} (collected before the arms were counted? "
                            f"rerun `scaling collect`)")
    sft = _regular(grades, split)
    arms = _regular(arm_grades, split)
    if arms.empty:
        raise UserError(f"arms: no arm was graded on split {split!r}")
    runs = pd.Index(sorted(arms["cell_id"].unique()))
    sft = sft[sft["cell_id"].isin(runs)]
    items = pd.MultiIndex.from_frame(arms[list(ITEM)].drop_duplicates().sort_values(list(ITEM)))
    rng = np.random.default_rng(seed)
    resample_runs = len(runs) >= MIN_UNITS
    run_weights = resample_counts(rng, draws, len(runs)) if resample_runs else np.ones((draws, len(runs)))
    item_weights = resample_counts(rng, draws, len(items))
    unit = RUNS_AND_ITEMS if resample_runs else f"items only: {counted(len(runs), 'run')}"
    sft_points = {int(step): _graded(rows, runs, items) for step, rows in sft.groupby("step")}
    rows = []
    for (arm, sft_step, step), point_rows in arms.groupby(["arm", "sft_step", "step"], sort=True):
        if step == 0 or int(sft_step) not in sft_points:
            continue
        start, point = sft_points[int(sft_step)], _graded(point_rows, runs, items)
        matched = next((s for s, g in sorted(sft_points.items()) if g.flops >= point.flops), None)
        rows.append({"arm": arm, "sft_step": int(sft_step), "step": int(step), "split": split,
                     **_compared(start, point, sft_points.get(matched), matched, run_weights, item_weights),
                     "runs": len(runs), "items": len(items), "interval": unit})
    return pd.DataFrame(rows)


def arm_table(grades: pd.DataFrame, arm_grades: pd.DataFrame, splits: Sequence[str] = ()) -> pd.DataFrame:
    """`arm_comparison` on each of `splits` (none: every split the arms were graded on but the training split),
    one table."""
    graded = list(dict.fromkeys(str(s) for s in arm_grades["split"])) if "split" in arm_grades else []
    if unknown := [s for s in splits if s not in graded]:
        raise UserError(f"arms: no arm was graded on split {unknown[0]!r}; splits are {', '.join(graded)}")
    chosen = list(splits) or [s for s in graded if s != TRAINING_SPLIT]
    return pd.concat([arm_comparison(grades, arm_grades, split) for split in chosen], ignore_index=True)


def _regular(grades: pd.DataFrame, split: str) -> pd.DataFrame:
    """A split's grades of the grid's own cells (not positive controls)."""
    rows = grades[grades["split"] == split]
    return rows[rows["control"] == ""] if "control" in rows else rows


def _compared(start: Graded, point: Graded, matched: Graded | None, matched_step: int | None,
              run_weights: np.ndarray, item_weights: np.ndarray) -> dict:
    """A row's numbers: the accuracies, FLOPs, differences with their intervals, and gains per PFLOP."""
    start_side = (start, start.acc_draws(run_weights, item_weights))
    point_side = (point, point.acc_draws(run_weights, item_weights))
    row = {"start_acc": start.acc, "arm_acc": point.acc, "start_flops": start.flops, "arm_flops": point.flops,
           **_difference("arm_gain", point_side, start_side),
           "arm_gain_per_pflop": (point.acc - start.acc) / (point.flops - start.flops) * PFLOP}
    if matched is None:
        return row | {"sft_step_matched": np.nan, "sft_acc": np.nan, "sft_flops": np.nan,
                      **_difference("sft_gain", None, start_side), **_difference("arm_vs_sft", point_side, None),
                      "p_arm_better": np.nan, "sft_gain_per_pflop": np.nan,
                      "reason": "the SFT budgets stop short of this compute"}
    matched_side = (matched, matched.acc_draws(run_weights, item_weights))
    # Where both models' answers all agree every draw ties: no share of draws says which is ahead.
    ahead = np.nan if point.alike and matched.alike else float(np.nanmean(point_side[1] > matched_side[1]))
    return row | {"sft_step_matched": matched_step, "sft_acc": matched.acc, "sft_flops": matched.flops,
                  **_difference("sft_gain", matched_side, start_side),
                  **_difference("arm_vs_sft", point_side, matched_side),
                  "p_arm_better": ahead,
                  "sft_gain_per_pflop": (matched.acc - start.acc) / (matched.flops - start.flops) * PFLOP,
                  "reason": ""}


Side = tuple[Graded, np.ndarray]  # a model point and its accuracy in each bootstrap draw


def _difference(name: str, a: Side | None, b: Side | None) -> dict:
    """a's accuracy minus b's, and its LEVEL interval: the percentiles of the paired draws' differences, or,
    where either side's answers all agree, the ends of both sides' intervals at BOTH; NaN where a side is missing."""
    if a is None or b is None:
        return {name: np.nan, f"{name}_lo": np.nan, f"{name}_hi": np.nan, f"{name}_interval": ""}
    (a_model, a_draws), (b_model, b_draws) = a, b
    if a_model.alike or b_model.alike:
        (a_lo, a_hi), (b_lo, b_hi) = a_model.interval(a_draws, BOTH), b_model.interval(b_draws, BOTH)
        lo, hi, label = a_lo - b_hi, a_hi - b_lo, ENDS
    else:
        lo, hi = np.nanquantile(a_draws - b_draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        label = ""
    return {name: a_model.acc - b_model.acc, f"{name}_lo": float(lo), f"{name}_hi": float(hi), f"{name}_interval": label}


def format_arms(table: pd.DataFrame) -> str:
    """The comparison for people: accuracies, the differences with their intervals in brackets (and, after one
    bounded by its two models' intervals, that label), the matched SFT budget and its compute against the arm's."""
    def interval(name: str) -> pd.Series:
        return table.apply(lambda r: "-" if np.isnan(r[name]) else
                           f"{r[name]:+.3f} [{r[f'{name}_lo']:+.3f}, {r[f'{name}_hi']:+.3f}]"
                           + (f" ({r[f'{name}_interval']})" if r[f"{name}_interval"] else ""), axis=1)

    shown = table[["arm", "sft_step", "step", "split"]].assign(
        start=table["start_acc"].map("{:.3f}".format), arm_acc=table["arm_acc"].map("{:.3f}".format),
        arm_gain=interval("arm_gain"),
        sft_matched=table.apply(lambda r: r["reason"] or f"{int(r['sft_step_matched'])} ({r['sft_acc']:.3f})", axis=1),
        compute=table.apply(lambda r: "-" if np.isnan(r["sft_flops"]) else
                            f"{r['arm_flops']:.2e} vs {r['sft_flops']:.2e}", axis=1),
        sft_gain=interval("sft_gain"), arm_vs_sft=interval("arm_vs_sft"),
        p_arm_better=table["p_arm_better"].map(lambda p: "-" if np.isnan(p) else f"{p:.2f}"),
        interval=table["interval"])
    return shown.to_string(index=False)
