"""Fitting a law to data: NUTS (several chains), SVI (a Gaussian guide in the latent space) or the
Huber baseline, all returning a LawFit with the posterior in original units, a summary, diagnostics
and posterior-predictive draws.

`fit_law` fits one registered law (laws.py) through `law_model` (models.py); `fit_pooled` fits one law to
several groups at once, every parameter partially pooled across them. A LawFit keeps the model's own draws,
and its predictions and held-out densities replay that model on them: there is no second likelihood here.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pandas as pd
from numpyro.infer import SVI, Predictive, Trace_ELBO, init_to_median, log_likelihood
from numpyro.infer.hmc import hmc
from numpyro.infer.util import initialize_model, potential_energy
from numpyro.infer.autoguide import AutoLowRankMultivariateNormal, AutoMultivariateNormal

from scaling.errors import UserError
from scaling.fit import METHODS, identify, models, progress
from scaling.fit.divergence import Divergences, judged
from scaling.fit.huber import HuberConfig, huber_fit
from scaling.fit.laws import Law
from scaling.fit.models import LOG_PHI, MEAN, OBSERVED, RUN_SD, RUN_Z, SEED_Z, SIGMA, TAU, Scales

# Diagnostics thresholds (Vehtari et al. 2021): split r_hat and bulk effective sample size.
MAX_R_HAT = 1.01
MIN_ESS_BULK = 400
HDI_PROB = 0.9
# NUTS step-size adaptation target: above the default 0.8, for the laws' curved posteriors. 0.99: at 0.95 an
# accuracy law with n diverged where the Beta-Binomial nears the Binomial (phi >~ 1000), a funnel-like neck.
TARGET_ACCEPT = 0.99
DENSE_MASS = True  # dense mass: the scaled laws' amplitudes, floor and exponents are correlated a posteriori
PARETO_K_MAX = 0.7  # SVI: above this Pareto k̂ the importance-corrected draws are not reliable (Vehtari et al.)
FULL_RANK_MAX = 30  # SVI: a full-covariance Gaussian guide up to this many latent dimensions, low rank beyond
# A Huber fit's counts: Beta-Binomial concentration standing for the Binomial (phi → ∞). At 1e9 its log pmf
# is the Binomial's to ~1e-4 in float64 (further, the log-gamma differences lose digits).
POINT_FIT_PHI = 1e9


def run_spreads(law: Law) -> tuple[str, ...]:
    """The posterior variables holding the spread of each of the law's run effects (`run_sd_T`, ...)."""
    return tuple(RUN_SD + param for param, _ in law.run_effects)


def reported(law: Law, posterior) -> tuple[str, ...]:
    """What a fit's summary reports: the law's parameters, and the spread of its run effects where fitted."""
    return (*law.params, *(name for name in run_spreads(law) if name in posterior))


@dataclass(frozen=True)
class SamplerConfig:
    """How a posterior is computed: NUTS chains, the SVI run, or the Huber bootstrap."""

    warmup: int = 1000  # NUTS adaptation steps per chain
    # Kept draws per chain (SVI: draws from the guide, per pseudo-chain). 2000: a law's weakly identified floor
    # leaves a long tail that NUTS crosses slowly (bulk ESS ~0.1-0.2 per draw), and split r_hat <= 1.01 is a
    # noisy verdict below ~1000 effective draws; 4 × 1000 draws refused such fits by chance.
    samples: int = 2000
    chains: int = 4  # independent chains, for r_hat (SVI: pseudo-chains of independent draws)
    seed: int = 0  # same seed, same numbers
    svi_steps: int = 3000  # SVI optimizer steps
    svi_lr: float = 0.02  # SVI Adam learning rate at the start; it decays 20-fold over the run
    bootstrap: int = 1000  # huber: refits on resampled rows behind its intervals

    def __post_init__(self) -> None:
        if min(self.warmup, self.samples) < 1 or self.chains < 1:
            raise ValueError(f"SamplerConfig needs positive warmup, samples and chains, got {self}")
        if self.svi_steps < 1 or not self.svi_lr > 0 or self.bootstrap < 0:
            raise ValueError(f"SamplerConfig needs svi_steps >= 1, svi_lr > 0 and bootstrap >= 0, got {self}")


@dataclass(frozen=True)
class FitData:
    """What a law is fitted to: one row per measurement."""

    x: dict[str, np.ndarray]  # one array per law input (axes: positive; covariates: finite), all of length m
    y: np.ndarray  # the response (loss > 0, or accuracy in [0, 1])
    n: np.ndarray | None = None  # evaluation examples behind each accuracy (Beta-Binomial when given)
    seed: np.ndarray | None = None  # integer seed codes: hierarchical per-seed offsets when > 1 distinct
    group: np.ndarray | None = None  # integer group codes 0..G-1: every latent site partially pooled across groups
    run: np.ndarray | None = None  # integer codes of the run (grid cell) each row was measured in, when rows repeat
    # runs: each run then gets its own offset (in place of seeds), and --compare leaves out whole runs
    run_labels: np.ndarray | None = None  # each row's run by name: a prediction for a run the fit has seen uses
    # that run's own effects (a rollout), for any other a fresh run's

    def __post_init__(self) -> None:
        m = len(np.asarray(self.y))
        for name, values in [*((f"x[{a}]", v) for a, v in self.x.items()), ("n", self.n), ("seed", self.seed),
                             ("group", self.group), ("run", self.run), ("run_labels", self.run_labels)]:
            if values is not None and len(np.asarray(values)) != m:
                raise UserError(f"FitData: {name} has {len(np.asarray(values))} rows, y has {m}")
        if m == 0:
            raise UserError("FitData: no rows to fit")
        if any(not np.isfinite(np.asarray(v, float)).all() for v in self.x.values()):
            raise UserError("FitData: every input value must be finite")
        if not np.isfinite(np.asarray(self.y, float)).all():
            raise UserError("FitData: y must be finite")
        if self.n is not None and not (np.asarray(self.n) >= 1).all():
            raise UserError("FitData: n must be >= 1 examples")

    @property
    def seeds(self) -> tuple[np.ndarray | None, int]:
        """The units that get their own offset, as codes 0..K-1 and K, or (None, 0) when there are fewer than
        two: runs where the rows name them (a run's budgets share its luck, whatever its seed's value), else
        seeds."""
        unit = self.run if self.run is not None else self.seed
        if unit is None or len(np.unique(unit)) < 2:
            return None, 0
        codes, index = np.unique(np.asarray(unit), return_inverse=True)
        return index, len(codes)

    @property
    def unit_names(self) -> list[str] | None:
        """The name of each unit of `seeds` (in code order): the run's label where rows name runs, else None."""
        if self.run is None or self.run_labels is None or self.seeds[1] == 0:
            return None
        codes = np.unique(np.asarray(self.run))
        first = [int(np.argmax(np.asarray(self.run) == code)) for code in codes]
        return [str(self.run_labels[i]) for i in first]

    @property
    def n_groups(self) -> int:
        """Pooled groups (0 when not pooled)."""
        return 0 if self.group is None else int(np.max(self.group)) + 1

    def rows(self, keep: np.ndarray) -> "FitData":
        """The same data restricted to the rows where `keep` is true (one pooled group's rows, say)."""
        pick = lambda v: None if v is None else np.asarray(v)[keep]  # noqa: E731
        return FitData({a: np.asarray(v)[keep] for a, v in self.x.items()}, np.asarray(self.y)[keep], pick(self.n),
                       pick(self.seed), None)


@dataclass(frozen=True)
class LawFit:
    """The posterior (original units, with a pointwise log_likelihood group), its summary and diagnostics, and
    the draws of the model's own sites, from which its predictions and held-out densities are computed."""

    posterior: az.InferenceData
    summary: pd.DataFrame  # param, mean, sd, hdi_5%, hdi_95%, r_hat, ess_bulk, p_positive, then identify.COLUMNS
    x_ref: float  # geometric mean of the (first) axis
    divergent: np.ndarray  # (chains, draws) bool: the NUTS transitions after warmup that diverged (none for svi, huber)
    law: Law  # the registered law
    # The sites of law_model (scaled units) as drawn, (chains, draws, ...): predictions replay the model on them.
    # A pooled fit's groups share the joint draws, every group's deviations included.
    latent: dict[str, np.ndarray]
    scales: Scales  # the units the priors were written in
    method: str = "nuts"  # nuts, svi or huber
    pareto_k: float | None = None  # svi: Pareto k̂ of the importance weights of the guide's draws
    group: int | None = None  # a pooled fit's group (its code in the joint model); None when not pooled

    @property
    def divergences(self) -> int:
        """How many NUTS transitions diverged after warmup."""
        return int(self.divergent.sum())

    @property
    def divergence(self) -> Divergences:
        """Its divergent transitions judged: where they sit, and what leaving out their neighbourhood moves."""
        post = self.posterior.posterior
        return judged(self.divergent, self.latent, {name: post[name].values for name in reported(self.law, post)}, HDI_PROB)

    @property
    def converged(self) -> bool:
        """No divergences but harmless ones (scaling.fit.divergence: rare, and moving no reported quantity),
        every r_hat <= MAX_R_HAT and bulk ESS >= MIN_ESS_BULK (NaN, as for huber: not applicable), and for svi a
        Pareto k̂ <= PARETO_K_MAX."""
        r_hat, ess = self.summary["r_hat"].dropna(), self.summary["ess_bulk"].dropna()
        trusted = self.pareto_k is None or self.pareto_k <= PARETO_K_MAX
        return (self.divergence.harmless and trusted and bool((r_hat <= MAX_R_HAT).all())
                and bool((ess >= MIN_ESS_BULK).all()))

    def draws(self, with_spreads: bool = False) -> dict[str, np.ndarray]:
        """The law's reported parameters (and, with_spreads, its run-effect spreads), flattened over
        chains × draws: shape (S,) each."""
        names = reported(self.law, self.posterior.posterior) if with_spreads else self.law.params
        return {name: self.posterior.posterior[name].values.reshape(-1) for name in names}

    def predict(self, x: dict[str, np.ndarray], n: np.ndarray | None = None, seed: int = 0,
                max_draws: int = 1000, runs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mean curve draws (S, m), posterior-predictive draws of an observation (S, m)) at the inputs x.

        Both come from the fitted model itself (numpyro's Predictive on law_model, with the key
        `jax.random.key(seed)`): the curve is its `mean` site, the draws its observation site with the noise
        the fit assumed: Student-t in log space for a loss; Beta-Binomial counts / n for an accuracy fitted
        with n (n is then required); Student-t on the value, clipped to [0, 1], for an accuracy fitted without
        n. When the fit pooled runs or seeds, it predicts a new one: fresh run effects (or a fresh offset of
        spread tau) per draw and row, except for rows whose `runs` label names a run the fit has seen, which
        keep that run's own effects (a later budget of a known run: a rollout).
        """
        form, samples, args = self._replay(x, n, runs, seed, max_draws)
        assert n is not None or LOG_PHI not in samples, "an accuracy fitted with n examples is predicted as counts of n"
        with jax.enable_x64(True):
            args["n"] = args["n"].astype(int)  # counts are drawn from whole numbers of trials
            sites = _replayed(*form)[0](samples, jax.random.key(seed), args)
        mean, drawn = (np.asarray(sites[name], float) for name in (MEAN, OBSERVED))
        if self.law.response == "loss":
            return self.scales.y_scale * mean, self.scales.y_scale * np.exp(drawn)
        if LOG_PHI in samples:
            return mean, drawn / np.asarray(n, float)[None, :]
        return mean, np.clip(drawn, 0.0, 1.0)  # an accuracy outside [0, 1] is not one to predict

    def log_predictive(self, x: dict[str, np.ndarray], y: np.ndarray, n: np.ndarray | None = None, seed: int = 0,
                       max_draws: int = 1000, runs: np.ndarray | None = None) -> np.ndarray:
        """log p(y_i | draw s) of observations at inputs x (S, m): numpyro's log_likelihood of the fitted model
        on those rows; runs the fit has seen keep their own effects, others get fresh ones (as `predict`). Held-out
        rows scored this way give an exact out-of-sample elpd (log of the mean over draws of the exponent)."""
        form, samples, args = self._replay(x, n, runs, seed, max_draws)
        y = np.asarray(y, float)
        with jax.enable_x64(True):
            args["y"] = models.observed(self.law, y, n if LOG_PHI in samples else None, self.scales)
            log_lik = np.asarray(_replayed(*form)[1](samples, args), float)
        # A loss is modelled as log(y / y_scale): the Jacobian 1 / y makes the density one of y.
        return log_lik - np.log(y)[None, :] if self.law.response == "loss" else log_lik

    def _replay(self, x: dict[str, np.ndarray], n: np.ndarray | None, runs: np.ndarray | None, seed: int,
                max_draws: int) -> tuple:
        """The form of law_model the fit sampled (see _replayed), at most max_draws of its draws (evenly spaced,
        float64), and its arguments for the rows at x. A row of a run the fit has not seen (or of no named run)
        is a unit of its own, with fresh standardized effects from their Normal(0, 1) prior: fitted spread × z."""
        with_n, n_runs, n_groups = _variant(self.latent)
        total = int(np.prod(next(iter(self.latent.values())).shape[:2]))
        keep = np.unique(np.linspace(0, total - 1, min(total, max_draws)).round().astype(int))
        samples = {site: np.asarray(v, np.float64).reshape(total, *v.shape[2:])[keep] for site, v in self.latent.items()}
        m = len(np.asarray(next(iter(x.values()))))
        unit = np.zeros(m, int)
        if n_runs:
            known = self._known_runs(runs, m)
            new = known < 0
            unit = np.where(new, n_runs + np.cumsum(new) - 1, known)
            fresh_key = jax.random.fold_in(jax.random.key(seed), 1)
            for i, site in enumerate(_effect_sites(samples)):
                fresh = np.asarray(jax.random.normal(jax.random.fold_in(fresh_key, i), (len(keep), int(new.sum()))))
                samples[site] = np.concatenate([samples[site], fresh], axis=1)
            n_runs += int(new.sum())
        with jax.enable_x64(True):
            args = {"x": models.scaled_inputs(self.law, x, self.scales), "y": None,
                    "n": jnp.zeros(m) if n is None else jnp.asarray(np.asarray(n, float)),
                    "seed": jnp.asarray(unit), "group": jnp.full(m, self.group or 0)}
        return (self.law, with_n, n_runs, n_groups), samples, args

    def _known_runs(self, runs: np.ndarray | None, m: int) -> np.ndarray:
        """Per row, the index of its run in the posterior's runs (run effects or offsets), or -1 for a run the
        fit has not seen; all -1 when either side has no run names."""
        post = self.posterior.posterior
        dim = "run" if "run" in post.coords else "seed" if "seed" in post.coords else None
        if runs is None or dim is None or post.attrs.get("runs_named") != 1:
            return np.full(m, -1)
        index = {str(name): i for i, name in enumerate(post.coords[dim].values)}
        return np.array([index.get(str(label), -1) for label in np.asarray(runs)], int).reshape(m)


@lru_cache(maxsize=64)
def _replayed(law: Law, with_n: bool, n_runs: int, n_groups: int):
    """law_model in one of its forms, compiled: (the `mean` and observation sites that numpyro's Predictive
    draws, and the pointwise log-likelihood that numpyro's log_likelihood gives) for draws at rows."""
    model = _bound_model(law, with_n, n_runs, n_groups)
    predictive = partial(Predictive, model, return_sites=[MEAN, OBSERVED], parallel=True)
    return (jax.jit(lambda samples, key, args: predictive(samples)(key, **args)),
            jax.jit(lambda samples, args: log_likelihood(model, samples, parallel=True, **args)[OBSERVED]))


def _effect_sites(latent: dict) -> list[str]:
    """The sites of standardized per-run effects (one column per run): run effects, or the constant offsets."""
    return [site for site in latent if site == SEED_Z or site.startswith(RUN_Z)]


def _variant(latent: dict) -> tuple[bool, int, int]:
    """Which form of law_model drew these sites: (with n examples, runs with their own effects, pooled groups)."""
    effects = _effect_sites(latent)
    pooled = [site for site in latent if site.startswith(models.POOL_Z)]
    return (LOG_PHI in latent, latent[effects[0]].shape[-1] if effects else 0,
            latent[pooled[0]].shape[-1] if pooled else 0)


# --- fit_law --------------------------------------------------------------------------------------------

def _check(law: Law, data: FitData, method: str) -> None:
    if method not in METHODS:
        raise UserError(f"unknown fit method {method!r}; the methods are {', '.join(METHODS)}")
    if set(data.x) != set(law.inputs):
        kind = "inputs" if law.covariates else "axes"
        raise UserError(f"law {law.name} needs {kind} {', '.join(law.inputs)}; the data have {', '.join(data.x) or 'none'}")
    if any(not (np.asarray(data.x[axis], float) > 0).all() for axis in law.axes):
        raise UserError(f"law {law.name}: every value of its axes {', '.join(law.axes)} must be positive")
    y = np.asarray(data.y, float)
    if law.response == "loss" and not (y > 0).all():
        raise UserError(f"law {law.name} fits a loss: y must be positive")
    if law.response == "accuracy" and not ((y >= 0) & (y <= 1)).all():
        raise UserError(f"law {law.name} fits an accuracy: y must lie in [0, 1]")
    if data.n is not None and law.response == "loss":
        raise UserError(f"law {law.name} fits a loss: n (examples behind an accuracy) does not apply")


def _model_args(law: Law, data: FitData, scales: Scales) -> dict:
    """The model's data as arrays of one shape each, placeholders standing in for absent n and seeds."""
    seed, n_seeds = data.seeds
    y = models.observed(law, data.y, data.n, scales)
    return {
        "x": models.scaled_inputs(law, data.x, scales),
        "y": y,
        "n": jnp.zeros(y.shape) if data.n is None else jnp.asarray(np.asarray(data.n, float)),
        "seed": jnp.zeros(y.shape, int) if seed is None else jnp.asarray(seed),
        "group": jnp.zeros(y.shape, int) if data.group is None else jnp.asarray(np.asarray(data.group, int)),
    }


def _positional(args: dict) -> tuple:
    return args["x"], args["y"], args["n"], args["seed"], args["group"]


def _bound_model(law: Law, has_n: bool, n_seeds: int, n_groups: int):
    def model(x, y, n, seed, group):
        return models.law_model(law, x, y, n if has_n else None, seed if n_seeds > 1 else None, n_seeds,
                                group if n_groups > 1 else None, n_groups)

    return model


def _sites(constrained: dict) -> dict:
    """The sampled sites of constrained draws; the deterministic `mean` is recomputed by whoever needs it."""
    return {site: value for site, value in constrained.items() if site != MEAN}


def _lower(program, law: Law, m: int, *extra):
    """Compile `program(key, x, y, n, seed, group, *extra)` for m rows, ahead of time, so threads share one executable."""
    x = {name: jnp.ones(m) for name in law.inputs}
    return jax.jit(program).lower(jax.random.key(0), x, jnp.ones(m), jnp.ones(m), jnp.zeros(m, int),
                                  jnp.zeros(m, int), *extra).compile()


@lru_cache(maxsize=32)
def _nuts_chain(law: Law, m: int, has_n: bool, n_seeds: int, n_groups: int, warmup: int, samples: int,
                report: bool = False):
    """One NUTS chain of law_model, compiled once per law and data shape (see nuts_program)."""
    x = {name: jnp.ones(m) for name in law.inputs}
    example = {"x": x, "y": jnp.ones(m), "n": jnp.ones(m), "seed": jnp.zeros(m, int), "group": jnp.zeros(m, int)}
    return nuts_program(_bound_model(law, has_n, n_seeds, n_groups), example, warmup, samples, report)


def nuts_program(model, example: dict, warmup: int, samples: int, report: bool = False, pointwise_of=None):
    """`chain(key, data, index) -> (latent draws, divergences, pointwise log-likelihood)`: one NUTS chain of
    `model(**data)` (init, warmup and draws in one program), compiled ahead of time for data shaped like
    `example`, so threads share one executable. `pointwise_of(log_lik, data)` may reduce the per-observation
    log-likelihood (draws, m) to fewer units (an item-level fit sums each run-step's examples).

    Chains are separate calls of this program rather than one vectorized program: vmap turns NUTS's
    data-dependent branches into selects, which makes tracing and compiling several times slower,
    and separate calls let chains run on separate cores.
    """
    every = max(1, (warmup + samples) // progress.TICKS)

    def chain(key, data, index):
        init_key, run_key = jax.random.split(key)
        start, potential, constrain, _ = initialize_model(
            init_key, model, init_strategy=init_to_median(num_samples=15), model_kwargs=data, dynamic_args=True)
        init_kernel, sample_kernel = hmc(potential_fn_gen=potential, algo="NUTS")
        state = init_kernel(start.z, warmup, dense_mass=DENSE_MASS, target_accept_prob=TARGET_ACCEPT, model_kwargs=data,
                            rng_key=run_key)

        def step(state, i):
            state = sample_kernel(state, model_kwargs=data)
            if report:
                jax.lax.cond((i + 1) % every == 0, lambda: jax.debug.callback(progress.tick, index, i + 1), lambda: None)
            return state, (state.z, state.diverging)

        _, (z, diverging) = jax.lax.scan(step, state, jnp.arange(warmup + samples))
        latent = _sites(jax.vmap(constrain(**data))(jax.tree.map(lambda v: v[warmup:], z)))
        pointwise = log_likelihood(model, latent, parallel=True, **data)[OBSERVED]
        return latent, diverging[warmup:], pointwise if pointwise_of is None else pointwise_of(pointwise, data)

    return jax.jit(chain).lower(jax.random.key(0), example, 0).compile()


def run_chains(program, data: dict, sampler: SamplerConfig) -> tuple[dict, np.ndarray, np.ndarray]:
    """`sampler.chains` runs of a nuts_program on data, in threads: latent draws (chains, draws, ...), pointwise
    log-likelihood (chains, draws, ...), divergent draws (chains, draws)."""
    keys = jax.random.split(jax.random.key(sampler.seed), sampler.chains)
    progress.start_chains(sampler.chains, sampler.warmup, sampler.samples)
    with ThreadPoolExecutor(max_workers=min(sampler.chains, os.cpu_count() or 1)) as pool:
        runs = list(pool.map(lambda chain: jax.block_until_ready(program(keys[chain], data, chain)), range(sampler.chains)))
    latent = {name: np.stack([np.asarray(run[0][name]) for run in runs]) for name in runs[0][0]}
    pointwise = np.stack([np.asarray(run[2]) for run in runs])
    return latent, pointwise, np.stack([np.asarray(run[1], bool) for run in runs])


def _nuts(law: Law, args: dict, n_seeds: int, has_n: bool, sampler: SamplerConfig,
          n_groups: int = 0) -> tuple[dict, np.ndarray, np.ndarray]:
    """Latent draws (chains, draws, ...), pointwise log-likelihood (chains, draws, m), divergent draws (chains, draws)."""
    program = _nuts_chain(law, int(args["y"].shape[0]), has_n, n_seeds, n_groups, sampler.warmup, sampler.samples,
                          progress.active())
    return run_chains(program, args, sampler)


@lru_cache(maxsize=32)
def _svi_run(law: Law, m: int, has_n: bool, n_seeds: int, n_groups: int, steps: int, lr: float, draws: int):
    """One compiled SVI fit, per law and data shape (refits skip compilation): guide draws, their
    importance log-weights log p(z, y) − log q(z), and their pointwise log-likelihood."""
    model = _bound_model(law, has_n, n_seeds, n_groups)
    run_dims = (1 + n_seeds) * max(1, len(law.run_effects)) if n_seeds > 1 else 0
    latent_dims = len(law.latent) * (1 + (n_groups + 1 if n_groups > 1 else 0)) + 1 + run_dims
    guide_class = AutoMultivariateNormal if latent_dims <= FULL_RANK_MAX else AutoLowRankMultivariateNormal

    def run(key, x, y, n, seed, group):
        data = {"x": x, "y": y, "n": n, "seed": seed, "group": group}
        # A guide keeps state from its first trace, so each trace of this program builds its own.
        guide = guide_class(model, init_loc_fn=init_to_median(num_samples=15))
        optimizer = numpyro.optim.optax_to_numpyro(optax.adam(optax.exponential_decay(lr, steps, 0.05)))
        svi = SVI(model, guide, optimizer, Trace_ELBO())
        fit_key, draw_key = jax.random.split(key)
        state = svi.init(fit_key, **data)
        state, _ = jax.lax.scan(lambda s, _: svi.update(s, **data), state, None, length=steps)
        params = svi.get_params(state)
        q = guide.get_posterior(params)  # a Gaussian over the flattened unconstrained latents
        u = q.sample(draw_key, (draws,))
        # potential_energy is −log p(z, y) in unconstrained coordinates, Jacobians included, as q's density is.
        log_p = -jax.vmap(lambda v: potential_energy(model, (), data, guide._unpack_latent(v)))(u)
        latent = _sites(guide._unpack_and_constrain(u, params))
        return latent, log_p - q.log_prob(u), log_likelihood(model, latent, parallel=True, **data)[OBSERVED]

    return _lower(run, law, m)


def _svi(law: Law, args: dict, n_seeds: int, has_n: bool, sampler: SamplerConfig,
         n_groups: int = 0) -> tuple[dict, np.ndarray, float, float]:
    """Guide draws corrected by Pareto-smoothed importance resampling (Yao et al. 2018), as `chains`
    pseudo-chains; their pointwise log-likelihood; the Pareto k̂ that says whether to trust them; and
    the importance-sampling effective sample size 1 / Σw².

    A Gaussian guide fitted by KL(q‖p) is narrower than a skewed or heavy-tailed posterior; reweighting
    its draws by p/q restores most of the missing spread while k̂ <= PARETO_K_MAX.
    """
    total = sampler.chains * sampler.samples
    program = _svi_run(law, int(args["y"].shape[0]), has_n, n_seeds, n_groups, sampler.svi_steps, sampler.svi_lr, total)
    latent, log_weights, pointwise = program(jax.random.key(sampler.seed), *_positional(args))
    smoothed, k_hat = az.psislw(np.asarray(log_weights, float))
    weights = np.exp(smoothed - smoothed.max())
    weights /= weights.sum()
    # Systematic resampling: one uniform draw, so the same seed picks the same draws.
    u = (np.random.default_rng(sampler.seed).uniform() + np.arange(total)) / total
    keep = np.minimum(np.searchsorted(np.cumsum(weights), u), total - 1)
    keep = np.random.default_rng(sampler.seed + 1).permutation(keep)  # spread repeats across the pseudo-chains

    def shaped(v):
        return np.asarray(v)[keep].reshape(sampler.chains, sampler.samples, *np.shape(v)[1:])

    return {k: shaped(v) for k, v in latent.items()}, shaped(pointwise), float(k_hat), float(1.0 / np.sum(weights**2))


@lru_cache(maxsize=32)
def _unscaler(law: Law):
    return jax.jit(lambda latent, x_ref, y_scale: law.unscale(law.scaled(latent), x_ref, y_scale))


def _original_units(law: Law, latent: dict, scales: Scales) -> dict[str, np.ndarray]:
    """Reported parameters and the noise terms, from latent draws (any leading shape), for the record.

    In float64: an amplitude in original units carries x_ref^exponent (1e9^3 for a steep law in N),
    beyond float32's range.
    """
    with jax.enable_x64(True):
        latent64 = {lat.site: np.asarray(latent[lat.site], np.float64) for lat in law.latent}
        theta = _unscaler(law)(latent64, scales.x_ref, scales.y_scale)
        out = {name: np.asarray(theta[name], float) for name in law.params}
    for name in (SIGMA, TAU, SEED_Z, *run_spreads(law), *(RUN_Z + param for param, _ in law.run_effects)):
        if name in latent:
            out[name] = np.asarray(latent[name], float)
    if LOG_PHI in latent:
        out["phi"] = np.exp(np.asarray(latent[LOG_PHI], float))
    return out


def _inference_data(law: Law, posterior: dict, log_lik: np.ndarray, data: FitData, scales: Scales,
                    method: str, run_names: list[str] | None = None) -> az.InferenceData:
    """Posterior (original units), pointwise log-likelihood over the `obs` dim, observed data, provenance."""
    dims = {name: ["seed"] for name in (SEED_Z,) if name in posterior} | {OBSERVED: ["obs"]}
    effects = [RUN_Z + param for param, _ in law.run_effects if RUN_Z + param in posterior]
    dims |= {name: ["run"] for name in effects}
    names = run_names or data.unit_names  # the runs by name, so that a prediction for a run the fit has seen uses it
    coords = {("run" if effects else "seed"): names} if names is not None and (effects or SEED_Z in posterior) else {}
    idata = az.from_dict(posterior=posterior, log_likelihood={OBSERVED: log_lik},
                         observed_data={OBSERVED: np.asarray(data.y, float)}, dims=dims, coords=coords)
    idata.posterior.attrs["runs_named"] = int(bool(coords))
    idata.posterior.attrs.update({
        "law": law.name, "formula": law.formula, "method": method, "y_scale": scales.y_scale,
        **{f"x_ref_{axis}": value for axis, value in scales.x_ref.items()},
    })
    return idata


def fit_law(law: Law, data: FitData, method: str = "nuts", sampler: SamplerConfig = SamplerConfig(),
            scales: Scales | None = None) -> LawFit:
    """Fit a registered law to data by NUTS, SVI or the Huber baseline; same seed, same numbers.

    `scales` fixes the units the priors are written in (default: from the data, each axis's geometric
    mean and the median loss); calibration checks fix them so data are drawn from the very prior fitted.
    """
    _check(law, data, method)
    assert data.group is None, "pooled groups are fitted by fit_pooled"
    scales = scales or models.scales_of(law, data.x, data.y)
    if method == "huber":
        return _huber(law, data, scales, sampler)
    args = _model_args(law, data, scales)
    n_seeds, has_n = data.seeds[1], data.n is not None
    divergent = np.zeros((sampler.chains, sampler.samples), bool)
    if method == "nuts":
        latent, pointwise, divergent = _nuts(law, args, n_seeds, has_n, sampler)
    else:
        latent, pointwise, pareto_k, importance_ess = _svi(law, args, n_seeds, has_n, sampler)
    idata = _inference_data(law, _original_units(law, latent, scales), pointwise, data, scales, method)
    summary = summarize_law(idata, reported(law, idata.posterior), with_diagnostics=True)
    summary = summary.join(identify.identification(law, latent, args["x"], pooled=False), on="param")
    if method == "svi":
        idata.posterior.attrs["pareto_k"] = pareto_k
        # Resampled draws repeat; shuffled, they look independent to ESS, which then overstates them.
        summary["ess_bulk"] = np.minimum(summary["ess_bulk"], importance_ess)
    return LawFit(idata, summary, scales.x_ref[law.axes[0]], divergent, law, latent, scales, method,
                  pareto_k if method == "svi" else None)


def fit_pooled(law: Law, data: FitData, method: str = "nuts", sampler: SamplerConfig = SamplerConfig()) -> list[LawFit]:
    """One joint fit in which every latent site is partially pooled across `data.group`; a LawFit per group.

    Each group's LawFit holds that group's parameters (shared value plus its deviation), its rows'
    pointwise log-likelihood and the joint fit's divergences (they belong to the one joint run).
    """
    _check(law, data, method)
    if method == "huber":
        raise UserError("--pool needs a posterior (method nuts or svi), not huber")
    scales = models.scales_of(law, data.x, data.y)
    args = _model_args(law, data, scales)
    n_seeds, has_n, n_groups = data.seeds[1], data.n is not None, data.n_groups
    divergent, pareto_k = np.zeros((sampler.chains, sampler.samples), bool), None
    if method == "nuts":
        latent, pointwise, divergent = _nuts(law, args, n_seeds, has_n, sampler, n_groups)
    else:
        latent, pointwise, pareto_k, _ = _svi(law, args, n_seeds, has_n, sampler, n_groups)
    shared = {k: v for k, v in latent.items() if k in (SIGMA, TAU, SEED_Z, LOG_PHI) or k.startswith((RUN_SD, RUN_Z))}
    fits = []
    for g in range(n_groups):
        rows = np.asarray(data.group) == g
        idata = _inference_data(law, _original_units(law, shared | models.group_latents(law, latent, g), scales),
                                pointwise[..., rows], data.rows(rows), scales, method, data.unit_names)
        idata.posterior.attrs["pooled_groups"] = n_groups
        for lat in law.latent:  # how far the groups spread on each latent site: the pooling's verdict
            idata.posterior[models.POOL_TAU + lat.site] = (("chain", "draw"), np.asarray(latent[models.POOL_TAU + lat.site]))
        summary = summarize_law(idata, reported(law, idata.posterior), with_diagnostics=True)
        group_x = {name: value[rows] for name, value in args["x"].items()}
        summary = summary.join(identify.identification(law, shared | models.group_latents(law, latent, g), group_x, pooled=True),
                               on="param")
        fits.append(LawFit(idata, summary, scales.x_ref[law.axes[0]], divergent, law, latent, scales, method, pareto_k, g))
    return fits


def _huber(law: Law, data: FitData, scales: Scales, sampler: SamplerConfig) -> LawFit:
    """The baseline as a LawFit: bootstrap refits as draws, the full-data estimate as the summary's mean.

    A point fit has no noise model of its own. Its draws get one so that law_model, the model every fit's
    predictions and densities come from, gives theirs too: the residuals' robust scale as sigma (a loss, or an
    accuracy without n), or for counts phi = POINT_FIT_PHI, the Beta-Binomial's Binomial limit (no scatter
    beyond the test set's: the refits' spread is the estimate's uncertainty).
    """
    result = huber_fit(law, data.x, data.y, HuberConfig(bootstrap=sampler.bootstrap, seed=sampler.seed), scales,
                       runs=data.run)
    if sampler.bootstrap:
        draws, vectors = {k: v[None, :] for k, v in result.bootstrap.items()}, result.refits
    else:
        draws, vectors = {k: np.full((1, 1), v) for k, v in result.estimate.items()}, result.latent[None, :]
    latent = {lat.site: vectors[None, :, i] for i, lat in enumerate(law.latent)}
    noise = np.full((1, len(vectors)), max(result.residual_scale, 1e-12))
    if law.response == "loss" or data.n is None:
        draws[SIGMA] = latent[SIGMA] = noise
    else:
        latent[LOG_PHI] = np.full((1, len(vectors)), np.log(POINT_FIT_PHI))
    with jax.enable_x64(True):
        args = _model_args(law, data, scales)
        pointwise = _replayed(law, data.n is not None, 0, 0)[1]({k: v.reshape(-1) for k, v in latent.items()}, args)
    idata = _inference_data(law, draws, np.asarray(pointwise, float)[None], data, scales, "huber")
    idata.posterior.attrs["lbfgs_failures"] = result.failures
    idata.posterior.attrs["huber_objective"] = result.objective
    idata.posterior.attrs["bootstrap_resampled"] = result.resampled  # rows, or whole runs (see baseline)
    summary = summarize_law(idata, law.params, with_diagnostics=False)
    summary["mean"] = [result.estimate[name] for name in law.params]
    summary[identify.COLUMNS] = np.nan  # a bootstrap has no prior to contract, or to conflict with
    summary["identified"] = identify.NOT_APPLICABLE
    return LawFit(idata, summary, scales.x_ref[law.axes[0]], np.zeros((1, len(vectors)), bool), law, latent, scales,
                  "huber")


def summarize_law(idata: az.InferenceData, params: tuple[str, ...], with_diagnostics: bool) -> pd.DataFrame:
    """One row per parameter: mean, sd, 90% HDI, split r_hat and bulk ESS (NaN without diagnostics), P(> 0)."""
    draws = idata.posterior[list(params)]
    hdi = az.hdi(draws, hdi_prob=HDI_PROB)
    single = draws.sizes["chain"] * draws.sizes["draw"] < 4
    r_hat = az.rhat(draws) if with_diagnostics and not single else None
    ess = az.ess(draws, method="bulk") if with_diagnostics and not single else None
    return pd.DataFrame([{
        "param": name,
        "mean": float(draws[name].mean()),
        "sd": float(draws[name].std()),
        "hdi_5%": float(hdi[name].sel(hdi="lower")),
        "hdi_95%": float(hdi[name].sel(hdi="higher")),
        "r_hat": float(r_hat[name]) if r_hat is not None else np.nan,
        "ess_bulk": float(ess[name]) if ess is not None else np.nan,
        # The posterior probability that the parameter is positive: for a term free in sign (the SFT law's
        # beta: does training past memorization help?) the answer to the question it stands for.
        "p_positive": float((draws[name].values > 0).mean()),
    } for name in params])
