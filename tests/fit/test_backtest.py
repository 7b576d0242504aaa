"""Backtest scores: finite whatever was observed, in-sample named so, and the persistence baseline beside them."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.fit.backtest import PERSISTENCE, RELATIVE_MIN, backtest_scores, persistence
from scaling.fit.console import backtest_line
from scaling.fit.refresh import refreshed_backtest

ROLLOUT = Path(__file__).parents[2] / "fits" / "study-core-sft-id-rollout"  # the study's rollout: fits/README.md


def test_an_accuracy_observed_at_zero_leaves_the_relative_error_finite():
    table = pd.DataFrame({"observed": [0.0, 0.0, 0.5, 0.8], "mean": [0.02, 0.0, 0.4, 0.9],
                          "lo": [0.0, 0.0, 0.3, 0.85], "hi": [0.05, 0.01, 0.6, 0.95], "held_out": True})
    scores = backtest_scores(table)
    assert scores["mae"] == pytest.approx((0.02 + 0.0 + 0.1 + 0.1) / 4)
    assert scores["relative_rows"] == 2  # the zeros have no relative error
    assert scores["mean_relative_error"] == pytest.approx((0.1 / 0.5 + 0.1 / 0.8) / 2)
    assert scores["coverage_90"] == 0.75


def test_only_rows_near_zero_give_no_relative_error_not_an_infinite_one():
    table = pd.DataFrame({"observed": [0.0, RELATIVE_MIN / 2], "mean": [0.1, 0.1], "lo": 0.0, "hi": 1.0,
                          "held_out": False})
    scores = backtest_scores(table)
    assert np.isnan(scores["mean_relative_error_in_sample"]) and scores["relative_rows"] == 0 and scores["rows"] == 2


def test_persistence_carries_each_runs_last_fitted_value_forward():
    fitted = pd.DataFrame({"run": ["a", "a", "b", "b"], "step": [1.0, 2.0, 1.0, 2.0], "acc": [0.1, 0.4, 0.2, 0.3]})
    tested = pd.DataFrame({"run": ["b", "a", "c", "a"], "step": [4.0, 4.0, 4.0, 1.0], "acc": [0.5, 0.9, 0.7, 0.1]})
    carried = persistence(tested, fitted, "acc", ["run"], "step")
    assert carried[:2] == pytest.approx([0.3, 0.4])  # each run's value at its largest fitted budget
    assert np.isnan(carried[2]) and np.isnan(carried[3])  # a run never fitted; a budget with nothing before it
    assert np.isnan(persistence(tested, fitted, "acc", ["run"], None)).all()  # no budget axis: nothing to carry
    one_run = persistence(tested, fitted, "acc", [], "step")  # no run columns: the rows are one run
    assert one_run[0] == pytest.approx((0.4 + 0.3) / 2)


def test_a_backtest_reports_the_persistence_baseline_and_the_laws_skill():
    table = pd.DataFrame({"observed": [0.5, 0.8, 0.6], "mean": [0.3, 0.6, 0.6], "lo": 0.0, "hi": 1.0, "held_out": True,
                          PERSISTENCE: [0.45, 0.7, np.nan]})
    scores = backtest_scores(table)
    assert scores["persistence_rows"] == 2 and scores["mae_persistence"] == pytest.approx(0.075)
    assert scores["skill"] == pytest.approx(1 - 0.2 / 0.075)  # the law on the same two rows: it loses
    assert "does NOT beat it" in backtest_line("", scores, held=True) and "(1 without one)" in backtest_line("", scores, True)


def test_in_sample_coverage_is_not_named_like_a_backtest_score():
    """fit.toml called the coverage of the rows fitted `coverage_90`, the name of a held-out score."""
    table = pd.DataFrame({"observed": [0.5, 0.8], "mean": [0.5, 0.7], "lo": 0.4, "hi": 0.75, "held_out": False,
                          PERSISTENCE: [np.nan, 0.5]})
    scores = backtest_scores(table)
    assert {"coverage_90", "mae", "skill", "mae_persistence"}.isdisjoint(scores)
    assert scores["coverage_90_in_sample"] == 0.5 and scores["mae_in_sample"] == pytest.approx(0.05)
    assert scores["mae_persistence_in_sample"] == pytest.approx(0.3)
    assert "fitted (in-sample) rows" in backtest_line("", scores, held=False)


def test_the_study_rollout_loses_to_persistence():
    """fits/study-core-sft-id-rollout (fit to 1024 steps, predict 2048) has MAE 0.228 / 0.230 / 0.107; carrying
    each run's accuracy at 1024 forward gives 0.108 / 0.109 / 0.104: the law does not beat persistence."""
    table, scores = refreshed_backtest(ROLLOUT)
    assert table[PERSISTENCE].notna().all() and len(table) == 72
    mae = {family: (s["mae"], s["mae_persistence"]) for family, s in scores.items()}
    assert mae == {"add": pytest.approx((0.2276, 0.1076), abs=1e-4), "reverse": pytest.approx((0.2298, 0.1094), abs=1e-4),
                   "sort": pytest.approx((0.1069, 0.1042), abs=1e-4)}
    assert all(s["skill"] < 0 for s in scores.values())


def test_the_backtest_figure_reads_the_column_the_fit_writes():
    from scaling.report import figures  # figures never import the fitting modules, so they name it themselves

    assert figures.PERSISTENCE == PERSISTENCE
