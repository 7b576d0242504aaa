"""Whether the data determined each parameter (scaling.fit.identify): contraction against the prior a pooled
parameter actually has, prior–data conflicts, constant axes, ridges, and the latent draws a committed
posterior.nc is labelled from."""

from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro.infer import Predictive

from scaling.fit import identify, models
from scaling.fit.identify import CONFLICT, DATA, PRIOR, RIDGE, identification, latent_from_posterior, scales_of_posterior
from scaling.fit.infer import FitData, SamplerConfig, fit_law
from scaling.fit.laws import LAWS
from scaling.fit.refresh import refreshed_summary

SHORT_NUTS = SamplerConfig(warmup=300, samples=300, chains=2, seed=0)


def _sft_rows(quality: float = 1.0, past: float = 0.0) -> dict:
    """Six rows of the sft law's inputs in scaled units: steps and capability vary, quality and past as given."""
    step = np.array([0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
    return {"step": step, "diversity": np.array([0.5, 2.0] * 3), "quality": np.full(6, quality),
            "capability": np.array([0.5, 0.5, 1.0, 1.0, 2.0, 2.0]), "chance": np.full(6, 0.25), "past": np.full(6, past)}


def test_an_uninformed_pooled_parameter_reads_contraction_0_not_minus_a_quarter():
    """A pooled group's site is site + pool_tau·z: with no data its draws are its prior's, of variance scale² +
    POOL_TAU_SCALE². Measured against scale² alone (as before) a scale-1 site read 1 − 1.25 = −0.25."""
    law = LAWS["power"]
    x = {"x": jnp.geomspace(0.1, 10.0, 5)}
    group = jnp.array([0, 0, 1, 1, 1])
    draws = Predictive(models.law_model, num_samples=20000)(jax.random.key(0), law, x, group=group, n_groups=2)
    latent = models.group_latents(law, {k: np.asarray(v) for k, v in draws.items()}, 0)
    alpha = next(lat for lat in law.latent if lat.name == "alpha")
    assert 1 - latent[alpha.site].var() / alpha.scale**2 == pytest.approx(-0.25, abs=0.03)  # the old reading
    table = identification(law, latent, x, pooled=True)
    assert table["contraction"].abs().max() < 0.03, table
    assert (table["prior_tail"] < 0.02).all() and (table["identified"] == PRIOR).all()
    unpooled = identification(law, latent, x, pooled=False)  # the same draws against an unpooled prior: wider than it
    assert unpooled.loc["alpha", "contraction"] == pytest.approx(-0.25, abs=0.03)


def test_a_run_spread_far_in_its_priors_tail_is_a_conflict_not_a_contraction_of_0_09():
    """study-core-sft-id's run_sd_c: 2.76 [2.10, 3.38] (sd 0.405) under Gamma(2, 1/0.3), which puts 0.7% of its
    mass above 2.1. Its contraction reads 0.09 ("barely informed") where the data overrule the prior."""
    law = LAWS["sft"]
    prior = identify.site_prior(law, "run_sd_c", pooled=True)
    assert prior.sf(2.1) == pytest.approx(0.007, abs=0.0005)
    rng = np.random.default_rng(0)
    latent = {lat.site: rng.normal(lat.loc, 0.3 * lat.scale, 4000) for lat in law.latent}
    latent |= {"run_sd_T": rng.gamma(2.0, 0.3, 4000), "run_sd_c": rng.normal(2.76, 0.405, 4000)}
    table = identification(law, latent, _sft_rows(quality=0.5, past=0.5), pooled=True)
    assert table.loc["run_sd_c", "contraction"] == pytest.approx(0.09, abs=0.03)
    assert table.loc["run_sd_c", "prior_tail"] > 0.8 and table.loc["run_sd_c", "identified"] == CONFLICT
    assert table.loc["run_sd_T", "identified"] == PRIOR  # its prior's own draws: neither conflict nor data


def test_a_constant_axis_or_covariate_leaves_its_parameters_to_the_prior_however_narrow_their_draws():
    """Quality 1.0 on every row (scaled: 1, ln 1 = 0) makes the mean ignore rho and gamma; past = 0 everywhere
    ignores beta. Narrow draws (contraction ~1) must not pass them off as measured."""
    law = LAWS["sft"]
    rng = np.random.default_rng(1)
    narrow = {lat.site: rng.normal(lat.loc, 0.05 * lat.scale, 2000) for lat in law.latent}
    constant = identification(law, narrow, _sft_rows(quality=1.0, past=0.0), pooled=False)
    assert (constant["contraction"] > 0.99).all()
    assert set(constant.index[constant["identified"] == PRIOR]) == {"rho", "gamma", "beta"}
    assert (constant.drop(["rho", "gamma", "beta"])["identified"] == DATA).all()
    varying = _sft_rows(quality=0.5, past=0.5)
    varying["quality"] = np.array([0.5, 1.0] * 3)
    assert (identification(law, narrow, varying, pooled=False)["identified"] == DATA).all()


def test_a_derived_parameter_takes_the_worst_label_of_the_sites_it_is_made_of():
    """logistic's ceiling = floor + (1 − floor)·headroom has no prior of its own: headroom at its prior makes it prior."""
    law = LAWS["logistic"]
    rng = np.random.default_rng(2)
    latent = {lat.site: rng.normal(lat.loc, (1.0 if lat.name == "headroom" else 0.05) * lat.scale, 2000) for lat in law.latent}
    table = identification(law, latent, {"x": np.geomspace(0.1, 10.0, 8)}, pooled=False)
    assert table.loc["ceiling", "identified"] == PRIOR and np.isnan(table.loc["ceiling", "contraction"])
    assert table.loc["floor", "identified"] == DATA


def _chinchilla(data_share: float, seed: int) -> FitData:
    """80 points, 1.5% noise; the parameter term is 30% of the loss at the centre, the data term `data_share`."""
    rng = np.random.default_rng(seed)
    x = {"N": np.exp(rng.uniform(np.log(1e7), np.log(1e10), 80)), "D": np.exp(rng.uniform(np.log(1e9), np.log(1e12), 80))}
    e, alpha, beta = 1.8, 0.34, 0.28
    loss = e / (1 - 0.3 - data_share)
    truth = {"E": e, "A": 0.3 * loss * np.sqrt(1e17) ** alpha, "B": data_share * loss * np.sqrt(1e21) ** beta,
             "alpha": alpha, "beta": beta}
    return FitData(x, np.asarray(LAWS["chinchilla"].mean(truth, x)) * np.exp(0.015 * rng.normal(size=80)))


@pytest.fixture(scope="module")
def chinchilla_fits():
    law = LAWS["chinchilla"]
    return {share: fit_law(law, _chinchilla(share, seed=3), "nuts", SHORT_NUTS) for share in (0.005, 0.3)}


def test_a_term_below_the_noise_gets_its_parameters_labelled_and_a_well_determined_law_does_not(chinchilla_fits):
    """B·D^−beta at 0.5% of the loss, under 1.5% noise: the data pin only where the sum of the terms lies, and
    the prior places B and beta along that ridge, while contraction alone would call them informed."""
    weak = chinchilla_fits[0.005].summary.set_index("param")
    assert set(weak.loc[["B", "beta"], "identified"]) <= {RIDGE, PRIOR}, weak
    assert (weak.loc[["A", "alpha"], "identified"] == DATA).all(), weak
    strong = chinchilla_fits[0.3].summary.set_index("param")
    assert (strong["identified"] == DATA).all(), strong


def test_latent_draws_rebuilt_from_a_posteriors_reported_ones_are_the_fits_own(chinchilla_fits):
    """unscale with the reciprocal units inverts the change of units; each site's transform is then undone. The
    labels computed from the rebuilt draws are the fit's."""
    fit = chinchilla_fits[0.005]
    posterior = fit.posterior.posterior
    scales = scales_of_posterior(fit.law, posterior.attrs)
    assert scales.x_ref == pytest.approx(fit.scales.x_ref) and scales.y_scale == pytest.approx(fit.scales.y_scale)
    rebuilt = latent_from_posterior(fit.law, posterior, scales)
    for lat in fit.law.latent:
        np.testing.assert_allclose(rebuilt[lat.site], fit.latent[lat.site], rtol=1e-4, atol=1e-4)
    data = _chinchilla(0.005, seed=3)
    table = identification(fit.law, rebuilt, models.scaled_inputs(fit.law, data.x, scales), pooled=False)
    summary = fit.summary.set_index("param")
    assert list(table["identified"]) == list(summary["identified"])
    np.testing.assert_allclose(table["contraction"], summary["contraction"], atol=1e-3)


def test_a_law_whose_parameters_are_derived_cannot_be_rebuilt():
    law = LAWS["rectified"]
    with pytest.raises(ValueError, match="derives"):
        latent_from_posterior(law, {}, models.Scales({"D": 1.0}, 1.0))


def test_the_pooled_priors_quantiles_are_those_of_its_draws():
    """The pooled prior's cdf (quadrature over pool_tau) against Monte Carlo draws of site + pool_tau·z."""
    law = LAWS["power"]
    lat = law.latent[2]
    prior = identify.site_prior(law, lat.site, pooled=True)
    rng = np.random.default_rng(3)
    draws = rng.normal(lat.loc, lat.scale, 400000) + np.abs(rng.normal(0, models.POOL_TAU_SCALE, 400000)) * rng.normal(size=400000)
    for q in (identify.CONFLICT_TAIL, 0.5, 1 - identify.CONFLICT_TAIL):
        assert np.mean(draws < prior.ppf(q)) == pytest.approx(q, abs=0.002)
    assert prior.var() == pytest.approx(draws.var(), rel=0.02)


def test_the_study_fits_committed_posterior_shows_its_run_spread_conflict_and_its_constant_quality_axis():
    """fits/study-core-sft-id, relabelled from its posterior.nc (no refit): run_sd_c 2.76 [2.10, 3.38] kept
    contraction 0.09 and is a conflict; quality is 1.0 on every row, so rho and gamma are the prior's whatever
    their draws; kappa's posterior is wider than its prior; the beta the paper quotes is the data's."""
    folder = Path(__file__).resolve().parents[2] / "fits" / "study-core-sft-id"
    summary = refreshed_summary(folder).set_index(["family", "param"])
    committed = pd.read_csv(folder / "summary.csv").set_index(["family", "param"])
    pd.testing.assert_series_equal(summary["mean"], committed["mean"])
    posterior = az.from_netcdf(str(folder / "posterior.nc")).posterior
    scales = scales_of_posterior(LAWS["sft"], posterior.attrs)
    for family in ("add", "reverse", "sort"):
        spread = summary.loc[(family, "run_sd_c")]
        assert spread["contraction"] == pytest.approx(committed.loc[(family, "run_sd_c"), "contraction"])
        assert spread["contraction"] < 0.1 and spread["identified"] == CONFLICT
        assert summary.loc[(family, "rho"), "identified"] == summary.loc[(family, "gamma"), "identified"] == PRIOR
        assert summary.loc[(family, "kappa"), "contraction"] < 0 and summary.loc[(family, "kappa"), "identified"] == PRIOR
        # Against the pooled prior (variance 1 + 0.5²) an uninformed rho now reads about 0; against the site's own
        # scale² alone (as before) it read about −0.23.
        rho = latent_from_posterior(LAWS["sft"], posterior.sel(family=family), scales)["rho"]
        assert abs(summary.loc[(family, "rho"), "contraction"]) < 0.05 and 1 - rho.var() < -0.15
        assert summary.loc[(family, "beta"), "identified"] == DATA
