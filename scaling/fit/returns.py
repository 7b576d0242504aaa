"""Diminishing returns from a fitted law, every number with a 90% posterior interval.

- gain per doubling of each axis at reference points (the middle and the largest value measured,
  the other axes at their largest: "what does the next doubling buy from where I am?");
- the point on each axis where the gain per doubling falls below a threshold (default 1 point of
  accuracy, or 1% of loss);
- the post-memorization gain: from the memorization step to k times it, on the steps axis.

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


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    """Median and central interval; NaN when most draws have no value (see _threshold_point)."""
    if np.isnan(values).mean() > 0.5:
        return NOT_APPLICABLE, NOT_APPLICABLE, NOT_APPLICABLE
    lo, mid, hi = np.nanquantile(values, [(1 - LEVEL) / 2, 0.5, (1 + LEVEL) / 2])
    return float(mid), float(lo), float(hi)


def returns_table(law: Law, theta: dict[str, np.ndarray], x: dict[str, np.ndarray], cfg: ReturnsConfig,
                  memorization_step: float | None = None, steps_axis: str | None = None) -> pd.DataFrame:
    """Rows of (axis, quantity, at, estimate, lo, hi, unit) from posterior draws `theta` and the measured `x`."""
    unit = "points" if law.response == "accuracy" else "% of loss"
    threshold = cfg.threshold if cfg.threshold is not None else 1.0
    frontier = {a: float(np.max(v)) for a, v in x.items()}
    rows = []
    for axis, values in x.items():
        low, high = float(np.min(values)), float(np.max(values))
        for at in sorted({float(np.exp((np.log(low) + np.log(high)) / 2)), high}):
            point = frontier | {axis: at}
            g = gain(law, theta, _column(point), _column(point | {axis: 2 * at}))[:, 0]
            rows.append({"axis": axis, "quantity": "gain_per_doubling", "at": at, **_named(_interval(g)), "unit": unit})
        below = _threshold_point(law, theta, frontier, axis, low, high, threshold)
        rows.append({"axis": axis, "quantity": f"diminishing_below_{threshold:g}", "at": np.nan,
                     **_named(_interval(below)), "unit": axis})
    if memorization_step is not None and steps_axis is not None and np.isfinite(memorization_step):
        m = memorization_step
        g = gain(law, theta, _column(frontier | {steps_axis: m}),
                 _column(frontier | {steps_axis: cfg.post_memorization_factor * m}))[:, 0]
        rows.append({"axis": steps_axis, "quantity": f"post_memorization_gain_x{cfg.post_memorization_factor:g}",
                     "at": m, **_named(_interval(g)), "unit": unit})
    return pd.DataFrame(rows, columns=["axis", "quantity", "at", "estimate", "lo", "hi", "unit"])


def _column(point: dict[str, float]) -> dict[str, np.ndarray]:
    return {a: np.array([v]) for a, v in point.items()}


def _named(interval: tuple[float, float, float]) -> dict[str, float]:
    return dict(zip(("estimate", "lo", "hi"), interval))


def _threshold_point(law: Law, theta: dict[str, np.ndarray], frontier: dict[str, float], axis: str,
                     low: float, high: float, threshold: float) -> np.ndarray:
    """Per draw, the smallest value of `axis` where a doubling gains < threshold once the gain per doubling
    has peaked: an S-shaped accuracy gains little per doubling before it takes off too, and that is not
    diminishing returns. (A power law's gain falls from the start, so its peak is the smallest value.)"""
    grid = np.geomspace(low, high * 2.0 ** SEARCH_DOUBLINGS, 400)
    base = {a: np.full(grid.shape, v) for a, v in frontier.items()}
    g = gain(law, theta, base | {axis: grid}, base | {axis: 2 * grid})
    past_peak = np.arange(grid.size)[None, :] >= np.argmax(g, axis=1)[:, None]
    below = (g < threshold) & past_peak
    first = np.argmax(below, axis=1)
    # A draw whose doubling never gains the threshold (an axis that hurts, or barely matters) has no such point.
    return np.where(g.max(axis=1) < threshold, NOT_APPLICABLE, np.where(below.any(axis=1), grid[first], NEVER))
