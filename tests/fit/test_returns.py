"""Diminishing returns: gain per doubling, and where it falls below a threshold, on laws with known answers."""

import numpy as np
import pytest

from scaling.fit.laws import LAWS
from scaling.fit.returns import ReturnsConfig, gain, returns_table


def _draws(**theta) -> dict[str, np.ndarray]:
    return {k: np.full(3, float(v)) for k, v in theta.items()}


def _threshold_row(table, axis: str) -> float:
    return float(table[(table.axis == axis) & table.quantity.str.startswith("diminishing")].estimate.item())


def test_a_power_law_diminishes_where_a_doubling_first_buys_less_than_one_percent():
    law, theta = LAWS["power"], _draws(E=1.0, A=10.0, alpha=0.5)
    table = returns_table(law, theta, {"x": np.geomspace(10, 1000, 5)}, ReturnsConfig())
    point = _threshold_row(table, "x")
    at = lambda x: float(gain(law, theta, {"x": np.array([x])}, {"x": np.array([2 * x])})[0, 0])  # noqa: E731
    assert at(point) < 1.0 <= at(point / 1.1)  # the first such point, to the search grid's resolution
    doubling = table[table.quantity == "gain_per_doubling"]
    assert (np.diff(doubling.estimate) < 0).all()  # returns diminish along the axis


def test_an_s_shaped_rise_diminishes_after_it_takes_off_not_before():
    """Early on an accuracy barely moves per doubling too; that is not diminishing returns."""
    law, theta = LAWS["logistic"], _draws(floor=0.0, ceiling=0.9, x50=1000.0, k=2.0)
    table = returns_table(law, theta, {"x": np.geomspace(10, 100_000, 9)}, ReturnsConfig())
    assert _threshold_row(table, "x") > 1000.0


def test_an_axis_that_only_hurts_has_no_diminishing_point():
    theta = _draws(floor=0.02, H=0.1, kappa=1.0, rho=1.0, T=100.0, k=2.0, delta=0.5, gamma=0.0, eta=0.0)
    x = {"step": np.geomspace(32, 1024, 6), "diversity": np.array([1.0, 2.0, 4.0]), "quality": np.array([0.5, 1.0]),
         "capability": np.array([1.0, 4.0])}
    table = returns_table(LAWS["sft"], theta, x, ReturnsConfig())
    doubling = table[(table.axis == "diversity") & (table.quantity == "gain_per_doubling")]
    assert (doubling.estimate < 0).all()  # delta > 0: the same examples over more families learn slower
    assert np.isnan(_threshold_row(table, "diversity"))
    assert _threshold_row(table, "step") > 100.0 and np.isfinite(_threshold_row(table, "step"))


def test_the_post_memorization_gain_runs_from_the_memorization_step_to_k_times_it():
    law, theta = LAWS["logistic"], _draws(floor=0.0, ceiling=1.0, x50=100.0, k=2.0)
    table = returns_table(law, theta, {"x": np.geomspace(10, 1000, 5)}, ReturnsConfig(post_memorization_factor=4.0),
                          memorization_step=200.0, steps_axis="x")
    row = table[table.quantity == "post_memorization_gain_x4"]
    expected = 100 * (1 / (1 + (800 / 100) ** -2) - 1 / (1 + (200 / 100) ** -2))
    assert row.estimate.item() == pytest.approx(expected, rel=1e-6) and row["at"].item() == 200.0
