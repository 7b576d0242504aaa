"""The Huber point fit's bootstrap: rows of one run are resampled together."""

import numpy as np

from scaling.fit.huber import MIN_RUNS_TO_RESAMPLE, bootstrap_weights
from scaling.fit.infer import FitData, SamplerConfig, fit_law
from scaling.fit.laws import LAWS


def test_a_run_bootstrap_draws_whole_runs_and_too_few_runs_fall_back_to_rows():
    rng = np.random.default_rng(0)
    runs = np.repeat(np.arange(MIN_RUNS_TO_RESAMPLE + 2), 4)
    for _ in range(20):
        weights, resampled = bootstrap_weights(rng, runs.size, runs)
        per_run = weights.reshape(-1, 4)
        assert resampled == "runs" and (per_run == per_run[:, :1]).all() and weights.sum() == runs.size
    weights, resampled = bootstrap_weights(rng, 12, np.repeat(np.arange(3), 4))
    assert resampled == "rows" and weights.sum() == 12


def test_a_fit_of_rows_that_name_their_runs_resamples_runs_and_says_so():
    """Ten runs of six budgets, each run's curve shifted as a whole: the evidence is ten runs, not sixty rows."""
    rng = np.random.default_rng(3)
    x = np.tile(np.geomspace(100, 10_000, 6), 10)
    runs = np.repeat(np.arange(10), 6)
    y = (1.5 + 20.0 * x ** -0.4) * np.exp(rng.normal(0, 0.05, 10)[runs] + rng.normal(0, 0.002, x.size))
    fit = fit_law(LAWS["power"], FitData({"x": x}, y, run=runs), "huber", SamplerConfig(bootstrap=20))
    assert fit.posterior.posterior.attrs["bootstrap_resampled"] == "runs"
    rows = fit_law(LAWS["power"], FitData({"x": x}, y), "huber", SamplerConfig(bootstrap=20))
    assert rows.posterior.posterior.attrs["bootstrap_resampled"] == "rows"
    assert not np.allclose(fit.draws()["E"], rows.draws()["E"])  # the same seed, other resamples
