"""Diminishing returns: gain per doubling, and where it falls below a threshold, on laws with known answers."""

from pathlib import Path

import arviz as az
import numpy as np
import pytest

from scaling.fit.data import fit_data
from scaling.fit.groups import group_returns, memorized_runs
from scaling.fit.laws import LAWS
from scaling.fit.record import read_request
from scaling.fit.request import prepare
from scaling.fit.returns import SEARCH_DOUBLINGS, MemorizedRun, ReturnsConfig, fraction_axes, gain, returns_table

STUDY = Path(__file__).parents[2] / "fits" / "study-core-sft-id"  # the study's core fit: fits/README.md


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


def _sft(**given) -> dict[str, np.ndarray]:
    """sft draws whose rise is complete from step 1 on (T = 1, k = 4): only the ceiling moves."""
    return _draws(**({"c": 0.0, "kappa": 0.0, "rho": 0.0, "beta": 0.0, "T": 1.0, "k": 4.0, "delta": 0.0, "gamma": 0.0,
                      "eta": 0.0} | given))


def test_returns_stay_inside_the_axis_domain():
    """fits/study-core-sft-id once put `add`'s capability threshold at a probe accuracy of 5.15 [0.29, 48678]:
    capability read from base_probe_acc was doubled past 1. An accuracy axis is a proportion: a step halves its
    error rate and the threshold is searched only inside (0, 1)."""
    x = {"step": np.geomspace(32, 1024, 6), "diversity": np.array([1.0]), "quality": np.array([1.0]),
         "capability": np.array([0.25, 0.3125, 0.375]), "chance": np.array([0.0]), "past": np.array([0.0])}
    columns = {"step": "step", "diversity": "diversity", "quality": "quality", "capability": "base_probe_acc"}
    fractions = fraction_axes(columns, x)
    assert fractions == {"quality", "capability"}
    assert "capability" not in fraction_axes(columns | {"capability": "base_loss"}, x)  # a loss is no proportion
    assert "capability" not in fraction_axes(columns, x | {"capability": np.array([25.0, 37.5])})  # percent: doubled
    theta = _sft(kappa=2.0)  # ceiling = sigmoid(2 ln capability): a better probe helps, less so near 1
    table = returns_table(LAWS["sft"], theta, x, ReturnsConfig(), fractions=fractions)
    capability = table[table.axis == "capability"]
    assert set(capability.quantity) == {"gain_per_halved_error", "diminishing_below_1"}
    point = _threshold_row(table, "capability")
    assert 0.375 < point < 1.0
    halved = lambda a: float(gain(LAWS["sft"], theta, {**{k: v[:1] for k, v in x.items()}, "capability": np.array([a])},  # noqa: E731
                                   {**{k: v[:1] for k, v in x.items()}, "capability": np.array([1 - (1 - a) / 2])})[0, 0])
    assert halved(point) < 1.0 <= halved(1 - (1 - point) * 1.1)  # the first such point, to the grid's resolution


def test_a_threshold_not_reached_where_the_search_ends_says_so():
    """A power law without a floor gains the same share of its loss at every doubling: no diminishing point,
    and the table says where the search stopped rather than printing a number."""
    table = returns_table(LAWS["power"], _draws(E=0.0, A=10.0, alpha=0.5), {"x": np.geomspace(10, 1000, 5)}, ReturnsConfig())
    row = table[table.quantity.str.startswith("diminishing")].iloc[0]
    assert np.isnan(row.estimate) and row.share == 0.0
    assert row.note == f"not reached within {SEARCH_DOUBLINGS} doublings past the largest value measured in 100% of draws"


def test_steps_returns_and_the_post_memorization_gain_follow_one_curve():
    """fits/study-core-sft-id said less than 1 point per doubling from 1204 steps with past = 0 at the frontier,
    while the same fit gave +31.2 points from m to 4m: the steps axis must see past(step) = ln(step / m) too,
    m the frontier runs' memorization step; then two doublings from m add up to the post-memorization gain."""
    beta, m = 0.5, 256.0
    x = {"step": np.array([128.0, 512.0]), "diversity": np.array([1.0, 2.0]), "quality": np.array([1.0]),
         "capability": np.array([1.0]), "chance": np.array([0.0]), "past": np.array([0.0])}
    frontier = {"diversity": 2.0, "quality": 1.0, "capability": 1.0, "chance": 0.0, "past": 0.0}
    runs = [MemorizedRun(frontier, m, last_fitted_step=512.0),
            MemorizedRun(frontier | {"diversity": 1.0}, 64.0, last_fitted_step=512.0)]  # not at the frontier
    table = returns_table(LAWS["sft"], _sft(beta=beta), x, ReturnsConfig(), runs=runs, steps_axis="step")
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    curve = lambda step: sigmoid(beta * max(0.0, np.log(step / m)))  # noqa: E731
    doubling = table[(table.axis == "step") & (table.quantity == "gain_per_doubling")]
    assert list(doubling["at"]) == pytest.approx([256.0, 512.0])
    assert doubling.estimate.to_numpy() == pytest.approx([100 * (curve(512) - curve(256)), 100 * (curve(1024) - curve(512))])
    post = table[table.quantity == "post_memorization_gain_x4"]
    assert post.estimate.item() == pytest.approx(np.mean([100 * (curve(4 * m) - curve(m)), 100 * (sigmoid(beta * np.log(4)) - 0.5)]))
    frontier_run = 100 * (curve(4 * m) - curve(m))
    assert doubling.estimate.sum() == pytest.approx(frontier_run)  # m -> 2m -> 4m: the same curve
    assert post["extrapolated"].item() == 1  # 4 x 256 lies past the frontier run's largest fitted budget, 512
    point = _threshold_row(table, "step")
    per_doubling = lambda s: 100 * (curve(2 * s) - curve(s))  # noqa: E731
    assert per_doubling(point) < 1.0 <= per_doubling(point / 1.1)
    assert "1 of 1 memorized" in table[table.axis == "step"].note.iloc[0]


@pytest.fixture(scope="module")
def study_add():
    """The study's core fit, group `add`: its request read again (no refit) and 400 of its posterior draws."""
    request = read_request(STUDY)
    prepared = prepare(request)
    part = next(p for p in prepared.parts if p.label == "add")
    posterior = az.from_netcdf(str(STUDY / "posterior.nc")).posterior.sel(family="add")
    draws = {name: posterior[name].values.reshape(-1)[::10] for name in prepared.law.params}
    return request, prepared, part, draws


def test_the_study_capability_threshold_is_a_probe_accuracy(study_add):
    request, prepared, part, draws = study_add
    table = group_returns(request, prepared.law, prepared.columns, part, draws)
    capability = table[table.axis == "capability"]
    assert (capability.quantity == "gain_per_halved_error").sum() == 2
    row = capability[capability.quantity.str.startswith("diminishing")].iloc[0]
    assert 0.25 <= row.lo <= row.estimate <= row.hi < 1.0 and 0 < row.share < 1 and "of draws" in row.note


def test_the_study_post_memorization_gain_counts_its_extrapolated_runs(study_add):
    """22 of the 36 `add` runs memorized so late that 4 x m lies past their last budget, 2048."""
    request, prepared, part, draws = study_add
    runs = memorized_runs(part.rows, part.train, prepared.columns, "step")
    assert len(runs) == 36 and sum(4 * r.memorization_step > r.last_fitted_step == 2048 for r in runs) == 22
    table = group_returns(request, prepared.law, prepared.columns, part, draws)
    post = table[table.quantity == "post_memorization_gain_x4"].iloc[0]
    assert post["runs"] == 36 and post["extrapolated"] == 22
    x = fit_data(part.train, prepared.law, prepared.columns).x
    assert x["step"].max() == 2048 and "step / 1024" in table[table.axis == "step"].note.iloc[0]
