"""Model-free post-memorization gains: paired on the same examples, per run, with every run that cannot be
measured listed with its reason, and intervals that treat the run as the unit."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scaling.report.claims import post_memorization_gains, run_level_mean, summarize_gains


def grades_of(cell: str, correct_by_step: dict[int, list[bool]], split: str = "id") -> pd.DataFrame:
    rows = [{"cell_id": cell, "step": step, "split": split, "family": "add", "key": f"k{i}", "answer_correct": ok}
            for step, oks in correct_by_step.items() for i, ok in enumerate(oks)]
    return pd.DataFrame(rows)


def test_gains_are_paired_per_run_and_runs_that_cannot_be_measured_say_why():
    grades = pd.concat([
        # Memorized at 64: 1 of 4 right then, 3 of 4 at 256 (4x): +50 points.
        grades_of("a", {64: [True, False, False, False], 128: [True] * 4, 256: [True, True, True, False]}),
        # An example graded only at one budget is not paired, so it does not count.
        grades_of("b", {64: [False, False], 256: [True, True, True]}),
        grades_of("c", {64: [True], 256: [True]}),
        grades_of("a", {64: [True] * 4}, split="train"),
    ])
    memorization = pd.DataFrame({"cell_id": ["a", "b", "c"], "seed": [0, 1, 2], "memorization_step": [64.0, 64.0, np.nan]})
    gains = post_memorization_gains(grades, memorization, "id", factors=(4, 16))
    a4 = gains[(gains.cell_id == "a") & (gains.factor == 4)].iloc[0]
    assert a4.reached and a4.step == 256 and a4.n == 4 and a4.gain == pytest.approx(50.0)
    b4 = gains[(gains.cell_id == "b") & (gains.factor == 4)].iloc[0]
    assert b4.n == 2 and b4.gain == pytest.approx(100.0)
    assert gains[(gains.cell_id == "a") & (gains.factor == 16)].iloc[0].reason == "budgets end at 256, before 16 x 64"
    assert set(gains[gains.cell_id == "c"].reason) == {"never memorized"} and not gains[gains.cell_id == "c"].reached.any()
    with pytest.raises(ValueError, match="no grades of split 'ood_family'"):
        post_memorization_gains(grades, memorization, "ood_family")


def test_intervals_are_across_runs():
    mean, lo, hi = run_level_mean([10.0, 20.0, 30.0])
    half = stats.t.ppf(0.95, 2) * 10.0 / np.sqrt(3)
    assert (mean, lo, hi) == pytest.approx((20.0, 20.0 - half, 20.0 + half))
    assert np.isnan(run_level_mean([5.0])[1]) and np.isnan(run_level_mean([])[0])
    gains = pd.DataFrame({"size": ["xs"] * 4, "factor": [4] * 4, "gain": [10.0, 20.0, 30.0, np.nan],
                          "reached": [True, True, True, False]})
    (row,) = summarize_gains(gains, ["size"]).to_dict("records")
    assert row["runs"] == 4 and row["reached"] == 3 and row["gain"] == pytest.approx(20.0)
    assert row["lo"] == pytest.approx(20.0 - half) and row["share_positive"] == 1.0


def test_condition_means_take_each_run_once_per_split_and_step():
    from scaling.report.claims import condition_means

    table = pd.DataFrame({"split": ["id"] * 5, "step": [64] * 5, "diversity": [1, 1, 1, 4, 4], "size": ["xs"] * 5,
                          "answer_acc": [0.1, 0.2, 0.3, 0.5, 0.7], "chance": [0.1] * 5})
    means = condition_means(table, ["diversity"], ["size"]).set_index("x")
    half = stats.t.ppf(0.95, 2) * 0.1 / np.sqrt(3)
    assert means.loc["1", "runs"] == 3 and means.loc["1", "mean"] == pytest.approx(0.2)
    assert means.loc["1", "lo"] == pytest.approx(0.2 - half) and means.loc["4", "mean"] == pytest.approx(0.6)
    assert means.loc["4", "hue"] == "xs" and means.loc["4", "chance"] == pytest.approx(0.1)


def test_binomial_intervals_are_exact_and_stay_inside_zero_and_one():
    from scaling.report.claims import binomial_interval

    lo, hi = binomial_interval(3, 16)
    # Clopper-Pearson: the interval's ends are where the binomial tails hold 5% each.
    assert stats.binom.sf(2, 16, lo) == pytest.approx(0.05) and stats.binom.cdf(3, 16, hi) == pytest.approx(0.05)
    assert binomial_interval(0, 64)[0] == 0.0 and binomial_interval(64, 64)[1] == 1.0
    assert 0.0 < binomial_interval(0, 64)[1] < 0.05 and np.isnan(binomial_interval(0, 0)[0])


def test_accuracy_rows_count_each_rows_examples_per_split():
    from scaling.report.claims import accuracy_rows

    base = pd.DataFrame({"split": ["id"] * 4 + ["ood_family"] * 2, "answer_correct": [True, False, False, False, False, False],
                         "chance": [0.1] * 4 + [0.01] * 2})
    tuned = pd.concat([grades_of("a", {32: [True, True, False, True]}), grades_of("b", {32: [True, True, True, True]})])
    tuned["chance"] = 0.1
    table = accuracy_rows([("base", base), ("+ SFT", tuned)], {"ID": "id", "OOD": "ood_family"}).set_index("row")
    assert table.loc["base", "ID_k"] == 1 and table.loc["base", "ID_n"] == 4 and table.loc["base", "ID_acc"] == 0.25
    assert table.loc["base", "OOD_chance"] == pytest.approx(0.01) and table.loc["base", "OOD_hi"] < 1
    assert table.loc["+ SFT", "runs"] == 2 and table.loc["+ SFT", "ID_k"] == 7 and table.loc["+ SFT", "ID_n"] == 8
    assert table.loc["+ SFT", "OOD_n"] == 0 and np.isnan(table.loc["+ SFT", "OOD_acc"])
