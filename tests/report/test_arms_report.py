"""`scaling arms`: what an arm after SFT bought against its starting model and against more SFT at no less
compute, paired over the same runs and items."""

import numpy as np
import pandas as pd
import pytest

from scaling.errors import UserError
from scaling.report.arms import arm_comparison, arm_table

RUNS, ITEMS = ("c0", "c1", "c2"), 40
# SFT's budgets and the FLOPs of each model; the arm starts at SFT step 10.
SFT_FLOPS = {10: 1e12, 20: 2e12, 40: 4e12}


def graded(right_per_run: dict[str, int], **columns) -> pd.DataFrame:
    """Grades of one model point: in run c, its first right_per_run[c] items right."""
    rows = [{"cell_id": run, "split": "id", "family": "add", "key": f"k{i}", "answer_correct": i < right,
             "control": "", **columns} for run, right in right_per_run.items() for i in range(ITEMS)]
    return pd.DataFrame(rows)


def sft_grades(right: dict[int, dict[str, int]]) -> pd.DataFrame:
    return pd.concat([graded(r, step=s, flops=SFT_FLOPS[s]) for s, r in right.items()], ignore_index=True)


def arm_grades(points: dict[int, tuple[float, dict[str, int]]], start: dict[str, int]) -> pd.DataFrame:
    rows = [graded(start, arm="rl", sft_step=10, step=0, flops=SFT_FLOPS[10])]
    rows += [graded(r, arm="rl", sft_step=10, step=s, flops=f) for s, (f, r) in points.items()]
    return pd.concat(rows, ignore_index=True)


START = {"c0": 10, "c1": 12, "c2": 8}


def test_an_arm_is_matched_with_the_first_sft_budget_of_no_less_compute_and_its_gains_are_hand_values():
    sft = sft_grades({10: START, 20: {"c0": 14, "c1": 14, "c2": 14}, 40: {"c0": 20, "c1": 20, "c2": 20}})
    arms = arm_grades({5: (1.5e12, {"c0": 20, "c1": 22, "c2": 18})}, START)
    row = arm_comparison(sft, arms, "id").iloc[0]
    assert row["sft_step_matched"] == 20 and row["sft_flops"] == 2e12 and row["arm_flops"] == 1.5e12
    assert row["start_acc"] == pytest.approx(30 / 120) and row["arm_acc"] == pytest.approx(60 / 120)
    assert row["arm_gain"] == pytest.approx(0.25) and row["sft_gain"] == pytest.approx(12 / 120)
    assert row["arm_vs_sft"] == pytest.approx(60 / 120 - 42 / 120)
    assert row["arm_gain_per_pflop"] == pytest.approx(0.25 / 0.5e12 * 1e15)
    assert row["sft_gain_per_pflop"] == pytest.approx(0.1 / 1e12 * 1e15)
    # Every run gains ten items over its start: the interval excludes 0; the arm is ahead of SFT in nearly every draw.
    assert 0 < row["arm_gain_lo"] <= row["arm_gain"] <= row["arm_gain_hi"]
    assert row["p_arm_better"] > 0.99 and row["interval"] == "runs and items" and row["runs"] == 3


def test_the_same_grades_on_both_sides_differ_by_exactly_zero_in_every_draw():
    """Paired: each draw weights the runs and items of both models alike, so identical grades give a point at 0."""
    sft = sft_grades({10: START, 20: {"c0": 30, "c1": 5, "c2": 17}, 40: START})
    arms = arm_grades({5: (2e12, {"c0": 30, "c1": 5, "c2": 17})}, START)
    row = arm_comparison(sft, arms, "id").iloc[0]
    assert row["arm_vs_sft"] == 0 and row["arm_vs_sft_lo"] == 0 and row["arm_vs_sft_hi"] == 0
    assert row["p_arm_better"] == 0.0


def test_an_arm_past_every_sft_budgets_compute_says_so_instead_of_extrapolating():
    sft = sft_grades({10: START, 20: START, 40: START})
    arms = arm_grades({5: (9e12, START)}, START)
    row = arm_comparison(sft, arms, "id").iloc[0]
    assert np.isnan(row["sft_acc"]) and np.isnan(row["arm_vs_sft"])
    assert row["reason"] == "the SFT budgets stop short of this compute"


def test_fewer_runs_than_an_interval_across_runs_needs_resample_items_only():
    two = {"c0": 10, "c1": 12}
    sft = pd.concat([graded(two, step=s, flops=f) for s, f in SFT_FLOPS.items()], ignore_index=True)
    arms = pd.concat([graded(two, arm="rl", sft_step=10, step=0, flops=1e12),
                      graded({"c0": 20, "c1": 12}, arm="rl", sft_step=10, step=5, flops=1.5e12)], ignore_index=True)
    assert arm_comparison(sft, arms, "id").iloc[0]["interval"] == "items only: 2 runs"


def test_a_split_no_arm_was_graded_on_is_refused_naming_it():
    sft = sft_grades({10: START, 20: START, 40: START})
    arms = arm_grades({5: (1.5e12, START)}, START)
    with pytest.raises(UserError, match="no arm was graded on split 'ood_length'; splits are id"):
        arm_table(sft, arms, ["ood_length"])
    with pytest.raises(UserError, match="no column 'flops'"):
        arm_table(sft.drop(columns="flops"), arms)


def test_models_whose_answers_all_agree_get_the_ends_of_their_exact_intervals_not_a_point():
    """All wrong before and after: every bootstrap draw ties, and a [0, 0] interval would claim a certainty the
    40 items do not give; each side's exact interval at 95% bounds the difference instead."""
    wrong = {"c0": 0, "c1": 0, "c2": 0}
    sft = sft_grades({10: wrong, 20: wrong, 40: wrong})
    row = arm_comparison(sft, arm_grades({5: (1.5e12, wrong)}, wrong), "id").iloc[0]
    exact_hi = 1 - 0.025 ** (1 / ITEMS)  # Clopper-Pearson's upper end for 0 right of 40 items, at 95%
    assert row["arm_vs_sft"] == 0 and row["arm_vs_sft_interval"] == "ends of both at 95%"
    assert row["arm_vs_sft_lo"] == pytest.approx(-exact_hi) and row["arm_vs_sft_hi"] == pytest.approx(exact_hi)
    assert np.isnan(row["p_arm_better"])
    # One side alike is enough: its exact interval is what the draws cannot show.
    row = arm_comparison(sft, arm_grades({5: (1.5e12, {"c0": 10, "c1": 12, "c2": 8})}, wrong), "id").iloc[0]
    assert row["arm_gain_interval"] == "ends of both at 95%" and row["arm_gain_lo"] < 0.25 - exact_hi + 1e-9
    assert row["p_arm_better"] == 1.0
