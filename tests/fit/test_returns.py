"""Diminishing returns: gain per doubling, and where it falls below a threshold, on laws with known answers."""

import numpy as np
import pytest

from scaling.fit.laws import LAWS
from scaling.fit.returns import MemorizedRun, ReturnsConfig, gain, returns_table


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
    theta = _draws(c=np.log(10.0), kappa=1.0, rho=1.0, beta=0.0, T=100.0, k=2.0, delta=0.5, gamma=0.0, eta=0.0)
    x = {"step": np.geomspace(32, 1024, 6), "diversity": np.array([1.0, 2.0, 4.0]), "quality": np.array([0.5, 1.0]),
         "capability": np.array([1.0, 4.0]), "chance": np.array([0.02]), "past": np.array([0.0])}
    table = returns_table(LAWS["sft"], theta, x, ReturnsConfig())
    doubling = table[(table.axis == "diversity") & (table.quantity == "gain_per_doubling")]
    assert (doubling.estimate < 0).all()  # delta > 0: the same examples over more families learn slower
    assert np.isnan(_threshold_row(table, "diversity"))
    assert _threshold_row(table, "step") > 100.0 and np.isfinite(_threshold_row(table, "step"))


def test_the_post_memorization_gain_runs_from_each_runs_own_memorization_step_to_k_times_it():
    law, theta = LAWS["logistic"], _draws(floor=0.0, ceiling=1.0, x50=100.0, k=2.0)
    runs = [MemorizedRun({}, 200.0), MemorizedRun({}, 50.0), MemorizedRun({}, np.nan)]  # the last never memorized
    table = returns_table(law, theta, {"x": np.geomspace(10, 1000, 5)}, ReturnsConfig(post_memorization_factor=4.0),
                          runs=runs, steps_axis="x")
    row = table[table.quantity == "post_memorization_gain_x4"]
    acc = lambda x: 1 / (1 + (x / 100) ** -2)  # noqa: E731
    expected = 100 * ((acc(800) - acc(200)) + (acc(200) - acc(50))) / 2
    assert row.estimate.item() == pytest.approx(expected, rel=1e-6)
    assert row["runs"].item() == 2 and row["share"].item() == pytest.approx(2 / 3) and row["at"].item() == 125.0


def test_the_post_memorization_gain_is_taken_at_each_runs_own_axes():
    """A run that memorized at diversity 4 is not credited with the gain of the frontier's diversity."""
    theta = _draws(c=np.log(10.0), kappa=1.0, rho=1.0, beta=0.0, T=100.0, k=2.0, delta=0.5, gamma=0.0, eta=0.0)
    x = {"step": np.geomspace(32, 1024, 6), "diversity": np.array([1.0, 4.0]), "quality": np.array([1.0]),
         "capability": np.array([1.0]), "chance": np.array([0.02]), "past": np.array([0.0])}
    point = {"diversity": 1.0, "quality": 1.0, "capability": 1.0, "chance": 0.02, "past": 0.0}
    alone = returns_table(LAWS["sft"], theta, x, ReturnsConfig(), runs=[MemorizedRun(point, 64.0)], steps_axis="step")
    expected = gain(LAWS["sft"], theta, {**{a: np.array([v]) for a, v in point.items()}, "step": np.array([64.0])},
                    {**{a: np.array([v]) for a, v in point.items()}, "step": np.array([256.0])})[0, 0]
    assert alone[alone.quantity == "post_memorization_gain_x4"].estimate.item() == pytest.approx(expected)
    nobody = returns_table(LAWS["sft"], theta, x, ReturnsConfig(), runs=[MemorizedRun(point, np.nan)], steps_axis="step")
    row = nobody[nobody.quantity == "post_memorization_gain_x4"]
    assert np.isnan(row.estimate.item()) and row["runs"].item() == 0


@pytest.mark.parametrize("beta", [-0.5, 0.5])
def test_the_post_memorization_gain_carries_the_signed_beta_past_memorization(beta):
    """Past its memorization step a run's ceiling moves by beta per e-fold of steps: the gain has beta's sign
    where the rise itself is done."""
    theta = _draws(c=1.0, kappa=0.0, rho=0.0, beta=beta, T=1.0, k=4.0, delta=0.0, gamma=0.0, eta=0.0)
    x = {"step": np.geomspace(100, 1000, 4), "diversity": np.array([1.0]), "quality": np.array([1.0]),
         "capability": np.array([1.0]), "chance": np.array([0.0]), "past": np.array([0.0])}
    point = {"diversity": 1.0, "quality": 1.0, "capability": 1.0, "chance": 0.0, "past": 0.0}
    table = returns_table(LAWS["sft"], theta, x, ReturnsConfig(), runs=[MemorizedRun(point, 200.0)], steps_axis="step")
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    expected = 100 * (sigmoid(1.0 + beta * np.log(4.0)) - sigmoid(1.0))  # the rise is complete long before step 200
    assert table[table.quantity == "post_memorization_gain_x4"].estimate.item() == pytest.approx(expected, abs=1e-3)


def test_quality_steps_halve_the_error_rate_and_stay_inside_zero_to_one():
    theta = {"c": np.full(50, np.log(10.0)), "kappa": np.full(50, 1.0), "beta": np.zeros(50),
             "rho": np.linspace(0.2, 3.0, 50), "T": np.full(50, 100.0), "k": np.full(50, 2.0),
             "delta": np.full(50, 0.0), "gamma": np.full(50, 0.0), "eta": np.full(50, 0.0)}
    x = {"step": np.geomspace(32, 1024, 6), "diversity": np.array([1.0]), "quality": np.array([0.5, 0.75, 1.0]),
         "capability": np.array([1.0]), "chance": np.array([0.02]), "past": np.array([0.0])}
    table = returns_table(LAWS["sft"], theta, x, ReturnsConfig())
    quality = table[table.axis == "quality"]
    steps = quality[quality.quantity == "gain_per_halved_error"]
    assert list(steps["at"]) == pytest.approx([1 - np.sqrt(0.5 * 0.25), 0.75])  # middle and best error rates < 1
    assert (steps.estimate > 0).all() and not (quality.quantity == "gain_per_doubling").any()
    point = quality[quality.quantity.str.startswith("diminishing")]
    assert 0.5 <= point.lo.item() <= point.hi.item() < 1.0  # a quality, never beyond 1
    assert 0.0 < point.share.item() <= 1.0


def test_a_threshold_reports_the_share_of_draws_that_reach_it_and_the_interval_over_those():
    """Draws where a doubling never buys 1% have no diminishing point; the interval is over the others."""
    law = LAWS["power"]
    theta = {"E": np.ones(4), "A": np.array([10.0, 10.0, 0.001, 0.001]), "alpha": np.full(4, 0.5)}
    table = returns_table(law, theta, {"x": np.geomspace(10, 1000, 5)}, ReturnsConfig())
    row = table[table.quantity.str.startswith("diminishing")]
    assert row.share.item() == 0.5 and np.isfinite(row.estimate.item()) and row.lo.item() == row.hi.item()
