"""Whether the data determined each reported parameter, and the one label `summary.csv` carries for it.

Four measurements per parameter, all against the prior the parameter actually has (a pooled group's
latent site is site + pool_tau·z with pool_tau ~ HalfNormal(POOL_TAU_SCALE): prior variance scale² +
POOL_TAU_SCALE²; a run-effect spread keeps its Gamma prior):
- contraction: 1 − posterior variance / prior variance (near 0: the interval is the prior's);
- prior share: how fast the posterior variance shrinks as the prior is power-scaled (p(θ)^a, −d log Var / da
  at a = 1: Kallioinen et al. 2023's prior sensitivity), in its Gaussian form (Σ P Σ)_ii / Σ_ii over the
  law's latent sites (Σ their posterior covariance, P the prior precision). Alone it equals 1 − contraction;
  where the data pin only a combination of parameters (a term below the noise: B·D^−beta at 1% of the loss),
  the posterior follows the prior along that ridge, and the prior share stays high while contraction reads
  "informed";
- prior tail: the share of posterior draws beyond the prior's CONFLICT_TAIL quantiles (a prior–data conflict:
  the posterior sits where the prior has almost no mass, and contraction cannot say so);
- constant: the law's mean over the fitted rows does not move with the parameter at all (a constant axis,
  e.g. quality 1.0 everywhere for rho and gamma, or a covariate that is 0 everywhere for beta).

Pure functions of (law, latent draws per site in scaled units, pooled or not, the fitted rows' scaled
inputs), so a committed posterior.nc can be labelled without refitting: `latent_from_posterior` rebuilds
its latent draws from the reported ones.
"""

from __future__ import annotations

import math
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import optimize, stats

from scaling.fit.laws import Law
from scaling.fit.models import POOL_TAU_SCALE, RUN_SD, RUN_SD_MODE, Scales

# The labels, from trusted to not: `data` the data determine it; `ridge` the data pin only a combination it is
# part of and the prior places it along that ridge; `prior` the data cannot inform it (constant axis, or
# contraction below UNIDENTIFIED); `conflict` the posterior sits where the prior has almost no mass.
DATA, RIDGE, PRIOR, CONFLICT = "data", "ridge", "prior", "conflict"
SEVERITY = (DATA, RIDGE, PRIOR, CONFLICT)  # a derived parameter takes the worst label of the sites it is made of
# What a label tells the reader of a fit, as `scaling fit` prints it beside the parameters that carry it.
MEANINGS = {RIDGE: "the data pin only a combination they are part of, and the prior places them along it: read "
                   "their intervals as the prior's, not as measurements",
            PRIOR: "the data cannot inform them (a constant axis or covariate, or the data narrowed the prior by "
                   "less than half): their intervals are the prior's",
            CONFLICT: "the posterior sits where the prior has almost no mass (a prior-data conflict): the prior or "
                      "the model is wrong for these data"}
NOT_APPLICABLE = "n/a"  # a bootstrap (huber) has no prior to measure against
UNIDENTIFIED = 0.5  # contraction below this: the data narrowed the prior by less than half (in variance)
# Prior share at or above this: the prior sets at least half of the posterior variance. Alone it is the same
# rule as contraction < UNIDENTIFIED; on a ridge it is the one that speaks.
PRIOR_SHARE_MAX = 0.5
CONFLICT_TAIL = 0.005  # the prior's 0.5% and 99.5% quantiles bound where it has its mass
CONFLICT_SHARE = 0.5  # a conflict: at least half of the posterior (its median) beyond one of them
CONSTANT = 1e-6  # a site whose largest effect on the mean is below this share of the largest site's: no effect
SENSITIVITY_DRAWS = 64  # posterior draws the mean's sensitivity is evaluated at
_TAU_NODES = 256  # quadrature nodes over pool_tau for the pooled prior's quantiles
COLUMNS = ["contraction", "prior_share", "prior_tail", "identified"]


def label(contraction: float, prior_share: float, prior_tail: float, constant: bool) -> str:
    """The one rule behind `identified`: a constant axis is prior; a posterior beyond the prior's tails is a
    conflict; contraction below UNIDENTIFIED (or below 0: wider than the prior) is prior; a prior share at or
    above PRIOR_SHARE_MAX is a ridge; the rest is data."""
    if constant:
        return PRIOR
    if prior_tail >= CONFLICT_SHARE:
        return CONFLICT
    if not contraction >= UNIDENTIFIED:
        return PRIOR
    if prior_share >= PRIOR_SHARE_MAX:
        return RIDGE
    return DATA


def site_prior(law: Law, site: str, pooled: bool):
    """The prior a latent site (or a run-effect spread) has as fitted, with its var() and ppf(q): Normal(loc,
    scale), widened by the pool's spread for a pooled group (site + pool_tau·z), or Gamma(2, 1/RUN_SD_MODE) for
    a run-effect spread."""
    if site.startswith(RUN_SD):
        return stats.gamma(2.0, scale=RUN_SD_MODE)
    lat = next(lat for lat in law.latent if lat.site == site)
    return _PooledNormal(lat.loc, lat.scale) if pooled else stats.norm(lat.loc, lat.scale)


class _PooledNormal:
    """site + pool_tau·z, site ~ Normal(loc, scale), pool_tau ~ HalfNormal(POOL_TAU_SCALE), z ~ Normal(0, 1): a
    scale mixture of Normals, its cdf by quadrature over pool_tau's quantiles."""

    def __init__(self, loc: float, scale: float):
        self.loc, self.scale = loc, scale
        taus = stats.halfnorm.ppf((np.arange(_TAU_NODES) + 0.5) / _TAU_NODES, scale=POOL_TAU_SCALE)
        self._sds = np.sqrt(scale**2 + taus**2)

    def var(self) -> float:
        return self.scale**2 + POOL_TAU_SCALE**2  # E[pool_tau²] = POOL_TAU_SCALE² for a HalfNormal

    def cdf(self, v: float) -> float:
        return float(stats.norm.cdf((v - self.loc) / self._sds).mean())

    def ppf(self, q: float) -> float:
        wide = 10 * math.sqrt(self.var())
        return optimize.brentq(lambda v: self.cdf(v) - q, self.loc - wide, self.loc + wide, xtol=1e-10)


def _flat(latent: dict, site: str) -> np.ndarray:
    return np.asarray(latent[site], float).reshape(-1)


def identification(law: Law, latent: dict, x_scaled: dict, pooled: bool) -> pd.DataFrame:
    """contraction, prior_share, prior_tail and the label of every reported parameter (law.params, then the
    run-effect spreads present in `latent`), indexed by parameter.

    `latent`: draws of the law's latent sites (for a pooled fit, one group's: shared value plus its deviation)
    and of any `run_sd_*`, any leading shape; `x_scaled`: the fitted rows' inputs as the model saw them
    (models.scaled_inputs). A parameter `derive` computes from several sites has no prior of its own: its
    measurements are NaN and its label the worst of those sites'.
    """
    sites = [lat.site for lat in law.latent]
    z = np.stack([_flat(latent, site) for site in sites], axis=1)  # (S, K)
    priors = [site_prior(law, site, pooled) for site in sites]
    variance = np.array([p.var() for p in priors])
    posterior_cov = np.atleast_2d(np.cov(z, rowvar=False))
    contraction = 1.0 - np.diag(posterior_cov) / variance
    prior_share = np.diag(posterior_cov @ np.diag(1.0 / variance) @ posterior_cov) / np.diag(posterior_cov)
    tails = np.array([_prior_tail(z[:, k], p) for k, p in enumerate(priors)])
    constant = _constant_sites(law, z, x_scaled)
    by_site = {site: (contraction[k], prior_share[k], tails[k], label(contraction[k], prior_share[k], tails[k], constant[k]))
               for k, site in enumerate(sites)}
    rows = {}
    own = {lat.name: lat.site for lat in law.latent}
    made_of = _made_of(law, np.median(z, axis=0)) if set(law.params) - set(own) else {}
    for param in law.params:
        if param in own:
            rows[param] = by_site[own[param]]
        else:
            worst = max((by_site[s][3] for s in made_of[param]), key=SEVERITY.index, default=DATA)
            rows[param] = (np.nan, np.nan, np.nan, worst)
    for spread in (RUN_SD + param for param, _ in law.run_effects):
        if spread in latent:
            rows[spread] = spread_identification(_flat(latent, spread), site_prior(law, spread, pooled))
    return pd.DataFrame.from_dict(rows, orient="index", columns=COLUMNS)


def spread_identification(draws: np.ndarray, prior) -> tuple[float, float, float, str]:
    """contraction, prior_share, prior_tail and the label of a spread drawn alone from its own prior (a run effects'
    or an item effects' Gamma): nothing else trades against it, so its prior share is 1 − contraction."""
    draws = np.asarray(draws, float).reshape(-1)
    c, tail = 1.0 - draws.var() / prior.var(), _prior_tail(draws, prior)
    return c, 1.0 - c, tail, label(c, 1.0 - c, tail, False)


def _prior_tail(draws: np.ndarray, prior) -> float:
    """The larger share of draws beyond the prior's lower or upper CONFLICT_TAIL quantile."""
    low, high = prior.ppf(CONFLICT_TAIL), prior.ppf(1.0 - CONFLICT_TAIL)
    return float(max((draws < low).mean(), (draws > high).mean()))


def _constant_sites(law: Law, z: np.ndarray, x_scaled: dict) -> np.ndarray:
    """Per latent site, whether the law's mean over the fitted rows ignores it: its gradient with respect to the
    site, at posterior draws, is 0 (to CONSTANT of the largest site's) on every row."""
    keep = np.unique(np.linspace(0, len(z) - 1, min(len(z), SENSITIVITY_DRAWS)).round().astype(int))
    # Distinct rows only: an item-level table repeats each run's inputs for every item.
    names = list(x_scaled)
    distinct = np.unique(np.stack([np.asarray(x_scaled[name], float) for name in names], axis=1), axis=0)
    x = {name: jnp.asarray(distinct[:, i]) for i, name in enumerate(names)}
    jacobian = _mean_jacobian(law)(jnp.asarray(z[keep], jnp.float32), x)  # (draws, rows, K)
    effect = np.nan_to_num(np.abs(np.asarray(jacobian)), nan=np.inf).max(axis=(0, 1))
    return effect <= CONSTANT * effect.max()


@lru_cache(maxsize=32)
def _mean_jacobian(law: Law):
    """d mean / d latent sites at each row, for a batch of draws: one compiled program per law (and shape)."""
    sites = [lat.site for lat in law.latent]

    def mean(vector, x):
        return law.mean(law.scaled(dict(zip(sites, vector))), x)

    return jax.jit(jax.vmap(jax.jacfwd(mean), in_axes=(0, None)))


def _made_of(law: Law, z_median: np.ndarray) -> dict[str, list[str]]:
    """The latent sites each scaled parameter moves with (its gradient at the posterior median is not 0)."""
    sites = [lat.site for lat in law.latent]
    jacobian = jax.jacfwd(lambda vector: law.scaled(dict(zip(sites, vector))))(jnp.asarray(z_median, jnp.float32))
    return {name: [s for s, d in zip(sites, np.asarray(jacobian[name])) if d != 0] for name in jacobian}


def latent_from_posterior(law: Law, posterior, scales: Scales) -> dict[str, np.ndarray]:
    """The latent draws (scaled units, per site) behind a posterior's reported ones, for a law without `derive`;
    run-effect spreads as they are. `posterior`: one group's draws of the law's parameters (a mapping name ->
    array, e.g. an xarray Dataset selected to one group).

    Every law is equivariant under the change of units (laws.py), so unscale with the reciprocal units is its
    inverse; each site's transform is then undone (log, logit, identity).
    """
    if {lat.name for lat in law.latent} != set(law.params):
        raise ValueError(f"law {law.name} derives its parameters from other sites: its latent draws are not recoverable")
    theta = {name: np.asarray(posterior[name], np.float64) for name in law.params}
    with jax.enable_x64(True):
        scaled = law.unscale(theta, {axis: 1.0 / v for axis, v in scales.x_ref.items()}, 1.0 / scales.y_scale)
        inverse = {"log": jnp.log, "logit": jax.scipy.special.logit, "identity": lambda v: v}
        out = {lat.site: np.asarray(inverse[lat.transform](jnp.asarray(scaled[lat.name])), float) for lat in law.latent}
    return out | {name: np.asarray(posterior[name], float) for name in (RUN_SD + p for p, _ in law.run_effects)
                  if name in posterior}


def scales_of_posterior(law: Law, attrs: dict) -> Scales:
    """The units a fit's priors were written in, from its posterior's attributes (x_ref_AXIS, y_scale)."""
    # An accuracy is on its own scale (models.scales_of): item-level posteriors do not record it.
    y_scale = attrs["y_scale"] if law.response == "loss" else attrs.get("y_scale", 1.0)
    return Scales({axis: float(attrs[f"x_ref_{axis}"]) for axis in law.axes}, float(y_scale))
