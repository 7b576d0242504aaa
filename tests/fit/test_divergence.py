"""The divergence verdict: a few divergent transitions pass only when they move no reported quantity."""

import dataclasses

import numpy as np

from scaling.fit.divergence import MAX_SHARE, judged
from scaling.fit.infer import FitData, SamplerConfig, fit_law
from scaling.fit.laws import LAWS

CHAINS, DRAWS = 4, 2000


def _chains(seed: int) -> np.ndarray:
    """Draws of one site as 4 autocorrelated chains (AR(1), correlation 0.7: like NUTS draws of a law's site)."""
    rng = np.random.default_rng(seed)
    out = np.empty((CHAINS, DRAWS))
    out[:, 0] = rng.normal(size=CHAINS)
    for i in range(1, DRAWS):
        out[:, i] = 0.7 * out[:, i - 1] + np.sqrt(1 - 0.7**2) * rng.normal(size=CHAINS)
    return out


def _at_top(values: np.ndarray, count: int) -> np.ndarray:
    """A divergence at each of the `count` highest draws of a site."""
    divergent = np.zeros(values.shape, bool)
    divergent.reshape(-1)[np.argsort(values.reshape(-1))[-count:]] = True
    return divergent


def test_divergences_where_no_reported_quantity_leans_pass_and_say_where():
    log_phi, log_k = _chains(0), _chains(1)
    verdict = judged(_at_top(log_phi, 5), {"log_phi": log_phi, "log_k": log_k}, {"k": np.exp(log_k)}, 0.9)
    assert verdict.harmless and verdict.count == 5 and verdict.shift < 0.1
    assert "5 at log_phi above its 9" in verdict.where and "harmless" in verdict.describe()


def test_divergences_in_a_reported_parameters_tail_are_refused():
    log_k = _chains(1)
    log_k[0, 1000:1140] = 2.2 + 0.4 * np.arange(140) / 140  # a long excursion into the top tail, diverging along it
    divergent = np.zeros(log_k.shape, bool)
    divergent[0, 1010:1140:20] = True  # 7 of 8,000 draws: rare enough, but the 90% bound rests on their region
    verdict = judged(divergent, {"log_k": log_k}, {"k": np.exp(log_k)}, 0.9)
    assert verdict.count <= MAX_SHARE * verdict.draws and verdict.shift >= 0.1 and not verdict.harmless
    assert "log_k above its" in verdict.where and verdict.moved == "k" and "refused" in verdict.describe()


def test_more_than_a_few_divergences_are_refused_whatever_they_move():
    log_phi, log_k = _chains(0), _chains(1)
    verdict = judged(_at_top(log_phi, 9), {"log_phi": log_phi}, {"k": np.exp(log_k)}, 0.9)
    assert verdict.shift < 0.1 and not verdict.harmless and "which these exceed" in verdict.describe()


def test_no_divergences_pass():
    assert judged(np.zeros((CHAINS, DRAWS), bool), {}, {}, 0.9).harmless


def test_a_fits_divergences_are_judged_on_its_own_sites_and_reported_parameters():
    """On a real NUTS fit: one divergence in 2,000 draws, in the bulk, passes and says where it is judged; three
    (0.15%) are refused, and the fit with them does not count as converged."""
    x = np.geomspace(10, 1e4, 16)
    y = (0.4 + 30.0 * x**-0.6) * np.exp(np.random.default_rng(0).normal(0, 0.02, x.shape))
    fit = fit_law(LAWS["power"], FitData({"x": x}, y), "nuts", SamplerConfig(warmup=300, samples=1000, chains=2))
    assert fit.divergences == 0 and fit.converged
    median_draw = np.argsort(fit.latent["log_alpha"].reshape(-1))[1000]
    one = np.zeros_like(fit.divergent)
    one.reshape(-1)[median_draw] = True
    judged_one = dataclasses.replace(fit, divergent=one).divergence
    assert judged_one.count == 1 and judged_one.harmless and judged_one.moved in ("E", "A", "alpha")
    assert dataclasses.replace(fit, divergent=one).converged
    three = np.zeros_like(fit.divergent)
    three[1, [100, 500, 900]] = True
    refused = dataclasses.replace(fit, divergent=three)
    assert not refused.divergence.harmless and not refused.converged
