"""numpyro models around the laws: the law's prior in scaled units, seed offsets, and the likelihood.

The model is written once: a fit samples it, and its predictions and held-out densities replay it on the
posterior's draws (numpyro's Predictive and log_likelihood; see infer.LawFit), so they cannot drift apart.

Likelihoods (the observation site is always "y", so a posterior's log_likelihood has one variable):
- loss:                      log(y / y_scale) ~ StudentT(4, log mean' + seed offset, sigma); heavy tails
                             keep one bad evaluation from dragging the law
- accuracy with n examples:  correct ~ BetaBinomial(n, p·phi, (1 − p)·phi), p = the law with the seed
                             offset on the logit; finite test sets are binomial noise, and phi lets runs
                             scatter more than that (phi → ∞ is the Binomial)
- accuracy without n:        y ~ StudentT(4, p, sigma), on the value (accuracies of exactly 0 or 1 are fine)
Runs (grid cells, when the rows name them; else seeds, when the data hold several): a law that names
run effects (`Law.run_effects`, e.g. the SFT law's log t50 and ceiling logit) moves each of those
parameters per run by u_r = run_sd·z_r; any other law gets one offset_r = tau·z_r on the logit or log
loss. Either is shared by every budget of the run: partial pooling, written non-centred, with a
zero-avoiding prior on the spread (see TAU_MODE, RUN_SD_MODE) so NUTS does not meet the funnel. (The
constant offset's sites keep the names `tau` and `seed_z`, and the dimension `seed`, whichever unit they
hold.)
Groups (`scaling fit --by COLUMN --pool`): every latent site varies by group around a shared mean,
site_g = site + pool_tau_site·pool_z_site[g], pool_z ~ Normal(0, 1), pool_tau ~ HalfNormal(POOL_TAU_SCALE):
groups with little data borrow strength from the others, and groups that differ are let differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logit
from numpyro.infer import Predictive

from scaling.fit.laws import Law

STUDENT_NU = 4.0
OBSERVED = "y"  # the observation site, in every model
MEAN = "mean"  # deterministic site: the law's curve at each row, before run effects and offsets (scaled units)
SIGMA = "sigma"  # scatter: of log loss, or of an accuracy given without n
LOG_PHI = "log_phi"  # Beta-Binomial concentration, on the log scale
TAU = "tau"  # spread of the per-seed offsets
SEED_Z = "seed_z"  # standardized per-seed offsets
# Prior scales of the noise terms, in the units each is used in.
SIGMA_PRIOR = {"loss": 0.5, "accuracy": 0.2}  # HalfNormal: log-loss scatter up to ~1, accuracy scatter up to ~0.4
# Run spread tau ~ Gamma(2, 1/mode): offsets on log loss (mode 2%) or on the logit of accuracy (mode 0.1).
# Zero-avoiding (Chung et al. 2013): with a handful of runs the data barely inform tau, and a prior with
# mass at 0 makes the funnel (tau → 0, offsets → 0) that NUTS diverges in. Measured on the reference
# grid: a mode of 0.5 lifts the rollout's 90% coverage from 0.79 to 0.88 (tau 0.42 instead of 0.23), but
# makes fits of two runs per group diverge; it waits for the sampler work of issue 16.
TAU_MODE = {"loss": 0.02, "accuracy": 0.1}
# Spread of a run effect (Law.run_effects) ~ Gamma(2, 1/RUN_SD_MODE): mode 0.3, mean 0.6, 99% below 2 (on
# log t50: runs whose take-off differs by a factor e^2 ~ 7 stay in reach; at 512 steps one reference cell
# scored 0.05 and 0.55 across two seeds). Zero-avoiding, as TAU_MODE.
RUN_SD_MODE = 0.3
RUN_SD = "run_sd_"  # + parameter: spread of its run effects
RUN_Z = "run_z_"  # + parameter: standardized run effects
LOG_PHI_PRIOR = (np.log(100.0), 1.5)  # Normal: phi from ~5 (much overdispersed) to ~2000 (close to Binomial)
PROB_EPS = 1e-6  # keeps probabilities off 0 and 1, where the logit and Beta parameters break
POOL_TAU = "pool_tau_"  # + site: spread of a latent site across pooled groups
POOL_Z = "pool_z_"  # + site: standardized per-group deviations of a latent site
# On the unconstrained latent scale, where the priors have sd 1-1.5: groups a factor ~e apart in an
# amplitude, or ±0.5 in a logit, are ordinary; HalfNormal keeps "no difference" (tau → 0) in reach.
POOL_TAU_SCALE = 0.5


@dataclass(frozen=True)
class Scales:
    """The units the priors are written in: each axis over its geometric mean, a loss over its median."""

    x_ref: dict[str, float]  # geometric mean of each axis
    y_scale: float  # median loss; 1 for accuracies, which are already on a common scale


def scales_of(law: Law, x: dict[str, np.ndarray], y: np.ndarray) -> Scales:
    x_ref = {axis: float(np.exp(np.mean(np.log(x[axis])))) for axis in law.axes}
    return Scales(x_ref, float(np.median(y)) if law.response == "loss" else 1.0)


def scaled_inputs(law: Law, x: dict[str, np.ndarray], scales: Scales) -> dict[str, jnp.ndarray]:
    """The law's axes over their reference values, and its covariates as given."""
    return ({axis: jnp.asarray(np.asarray(x[axis], float) / scales.x_ref[axis]) for axis in law.axes}
            | {name: jnp.asarray(np.asarray(x[name], float)) for name in law.covariates})


def observed(law: Law, y: np.ndarray, n: np.ndarray | None, scales: Scales) -> jnp.ndarray:
    """What the likelihood sees: log(y / y_scale) for a loss, correct counts with n, else the accuracy."""
    y = np.asarray(y, float)
    if law.response == "loss":
        return jnp.asarray(np.log(y / scales.y_scale))
    return jnp.asarray(np.round(y * n) if n is not None else y)


def law_model(law: Law, x, y=None, n=None, seed=None, n_seeds: int = 0, group=None, n_groups: int = 0):
    """The law in scaled units with its prior, optional seed offsets, optional partial pooling of every
    latent site across groups (`group` codes per row), and the likelihood for its response."""
    z = {lat.site: numpyro.sample(lat.site, dist.Normal(lat.loc, lat.scale)) for lat in law.latent}
    if n_groups > 1:
        z = {site: value + pooled_deviation(site, n_groups)[group] for site, value in z.items()}
    theta = law.scaled(z)
    rows = jnp.shape(x[law.axes[0]])
    mean = numpyro.deterministic(MEAN, jnp.broadcast_to(law.mean(theta, x), rows))
    offset = 0.0
    if n_seeds > 1 and law.run_effects:
        theta = law.for_runs(theta, {param: run_effect(param, n_seeds)[seed] for param, _ in law.run_effects})
        mean = jnp.broadcast_to(law.mean(theta, x), rows)
    elif n_seeds > 1:
        tau = numpyro.sample(TAU, dist.Gamma(2.0, 1.0 / TAU_MODE[law.response]))
        with numpyro.plate("seeds", n_seeds):
            offset = (tau * numpyro.sample(SEED_Z, dist.Normal(0.0, 1.0)))[seed]
    if law.response == "loss":
        sigma = numpyro.sample(SIGMA, dist.HalfNormal(SIGMA_PRIOR["loss"]))
        likelihood = dist.StudentT(STUDENT_NU, jnp.log(mean) + offset, sigma)
    else:
        p = jnp.clip(jax.nn.sigmoid(logit(jnp.clip(mean, PROB_EPS, 1 - PROB_EPS)) + offset), PROB_EPS, 1 - PROB_EPS)
        if n is not None:
            phi = jnp.exp(numpyro.sample(LOG_PHI, dist.Normal(*LOG_PHI_PRIOR)))
            likelihood = dist.BetaBinomial(p * phi, (1 - p) * phi, n)
        else:
            likelihood = dist.StudentT(STUDENT_NU, p, numpyro.sample(SIGMA, dist.HalfNormal(SIGMA_PRIOR["accuracy"])))
    with numpyro.plate("obs", mean.shape[0]):
        numpyro.sample(OBSERVED, likelihood, obs=y)


def run_effect(param: str, n_runs: int):
    """Each run's effect on a parameter, run_sd·z_r, non-centred."""
    spread = numpyro.sample(RUN_SD + param, dist.Gamma(2.0, 1.0 / RUN_SD_MODE))
    with numpyro.plate("seeds", n_runs):
        return spread * numpyro.sample(RUN_Z + param, dist.Normal(0.0, 1.0))


def pooled_deviation(site: str, n_groups: int):
    """Each group's deviation from a latent site's shared value, non-centred (no funnel for NUTS)."""
    tau = numpyro.sample(POOL_TAU + site, dist.HalfNormal(POOL_TAU_SCALE))
    with numpyro.plate("pool", n_groups):
        return tau * numpyro.sample(POOL_Z + site, dist.Normal(0.0, 1.0))


def group_latents(law: Law, latent: dict, g: int) -> dict:
    """Group g's latent sites (shared value plus its deviation) from a pooled fit's draws."""
    return {lat.site: latent[lat.site] + latent[POOL_TAU + lat.site] * latent[POOL_Z + lat.site][..., g]
            for lat in law.latent}


def prior_predictive(law: Law, x, key, count: int, n=None, seed=None, n_seeds: int = 0) -> dict:
    """`count` draws of every site from the prior, the observations "y" included (scaled units).

    Simulation-based calibration draws its truths and data here, from the very model that is fitted.
    """
    # Counts need whole numbers of trials to be drawn (the likelihood itself takes n as floats).
    n = None if n is None else jnp.asarray(n).astype(int)
    return Predictive(partial(law_model, law), num_samples=count)(key, x=x, n=n, seed=seed, n_seeds=n_seeds)
