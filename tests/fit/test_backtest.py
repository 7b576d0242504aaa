"""Backtest scores: finite whatever was observed."""

import numpy as np
import pandas as pd
import pytest

from scaling.fit.backtest import RELATIVE_MIN, backtest_scores


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
    assert np.isnan(scores["mean_relative_error"]) and scores["relative_rows"] == 0 and scores["rows"] == 2
