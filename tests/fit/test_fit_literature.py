"""The fitter against published numbers: Epoch AI's replication of Chinchilla (Besiroglu et al. 2024).

Data: tests/data/chinchilla_svg_extracted_data.csv (its source and licence are in tests/data/README.md).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.fit.infer import FitData, SamplerConfig, fit_law
from scaling.fit.laws import LAWS

CHINCHILLA = Path(__file__).parents[1] / "data" / "chinchilla_svg_extracted_data.csv"

# Epoch's estimates, bootstrap SEs and 95% bootstrap intervals (arXiv 2404.10102, Table 1).
EPOCH = {"A": 482.01, "B": 2085.43, "E": 1.8169, "alpha": 0.3478, "beta": 0.3659}
EPOCH_SE = {"A": 124.5, "B": 1293.3, "E": 0.0257, "alpha": 0.0154, "beta": 0.0206}
EPOCH_95 = {"A": (285.2, 743.6), "B": (1042.4, 5810.3), "E": (1.769, 1.871), "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}
# Epoch's plain grid-search L-BFGS fit of the Huber objective, without bootstrapping.
EPOCH_GRID = {"A": 477.8, "B": 2143.0, "E": 1.8172, "alpha": 0.3473, "beta": 0.3672}


def epoch_points() -> FitData:
    """Epoch's 240 points: the 5 highest-loss rows dropped; N = Model Size, D = Training FLOP / (6 N)."""
    table = pd.read_csv(CHINCHILLA)
    kept = table[table["loss"] < table["loss"].sort_values().iloc[-5]]
    n = kept["Model Size"].to_numpy(float)
    return FitData(x={"N": n, "D": kept["Training FLOP"].to_numpy(float) / (6 * n)}, y=kept["loss"].to_numpy(float))


@pytest.fixture(scope="module")
def data() -> FitData:
    return epoch_points()


@pytest.mark.slow
def test_nuts_medians_lie_in_epochs_intervals(data):
    assert len(data.y) == 240
    fit = fit_law(LAWS["chinchilla"], data, "nuts", SamplerConfig(warmup=500, samples=500, chains=4, seed=0))
    assert fit.converged, fit.summary
    medians = {name: float(np.median(values)) for name, values in fit.draws().items()}
    for name, (low, high) in EPOCH_95.items():
        assert low <= medians[name] <= high, (name, medians[name], (low, high))
    for name in ("E", "alpha", "beta"):
        assert abs(medians[name] - EPOCH[name]) <= EPOCH_SE[name], (name, medians[name], EPOCH[name])


def test_huber_reproduces_epochs_grid_search_fit(data):
    fit = fit_law(LAWS["chinchilla"], data, "huber", SamplerConfig(bootstrap=40, seed=0))
    estimate = fit.summary.set_index("param")["mean"]
    for name, published in EPOCH_GRID.items():
        assert estimate[name] == pytest.approx(published, rel=0.02), (name, estimate[name], published)
    assert fit.summary["r_hat"].isna().all() and fit.method == "huber"
    assert fit.draws()["B"].shape == (40,)
