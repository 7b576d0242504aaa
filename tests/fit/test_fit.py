"""Fitting the registered laws: recovery of known parameters, diagnostics, predictions, determinism."""

import dataclasses

import arviz as az
import numpy as np
import pandas as pd
import pytest

from scaling.errors import UserError
from scaling.fit.infer import FitData, LawFit, SamplerConfig, fit_law
from scaling.fit.laws import LAWS

STEPS = np.array([50, 100, 200, 400, 800, 1600, 3200, 6400])
SAMPLER = SamplerConfig(warmup=400, samples=400, chains=2, seed=0)


def test_the_power_law_decays_to_its_floor():
    power = LAWS["power"].mean
    assert float(power({"E": 0.5, "A": 2.0, "alpha": 1.0}, {"x": 1.0})) == pytest.approx(2.5)
    assert float(power({"E": 0.5, "A": 2.0, "alpha": 1.0}, {"x": 1e9})) == pytest.approx(0.5)


def test_the_accuracy_law_recovers_known_ceilings_and_half_points_from_counts():
    rng = np.random.default_rng(1)
    n = np.full(len(STEPS), 200.0)
    for truth in ({"C": 0.95, "x50": 200.0, "k": 3.0}, {"C": 0.7, "x50": 800.0, "k": 2.0}):
        p = np.asarray(LAWS["accuracy"].mean({k: np.float64(v) for k, v in truth.items()}, {"x": STEPS}))
        data = FitData(x={"x": STEPS.astype(float)}, y=rng.binomial(n.astype(int), p) / n, n=n)
        # Enough draws that "converged" (bulk ESS >= 400, as a user's fit needs) does not hang on luck.
        fit = fit_law(LAWS["accuracy"], data, "nuts", dataclasses.replace(SAMPLER, samples=1000))
        summary = fit.summary.set_index("param")
        for name, true in truth.items():
            # Six 90% intervals miss one truth now and then by design; three sd must not miss.
            assert abs(summary.loc[name, "mean"] - true) <= 3 * summary.loc[name, "sd"], (name, true, summary.loc[name].to_dict())
        assert fit.summary["r_hat"].max() < 1.05 and fit.converged
    with pytest.raises(UserError, match="accuracy"):
        fit_law(LAWS["accuracy"], dataclasses.replace(data, y=data.y + 1.5), "nuts", SAMPLER)


# --- fit_law: the registered laws ------------------------------------------------------------------------

# The calibration test's sampler and data size: one compiled NUTS program serves both files.
SHORT_NUTS = SamplerConfig(warmup=300, samples=300, chains=2, seed=0)
GRID = np.geomspace(10, 1e4, 16)


def _loss_data(law_name: str, theta: dict, x: dict, noise: float, seed: int = 0, seeds: np.ndarray | None = None,
               offsets: np.ndarray | None = None) -> FitData:
    rng = np.random.default_rng(seed)
    mean = np.asarray(LAWS[law_name].mean({k: np.float64(v) for k, v in theta.items()}, x), float)
    shift = 0.0 if offsets is None else offsets[seeds]
    return FitData(x=x, y=mean * np.exp(shift + rng.normal(0, noise, mean.shape)), seed=seeds)


def _recovered(fit: LawFit, truth: dict, sds: float = 3.0) -> None:
    summary = fit.summary.set_index("param")
    for name, true in truth.items():
        row = summary.loc[name]
        assert abs(row["mean"] - true) <= sds * row["sd"] + 1e-9, (name, true, row.to_dict())


@pytest.fixture(scope="module")
def power_fit():
    truth = {"E": 0.4, "A": 30.0, "alpha": 0.6}
    data = _loss_data("power", truth, {"x": GRID}, 0.02)
    return truth, data, fit_law(LAWS["power"], data, "nuts", SHORT_NUTS)


def test_nuts_recovers_a_power_law_with_diagnostics_and_a_pointwise_log_likelihood(power_fit):
    truth, data, fit = power_fit
    assert list(fit.summary.columns) == ["param", "mean", "sd", "hdi_5%", "hdi_95%", "r_hat", "ess_bulk", "p_positive", "contraction",
                                          "prior_share", "prior_tail", "identified"]
    assert list(fit.summary["param"]) == ["E", "A", "alpha"] and fit.method == "nuts" and fit.law is LAWS["power"]
    _recovered(fit, truth)
    assert fit.divergences == 0 and fit.summary["r_hat"].max() < 1.05
    assert fit.draws()["alpha"].shape == (2 * 300,)
    log_lik = fit.posterior.log_likelihood["y"]
    assert log_lik.dims == ("chain", "draw", "obs") and log_lik.shape == (2, 300, len(GRID))
    assert np.isfinite(az.loo(fit.posterior).elpd_loo)
    assert fit.posterior.posterior.attrs["law"] == "power" and fit.scales.x_ref["x"] == pytest.approx(np.exp(np.log(GRID).mean()))


def test_same_seed_same_numbers_for_every_method(power_fit):
    _, data, fit = power_fit
    pd.testing.assert_frame_equal(fit.summary, fit_law(LAWS["power"], data, "nuts", SHORT_NUTS).summary)
    svi = SamplerConfig(samples=100, chains=2, svi_steps=500, bootstrap=5)
    for method in ("svi", "huber"):
        pd.testing.assert_frame_equal(fit_law(LAWS["power"], data, method, svi).summary,
                                      fit_law(LAWS["power"], data, method, svi).summary)


def test_converged_needs_every_diagnostic(power_fit):
    _, _, short = power_fit
    fit = dataclasses.replace(short, summary=short.summary.assign(r_hat=1.0, ess_bulk=1000.0),
                              divergent=np.zeros_like(short.divergent))
    one = np.zeros_like(short.divergent)
    one[0, 0] = True  # 1 of 600 draws: above the 0.1% a harmless few may be (scaling.fit.divergence)
    assert fit.converged  # every diagnostic passes
    worse = {
        "an r_hat above 1.01": dataclasses.replace(fit, summary=fit.summary.assign(r_hat=[1.0, 1.02, 1.0])),
        "a bulk ESS below 400": dataclasses.replace(fit, summary=fit.summary.assign(ess_bulk=[900.0, 350.0, 900.0])),
        "a divergence": dataclasses.replace(fit, divergent=one),
        "an svi Pareto k above 0.7": dataclasses.replace(fit, pareto_k=0.8),
    }
    for why, failing in worse.items():
        assert not failing.converged, why
    assert dataclasses.replace(fit, pareto_k=0.5).converged
    # Diagnostics that do not apply (a bootstrap's NaN r_hat and ESS) neither pass nor fail a fit.
    assert dataclasses.replace(fit, summary=fit.summary.assign(r_hat=np.nan, ess_bulk=np.nan)).converged


def test_predictions_carry_the_observation_noise(power_fit):
    _, data, fit = power_fit
    mean, predictive = fit.predict(data.x, max_draws=400)
    assert mean.shape == predictive.shape == (400, len(GRID))
    inside = (data.y >= np.quantile(predictive, 0.05, 0)) & (data.y <= np.quantile(predictive, 0.95, 0))
    assert inside.mean() >= 0.75
    assert (predictive.std(0) > mean.std(0)).all()  # noise on top of the curve's uncertainty
    again = fit.predict(data.x, max_draws=400)
    np.testing.assert_array_equal(again[1], predictive)


def test_svi_recovers_a_chinchilla_law_and_reports_its_pareto_k():
    truth = {"E": 1.8, "A": 480.0, "B": 2100.0, "alpha": 0.35, "beta": 0.37}
    rng = np.random.default_rng(3)
    x = {"N": np.exp(rng.uniform(np.log(5e7), np.log(1e10), 120)), "D": np.exp(rng.uniform(np.log(1e9), np.log(3e11), 120))}
    fit = fit_law(LAWS["chinchilla"], _loss_data("chinchilla", truth, x, 0.01, seed=3), "svi", SamplerConfig(samples=250))
    assert fit.method == "svi" and fit.divergences == 0 and np.isfinite(fit.pareto_k)
    assert fit.posterior.posterior.attrs["pareto_k"] == fit.pareto_k
    for name, values in fit.draws().items():
        low, high = np.quantile(values, [0.05, 0.95])
        assert low <= truth[name] <= high, (name, truth[name], low, high)


def test_beta_binomial_logistic_recovers_floor_ceiling_and_midpoint():
    truth = {"floor": 0.25, "ceiling": 0.85, "x50": 300.0, "k": 2.0}
    steps = np.repeat(GRID, 2)
    rng = np.random.default_rng(5)
    n = np.full(steps.shape, 400.0)
    p = np.asarray(LAWS["logistic"].mean(truth, {"x": steps}), float)
    y = rng.binomial(n.astype(int), rng.beta(p * 200, (1 - p) * 200)) / n  # overdispersed: phi = 200
    fit = fit_law(LAWS["logistic"], FitData({"x": steps}, y, n=n), "nuts", SHORT_NUTS)
    _recovered(fit, truth)
    assert fit.divergences == 0 and "phi" in fit.posterior.posterior
    mean, predictive = fit.predict({"x": steps}, n)
    assert np.allclose(predictive * n, np.round(predictive * n)) and predictive.max() <= 1.0  # counts / n
    assert abs(np.mean((y >= np.quantile(predictive, .05, 0)) & (y <= np.quantile(predictive, .95, 0))) - 0.9) < 0.15


def test_seed_offsets_are_pooled_and_predictions_are_for_a_new_seed():
    truth = {"E": 0.4, "A": 30.0, "alpha": 0.6}
    seeds = np.repeat([0, 1, 2], len(GRID))
    offsets = np.array([-0.05, 0.0, 0.06])
    data = _loss_data("power", truth, {"x": np.tile(GRID, 3)}, 0.01, seed=7, seeds=seeds, offsets=offsets)
    fit = fit_law(LAWS["power"], data, "svi", SamplerConfig(samples=250))
    posterior = fit.posterior.posterior
    assert posterior["seed_z"].dims == ("chain", "draw", "seed") and posterior.sizes["seed"] == 3
    assert 0.01 < float(posterior["tau"].median()) < 0.2
    offsets_fit = (posterior["tau"] * posterior["seed_z"]).median(("chain", "draw")).values
    assert np.argsort(offsets_fit).tolist() == [0, 1, 2]
    mean, new_seed = fit.predict({"x": GRID})
    # A new seed's offset (spread tau) comes on top of the scatter within a seed (Student-t: sd sigma·√2).
    within = float(posterior["sigma"].median()) * np.sqrt(2)
    assert np.log(new_seed / mean).std(0).mean() > 2 * within


@pytest.mark.parametrize("name, truth, x", [
    ("rectified", {"B": 300.0, "D_l": 40.0, "beta": 0.6, "E": 1.2}, {"D": np.geomspace(200, 1.6e6, 14)}),
    ("bnsl", {"E": 0.5, "b": 20.0, "c0": 0.3, "c1": 0.5, "d1": 500.0, "f1": 0.3}, {"x": np.geomspace(10, 1e5, 30)}),
    ("multiplicative", {"A": 40.0, "alpha": 0.2, "beta": 0.3, "E": 1.0},
     {"X": np.repeat(np.geomspace(1e8, 1e10, 4), 6), "D": np.tile(np.geomspace(1e3, 1e6, 6), 4)}),
])
def test_huber_recovers_loss_laws_from_near_noiseless_data(name, truth, x):
    fit = fit_law(LAWS[name], _loss_data(name, truth, x, 0.002, seed=11), "huber", SamplerConfig(bootstrap=10))
    estimate = fit.summary.set_index("param")["mean"]
    for param, true in truth.items():
        assert estimate[param] == pytest.approx(true, rel=0.15, abs=0.02), (name, param, estimate[param])
    # A bootstrap has no chains: r_hat and ESS do not apply (NaN), and its intervals are ordered and finite.
    assert fit.summary["r_hat"].isna().all() and fit.summary["ess_bulk"].isna().all()
    assert (np.isfinite(fit.summary[["hdi_5%", "hdi_95%"]]).all().all() and (fit.summary["hdi_5%"] <= fit.summary["hdi_95%"]).all())
    assert "log_likelihood" in fit.posterior.groups()


def test_bad_inputs_are_user_errors():
    x = {"x": GRID}
    with pytest.raises(UserError, match="methods are nuts, svi, huber"):
        fit_law(LAWS["power"], FitData(x, np.ones(16)), "mcmc")
    with pytest.raises(UserError, match="needs axes N, D"):
        fit_law(LAWS["chinchilla"], FitData(x, np.ones(16)))
    with pytest.raises(UserError, match="must lie in"):
        fit_law(LAWS["logistic"], FitData(x, np.full(16, 1.5)))
    with pytest.raises(UserError, match="must be positive"):
        fit_law(LAWS["power"], FitData(x, np.full(16, -1.0)))
    with pytest.raises(UserError, match="rows"):
        FitData(x, np.ones(15))
    with pytest.raises(UserError, match="positive"):
        fit_law(LAWS["power"], FitData({"x": -GRID}, np.ones(16)))
    with pytest.raises(ValueError, match="svi_steps"):
        SamplerConfig(svi_steps=0)


def test_rows_that_name_their_runs_get_an_offset_per_run_not_per_seed_value():
    """Two cells × seeds 0 and 1: seed 0 is lucky in one cell and unlucky in the other, so a seed value
    shares no luck across cells; each run's budgets do."""
    truth = {"E": 0.4, "A": 30.0, "alpha": 0.6}
    runs = np.repeat([0, 1, 2, 3], len(GRID))
    seeds = np.repeat([0, 1, 0, 1], len(GRID))
    offsets = np.array([0.08, -0.08, -0.08, 0.08])
    x = np.tile(GRID, 4)
    mean = np.asarray(LAWS["power"].mean(truth, {"x": x}), float)
    y = mean * np.exp(offsets[runs] + np.random.default_rng(2).normal(0, 0.01, x.size))
    fit = fit_law(LAWS["power"], FitData({"x": x}, y, seed=seeds, run=runs), "svi", SamplerConfig(samples=250))
    posterior = fit.posterior.posterior
    assert posterior.sizes["seed"] == 4  # one offset per run
    offsets_fit = (posterior["tau"] * posterior["seed_z"]).median(("chain", "draw")).values
    assert (np.sign(offsets_fit) == np.sign(offsets)).all()
