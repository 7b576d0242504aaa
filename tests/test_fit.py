import numpy as np
import pandas as pd
import pytest

from scaling.fit.infer import SamplerConfig, fit_accuracy_law, fit_power_law
from scaling.fit.laws import saturating_accuracy, saturating_power

TRUTH = {"small": (0.3, 1.2, 0.6), "large": (0.1, 0.8, 0.9)}
STEPS = np.array([50, 100, 200, 400, 800, 1600, 3200, 6400])
SAMPLER = SamplerConfig(warmup=400, samples=400, chains=2, seed=0)


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    x_ref = np.exp(np.log(STEPS).mean())
    rows = [
        {"group": group, "step": step, "loss": float(saturating_power(step / x_ref, *params)) * np.exp(rng.normal(0, 0.02))}
        for group, params in TRUTH.items() for step in STEPS for _ in range(2)
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fit(table):
    return fit_power_law(table, "step", "loss", "group", SAMPLER)


def test_known_parameters_lie_in_the_90_percent_intervals(fit):
    summary = fit.summary.set_index(["group", "param"])
    for group, values in TRUTH.items():
        for name, true in zip(("E", "A", "alpha"), values):
            row = summary.loc[(group, name)]
            assert row["hdi_5%"] <= true <= row["hdi_95%"], (group, name, true, row.to_dict())


def test_summary_columns_and_diagnostics(fit):
    assert list(fit.summary.columns) == ["group", "param", "mean", "sd", "hdi_5%", "hdi_95%", "r_hat", "ess_bulk"]
    assert len(fit.summary) == 6
    assert fit.summary["r_hat"].max() < 1.05 and fit.divergences == 0
    assert fit.posterior.posterior["alpha"].dims == ("chain", "draw", "group")


def test_same_seed_same_numbers(table, fit):
    again = fit_power_law(table, "step", "loss", "group", SAMPLER)
    pd.testing.assert_frame_equal(fit.summary, again.summary)


def test_non_positive_values_are_refused(table):
    bad = table.assign(loss=table["loss"] - 1.0)
    with pytest.raises(ValueError, match="positive"):
        fit_power_law(bad, "step", "loss", "group", SAMPLER)


def test_the_law_decays_to_its_floor():
    assert saturating_power(1.0, 0.5, 2.0, 1.0) == pytest.approx(2.5)
    assert saturating_power(1e9, 0.5, 2.0, 1.0) == pytest.approx(0.5)


def test_the_accuracy_law_recovers_known_ceilings_and_half_points():
    rng = np.random.default_rng(1)
    truth = {"fast": (0.95, 200.0, 3.0), "slow": (0.7, 800.0, 2.0)}
    n = 200
    rows = [
        {"group": g, "step": s, "n": n, "acc": rng.binomial(n, float(saturating_accuracy(s, *p))) / n}
        for g, p in truth.items() for s in STEPS
    ]
    fit = fit_accuracy_law(pd.DataFrame(rows), "step", "acc", "n", "group", SAMPLER)
    summary = fit.summary.set_index(["group", "param"])
    for group, values in truth.items():
        for name, true in zip(("C", "x50", "k"), values):
            row = summary.loc[(group, name)]
            # Six 90% intervals miss one truth now and then by design; three sd must not miss.
            assert abs(row["mean"] - true) <= 3 * row["sd"], (group, name, true, row.to_dict())
    assert fit.summary["r_hat"].max() < 1.05
    with pytest.raises(ValueError, match="accuracy fit"):
        fit_accuracy_law(pd.DataFrame(rows).assign(acc=1.5), "step", "acc", "n", "group", SAMPLER)
