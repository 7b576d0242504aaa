"""Simulation-based calibration, large: for several laws and both posterior methods, draw truths and data
from the fitted model's own prior, fit, and count how often the 90% intervals (the summary's HDI) hold
the truth. A calibrated method covers 90% up to binomial noise; the bounds printed are the 99.9%
binomial range for that many (treated as independent) intervals.

SVI is corrected by Pareto-smoothed importance resampling and flags its fits with Pareto k̂ > 0.7 as
not converged; its coverage is reported over all replicates and over the trusted ones.
Last line: a JSON object whose "ratio" is NUTS's pooled coverage / 0.9 (1 is calibrated).

`--items [REPLICATES]` calibrates where items are shared (default 40 replicates, ~20 s each): grids of 6 runs ×
6 budgets graded on the same 16 items, drawn from the item-level model's prior (crossed run and item effects),
each fitted twice, item-level (scaling.fit.items) and as counts per run × budget (the aggregated Beta-Binomial,
which counts every row as independent); it prints both coverages of the law's parameters and of the family's
curve over new items, side by side, with their difference. The item-level fit should cover 0.85–0.95
(measured: 0.919, curve 0.942; aggregated 0.875 and 0.863; 192 s on 2 cores).

`--sft [REPLICATES]` calibrates the SFT law with run effects instead (default 40 replicates, ~1 min each on
2 cores): grids shaped like runs/reference.toml (24 runs × 6 budgets, half the runs memorizing at some
budget), truths and data from the law's prior predictive; it reports coverage per parameter (run spreads
included) and how often the sign of beta is recovered (P(beta > 0) on the right side of 0.5, and beyond
0.95 / below 0.05) among replicates whose |beta| >= 0.2.

`--off-prior [REPLICATES]` fits `chinchilla` to data whose truths are NOT drawn from the prior (default 12:
80 points, 1.5% noise, the data term at 0.5–1.5% of the loss, below the noise), with the prior's units taken from
the data as a user's fit does, and reports coverage by the summary's `identified` label side by side: all
parameters, those labelled `data`, and those labelled `ridge` or `prior` (scaling.fit.identify).
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import binom

from scaling.fit import models
from scaling.fit.infer import PARETO_K_MAX, FitData, SamplerConfig, fit_law
from scaling.fit.laws import LAWS
from scaling.fit.models import Scales
from scaling.fit.simulate import GridDesign, grid_rows, refit, simulate
from scaling.fit.simulate_items import SharedItemsDesign, covered, simulate_shared_items

LEVEL = 0.9
SAMPLERS = {"nuts": SamplerConfig(warmup=400, samples=400, chains=2, seed=0),
            "svi": SamplerConfig(samples=250, chains=4, seed=0)}
EXAMPLES = 200.0  # evaluation examples behind each simulated accuracy


def _design(law_name: str) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Where each law is observed: a doubling grid for one axis, a log-uniform scatter for two."""
    law = LAWS[law_name]
    if len(law.axes) == 1:
        x = {law.axes[0]: np.geomspace(10, 1e4, 16)}
    else:
        rng = np.random.default_rng(1)
        x = {axis: np.exp(rng.uniform(np.log(1e7), np.log(1e11), 40)) for axis in law.axes}
    n = np.full(len(next(iter(x.values()))), EXAMPLES) if law.response == "accuracy" else None
    return x, n


def calibrate(law_name: str, method: str, replicates: int, key, exact: bool = True) -> dict:
    law = LAWS[law_name]
    x, n = _design(law_name)
    x_ref = {a: float(np.exp(np.log(v).mean())) for a, v in x.items()}
    draws = models.prior_predictive(law, {a: jnp.asarray(v / x_ref[a]) for a, v in x.items()}, key, replicates,
                                    n=None if n is None else jnp.asarray(n))
    hits, trusted = [], []
    started = time.perf_counter()
    for r in range(replicates):
        z = {site: value[r] for site, value in draws.items()}
        truth = {k: float(v) for k, v in law.unscale(law.scaled(z), x_ref, 1.0).items()}
        observed = np.asarray(z[models.OBSERVED], float)
        y = np.exp(observed) if law.response == "loss" else observed / n
        # The prior's units fixed to those the data were drawn in: the fit's prior is then exactly the
        # generating one (the default, the data's median loss, moves it a little with each data set).
        fit = fit_law(law, FitData(x, y, n), method, SAMPLERS[method], Scales(x_ref, 1.0) if exact else None)
        summary = fit.summary.set_index("param")
        hits.append([summary.loc[p, "hdi_5%"] <= truth[p] <= summary.loc[p, "hdi_95%"] for p in law.params])
        trusted.append(fit.pareto_k is None or fit.pareto_k <= PARETO_K_MAX)
    hits, trusted = np.array(hits), np.array(trusted)
    low, high = (binom.ppf(q, hits.size, LEVEL) / hits.size for q in (0.0005, 0.9995))
    row = {"law": law_name, "method": method, "prior_units": "generating" if exact else "data", "replicates": replicates, "seconds": round(time.perf_counter() - started, 1),
           "coverage": round(float(hits.mean()), 3), "bounds": [round(low, 3), round(high, 3)],
           "calibrated": bool(low <= hits.mean() <= high),
           "by_param": {p: round(float(c), 3) for p, c in zip(law.params, hits.mean(axis=0))}}
    if method == "svi":
        row["trusted_share"] = round(float(trusted.mean()), 3)
        row["coverage_trusted"] = round(float(hits[trusted].mean()), 3) if trusted.any() else None
    return row


def calibrate_sft(replicates: int, key) -> dict:
    law = LAWS["sft"]
    rows = grid_rows(GridDesign(), seed=0)
    started = time.perf_counter()
    refits = []
    for i, one in enumerate(simulate(law, rows, key, replicates)):
        refits.append(refit(law, one, rows.scales, SAMPLERS["nuts"]))
        print(f"  replicate {i + 1}/{replicates}: {sum(refits[-1].inside.values())}/{len(refits[-1].inside)} inside, "
              f"{refits[-1].divergences} divergences", flush=True)
    params = list(refits[0].inside)
    hits = np.array([[r.inside[p] for p in params] for r in refits])
    low, high = (binom.ppf(q, hits.size, LEVEL) / hits.size for q in (0.0005, 0.9995))
    clear = [r for r in refits if abs(r.truth["beta"]) >= 0.2]
    right = [(r.p_positive["beta"] > 0.5) == (r.truth["beta"] > 0) for r in clear]
    confident = [r.p_positive["beta"] > 0.95 or r.p_positive["beta"] < 0.05 for r in clear]
    confident_right = [c and ok for c, ok in zip(confident, right)]
    return {"law": "sft", "method": "nuts", "replicates": replicates, "seconds": round(time.perf_counter() - started, 1),
            "coverage": round(float(hits.mean()), 3), "bounds": [round(low, 3), round(high, 3)],
            "calibrated": bool(low <= hits.mean() <= high),
            "by_param": {p: round(float(c), 3) for p, c in zip(params, hits.mean(axis=0))},
            "beta_sign_recovered": round(float(np.mean(right)), 3) if clear else None,
            "beta_sign_confident": round(float(np.mean(confident)), 3) if clear else None,
            "beta_confident_and_wrong": int(sum(c and not ok for c, ok in zip(confident, right))),
            "beta_confident_and_right": int(sum(confident_right)), "beta_replicates": len(clear),
            "fits_with_divergences": int(sum(r.divergences > 0 for r in refits))}


def main_sft(replicates: int) -> None:
    row = calibrate_sft(replicates, jax.random.key(2026))
    print(f"sft nuts ×{replicates}: coverage {row['coverage']:.3f} (bounds {row['bounds'][0]:.3f}–{row['bounds'][1]:.3f}, "
          f"{'ok' if row['calibrated'] else 'OFF'}) by param {row['by_param']}; sign of beta right in "
          f"{row['beta_sign_recovered']} of {row['beta_replicates']} (|beta| >= 0.2), confident in {row['beta_sign_confident']}, "
          f"confident and wrong {row['beta_confident_and_wrong']}; {row['fits_with_divergences']} fits with divergences; "
          f"{row['seconds']:.0f} s")
    print(json.dumps({"benchmark": "calibration-sft", "ratio": round(row["coverage"] / LEVEL, 3), **row,
                      "cpus": os.cpu_count(), "backend": jax.default_backend()}))


# --- off-prior truths: coverage by identification label (scaling.fit.identify) -------------------------

OFF_PRIOR_POINTS = 80
OFF_PRIOR_NOISE = 0.015  # multiplicative: log y = log L + 1.5%·Normal(0, 1)
OFF_PRIOR_RANGES = {"N": (1e7, 1e10), "D": (1e9, 1e12)}  # log-uniform, as a size × tokens scan


def off_prior_truths(count: int, seed: int = 33) -> list[dict[str, float]]:
    """Chinchilla truths whose data term B·D^−beta is 0.5–1.5% of the loss at the design's centre, below the
    noise, and whose parameter term is 20–40%; exponents 0.25–0.45 and floors 1.5–2.2 as in published fits,
    not drawn from the prior."""
    rng = np.random.default_rng(seed)
    centre = {axis: float(np.sqrt(low * high)) for axis, (low, high) in OFF_PRIOR_RANGES.items()}
    truths = []
    for _ in range(count):
        e, alpha, beta = rng.uniform(1.5, 2.2), rng.uniform(0.25, 0.45), rng.uniform(0.25, 0.45)
        strong, weak = rng.uniform(0.2, 0.4), rng.uniform(0.005, 0.015)
        loss = e / (1 - strong - weak)  # the loss at the centre, of which each term takes its share
        truths.append({"E": e, "A": strong * loss * centre["N"] ** alpha, "B": weak * loss * centre["D"] ** beta,
                       "alpha": alpha, "beta": beta})
    return truths


def off_prior_data(truth: dict[str, float], seed: int) -> FitData:
    rng = np.random.default_rng(seed)
    x = {axis: np.exp(rng.uniform(np.log(low), np.log(high), OFF_PRIOR_POINTS)) for axis, (low, high) in OFF_PRIOR_RANGES.items()}
    mean = np.asarray(LAWS["chinchilla"].mean(truth, x), float)
    return FitData(x, mean * np.exp(OFF_PRIOR_NOISE * rng.normal(size=OFF_PRIOR_POINTS)))


def coverage_by_label(replicates: int, seed: int = 33) -> dict:
    """Fit each off-prior data set and count, per identification label, how often the 90% interval holds the truth."""
    law = LAWS["chinchilla"]
    started = time.perf_counter()
    rows = []
    for i, truth in enumerate(off_prior_truths(replicates, seed)):
        summary = fit_law(law, off_prior_data(truth, seed=seed + i), "nuts", SAMPLERS["nuts"]).summary.set_index("param")
        for p in law.params:
            rows.append({"replicate": i, "param": p, "label": summary.loc[p, "identified"],
                         "hit": bool(summary.loc[p, "hdi_5%"] <= truth[p] <= summary.loc[p, "hdi_95%"]),
                         "contraction": round(float(summary.loc[p, "contraction"]), 3),
                         "prior_share": round(float(summary.loc[p, "prior_share"]), 3)})
        print(f"  replicate {i + 1}/{replicates}: " + ", ".join(
            f"{r['param']} {r['label']}{'' if r['hit'] else ' MISS'}" for r in rows[-len(law.params):]), flush=True)

    def coverage(chosen: list[dict]) -> dict:
        return {"coverage": round(float(np.mean([r["hit"] for r in chosen])), 3) if chosen else None, "intervals": len(chosen)}

    return {"law": "chinchilla", "truths": "off the prior, one term below the noise", "replicates": replicates,
            "points": OFF_PRIOR_POINTS, "noise": OFF_PRIOR_NOISE, "seconds": round(time.perf_counter() - started, 1),
            "all": coverage(rows), "data": coverage([r for r in rows if r["label"] == "data"]),
            "ridge_or_prior": coverage([r for r in rows if r["label"] in ("ridge", "prior")]),
            "conflict": coverage([r for r in rows if r["label"] == "conflict"]), "intervals": rows}


def main_off_prior(replicates: int) -> None:
    row = coverage_by_label(replicates)
    print(f"chinchilla nuts ×{replicates}, truths off the prior: coverage all {row['all']['coverage']} "
          f"({row['all']['intervals']}), labelled data {row['data']['coverage']} ({row['data']['intervals']}), "
          f"labelled ridge or prior {row['ridge_or_prior']['coverage']} ({row['ridge_or_prior']['intervals']}), "
          f"conflict {row['conflict']['coverage']} ({row['conflict']['intervals']}); {row['seconds']:.0f} s")
    print(json.dumps({"benchmark": "calibration-off-prior", "ratio": round((row["data"]["coverage"] or 0.0) / LEVEL, 3),
                      **row, "cpus": os.cpu_count(), "backend": jax.default_backend()}))


def main() -> None:
    plan = [("power", "nuts", 100, True), ("power", "svi", 100, True), ("logistic", "nuts", 100, True),
            ("logistic", "svi", 100, True), ("chinchilla", "nuts", 50, True), ("chinchilla", "svi", 50, True),
            ("power", "nuts", 100, False)]
    rows = []
    for i, (law_name, method, replicates, exact) in enumerate(plan):
        row = calibrate(law_name, method, replicates, jax.random.key(100 + i), exact)
        rows.append(row)
        extra = (f"  trusted (k̂ <= {PARETO_K_MAX}) {row['trusted_share']:.0%}, coverage there {row['coverage_trusted']}"
                 if method == "svi" else "")
        print(f"{law_name:>10} {method:>4} ×{replicates:<3} prior in {row['prior_units']:<10} units: coverage {row['coverage']:.3f} "
              f"(bounds {row['bounds'][0]:.3f}–{row['bounds'][1]:.3f}, {'ok' if row['calibrated'] else 'OFF'}) "
              f"by param {row['by_param']}  {row['seconds']:.0f} s{extra}")
    nuts = [r for r in rows if r["method"] == "nuts" and r["prior_units"] == "generating"]
    pooled = sum(r["coverage"] * r["replicates"] * len(r["by_param"]) for r in nuts) / sum(
        r["replicates"] * len(r["by_param"]) for r in nuts)
    print(json.dumps({"benchmark": "calibration", "ratio": round(pooled / LEVEL, 3), "nuts_coverage": round(pooled, 3),
                      "level": LEVEL, "rows": rows, "cpus": os.cpu_count(), "backend": jax.default_backend()}))


# --- shared items: item-level against aggregated ------------------------------------------------------------

SHARED_ITEMS_LAW = "accuracy"  # one axis (steps), three parameters, constant run offsets: quick to fit many times


def calibrate_shared_items(replicates: int, key) -> dict:
    """Coverage of the item-level and the aggregated fit on the same simulated grids with shared items."""
    law, design = LAWS[SHARED_ITEMS_LAW], SharedItemsDesign()
    started = time.perf_counter()
    scored = {"item-level": [], "aggregated": []}
    for i, grid in enumerate(simulate_shared_items(law, design, key, replicates)):
        for name in scored:
            scored[name].append(covered(law, grid, design, SAMPLERS["nuts"], item_level_fit=name == "item-level"))
        print(f"  replicate {i + 1}/{replicates}: " + "; ".join(
            f"{name} {sum(c[-1].params.values())}/{len(c[-1].params)} inside, curve {c[-1].new_items.mean():.2f}"
            for name, c in scored.items()), flush=True)
    out = {"law": SHARED_ITEMS_LAW, "replicates": replicates, "runs": design.runs, "budgets": len(design.steps),
           "items": design.items, "seconds": round(time.perf_counter() - started, 1)}
    for name, fits in scored.items():
        params = list(fits[0].params)
        hits = np.array([[c.params[p] for p in params] for c in fits])
        curve = np.concatenate([c.new_items for c in fits])
        low, high = (binom.ppf(q, hits.size, LEVEL) / hits.size for q in (0.0005, 0.9995))
        out[name] = {"coverage": round(float(hits.mean()), 3), "bounds": [round(low, 3), round(high, 3)],
                     "by_param": {p: round(float(v), 3) for p, v in zip(params, hits.mean(axis=0))},
                     "new_items_curve": round(float(curve.mean()), 3),
                     "fits_with_divergences": int(sum(c.divergences > 0 for c in fits))}
    return out


def main_items(replicates: int) -> None:
    row = calibrate_shared_items(replicates, jax.random.key(2033))
    item, aggregated = row["item-level"], row["aggregated"]
    for name in ("item-level", "aggregated"):
        one = row[name]
        print(f"{name:>10}: coverage of the law's parameters {one['coverage']:.3f} (bounds {one['bounds'][0]:.3f}–"
              f"{one['bounds'][1]:.3f}) by param {one['by_param']}; of the curve over new items {one['new_items_curve']:.3f}; "
              f"{one['fits_with_divergences']} fits with divergences")
    print(f"item-level − aggregated: parameters {item['coverage'] - aggregated['coverage']:+.3f}, curve "
          f"{item['new_items_curve'] - aggregated['new_items_curve']:+.3f}; {row['seconds']:.0f} s")
    print(json.dumps({"benchmark": "calibration-shared-items", "ratio": round(item["coverage"] / LEVEL, 3),
                      "item_over_aggregated": round(item["coverage"] / max(aggregated["coverage"], 1e-9), 3), **row,
                      "cpus": os.cpu_count(), "backend": jax.default_backend()}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--items":
        main_items(int(sys.argv[2]) if len(sys.argv) > 2 else 40)
    elif len(sys.argv) > 1 and sys.argv[1] == "--sft":
        main_sft(int(sys.argv[2]) if len(sys.argv) > 2 else 40)
    elif len(sys.argv) > 1 and sys.argv[1] == "--off-prior":
        main_off_prior(int(sys.argv[2]) if len(sys.argv) > 2 else 12)
    else:
        main()
