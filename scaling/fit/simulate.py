"""Simulated SFT grids for calibration: the rows a grid shaped like runs/reference.toml would give (runs ×
budgets, a chance floor, runs that memorize at some budget or never), and accuracies drawn from a law's
own prior predictive, run effects included.

Simulation-based calibration (Talts et al. 2018) fits each simulated grid and counts how often the 90%
intervals hold the parameters that drew it; `benchmarks/bench_calibration.py --sft` runs it large and
`tests/fit/test_calibration.py` small.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from scaling.fit import models
from scaling.fit.infer import FitData, SamplerConfig, fit_law, run_spreads
from scaling.fit.laws import Law
from scaling.fit.models import Scales


@dataclass(frozen=True)
class GridDesign:
    """Where a simulated grid is observed: one row per run and budget."""

    capabilities: tuple[float, ...] = (24_000.0, 98_000.0)  # the reference grid's two sizes, in parameters
    diversities: tuple[float, ...] = (1.0, 2.0, 4.0)
    qualities: tuple[float, ...] = (1.0, 0.5)
    seeds: int = 2  # runs per combination of the axes
    steps: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)
    n: int = 64  # evaluation examples behind each accuracy
    chance: float = 0.05  # the evaluation's chance floor (per row, as a grid stores it)
    memorized_share: float = 0.5  # runs that memorize at some budget; the others never do

    @property
    def runs(self) -> int:
        return len(self.capabilities) * len(self.diversities) * len(self.qualities) * self.seeds


@dataclass(frozen=True)
class GridRows:
    """The design laid out as rows: the law's inputs, run codes, examples, and each run's memorization step."""

    x: dict[str, np.ndarray]  # axes (original units) and covariates
    run: np.ndarray  # run code per row, 0..runs-1
    n: np.ndarray
    memorization_step: np.ndarray  # per run; NaN: never memorized

    @property
    def scales(self) -> Scales:
        """Units the prior is written in: each axis over its geometric mean (accuracies have y_scale 1)."""
        return Scales({a: float(np.exp(np.log(v).mean())) for a, v in self.x.items() if a in AXES}, 1.0)


AXES = ("step", "diversity", "quality", "capability")


def grid_rows(design: GridDesign, seed: int = 0) -> GridRows:
    """The rows of a grid of this design; which runs memorize, and at which budget, drawn from `seed`."""
    rng = np.random.default_rng(seed)
    combos = [(c, d, q) for c in design.capabilities for d in design.diversities for q in design.qualities
              for _ in range(design.seeds)]
    steps = np.asarray(design.steps, float)
    # A run that memorizes does so at one of the middle-to-late budgets: the post-memorization term needs
    # budgets past it to be seen at all.
    memorized = np.where(rng.uniform(size=len(combos)) < design.memorized_share,
                         rng.choice(steps[len(steps) // 3: -1], size=len(combos)), np.nan)
    rows = [(r, c, d, q, t) for r, (c, d, q) in enumerate(combos) for t in steps]
    run, capability, diversity, quality, step = (np.array(column) for column in zip(*rows))
    with np.errstate(invalid="ignore", divide="ignore"):
        past = np.log(step / memorized[run])
    x = {"step": step.astype(float), "diversity": diversity.astype(float), "quality": quality.astype(float),
         "capability": capability.astype(float), "chance": np.full(step.size, design.chance),
         "past": np.where(np.isfinite(past) & (past > 0), past, 0.0)}
    return GridRows(x, run.astype(int), np.full(step.size, float(design.n)), memorized)


@dataclass(frozen=True)
class Simulated:
    """One simulated grid: the truth (original units, run spreads included) and its observed accuracies."""

    truth: dict[str, float]
    data: FitData


def simulate(law: Law, rows: GridRows, key, count: int) -> list[Simulated]:
    """`count` grids drawn from the law's prior predictive over these rows, run effects included."""
    scales = rows.scales
    n_runs = int(rows.run.max()) + 1
    draws = models.prior_predictive(law, models.scaled_inputs(law, rows.x, scales), key, count,
                                    n=jnp.asarray(rows.n), seed=jnp.asarray(rows.run), n_seeds=n_runs)
    out = []
    for r in range(count):
        z = {site: value[r] for site, value in draws.items()}
        with jax.enable_x64(True):
            theta = law.unscale(law.scaled({k: jnp.asarray(v, jnp.float64) for k, v in z.items()}), scales.x_ref, 1.0)
        truth = {k: float(v) for k, v in theta.items()} | {name: float(z[name]) for name in run_spreads(law) if name in z}
        y = np.asarray(z[models.OBSERVED], float) / rows.n
        out.append(Simulated(truth, FitData(rows.x, y, rows.n, run=rows.run)))
    return out


@dataclass(frozen=True)
class Refit:
    """One simulated grid fitted: whether each 90% interval holds the truth, and the fit's P(param > 0)."""

    inside: dict[str, bool]  # reported parameter (run spreads included) -> truth inside its 90% HDI
    p_positive: dict[str, float]
    truth: dict[str, float]
    divergences: int


def refit(law: Law, simulated: Simulated, scales: Scales, sampler: SamplerConfig) -> Refit:
    """Fit a simulated grid with the priors in the units it was drawn in (the fit's prior is then exactly
    the generating one) and score its intervals against the truth."""
    fit = fit_law(law, simulated.data, "nuts", sampler, scales)
    summary = fit.summary.set_index("param")
    inside = {p: bool(summary.loc[p, "hdi_5%"] <= simulated.truth[p] <= summary.loc[p, "hdi_95%"]) for p in summary.index}
    return Refit(inside, summary["p_positive"].to_dict(), simulated.truth, fit.divergences)
