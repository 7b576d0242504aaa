"""Predictions and held-out densities are the numpyro model's own: for every law, a small fitted posterior's
`LawFit.predict` and `LawFit.log_predictive` against numpyro's Predictive and log_likelihood run directly on
law_model with the same posterior draws."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from numpyro.infer import Predictive
from numpyro.infer.util import log_likelihood

from scaling.fit import models
from scaling.fit.infer import FitData, SamplerConfig, fit_law, fit_pooled
from scaling.fit.laws import LAWS

# The quickest posterior: a few NUTS draws (what predictions replay, converged or not).
QUICK = SamplerConfig(warmup=20, samples=20, chains=2, bootstrap=8)
RUNS, BUDGETS = 3, 6
# Densities replayed in float64 against those the fit computed in float32: a Beta-Binomial's log-gamma
# differences at a large concentration phi keep ~1e-3 of float32's digits.
FLOAT32 = dict(rtol=1e-3, atol=1e-2)


def _rows(law) -> tuple[dict, np.ndarray]:
    """Three runs of six budgets: every axis spread over a decade, the covariates at plausible values."""
    rng = np.random.default_rng(0)
    m = RUNS * BUDGETS
    steps = np.tile(np.geomspace(10.0, 1e4, BUDGETS), RUNS)
    x = {axis: steps if i == 0 else rng.uniform(0.5, 5.0, m) for i, axis in enumerate(law.axes)}
    if "quality" in x:
        x["quality"] = rng.uniform(0.3, 1.0, m)
    x |= {"chance": np.full(m, 0.1), "past": np.clip(np.log(steps / 300.0), 0.0, None)}
    return {name: x[name] for name in law.inputs}, np.repeat(np.arange(RUNS), BUDGETS)


def _data(law, key) -> FitData:
    """Rows drawn from the law's own prior predictive (runs included), so that every law has data it can fit."""
    x, run = _rows(law)
    n = np.full(len(run), 50.0) if law.response == "accuracy" else None
    scales = models.Scales({a: float(np.exp(np.log(x[a]).mean())) for a in law.axes}, 1.0)
    drawn = models.prior_predictive(law, models.scaled_inputs(law, x, scales), key, 1,
                                    n=None if n is None else jnp.asarray(n), seed=jnp.asarray(run), n_seeds=RUNS)
    y = np.asarray(drawn[models.OBSERVED][0], float)
    y = np.exp(y) if law.response == "loss" else y / n
    return FitData(x, y, n, run=run, run_labels=np.array([f"run{r}" for r in run]))


def _flat(fit) -> dict:
    return {site: np.asarray(v, np.float64).reshape(-1, *v.shape[2:]) for site, v in fit.latent.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LAWS))
def test_predictions_and_densities_are_the_numpyro_models_own(name):
    law = LAWS[name]
    data = _data(law, jax.random.key(7))
    fit = fit_law(law, data, "nuts", QUICK)
    samples, total = _flat(fit), QUICK.samples * QUICK.chains
    model = partial(models.law_model, law)
    with jax.enable_x64(True):
        kwargs = {"x": models.scaled_inputs(law, data.x, fit.scales), "seed": jnp.asarray(data.run), "n_seeds": RUNS,
                  "n": None if data.n is None else jnp.asarray(data.n.astype(int))}
        direct = Predictive(model, samples, return_sites=[models.MEAN, models.OBSERVED], parallel=True)(
            jax.random.key(3), **kwargs)
        observed = models.observed(law, data.y, data.n, fit.scales)
        densities = np.asarray(log_likelihood(model, samples, parallel=True, **kwargs | {
            "y": observed, "n": None if data.n is None else jnp.asarray(data.n)})[models.OBSERVED])

    mean, draws = fit.predict(data.x, data.n, seed=3, max_draws=total, runs=data.run_labels)
    y_scale = fit.scales.y_scale
    np.testing.assert_allclose(mean, y_scale * np.asarray(direct[models.MEAN]), rtol=1e-9)
    drawn = np.asarray(direct[models.OBSERVED], float)
    np.testing.assert_allclose(draws, y_scale * np.exp(drawn) if law.response == "loss" else drawn / data.n, rtol=1e-9)
    # The curve is the law in original units at the reported parameters (a run's own effects come on top).
    with jax.enable_x64(True):
        curve = law.mean({k: v[:, None] for k, v in fit.draws().items()}, {a: v[None, :] for a, v in data.x.items()})
    np.testing.assert_allclose(mean, np.asarray(curve), rtol=1e-4, atol=1e-9)

    log_p = fit.log_predictive(data.x, data.y, data.n, max_draws=total, runs=data.run_labels)
    jacobian = np.log(data.y) if law.response == "loss" else 0.0
    np.testing.assert_allclose(log_p, densities - jacobian, rtol=1e-10, atol=1e-10)
    # The same densities PSIS-LOO reads: the posterior's log_likelihood group, computed by the fit in float32.
    pointwise = fit.posterior.log_likelihood[models.OBSERVED].values.reshape(total, -1)
    np.testing.assert_allclose(log_p + jacobian, pointwise, **FLOAT32)


def test_a_run_the_fit_has_not_seen_gets_fresh_effects_drawn_from_the_fitted_spread():
    law = LAWS["sft"]
    data = _data(law, jax.random.key(7))
    fit = fit_law(law, data, "nuts", QUICK)
    rows = data.run == 0
    x = {a: v[rows] for a, v in data.x.items()}
    known = fit.log_predictive(x, data.y[rows], data.n[rows], runs=data.run_labels[rows])
    fresh = fit.log_predictive(x, data.y[rows], data.n[rows], runs=np.full(rows.sum(), "unseen"))
    assert known.shape == fresh.shape and np.isfinite(fresh).all() and not np.allclose(known, fresh)
    # A fresh run's effect z ~ Normal(0, 1), scaled by the fitted spread: the curves spread wider than a known run's.
    known_draws = fit.predict(x, data.n[rows], runs=data.run_labels[rows])[1]
    fresh_draws = fit.predict(x, data.n[rows], runs=np.full(rows.sum(), "unseen"))[1]
    assert fresh_draws.std(0).mean() > known_draws.std(0).mean()
    np.testing.assert_array_equal(fresh_draws, fit.predict(x, data.n[rows], runs=np.full(rows.sum(), "unseen"))[1])


@pytest.mark.slow
def test_each_pooled_group_predicts_with_its_own_parameters():
    law = LAWS["logistic"]
    x = np.tile(np.geomspace(10, 1e4, 8), 2)
    group = np.repeat([0, 1], 8)
    n = np.full(16, 100.0)
    p = np.where(group == 0, 0.2, 0.4) + 0.5 / (1 + (x / 300) ** -2)
    y = np.random.default_rng(1).binomial(100, p) / n
    fits = fit_pooled(law, FitData({"x": x}, y, n, group=group), "nuts", QUICK)
    for g, fit in enumerate(fits):
        rows = group == g
        mean, _ = fit.predict({"x": x[rows]}, n[rows])
        with jax.enable_x64(True):
            curve = law.mean({k: v[:, None] for k, v in fit.draws().items()}, {"x": x[rows][None, :]})
        np.testing.assert_allclose(mean, np.asarray(curve), rtol=1e-4, atol=1e-9)
        log_p = fit.log_predictive({"x": x[rows]}, y[rows], n[rows])
        np.testing.assert_allclose(log_p, fit.posterior.log_likelihood[models.OBSERVED].values.reshape(-1, rows.sum()),
                                   **FLOAT32)


@pytest.mark.parametrize("name", ["power", "logistic"])
def test_a_huber_fit_scores_its_refits_through_the_same_model(name):
    """A loss (or an accuracy without n) gets the residuals' scale as sigma; counts the Binomial limit."""
    law = LAWS[name]
    data = _data(law, jax.random.key(7))
    fit = fit_law(law, FitData(data.x, data.y, data.n), "huber", QUICK)
    pointwise = fit.posterior.log_likelihood[models.OBSERVED].values.reshape(QUICK.bootstrap, -1)
    log_p = fit.log_predictive(data.x, data.y, data.n)
    jacobian = np.log(data.y) if law.response == "loss" else 0.0
    np.testing.assert_allclose(log_p + jacobian, pointwise, rtol=1e-10)
    if data.n is not None:
        mean, _ = fit.predict(data.x, data.n)
        binomial = st.binom.logpmf(np.round(data.y * data.n), data.n, np.clip(mean, models.PROB_EPS, 1 - models.PROB_EPS))
        np.testing.assert_allclose(pointwise, binomial, atol=1e-3)
