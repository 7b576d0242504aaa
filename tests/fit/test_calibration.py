"""Simulation-based calibration, small: truths and data drawn from the fitted model's own prior; the
90% intervals must hold the truth about 90% of the time (benchmarks/bench_calibration.py is the large one)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import binom

from scaling.fit import models
from scaling.fit.infer import FitData, SamplerConfig, fit_law
from scaling.fit.laws import LAWS
from scaling.fit.models import Scales
from scaling.fit.simulate import GridDesign, grid_rows, refit, simulate
from scaling.fit.simulate_items import SharedItemsDesign, covered, simulate_shared_items

REPLICATES = 40
LEVEL = 0.9
SHORT_NUTS = SamplerConfig(warmup=300, samples=300, chains=2, seed=0)


def _replicates(law, x: dict[str, np.ndarray], x_ref: dict[str, float], count: int, key):
    """(truth in original units, y) pairs from the prior predictive, at y_scale 1."""
    draws = models.prior_predictive(law, {a: jnp.asarray(v / x_ref[a]) for a, v in x.items()}, key, count)
    for r in range(count):
        z = {site: value[r] for site, value in draws.items()}
        truth = {k: float(v) for k, v in law.unscale(law.scaled(z), x_ref, 1.0).items()}
        yield truth, np.exp(np.asarray(z[models.OBSERVED], float))


def _bounds(trials: int) -> tuple[float, float]:
    """Coverage a calibrated method stays within 99.9% of the time, for independent trials."""
    return binom.ppf(0.0005, trials, LEVEL) / trials, binom.ppf(0.9995, trials, LEVEL) / trials


@pytest.mark.slow
def test_power_law_intervals_cover_prior_drawn_truths_at_their_level():
    law = LAWS["power"]
    x = {"x": np.geomspace(10, 1e4, 16)}
    # The prior's units fixed to those the data are drawn in, so the fitted prior is the generating one.
    units = Scales({"x": float(np.exp(np.log(x["x"]).mean()))}, 1.0)
    hits = []
    for truth, y in _replicates(law, x, units.x_ref, REPLICATES, jax.random.key(2024)):
        summary = fit_law(law, FitData(x, y), "nuts", SHORT_NUTS, units).summary.set_index("param")
        hits.append([summary.loc[p, "hdi_5%"] <= truth[p] <= summary.loc[p, "hdi_95%"] for p in law.params])
    hits = np.array(hits)
    low, high = _bounds(hits.size)
    assert low <= hits.mean() <= high, (hits.mean(), low, high)
    per_param_low = _bounds(REPLICATES)[0]
    for name, coverage in zip(law.params, hits.mean(axis=0)):
        assert coverage >= per_param_low, (name, coverage, per_param_low)


@pytest.mark.slow
def test_sft_law_with_run_effects_covers_prior_drawn_truths():
    """The SFT law on a small grid (8 runs × 4 budgets, runs that memorize or not): the intervals of its
    parameters and run spreads hold prior-drawn truths about 90% of the time (a band wide enough for 8
    replicates of 11 correlated intervals; benchmarks/bench_calibration.py --sft runs 40 on the reference
    grid's shape)."""
    law = LAWS["sft"]
    rows = grid_rows(GridDesign(diversities=(1.0, 4.0), seeds=1, steps=(32.0, 128.0, 512.0, 2048.0)), seed=0)
    refits = [refit(law, one, rows.scales, SHORT_NUTS) for one in simulate(law, rows, jax.random.key(7), 8)]
    hits = np.array([list(r.inside.values()) for r in refits])
    assert hits.shape == (8, len(law.params) + len(law.run_effects))
    assert 0.75 <= hits.mean() <= 0.99, hits.mean(axis=0)


# --- shared items -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_item_level_intervals_cover_truths_where_every_cell_shares_its_items():
    """Grids of 6 runs × 6 budgets graded on the same 16 items, drawn from the item-level model's prior (crossed
    run and item effects): the item-level fit's 90% intervals of the law's parameters and item spread, and of
    the family's curve over new items, hold the truth about 90% of the time (a loose band for 6 grids;
    benchmarks/bench_calibration.py --items runs 40 beside the aggregated Beta-Binomial)."""
    law, design = LAWS["accuracy"], SharedItemsDesign()
    scored = [covered(law, grid, design, SHORT_NUTS, item_level_fit=True)
              for grid in simulate_shared_items(law, design, jax.random.key(11), 6)]
    hits = np.array([list(c.params.values()) for c in scored])
    assert hits.shape == (6, len(law.params) + 1)
    assert 0.75 <= hits.mean() <= 1.0, hits.mean(axis=0)
    assert np.concatenate([c.new_items for c in scored]).mean() >= 0.75
