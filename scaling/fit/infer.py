"""NUTS fits of saturating laws in steps, one curve per group, with diagnostics and summary.

Loss, `power` law (x is steps divided by `x_ref`, their geometric mean, and s is the median
response, so the priors are scale-free and weakly informative):
    E_g / s     ~ HalfNormal(1)        floor: the loss no amount of steps removes
    A_g / s     ~ LogNormal(0, 1.5)    excess over the floor at x_ref
    alpha_g     ~ LogNormal(log 0.5, 1) decay exponent
    sigma       ~ HalfNormal(0.5)      scatter of log y around the law, shared by the groups
    log y       ~ StudentT(nu=4, log(E_g + A_g x^-alpha_g), sigma)   heavy tails for outlying evaluations

Accuracy, `accuracy` law (acc = C / (1 + (steps / x50)^-k); eval noise of n graded examples is
modeled, not ignored):
    C_g          ~ Beta(2, 1)                     ceiling, likely high but not assumed to be 1
    log x50_g    ~ Normal(log x_ref, 2)           steps to half the ceiling
    k_g          ~ LogNormal(log 2, 1)            steepness (the power of the early rise)
    correct      ~ Binomial(n, C_g / (1 + (steps / x50_g)^-k_g))
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from numpyro.infer import MCMC, NUTS

from scaling.fit.laws import saturating_accuracy, saturating_power

PARAMS = ("E", "A", "alpha")
ACCURACY_PARAMS = ("C", "x50", "k")
STUDENT_NU = 4.0
# Diagnostics thresholds (Vehtari et al. 2021): split r_hat and bulk effective sample size.
MAX_R_HAT = 1.01
MIN_ESS_BULK = 400


@dataclass(frozen=True)
class SamplerConfig:
    """NUTS settings; chains run vectorized on one device."""

    warmup: int = 1000  # adaptation steps per chain
    samples: int = 1000  # kept draws per chain
    chains: int = 4  # independent chains, for r_hat
    seed: int = 0  # same seed, same numbers

    def __post_init__(self) -> None:
        if min(self.warmup, self.samples) < 1 or self.chains < 1:
            raise ValueError(f"SamplerConfig needs positive warmup, samples and chains, got {self}")


def power_law_model(x, group, n_groups: int, y_scale: float, log_y=None):
    """Grouped saturating power law with a Student-t likelihood on log y."""
    with numpyro.plate("group", n_groups):
        E = y_scale * numpyro.sample("E_scaled", dist.HalfNormal(1.0))
        A = y_scale * numpyro.sample("A_scaled", dist.LogNormal(0.0, 1.5))
        alpha = numpyro.sample("alpha", dist.LogNormal(jnp.log(0.5), 1.0))
    numpyro.deterministic("E", E)
    numpyro.deterministic("A", A)
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.5))
    mean_y = saturating_power(x, E[group], A[group], alpha[group])
    numpyro.sample("log_y", dist.StudentT(STUDENT_NU, jnp.log(mean_y), sigma), obs=log_y)


def accuracy_model(steps, group, n_groups: int, x_ref: float, trials, correct=None):
    """Grouped saturating accuracy law with a Binomial likelihood over `trials` graded examples."""
    with numpyro.plate("group", n_groups):
        C = numpyro.sample("C", dist.Beta(2.0, 1.0))
        log_x50 = numpyro.sample("log_x50", dist.Normal(jnp.log(x_ref), 2.0))
        k = numpyro.sample("k", dist.LogNormal(jnp.log(2.0), 1.0))
    x50 = numpyro.deterministic("x50", jnp.exp(log_x50))
    accuracy = jnp.clip(saturating_accuracy(steps, C[group], x50[group], k[group]), 1e-6, 1 - 1e-6)
    numpyro.sample("correct", dist.Binomial(trials, probs=accuracy), obs=correct)


@dataclass(frozen=True)
class LawFit:
    """The posterior, the per-group parameter summary and the sampler diagnostics."""

    posterior: az.InferenceData
    summary: pd.DataFrame  # group, param, mean, sd, hdi_5%, hdi_95%, r_hat, ess_bulk
    x_ref: float
    divergences: int

    @property
    def converged(self) -> bool:
        return (
            self.divergences == 0
            and float(self.summary["r_hat"].max()) <= MAX_R_HAT
            and float(self.summary["ess_bulk"].min()) >= MIN_ESS_BULK
        )


def _nuts(model, sampler: SamplerConfig, labels: list, params: tuple[str, ...], latent: tuple[str, ...], **data):
    mcmc = MCMC(
        NUTS(model, target_accept_prob=0.95),
        num_warmup=sampler.warmup,
        num_samples=sampler.samples,
        num_chains=sampler.chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(sampler.seed), **data, extra_fields=("diverging",))
    posterior = az.from_numpyro(mcmc, coords={"group": labels}, dims={name: ["group"] for name in (*params, *latent)})
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    return posterior, divergences


def _groups(table: pd.DataFrame, group: str) -> tuple[list, jnp.ndarray]:
    labels = list(dict.fromkeys(table[group]))
    return labels, jnp.asarray(table[group].map({label: i for i, label in enumerate(labels)}).to_numpy())


def fit_power_law(table: pd.DataFrame, x: str, y: str, group: str, sampler: SamplerConfig) -> LawFit:
    """Fit y = E + A (x / x_ref)^(-alpha) to each group of a tidy table by NUTS."""
    table = table.dropna(subset=[x, y])
    x_values, y_values = table[x].to_numpy(dtype=float), table[y].to_numpy(dtype=float)
    if (x_values <= 0).any() or (y_values <= 0).any():
        raise ValueError(f"a power-law fit needs positive {x} and {y}")
    labels, group_index = _groups(table, group)
    x_ref = float(np.exp(np.log(x_values).mean()))
    posterior, divergences = _nuts(
        power_law_model, sampler, labels, PARAMS, ("E_scaled", "A_scaled"),
        x=jnp.asarray(x_values / x_ref), group=group_index, n_groups=len(labels),
        y_scale=float(np.median(y_values)), log_y=jnp.log(jnp.asarray(y_values)),
    )
    posterior.posterior.attrs["x_ref"] = x_ref
    posterior.posterior.attrs["law"] = "power"
    return LawFit(posterior, summarize(posterior, PARAMS, "group"), x_ref, divergences)


def fit_accuracy_law(table: pd.DataFrame, x: str, y: str, n: str, group: str, sampler: SamplerConfig) -> LawFit:
    """Fit acc = C / (1 + (x / x50)^-k) to each group, y an accuracy over `n` graded examples."""
    table = table.dropna(subset=[x, y, n])
    x_values, y_values, trials = (table[c].to_numpy(dtype=float) for c in (x, y, n))
    if (x_values <= 0).any() or ((y_values < 0) | (y_values > 1)).any() or (trials < 1).any():
        raise ValueError(f"an accuracy fit needs positive {x}, {y} in [0, 1] and {n} >= 1")
    labels, group_index = _groups(table, group)
    x_ref = float(np.exp(np.log(x_values).mean()))
    posterior, divergences = _nuts(
        accuracy_model, sampler, labels, ACCURACY_PARAMS, ("log_x50",),
        steps=jnp.asarray(x_values), group=group_index, n_groups=len(labels), x_ref=x_ref,
        trials=jnp.asarray(trials), correct=jnp.asarray(np.round(y_values * trials)),
    )
    posterior.posterior.attrs["x_ref"] = x_ref
    posterior.posterior.attrs["law"] = "accuracy"
    return LawFit(posterior, summarize(posterior, ACCURACY_PARAMS, "group"), x_ref, divergences)


def summarize(posterior: az.InferenceData, params: tuple[str, ...], group_dim: str) -> pd.DataFrame:
    """One row per group and parameter: mean, sd, 90% HDI, split r_hat and bulk ESS."""
    draws = posterior.posterior[list(params)]
    mean, sd = draws.mean(("chain", "draw")), draws.std(("chain", "draw"))
    hdi = az.hdi(draws, hdi_prob=0.9)
    r_hat = az.rhat(draws)
    ess = az.ess(draws, method="bulk")
    rows = []
    for label in draws[group_dim].values:
        for name in params:
            at = {group_dim: label}
            rows.append({
                group_dim: label,
                "param": name,
                "mean": float(mean[name].sel(at)),
                "sd": float(sd[name].sel(at)),
                "hdi_5%": float(hdi[name].sel(at).sel(hdi="lower")),
                "hdi_95%": float(hdi[name].sel(at).sel(hdi="higher")),
                "r_hat": float(r_hat[name].sel(at)),
                "ess_bulk": float(ess[name].sel(at)),
            })
    return pd.DataFrame(rows)
