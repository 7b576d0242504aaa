"""Diminishing returns from a fitted law, every number with a 90% posterior interval.

- gain per step of each axis at reference points (the middle and the best value measured, the other
  axes at their largest: "what does the next step buy from where I am?"). A step doubles an axis, but
  for a proportion bounded by 1 (`fraction_axes`: `quality`, or an axis read from an accuracy column such
  as `base_probe_acc`) it halves the error rate 1 − value: "doubling" quality 0.75 would be 1.5, a
  quality that cannot exist;
- the point on each axis where the gain per step falls below a threshold (default 1 point of
  accuracy, or 1% of loss), with the share of posterior draws in which it does (the interval is over
  those draws) and a `note` on the others: the gain never reaches the threshold, or it is still above it
  where the search ends (at the edge of a proportion's domain: "not reached inside the domain"; else
  SEARCH_DOUBLINGS doublings past the largest value measured). A proportion is searched only inside (0, 1);
- the post-memorization gain: for each run that memorized within its budgets, from its own
  memorization step m to k times it, averaged over those runs per draw, with `extrapolated` the number of
  those runs whose k·m lies past their largest fitted budget (the law's prediction, not a measurement).

One curve answers both questions about steps: a law with a `past` input (as `sft`) sees, along the steps
axis, past(step) = max(0, ln(step / m)) (as `scaling.fit.data.past_memorization` derives the column). For
the post-memorization gain m is each run's own memorization step; for the gain per doubling of steps, its
diminishing point and the other axes' gains at the frontier's steps, m is the median memorization step of
the runs at the frontier (every other axis at its largest measured value; all runs when none sits there)
that memorized: the frontier's own curve. With no such run (none memorized, or no memorization steps
known) past stays 0: the curve of a run before memorization. Other covariates sit at their median over
the rows fitted.

Gains are improvements: accuracy up (in points, ×100) or loss down (in % of the loss before).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
import pandas as pd

from scaling.fit.data import past_memorization
from scaling.fit.laws import Law

LEVEL = 0.9  # interval mass
SEARCH_DOUBLINGS = 30  # how far past the largest measured value (or below the worst error rate) a threshold search looks
NEVER = np.inf  # the gain is still above the threshold where the search ends
NOT_APPLICABLE = np.nan  # the gain never reaches the threshold: no returns to diminish
ERROR_RATE_AXES = frozenset({"quality"})  # law axes that are proportions in (0, 1] whatever column they are read from
PROPORTION_COLUMNS = frozenset({"quality"})  # columns that hold a proportion in (0, 1] whatever axis reads them
PROPORTION_SUFFIXES = ("_acc", "_accuracy")  # an accuracy column (`answer_acc`, `base_probe_acc`): a proportion
COLUMNS = ["axis", "quantity", "at", "estimate", "lo", "hi", "unit", "share", "runs", "extrapolated", "note"]
PAST = "past"  # the covariate of log steps past a run's memorization step (laws.SFT's covariates)


def fraction_axes(x_columns: dict[str, str], x: dict[str, np.ndarray]) -> frozenset[str]:
    """The law axes that are proportions bounded by 1, stepped by halving their error rate: `quality`, and any
    axis read from a proportion column (`quality`, or an accuracy: a name ending in `_acc` or `_accuracy`)
    whose measured values all lie in (0, 1] (an accuracy written in percent is an ordinary positive axis)."""
    named = {axis for axis, column in x_columns.items()
             if axis in ERROR_RATE_AXES or column in PROPORTION_COLUMNS or column.endswith(PROPORTION_SUFFIXES)}
    return frozenset(axis for axis in named if axis in x and np.all((np.asarray(x[axis]) > 0) & (np.asarray(x[axis]) <= 1)))


@dataclass(frozen=True)
class Scale:
    """How an axis is stepped and searched: doubled on (0, ∞), or, for a proportion, its error rate halved
    inside (0, 1)."""

    proportion: bool  # a proportion in (0, 1]: a step halves 1 − value and the search stays below 1

    @property
    def quantity(self) -> str:
        return "gain_per_halved_error" if self.proportion else "gain_per_doubling"

    @property
    def search_end(self) -> str:
        """Where a threshold search gives up, as a note says it."""
        return "not reached inside the domain" if self.proportion else \
            f"not reached within {SEARCH_DOUBLINGS} doublings past the largest value measured"

    def improved(self, values: np.ndarray) -> np.ndarray:
        """One step up: twice the value, or half the error rate."""
        values = np.asarray(values, float)
        return 1.0 - (1.0 - values) / 2.0 if self.proportion else 2.0 * values

    def reference_points(self, values: np.ndarray) -> list[float]:
        """The middle and the best measured value, where a step up still changes it."""
        values = np.asarray(values, float)
        if self.proportion:
            errors = 1.0 - values[values < 1.0]
            if not errors.size:  # only perfect values measured: halving a zero error rate changes nothing
                return []
            return sorted({float(1.0 - np.exp(np.log(errors).mean())), float(1.0 - errors.min())})
        low, high = float(values.min()), float(values.max())
        return sorted({float(np.exp((np.log(low) + np.log(high)) / 2)), high})

    def search_grid(self, values: np.ndarray) -> np.ndarray:
        """Where a threshold is looked for: from the smallest measured value up SEARCH_DOUBLINGS doublings past
        the largest, or from the worst measured error rate down by SEARCH_DOUBLINGS halvings (inside the
        domain). Empty for a proportion measured only at 1."""
        values = np.asarray(values, float)
        if self.proportion:
            worst = 1.0 - float(values.min())
            return 1.0 - np.geomspace(worst, worst * 2.0 ** -SEARCH_DOUBLINGS, 400) if worst > 0.0 else np.array([])
        return np.geomspace(float(values.min()), float(values.max()) * 2.0 ** SEARCH_DOUBLINGS, 400)


@dataclass(frozen=True)
class MemorizedRun:
    """A run (a cell and seed) at its own law-axis values, and the step at which it memorized its training items."""

    point: dict[str, float]  # the law's axes other than steps, and its covariates (a `past` among them is ignored)
    memorization_step: float  # NaN: it never memorized within its budgets
    last_fitted_step: float = np.nan  # its largest budget among the rows fitted (NaN: none, or unknown: extrapolated)


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


def returns_table(law: Law, theta: dict[str, np.ndarray], x: dict[str, np.ndarray], cfg: ReturnsConfig,
                  runs: list[MemorizedRun] | None = None, steps_axis: str | None = None,
                  fractions: frozenset[str] = ERROR_RATE_AXES) -> pd.DataFrame:
    """Rows of COLUMNS from posterior draws `theta`, the measured `x` (of the rows fitted), the runs' memorization
    steps and the axes that are proportions (`fraction_axes`)."""
    unit = "points" if law.response == "accuracy" else "% of loss"
    threshold = cfg.threshold if cfg.threshold is not None else 1.0
    frontier = {a: float(np.max(x[a])) for a in law.axes} | {n: float(np.median(x[n])) for n in law.covariates if n != PAST}
    m, curve = (_frontier_memorization(runs or [], {a: frontier[a] for a in law.axes if a != steps_axis}, steps_axis)
                if PAST in law.covariates else (np.nan, ""))
    with_past = _past_along(law, steps_axis, m)
    rows = []
    for axis, values in ((a, x[a]) for a in law.axes):
        scale = Scale(axis in fractions)
        note = curve if axis == steps_axis else ""
        for at in scale.reference_points(values):
            point = frontier | {axis: at}
            g = gain(law, theta, with_past(_column(point)), with_past(_column(point | {axis: float(scale.improved(at))})))[:, 0]
            rows.append({"axis": axis, "quantity": scale.quantity, "at": at, **_interval(g), "unit": unit, "note": note})
        below = _threshold_point(law, theta, frontier, axis, scale, np.asarray(values, float), threshold, with_past)
        rows.append({"axis": axis, "quantity": f"diminishing_below_{threshold:g}", "at": np.nan, **_interval(below), "unit": axis,
                     "note": "; ".join(filter(None, [_unreached(below, scale, threshold, unit), note]))})
    if runs and steps_axis is not None:
        rows.append(_post_memorization_row(law, theta, runs, steps_axis, cfg.post_memorization_factor, unit))
    return pd.DataFrame(rows, columns=COLUMNS)


def _frontier_memorization(runs: list[MemorizedRun], frontier: dict[str, float], steps_axis: str | None) -> tuple[float, str]:
    """m of the frontier's steps curve (NaN: before memorization throughout) and a note that says where it came
    from; `frontier` holds the largest measured value of each law axis other than steps."""
    if steps_axis is None or not runs:
        return np.nan, ""
    there = [r for r in runs if all(np.isclose(r.point[a], v) for a, v in frontier.items() if a in r.point)]
    pool, where = (there, "the runs at the frontier") if there else (runs, "all runs (none at the frontier)")
    steps = np.array([r.memorization_step for r in pool], float)
    memorized = steps[np.isfinite(steps)]
    if not memorized.size:
        return np.nan, f"past = 0: none of {where} memorized ({len(pool)})"
    m = float(np.median(memorized))
    return m, f"past = ln(step / {m:g}) past step {m:g}, the median memorization step of {where} ({memorized.size} of {len(pool)} memorized)"


def _past_along(law: Law, steps_axis: str | None, m: float):
    """A point's inputs with `past` read off its steps (past_memorization(step, m)); 0 without a steps axis or m."""
    def with_past(point: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if PAST not in law.covariates:
            return point
        steps = point.get(steps_axis) if steps_axis is not None else None
        if steps is None or not np.isfinite(m):
            return point | {PAST: np.zeros(len(next(iter(point.values()))))}
        return point | {PAST: past_memorization(np.asarray(steps, float), np.full(np.shape(steps), m))}
    return with_past


def _unreached(below: np.ndarray, scale: Scale, threshold: float, unit: str) -> str:
    """What the draws without a diminishing point say: still above the threshold where the search ends, or never that high."""
    parts = []
    if (above := float(np.mean(below == NEVER))) > 0:
        parts.append(f"{scale.search_end} in {_percent(above)} of draws")
    if (never := float(np.mean(np.isnan(below)))) > 0:
        parts.append(f"never gains {threshold:g} {unit} per step in {_percent(never)} of draws")
    return "; ".join(parts)


def _percent(share: float) -> str:
    """A share as a percentage to three significant digits: a few draws in thousands are not 0%."""
    return f"{100 * share:.3g}%"


def _post_memorization_row(law: Law, theta: dict[str, np.ndarray], runs: list[MemorizedRun], steps_axis: str,
                           factor: float, unit: str) -> dict:
    """The gain from each memorized run's own memorization step to factor times it, averaged over those runs
    per draw; `runs` counts them, `share` is their share of all runs (NaN estimate when none memorized) and
    `extrapolated` counts those whose factor·m lies past their largest fitted budget."""
    memorized = [r for r in runs if np.isfinite(r.memorization_step)]
    quantity = f"post_memorization_gain_x{factor:g}"
    if not memorized:
        return {"axis": steps_axis, "quantity": quantity, "at": np.nan, "estimate": np.nan, "lo": np.nan,
                "hi": np.nan, "unit": unit, "share": 0.0, "runs": 0, "extrapolated": 0, "note": "no run memorized"}
    before = {a: np.array([r.point[a] for r in memorized]) for a in memorized[0].point if a != PAST}
    steps = np.array([r.memorization_step for r in memorized])
    later = factor * steps

    def at(step: np.ndarray) -> dict[str, np.ndarray]:
        return before | {steps_axis: step} | ({PAST: past_memorization(step, steps)} if PAST in law.covariates else {})

    g = gain(law, theta, at(steps), at(later)).mean(axis=1)
    fitted = np.array([r.last_fitted_step for r in memorized], float)
    extrapolated = int(np.sum(~(later <= fitted)))  # a run with no fitted budget is extrapolated too
    interval = _interval(g) | {"share": len(memorized) / len(runs)}
    return {"axis": steps_axis, "quantity": quantity, "at": float(np.median(steps)), **interval, "unit": unit,
            "runs": len(memorized), "extrapolated": extrapolated,
            "note": f"{extrapolated} of {len(memorized)} runs extrapolated past their largest fitted budget" if extrapolated else ""}


def _column(point: dict[str, float]) -> dict[str, np.ndarray]:
    return {a: np.array([v]) for a, v in point.items()}


def _threshold_point(law: Law, theta: dict[str, np.ndarray], frontier: dict[str, float], axis: str, scale: Scale,
                     values: np.ndarray, threshold: float, with_past) -> np.ndarray:
    """Per draw, the smallest value of `axis` where a step up gains < threshold once the gain per step
    has peaked: an S-shaped accuracy gains little per doubling before it takes off too, and that is not
    diminishing returns. (A power law's gain falls from the start, so its peak is the smallest value.)
    NaN where the gain never reaches the threshold (an axis that hurts, or barely matters), inf where it
    is still above it where the search ends (for a proportion: the edge of its domain)."""
    grid = scale.search_grid(values)
    if not grid.size:
        return np.full(next(iter(theta.values())).shape[0], NOT_APPLICABLE)
    base = {a: np.full(grid.shape, v) for a, v in frontier.items()}
    g = gain(law, theta, with_past(base | {axis: grid}), with_past(base | {axis: scale.improved(grid)}))
    past_peak = np.arange(grid.size)[None, :] >= np.argmax(g, axis=1)[:, None]
    below = (g < threshold) & past_peak
    first = np.argmax(below, axis=1)
    return np.where(g.max(axis=1) < threshold, NOT_APPLICABLE, np.where(below.any(axis=1), grid[first], NEVER))
