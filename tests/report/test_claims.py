"""Model-free post-memorization gains: paired on the same examples, per run, with every run that cannot be
measured listed with its reason, and intervals that treat the run as the unit."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scaling.report.claims import post_memorization_gains, summarize_gains
from scaling.report.intervals import mean_across


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
    mean, lo, hi, interval = mean_across([10.0, 20.0, 30.0])
    half = stats.t.ppf(0.95, 2) * 10.0 / np.sqrt(3)
    assert (mean, lo, hi) == pytest.approx((20.0, 20.0 - half, 20.0 + half)) and interval == "t over 3 runs"
    assert np.isnan(mean_across([5.0])[1]) and np.isnan(mean_across([])[0]) and mean_across([5.0])[3] == "n/a: 1 run"
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
    from scaling.report.intervals import binomial_interval

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


def test_zero_width_and_two_run_intervals_are_not_printed_as_findings():
    """Two runs (t = 6.31 on one degree of freedom) or runs that all agree (a t-interval of width 0) say nothing
    about the population of runs: the study's tables printed steps x16 [1.5625, 1.5625] from two runs and short
    CoT's `ood_family` [0.016, 0.016] from three. No interval there, and a label that says why."""
    from scaling.report.claims import condition_means

    two = pd.DataFrame({"size": ["xs"] * 3, "factor": [16] * 3, "gain": [1.5625, 1.5625, np.nan],
                        "reached": [True, True, False]})
    (row,) = summarize_gains(two, ["size"]).to_dict("records")
    assert row["gain"] == pytest.approx(1.5625) and np.isnan(row["lo"]) and np.isnan(row["hi"])
    assert row["interval"] == "n/a: 2 runs"
    apart = two.assign(gain=[1.0, 9.0, np.nan])
    (row,) = summarize_gains(apart, ["size"]).to_dict("records")
    assert np.isnan(row["lo"]) and row["interval"] == "n/a: 2 runs"
    same = pd.DataFrame({"split": ["ood_family"] * 3, "step": [2048] * 3, "cot": ["short"] * 3,
                         "answer_acc": [0.015625] * 3, "chance": [0.024] * 3})
    (row,) = condition_means(same, ["cot"], []).to_dict("records")
    assert row["mean"] == pytest.approx(0.015625) and np.isnan(row["lo"]) and np.isnan(row["hi"])
    assert row["interval"] == "n/a: 3 runs, all equal"
    (row,) = condition_means(same.assign(answer_acc=[0.0, 0.015625, 0.03125]), ["cot"], []).to_dict("records")
    assert row["lo"] < row["mean"] < row["hi"] and row["interval"] == "t over 3 runs"


def test_bases_are_counted_once_and_measured_against_the_probes_chance():
    """The core grid's bases table counted 9 runs per base where a pretrained base is one (shared by every seed)
    and a random initialization one per seed (shared by the seed's diversities), printed [0.3125, 0.3125] for the
    one pretrained base, and put the train split's chance (0.133) beside a probe whose chance is about 0.32."""
    from scaling.report.claims import condition_means

    seeds, diversities = [0, 1, 2] * 3, [1] * 3 + [2] * 3 + [4] * 3
    pretrained = pd.DataFrame({"size": "xs", "pretrain_tokens": 1_000_000, "seed": seeds, "diversity": diversities,
                               "base_loss": 1.39, "base_probe_acc": 0.3125})
    random_init = pd.DataFrame({"size": "xs", "pretrain_tokens": 0, "seed": seeds, "diversity": diversities,
                                "base_loss": [4.70, 5.08, 4.65] * 3, "base_probe_acc": [0.33125, 0.34375, 0.34375] * 3})
    table = pd.concat([pretrained, random_init]).assign(split="train", step=2048, chance=0.133)
    means = condition_means(table, ["size", "pretrain_tokens"], [], "base_probe_acc").set_index("x")
    one, three = means.loc["xs, 1000000"], means.loc["xs, 0"]
    assert one["runs"] == 9 and one["bases"] == 1 and np.isnan(one["lo"]) and one["interval"] == "n/a: 1 base"
    assert three["bases"] == 3 and three["interval"] == "t over 3 bases"
    half = stats.t.ppf(0.95, 2) * np.std([0.33125, 0.34375, 0.34375], ddof=1) / np.sqrt(3)
    assert three["hi"] - three["mean"] == pytest.approx(half)
    from scaling.report.claims import BASE_MEASURE_CHANCE

    assert (means["chance"] == BASE_MEASURE_CHANCE["base_probe_acc"]).all()
    assert np.isnan(condition_means(table, ["size"], [], "base_loss")["chance"]).all()  # a loss has no chance


def test_the_probes_chance_is_its_items_mean_guessing_rate():
    """No results file records the probe's chance, so the report holds it; here it is recomputed from the items."""
    from scaling.report.claims import BASE_MEASURE_CHANCE
    from scaling.tasks.corpus import probe_items
    from scaling.trainer.probe import PROBE_ITEMS

    guessed = np.mean([1 / len(item.choices) for item in probe_items(PROBE_ITEMS)])
    assert BASE_MEASURE_CHANCE["base_probe_acc"] == pytest.approx(guessed, abs=1e-12)


def test_several_runs_on_one_evaluation_set_are_not_one_binomial_sample():
    """real_base_xs pooled 3 runs on the same 64 problems into one binomial interval (width 0.12 where the runs
    spread 0.30). Several runs get the crossed bootstrap over runs and items (report/transfer.py); one run keeps
    the exact binomial interval over its items, labelled as such; two runs get none."""
    from scaling.report.claims import accuracy_rows
    from scaling.report.intervals import binomial_interval

    rng = np.random.default_rng(0)
    easy = rng.random(64) < 0.5  # the same items in every run
    runs = pd.concat([grades_of(cell, {2048: list(easy & (rng.random(64) < p))}) for cell, p in
                      (("a", 0.3), ("b", 0.8), ("c", 1.0))]).assign(chance=0.1)
    table = accuracy_rows([("three", runs), ("one", runs[runs.cell_id == "c"]),
                           ("two", runs[runs.cell_id != "c"])], {"ID": "id"}).set_index("row")
    three = table.loc["three"]
    pooled = binomial_interval(int(three["ID_k"]), int(three["ID_n"]))
    assert (three["ID_lo"], three["ID_hi"]) != pytest.approx(pooled)
    from scaling.report.transfer import accuracy_interval

    assert (three["ID_lo"], three["ID_hi"]) == pytest.approx(accuracy_interval(runs))
    assert three["ID_hi"] - three["ID_lo"] > pooled[1] - pooled[0] and three["ID_interval"] == "runs and items"
    one = table.loc["one"]
    assert (one["ID_lo"], one["ID_hi"]) == pytest.approx(binomial_interval(int(one["ID_k"]), 64))
    assert one["ID_interval"] == "items only"
    two = table.loc["two"]  # the runs held fixed, the items resampled: what transfer tables print for two runs
    assert two["ID_interval"] == "items only: 2 runs" and two["ID_lo"] < two["ID_acc"] < two["ID_hi"]
    wrong = accuracy_rows([("wrong", runs.assign(answer_correct=False))], {"ID": "id"}).iloc[0]
    # Every answer wrong: not a zero-width interval, the exact one over the 64 distinct items (not 3 x 64 rows).
    assert (wrong["ID_lo"], wrong["ID_hi"]) == pytest.approx(binomial_interval(0, 64))
    assert wrong["ID_interval"] == "exact over 64 items, all wrong"
