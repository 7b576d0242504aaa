"""The Chinchilla fit on Epoch AI's 240 points: NUTS (4 chains × 1000 draws, 1000 warmup) against
Epoch's protocol (Huber loss on log loss, L-BFGS from a grid of starts, 4000 bootstrap refits).

Both run cold in this process, compilation included: that is what a user waits for. Side by side: wall
time, the estimates (NUTS posterior median, Huber full-data fit) and 95% intervals (NUTS posterior
quantiles, bootstrap quantiles), against the intervals Epoch published.
Last line: a JSON object whose "ratio" is Huber time / NUTS time (goal >= 5; NUTS goal under 15 s).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from scaling.fit.infer import FitData, SamplerConfig, fit_law
from scaling.fit.laws import LAWS

GOAL_RATIO = 5.0
GOAL_NUTS_S = 15.0
NUTS = SamplerConfig(warmup=1000, samples=1000, chains=4, seed=0)
BOOTSTRAP = 4000
CHINCHILLA = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_svg_extracted_data.csv"
# Epoch's estimates and 95% bootstrap intervals (arXiv 2404.10102; tests/data/README.md).
EPOCH = {"A": 482.01, "B": 2085.43, "E": 1.8169, "alpha": 0.3478, "beta": 0.3659}
EPOCH_95 = {"A": (285.2, 743.6), "B": (1042.4, 5810.3), "E": (1.769, 1.871), "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}


def epoch_points() -> FitData:
    """Epoch's 240 points: the 5 highest-loss rows dropped; N = Model Size, D = Training FLOP / (6 N)."""
    table = pd.read_csv(CHINCHILLA)
    kept = table[table["loss"] < table["loss"].sort_values().iloc[-5]]
    n = kept["Model Size"].to_numpy(float)
    return FitData(x={"N": n, "D": kept["Training FLOP"].to_numpy(float) / (6 * n)}, y=kept["loss"].to_numpy(float))


def _timed(method: str, sampler: SamplerConfig):
    started = time.perf_counter()
    fit = fit_law(LAWS["chinchilla"], epoch_points(), method, sampler)
    return fit, time.perf_counter() - started


def _intervals(fit, point: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    rows = {}
    for name, values in fit.draws().items():
        low, median, high = np.quantile(values, [0.025, 0.5, 0.975])
        estimate = point[name] if point else median
        rows[name] = {"estimate": float(estimate), "low95": float(low), "high95": float(high), "width95": float(high - low)}
    return rows


def main() -> None:
    nuts, nuts_s = _timed("nuts", NUTS)
    _, nuts_warm_s = _timed("nuts", NUTS)  # the compiled program is cached: the cost of a refit
    huber, huber_s = _timed("huber", SamplerConfig(bootstrap=BOOTSTRAP, seed=0))
    nuts_rows = _intervals(nuts)
    huber_rows = _intervals(huber, huber.summary.set_index("param")["mean"].to_dict())
    print(f"NUTS  {NUTS.chains} chains × {NUTS.samples} draws (+{NUTS.warmup} warmup): {nuts_s:6.2f} s cold, "
          f"{nuts_warm_s:.2f} s warm; {nuts.divergences} divergences, max r_hat {nuts.summary['r_hat'].max():.4f}, "
          f"min bulk ESS {nuts.summary['ess_bulk'].min():.0f}")
    print(f"Huber L-BFGS + {BOOTSTRAP} bootstrap refits:  {huber_s:6.2f} s")
    print(f"{'param':>6} | {'NUTS median [95%]':>34} | {'Huber fit [95% bootstrap]':>34} | {'Epoch [95%]':>30} | width NUTS/boot")
    for name in LAWS["chinchilla"].params:
        n, h = nuts_rows[name], huber_rows[name]
        print(f"{name:>6} | {n['estimate']:10.4g} [{n['low95']:9.4g}, {n['high95']:9.4g}] | "
              f"{h['estimate']:10.4g} [{h['low95']:9.4g}, {h['high95']:9.4g}] | "
              f"{EPOCH[name]:8.4g} [{EPOCH_95[name][0]:8.4g}, {EPOCH_95[name][1]:8.4g}] | {n['width95'] / h['width95']:.2f}")
    ratio = huber_s / nuts_s
    print(json.dumps({
        "benchmark": "fit",
        "ratio": round(ratio, 2),
        "goal": GOAL_RATIO,
        "nuts_s": round(nuts_s, 2),
        "nuts_goal_s": GOAL_NUTS_S,
        "nuts_warm_s": round(nuts_warm_s, 2),
        "huber_s": round(huber_s, 2),
        "bootstrap": BOOTSTRAP,
        "nuts": {"chains": NUTS.chains, "draws": NUTS.samples, "warmup": NUTS.warmup, "divergences": nuts.divergences,
                 "max_r_hat": round(float(nuts.summary["r_hat"].max()), 4),
                 "min_ess_bulk": round(float(nuts.summary["ess_bulk"].min()))},
        "params": {name: {"nuts": nuts_rows[name], "huber": huber_rows[name], "epoch": {"estimate": EPOCH[name],
                   "low95": EPOCH_95[name][0], "high95": EPOCH_95[name][1]}} for name in LAWS["chinchilla"].params},
        "timing": "wall clock, cold (compilation included) in a fresh process",
        "cpus": os.cpu_count(),
        "backend": jax.default_backend(),
    }))


if __name__ == "__main__":
    main()
