"""Simulated grids whose cells share their evaluation items, for calibration: every run is graded on the same
items at every budget, as a grid's evaluation set is. Truths and per-example grades are drawn from the
item-level model's own prior predictive (scaling.fit.items), and each grid is laid out twice: per example for
the item-level fit, and as counts per run × budget for the aggregated Beta-Binomial fit (models.law_model),
which treats those rows as independent.

`benchmarks/bench_calibration.py --items` runs it large and `tests/fit/test_calibration.py` small.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import jax.numpy as jnp
import numpy as np
from numpyro.infer import Predictive

from scaling.fit.infer import FitData, LawFit, SamplerConfig, fit_law
from scaling.fit.items import (ITEM_SD, NEW_ITEMS, ItemData, fit_items, item_model, item_name, model_args,
                               predict_items)
from scaling.fit.laws import Law
from scaling.fit.models import OBSERVED, Scales

LEVEL = 0.9
FAMILY = "family"  # the one family of a simulated grid


@dataclass(frozen=True)
class SharedItemsDesign:
    """A grid of runs × budgets, every cell graded on the same items of one family."""

    runs: int = 6
    steps: tuple[float, ...] = (16.0, 45.0, 128.0, 362.0, 1024.0, 2896.0)
    items: int = 16

    def layout(self, law: Law) -> ItemData:
        """The examples (one per run, budget and item) with placeholder grades; the law's one axis is the step."""
        assert law.axes == ("x",) and not law.covariates, "a one-axis law without covariates"
        runs, steps = np.meshgrid(np.arange(self.runs), np.arange(len(self.steps)), indexing="ij")
        cells = runs.size
        cell = np.repeat(np.arange(cells), self.items)
        return ItemData(x={"x": np.asarray(self.steps, float)[steps.ravel()]}, cell_unit=runs.ravel(),
                        cell_family=np.zeros(cells, int), correct=np.zeros(cell.size), cell=cell,
                        item=np.tile(np.arange(self.items), cells), item_family=np.zeros(self.items, int), budget=cell,
                        units=tuple(f"run{r}" for r in range(self.runs)),
                        items=tuple(item_name(FAMILY, f"item{j}") for j in range(self.items)), families=(FAMILY,))

    def scales(self) -> Scales:
        return Scales({"x": float(np.exp(np.mean(np.log(self.steps))))}, 1.0)


@dataclass(frozen=True)
class SharedItemsGrid:
    """One simulated grid: the truth, and the same grades per example and as counts per run × budget."""

    truth: dict[str, float]  # the law's parameters (original units) and the item spread
    new_items: np.ndarray  # per cell: the true accuracy over new items of the family, for a typical run
    per_example: ItemData
    aggregated: FitData  # correct share of the items per run × budget, n = items, runs named


def simulate_shared_items(law: Law, design: SharedItemsDesign, key, count: int) -> list[SharedItemsGrid]:
    """`count` grids drawn from the item-level model's prior predictive over the design."""
    layout, scales = design.layout(law), design.scales()
    args = model_args(law, layout, scales) | {"y": None}
    model = partial(item_model, law, n_units=design.runs, n_families=1, n_groups=0)
    draws = Predictive(model, num_samples=count)(key, **args)
    grids = []
    for r in range(count):
        z = {site: np.asarray(value[r]) for site, value in draws.items()}
        theta = law.unscale(law.scaled({lat.site: jnp.asarray(z[lat.site]) for lat in law.latent}), scales.x_ref, 1.0)
        correct = z[OBSERVED].astype(float)
        per_example = dataclasses.replace(layout, correct=correct)
        aggregated = FitData(x=layout.x, y=per_example.per_budget(correct), n=np.full(len(layout.cell_unit), float(design.items)),
                             run=layout.cell_unit, run_labels=np.asarray(layout.units)[layout.cell_unit])
        grids.append(SharedItemsGrid({k: float(v) for k, v in theta.items()} | {ITEM_SD: float(z[ITEM_SD][0])},
                                     z[NEW_ITEMS], per_example, aggregated))
    return grids


@dataclass(frozen=True)
class Coverage:
    """Which 90% intervals of one fit hold the truth."""

    params: dict[str, bool]  # each law parameter (and the item spread, item-level): inside its 90% HDI
    new_items: np.ndarray  # per cell: the family's curve over new items inside its 90% interval
    divergences: int


def covered(law: Law, grid: SharedItemsGrid, design: SharedItemsDesign, sampler: SamplerConfig,
            item_level_fit: bool) -> Coverage:
    """Fit one grid item-level or aggregated (priors in the units it was drawn in) and score its intervals.

    The family's curve over new items is the item fit's `new_items` site; the aggregated fit has no item
    effects, and its law's own curve (a typical run) is what it offers for the family."""
    if item_level_fit:
        fit = fit_items(law, grid.per_example, sampler, design.scales())
        curve = predict_items(fit, grid.per_example)[NEW_ITEMS]
    else:
        fit = fit_law(law, grid.aggregated, "nuts", sampler, design.scales())
        curve = fit.predict(grid.aggregated.x, grid.aggregated.n)[0]
    return Coverage(_inside(fit, grid.truth), _between(curve, grid.new_items), fit.divergences)


def _inside(fit: LawFit, truth: dict[str, float]) -> dict[str, bool]:
    summary = fit.summary.set_index("param")
    return {p: bool(summary.loc[p, "hdi_5%"] <= truth[p] <= summary.loc[p, "hdi_95%"]) for p in summary.index if p in truth}


def _between(draws: np.ndarray, truth: np.ndarray) -> np.ndarray:
    lo, hi = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
    return (lo <= truth) & (truth <= hi)
