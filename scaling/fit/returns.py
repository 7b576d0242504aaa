"""Diminishing returns from a fitted law, every number with a 90% posterior interval.

- gain per step of each axis at reference points (the middle and the best value measured, the other
  axes at their largest: "what does the next step buy from where I am?"). A step doubles an axis, but
  for a fraction bounded by 1 (`quality`) it halves the error rate 1 − q: "doubling" quality 0.75 would
  be 1.5, a quality that cannot exist;
- the point on each axis where the gain per step falls below a threshold (default 1 point of
  accuracy, or 1% of loss), with the share of posterior draws in which it does (the interval is over
  those draws: in the others the gain never reaches the threshold, or is still above it at the end of
  the search);
- the post-memorization gain: for each run that memorized within its budgets, from its own
  memorization step to k times it, averaged over those runs per draw (a law with a `past` input, as
  `sft`, sees ln k steps past memorization at the later point).

A law's covariates (inputs taken as given) sit at their median over the rows fitted, except `past`,
which is 0: the gains along the axes are those of a run before (or without) memorization.

Gains are improvements: accuracy up (in points, ×100) or loss down (in % of the loss before).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
import pandas as pd

from scaling.fit.laws import Law

LEVEL = 0.9  # interval mass
SEARCH_DOUBLINGS = 30  # how far past the largest measured value the threshold search looks
NEVER = np.inf  # the gain never falls below the threshold within the search range
NOT_APPLICABLE = np.nan  # the gain never reaches the threshold: no returns to diminish
ERROR_RATE_AXES = frozenset({"quality"})  # fractions in (0, 1]: a step halves 1 − value instead of doubling it
COLUMNS = ["axis", "quantity", "at", "estimate", "lo", "hi", "unit", "share", "runs"]
PAST = "past"  # the covariate of log steps past a run's memorization step (laws.SFT's covariates)


def improved(axis: str, values: np.ndarray) -> np.ndarray:
    """One step up an axis: twice the value, or for an error-rate axis half the error rate."""
    values = np.asarray(values, float)
    return 1.0 - (1.0 - values) / 2.0 if axis in ERROR_RATE_AXES else 2.0 * values


def step_quantity(axis: str) -> str:
    return "gain_per_halved_error" if axis in ERROR_RATE_AXES else "gain_per_doubling"


@dataclass(frozen=True)
class MemorizedRun:
    """A run (a cell and seed) at its own law-axis values, and the step at which it memorized its training items."""

    point: dict[str, float]  # the law's axes other than steps, and its covariates (a `past` among them is ignored)
    memorization_step: float  # NaN: it never memorized within its budgets


@dataclass(frozen=True)
class ReturnsConfig:
    threshold: float | None = None  # gain per doubling below which returns count as diminished (None: 1 point or 1%)
    post_memorization_factor: float = 4.0  # post-memorization gain: from m to this many times m steps

    def __post_init__(self) -> None:
        if self.threshold is not None and not (np.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"--threshold must be a positive number (points, or % of loss, per doubling), got {self.threshold}")
        if not (np.isfinite(self.post_memorization_factor) and self.post_memorization_factor > 1):
            raise ValueError(f"post_memorization_factor must be above 1, got {self.post_memorization_factor}")


def gain(law: Law, theta: dict[str, np.ndarray], before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> np.ndarray:
    """Improvement from `before` to `after` per posterior draw (S, m): points of accuracy or % of loss."""
    columns = {k: np.asarray(v)[:, None] for k, v in theta.items()}
    # float64: amplitudes in original units can be huge (A = A_ref · x_ref^alpha), beyond float32's precision.
    with jax.enable_x64(True):
        y0 = np.asarray(law.mean(columns, {a: np.asarray(v)[None, :] for a, v in before.items()}))
        y1 = np.asarray(law.mean(columns, {a: np.asarray(v)[None, :] for a, v in after.items()}))
    return 100.0 * (y1 - y0) if law.response == "accuracy" else 100.0 * (y0 - y1) / y0


def _interval(values: np.ndarray) -> dict[str, float]:
    """Median and central interval of the finite draws, and the share of draws that are finite."""
    finite = values[np.isfinite(values)]
    share = float(finite.size / values.size) if values.size else 0.0
    if not finite.size:
        return {"estimate": np.nan, "lo": np.nan, "hi": np.nan, "share": share}
    lo, mid, hi = np.quantile(finite, [(1 - LEVEL) / 2, 0.5, (1 + LEVEL) / 2])
    return {"estimate": float(mid), "lo": float(lo), "hi": float(hi), "share": share}


def _reference_points(axis: str, values: np.ndarray) -> list[float]:
    """The middle and the best measured value of an axis, where a step up still changes it."""
    values = np.asarray(values, float)
    if axis in ERROR_RATE_AXES:
        errors = 1.0 - values[values < 1.0]
        if not errors.size:  # only perfect quality measured: halving a zero error rate changes nothing
            return []
        return sorted({float(1.0 - np.exp(np.log(errors).mean())), float(1.0 - errors.min())})
    low, high = float(values.min()), float(values.max())
    return sorted({float(np.exp((np.log(low) + np.log(high)) / 2)), high})


def returns_table(law: Law, theta: dict[str, np.ndarray], x: dict[str, np.ndarray], cfg: ReturnsConfig,
                  runs: list[MemorizedRun] | None = None, steps_axis: str | None = None) -> pd.DataFrame:
    """Rows of COLUMNS from posterior draws `theta`, the measured `x` and the runs' memorization steps."""
    unit = "points" if law.response == "accuracy" else "% of loss"
    threshold = cfg.threshold if cfg.threshold is not None else 1.0
    typical = {name: 0.0 if name == PAST else float(np.median(x[name])) for name in law.covariates}
    frontier = {a: float(np.max(x[a])) for a in law.axes} | typical
    rows = []
    for axis, values in ((a, x[a]) for a in law.axes):
        for at in _reference_points(axis, values):
            point = frontier | {axis: at}
            g = gain(law, theta, _column(point), _column(point | {axis: float(improved(axis, at))}))[:, 0]
            rows.append({"axis": axis, "quantity": step_quantity(axis), "at": at, **_interval(g), "unit": unit})
        below = _threshold_point(law, theta, frontier, axis, np.asarray(values, float), threshold)
        rows.append({"axis": axis, "quantity": f"diminishing_below_{threshold:g}", "at": np.nan, **_interval(below),
                     "unit": axis})
    if runs and steps_axis is not None:
        rows.append(_post_memorization_row(law, theta, runs, steps_axis, cfg.post_memorization_factor, unit))
    return pd.DataFrame(rows, columns=COLUMNS)


def _post_memorization_row(law: Law, theta: dict[str, np.ndarray], runs: list[MemorizedRun], steps_axis: str,
                           factor: float, unit: str) -> dict:
    """The gain from each memorized run's own memorization step to factor times it, averaged over those runs
    per draw; `runs` counts them and `share` is their share of all runs (NaN estimate when none memorized)."""
    memorized = [r for r in runs if np.isfinite(r.memorization_step)]
    quantity = f"post_memorization_gain_x{factor:g}"
    if not memorized:
        return {"axis": steps_axis, "quantity": quantity, "at": np.nan, "estimate": np.nan, "lo": np.nan,
                "hi": np.nan, "unit": unit, "share": 0.0, "runs": 0}
    before = {a: np.array([r.point[a] for r in memorized]) for a in memorized[0].point if a != PAST}
    steps = np.array([r.memorization_step for r in memorized])
    past = {PAST: np.zeros(len(memorized))} if PAST in law.covariates else {}
    later = {PAST: np.full(len(memorized), np.log(factor))} if past else {}
    g = gain(law, theta, before | past | {steps_axis: steps}, before | later | {steps_axis: factor * steps}).mean(axis=1)
    interval = _interval(g) | {"share": len(memorized) / len(runs)}
    return {"axis": steps_axis, "quantity": quantity, "at": float(np.median(steps)), **interval, "unit": unit,
            "runs": len(memorized)}


def _column(point: dict[str, float]) -> dict[str, np.ndarray]:
    return {a: np.array([v]) for a, v in point.items()}


def _threshold_point(law: Law, theta: dict[str, np.ndarray], frontier: dict[str, float], axis: str,
                     values: np.ndarray, threshold: float) -> np.ndarray:
    """Per draw, the smallest value of `axis` where a step up gains < threshold once the gain per step
    has peaked: an S-shaped accuracy gains little per doubling before it takes off too, and that is not
    diminishing returns. (A power law's gain falls from the start, so its peak is the smallest value.)
    NaN where the gain never reaches the threshold (an axis that hurts, or barely matters), inf where it
    is still above it at the end of the search."""
    if axis in ERROR_RATE_AXES:  # from the worst measured error rate down by up to SEARCH_DOUBLINGS halvings
        worst = 1.0 - float(values.min())
        if worst <= 0.0:
            return np.full(next(iter(theta.values())).shape[0], NOT_APPLICABLE)
        grid = 1.0 - np.geomspace(worst, worst * 2.0 ** -SEARCH_DOUBLINGS, 400)
    else:
        grid = np.geomspace(float(values.min()), float(values.max()) * 2.0 ** SEARCH_DOUBLINGS, 400)
    base = {a: np.full(grid.shape, v) for a, v in frontier.items()}
    g = gain(law, theta, base | {axis: grid}, base | {axis: improved(axis, grid)})
    past_peak = np.arange(grid.size)[None, :] >= np.argmax(g, axis=1)[:, None]
    below = (g < threshold) & past_peak
    first = np.argmax(below, axis=1)
    return np.where(g.max(axis=1) < threshold, NOT_APPLICABLE, np.where(below.any(axis=1), grid[first], NEVER))
