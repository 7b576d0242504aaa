"""Which interval a table may print, and the label that says what it counts or why there is none.

The study's runs are not independent draws of everything: every cell is graded on one evaluation set (the same
problems), a pretrained base serves every seed, and a random initialization serves every condition of its seed.
So an interval states its unit:
- across runs (or bases): a t-interval over one value per unit. It describes the population of units of the
  condition (SFT runs, on these evaluation items; runs that share a base say nothing about other bases), and
  only from MIN_UNITS distinct units: with two, t has one degree of freedom (6.31 at 90%) and the interval is
  the two values stretched. Where every unit agrees its width is 0, which is no statement about the population
  (three runs that all answer the same 64 problems alike): an interval must count the items too there;
- over runs and items: report/transfer.py's crossed bootstrap, for a table row that pools several runs' grades;
- items only: the exact binomial interval of one run's graded items (these runs, new items of the split); in
  report/transfer.py two runs get the bootstrap over items with the runs held fixed ("items only: 2 runs");
- exact over the items: where every graded answer agrees (all wrong, all right) a bootstrap has nothing to
  resample and collapses to a point; the exact interval of the distinct items counts each item once, however
  many runs answered it ("exact over 256 items, all wrong").
Where none applies the interval's ends are NaN and its label says why: "n/a: 2 runs", "n/a: 3 runs, all equal".

Three runs are few for any of them. Simulated (3 runs x 64 items, run and item effects on the logit scale, sd
1.0/1.5, 0.5/1.5, 1.0/0.3, 0.2/1.5), the crossed bootstrap's 90% interval held the mean over runs and items
77%, 88%, 80% and 94% of the time (short where runs differ most), the t-interval over run means 89%, 88%, 92%
and 79% (short where items differ most: it does not count them), a binomial over every graded row 49%, 63%, 40%
and 78%.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

LEVEL = 0.9  # the intervals' coverage, as everywhere in the fits
MIN_UNITS = 3  # distinct runs (or bases) an interval across them needs


def counted(n: int, unit: str) -> str:
    """`n` of a unit in words: "1 run", "3 bases"."""
    return f"{n} {unit}" + ("" if n == 1 else "s")


def mean_across(values, unit: str = "run", level: float = LEVEL) -> tuple[float, float, float, str]:
    """The mean of one value per unit (a run, a base) and its `level` t-interval across the units, with its label
    ("t over 3 runs"); NaN ends and the reason ("n/a: 2 runs", "n/a: 3 runs, all equal") where there are fewer
    than MIN_UNITS units or they all agree; (NaN, NaN, NaN, "n/a: 0 runs") where there are none."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    mean = float(values.mean()) if len(values) else np.nan
    if len(values) < MIN_UNITS:
        return mean, np.nan, np.nan, f"n/a: {counted(len(values), unit)}"
    if np.ptp(values) == 0:
        return mean, np.nan, np.nan, f"n/a: {counted(len(values), unit)}, all equal"
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half, f"t over {counted(len(values), unit)}"


def binomial_interval(correct: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact (Clopper-Pearson) `level` interval of a proportion of `correct` in `n`: never outside [0, 1],
    and wide, as it should be, where n is small or the proportion sits at 0 or 1."""
    if n == 0:
        return np.nan, np.nan
    tail = (1 - level) / 2
    lo = stats.beta.ppf(tail, correct, n - correct + 1) if correct > 0 else 0.0
    hi = stats.beta.ppf(1 - tail, correct + 1, n - correct) if correct < n else 1.0
    return float(lo), float(hi)


def alike_interval(right: bool, items: int, level: float = LEVEL) -> tuple[float, float, str]:
    """Where every graded answer of a group agrees (all `right`, or all wrong): the exact `level` interval of its
    `items` distinct items, each counted once whatever the runs that answered it (runs graded on the same items
    are not replicates of them), and its label ("exact over 256 items, all wrong")."""
    lo, hi = binomial_interval(items if right else 0, items, level)
    return lo, hi, f"exact over {counted(items, 'item')}, all {'right' if right else 'wrong'}"
