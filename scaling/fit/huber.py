"""The classic point fit (Epoch's protocol for Chinchilla): Huber loss on log loss, L-BFGS from a grid
of starts, and bootstrap intervals from refits on resampled rows. `fit_law(..., method="huber")`.

The objective is sum_i huber_delta(log y_i − log mean_i) (on the value for accuracies), minimized over
the law's unconstrained latent parameters in scaled units: the same minimum as Epoch's fit of
log L = logsumexp(a − alpha·log N, b − beta·log D, e), since the reparametrization is one-to-one.
A bootstrap resample enters as integer row weights (how often each row was drawn), which for a sum of
per-row terms is the same objective as the resampled table, and keeps one compiled function for all.
Rows measured in the same run (a grid cell's budgets) are not independent: when the data name their
runs, and there are at least MIN_RUNS_TO_RESAMPLE of them, the bootstrap resamples whole runs.
The math runs in float64: with delta = 1e-3 the objective is nearly L1 and its optimum sits on kinks
that float32 gradients cannot resolve to 2%.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

from scaling.fit.laws import Law
from scaling.fit.models import Scales, scaled_inputs, scales_of

GRID_STEPS = (-1.0, 0.0, 1.0)  # grid of starts: each latent at loc + step·scale of its prior
MAX_GRID = 3**8  # beyond this many grid points, draw that many starts from the prior instead
MIN_RUNS_TO_RESAMPLE = 8  # fewer runs than this: a run bootstrap is too coarse to give an interval, resample rows


@dataclass(frozen=True)
class HuberConfig:
    """Epoch's protocol, with the grid taken in the law's scaled latent units."""

    delta: float = 1e-3  # Huber threshold on the residual of log loss (Epoch, Hoffmann et al.)
    bootstrap: int = 4000  # refits on rows resampled with replacement, for intervals (0: none)
    starts: int = 32  # L-BFGS runs, from the grid points with the lowest objective
    seed: int = 0  # resampling seed: same seed, same numbers

    def __post_init__(self) -> None:
        if self.delta <= 0 or self.bootstrap < 0 or self.starts < 1:
            raise ValueError(f"HuberConfig needs delta > 0, bootstrap >= 0 and starts >= 1, got {self}")


@dataclass(frozen=True)
class HuberResult:
    """The point estimate, the bootstrap refits and what the optimizer said."""

    estimate: dict[str, float]  # reported parameters, original units, from all rows
    latent: np.ndarray  # the estimate's latent vector (scaled units), in law.latent order
    bootstrap: dict[str, np.ndarray]  # reported parameters of each bootstrap refit, shape (B,)
    refits: np.ndarray  # the bootstrap refits' latent vectors, (B, latent): draws the model can replay
    objective: float  # the Huber objective at the estimate
    residual_scale: float  # robust scale of the residuals (1.4826·MAD): the noise for predictions
    failures: int  # L-BFGS runs (full fit and refits) that stopped without reporting success
    scales: Scales  # the units of the latent vector
    resampled: str = "rows"  # what the bootstrap resampled: "rows" or "runs"


def huber_loss(r, delta):
    return jnp.where(jnp.abs(r) <= delta, 0.5 * r**2, delta * (jnp.abs(r) - 0.5 * delta))


@lru_cache(maxsize=32)
def _compiled(law: Law, delta: float):
    """(objective and gradient, vectorized objective) of (latent vector, x', target, row weights)."""

    def objective(v, x, target, weights):
        mean = law.mean(law.scaled({lat.site: v[i] for i, lat in enumerate(law.latent)}), x)
        fitted = jnp.log(mean) if law.response == "loss" else mean
        value = jnp.sum(weights * huber_loss(target - fitted, delta))
        return jnp.where(jnp.isfinite(value), value, jnp.inf)

    return jax.jit(jax.value_and_grad(objective)), jax.jit(jax.vmap(objective, in_axes=(0, None, None, None)))


def _starts(law: Law, rng: np.random.Generator) -> np.ndarray:
    loc = np.array([lat.loc for lat in law.latent])
    scale = np.array([lat.scale for lat in law.latent])
    if len(GRID_STEPS) ** len(law.latent) <= MAX_GRID:
        steps = np.array(list(itertools.product(GRID_STEPS, repeat=len(law.latent))))
    else:
        steps = rng.standard_normal((MAX_GRID, len(law.latent)))
    return loc + steps * scale


def _lbfgs(value_and_grad, start, args) -> tuple[np.ndarray, float, bool]:
    def fun(v):
        value, grad = value_and_grad(jnp.asarray(v), *args)
        value, grad = float(value), np.asarray(grad, dtype=float)
        # A step into a region where the law is undefined (a negative loss) must look uphill to the line search.
        return (value, grad) if np.isfinite(value) and np.isfinite(grad).all() else (1e300, np.zeros_like(grad))

    result = minimize(fun, start, jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    return result.x, float(result.fun), bool(result.success)


def bootstrap_weights(rng: np.random.Generator, m: int, runs: np.ndarray | None) -> tuple[np.ndarray, str]:
    """One resample's row weights (how often each row is drawn): whole runs when there are enough, else rows."""
    if runs is not None and len(np.unique(runs)) >= MIN_RUNS_TO_RESAMPLE:
        codes, index = np.unique(runs, return_inverse=True)
        drawn = rng.multinomial(len(codes), np.full(len(codes), 1.0 / len(codes)))
        return drawn[index].astype(float), "runs"
    return rng.multinomial(m, np.full(m, 1.0 / m)).astype(float), "rows"


def huber_fit(law: Law, x: dict[str, np.ndarray], y: np.ndarray, config: HuberConfig = HuberConfig(),
              scales: Scales | None = None, runs: np.ndarray | None = None) -> HuberResult:
    """Grid of starts → the best `starts` by objective → L-BFGS each → best; then bootstrap refits from it.

    `scales` (default: from the data) only places the grid of starts; the minimum does not depend on it.
    `runs` (integer codes per row) makes the bootstrap resample runs (see bootstrap_weights).
    """
    scales = scales or scales_of(law, x, y)
    rng = np.random.default_rng(config.seed)
    with jax.enable_x64(True):
        value_and_grad, batch = _compiled(law, config.delta)
        xs = {a: jnp.asarray(v, dtype=jnp.float64) for a, v in scaled_inputs(law, x, scales).items()}
        y = np.asarray(y, float)
        target = jnp.asarray(np.log(y / scales.y_scale) if law.response == "loss" else y)
        ones = jnp.ones(len(y))
        grid = _starts(law, rng)
        values = np.nan_to_num(np.asarray(batch(jnp.asarray(grid), xs, target, ones)), nan=np.inf)
        starts = [_lbfgs(value_and_grad, start, (xs, target, ones)) for start in grid[np.argsort(values)[: config.starts]]]
        best, objective, _ = min(starts, key=lambda start: start[1])
        failures = sum(not ok for _, _, ok in starts)
        refits, resampled = [], "rows"
        for _ in range(config.bootstrap):
            drawn_weights, resampled = bootstrap_weights(rng, len(y), runs)
            weights = jnp.asarray(drawn_weights, dtype=jnp.float64)
            v, _, ok = _lbfgs(value_and_grad, best, (xs, target, weights))
            refits.append(v)
            failures += not ok
        to_params = jax.jit(lambda v: law.unscale(law.scaled({lat.site: v[..., i] for i, lat in enumerate(law.latent)}),
                                                  scales.x_ref, scales.y_scale))
        estimate = {k: float(v) for k, v in to_params(jnp.asarray(best)).items()}
        drawn = to_params(jnp.asarray(np.array(refits).reshape(-1, len(law.latent))))
        mean = law.mean(law.scaled({lat.site: best[i] for i, lat in enumerate(law.latent)}), xs)
        residual = np.asarray(target - (jnp.log(mean) if law.response == "loss" else mean))
    spread = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    return HuberResult(estimate, np.asarray(best), {k: np.asarray(v, float) for k, v in drawn.items()},
                       np.array(refits).reshape(-1, len(law.latent)), objective, spread, failures, scales, resampled)
