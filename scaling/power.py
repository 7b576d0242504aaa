"""Planning a grid from a pilot: how large a difference its seeds and items can detect, and what a named
difference needs.

Runs and items are both random factors: the same evaluation problems recur in every cell. The pilot's grades
(one 0/1 answer per cell and item) are split, per split and family at one budget, into variance components on
the accuracy scale by the method of moments of a balanced crossed design (Cornfield & Tukey 1956): conditions
(the grid's axes but seed) fixed; runs (seeds) nested in conditions; items crossed with both; item x condition
interaction; and a residual that holds run x item interaction and the Bernoulli noise. Why this estimator: the
quantity a grid tests is a difference of accuracies, and expected mean squares hold for 0/1 answers whatever
the link, so no logit-normal assumption enters the numbers; it is closed form (instant on the study's
100,000 grades) and unbiased before negative components are set to zero. Components are kept as shares of
the within-condition Bernoulli variance p(1 - p), so a condition at another accuracy has the same shares of
its own variance (an accuracy near 0 or 1 varies little).

(a) Two conditions, runs independent, the same items in both: the test is the difference of the two
conditions' mean accuracies over runs and items against a t whose variance estimate is
2 (MS_run + MS_item x condition) / (runs x items). That counts the residual twice: Clark's (1973) quasi-F
for items as a random factor subtracts it once, but near an accuracy of 0 its estimate is often negative and
its 2 or so Satterthwaite degrees of freedom make the noncentral t a poor guide (simulated grids at its MDD
detected 0.62-0.68, not 0.8); the sum is conservative, never negative, and its power is exact in the
noncentral t (the estimate is inflated by a known factor). Its degrees of freedom are Satterthwaite's for the
design at the pilot's spreads, fixed in advance (those estimated from a 3-seed grid's own mean squares are
biased low). Item effects shared by both conditions cancel; item x condition interaction, run spread and
binomial noise do not. (b) A gain past memorization: the same run at its memorization step m and at f * m,
on the same items, paired: per run and item the difference of answers, tested the same way across runs and
items ((MS_run + MS_item) / (runs x items)); its spreads at both budgets, and how much of each carries over
from m to f * m, are the pilot's, pooled over its conditions. The minimum detectable difference (MDD) is the
smallest true difference whose two-sided test at `alpha` rejects with probability `power`.
`simulated_power` checks it: it draws grids with those spreads (a Gaussian threshold model matched to them)
and the difference, runs the test, and returns the share detected (on the study's pilot, 0.76-0.80 at
accuracies of 0.1-0.5, and 0.83-0.89 near 0, where the test is conservative).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

from scaling import staging
from scaling.errors import UserError
from scaling.schema import AXES

ALPHA = 0.05  # two-sided
POWER = 0.8
FACTOR = 4  # a gain past memorization: from m to FACTOR * m
TRAINING_SPLIT = "train"  # the SFT examples themselves: their items differ per run and say when a run memorized
NEEDED = ("cell_id", "step", "split", "family", "key", "answer_correct")
CONDITION = tuple(axis for axis in AXES if axis != "seed")  # what two compared cells differ in
MOST_SEEDS = 64  # `needed`: more seeds than this are "more than 64"
MOST_ITEMS = 4096  # `needed`: items per family beyond this are "more than 4096"
SEED_LADDER = (1, 2, 4, 8)  # `needed`: the items a difference needs at these multiples of the planned seeds


@dataclass(frozen=True)
class Spreads:
    """One split and family of a pilot: its accuracy and how answers vary between runs, items and budgets."""

    split: str
    family: str
    step: int  # the budget the two-condition spreads are read at
    level: float  # mean accuracy over the pilot's conditions used: where a planned condition is assumed to stand
    conditions: int  # pilot conditions used (those with `runs` runs)
    runs: int  # runs per condition in the pilot
    items: int  # items of this split and family every used cell graded
    run: float  # shares of the within-condition variance p(1 - p): between runs (seeds) of a condition,
    item: float  # between items (shared by conditions: cancels in a contrast),
    interaction: float  # item x condition (NaN with one condition: inseparable from items),
    residual: float  # and the rest (run x item and Bernoulli noise); the four sum to 1 (NaN: nothing varied)
    gain_runs: int  # runs whose gain from m to factor * m the pilot has (0: see gain_reason)
    gain_level: float  # their mean accuracy at m
    gain_shares: tuple[float, float, float]  # run, item and residual shares of p(1 - p) at each of m and f * m
    gain_carry: tuple[float, float, float]  # how each of them carries over from m to f * m (a correlation): the
    # paired gain varies by what does not
    gain_reason: str = ""  # why the gain's spreads are missing ("": they are not)

    @property
    def reason(self) -> str:
        """Why two conditions cannot be planned from this pilot ("": they can)."""
        if self.runs < 2 or self.items < 2:
            return "fewer than 2 runs per condition or 2 items in the pilot"
        if np.isnan(self.residual):
            return "every answer the same in the pilot"
        return "one condition in the pilot" if np.isnan(self.interaction) else ""


def read_grades(path: Path) -> pd.DataFrame:
    """A grades table: a run folder's grades.parquet, or a .parquet or .csv file; anything else a UserError."""
    path = Path(path)
    if path.is_dir():
        path = path / "grades.parquet"
        if not path.is_file():
            raise UserError(f"{path.parent} has no grades.parquet (run `scaling collect {path.parent}` first)")
    elif not path.is_file():
        raise UserError(f"no run folder or grades table {path}")
    if path.suffix not in (".parquet", ".csv"):
        raise UserError(f"{path} is not a grades table: give a run folder, a .parquet or a .csv file")
    try:
        grades = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise UserError(f"grades table {path} is unreadable or truncated ({type(error).__name__})") from None
    if missing := [c for c in NEEDED if c not in grades.columns]:
        raise UserError(f"{path} has no column {missing[0]!r}; a grades table has {', '.join(NEEDED)} and the grid's axes")
    if grades.empty:
        raise UserError(f"{path} holds no graded examples")
    try:
        correct = grades["answer_correct"].astype(float)
    except (TypeError, ValueError):
        correct = pd.Series(np.nan, index=grades.index)
    if not correct.isin((0.0, 1.0)).all():
        raise UserError(f"{path}: answer_correct must hold true/false or 1/0 in every row")
    return grades.assign(answer_correct=correct)


def estimate_spreads(grades: pd.DataFrame, step: int | None = None, factor: int = FACTOR) -> list[Spreads]:
    """The spreads of every evaluation split and family of a grades table, two conditions read at `step`
    (default: the last budget) and gains from each run's memorization step m to `factor` * m."""
    steps = sorted(int(s) for s in grades["step"].unique())
    step = steps[-1] if step is None else step
    if step not in steps:
        raise UserError(f"power: no grades at step {step}; steps are {', '.join(map(str, steps))}")
    if "control" in grades:  # a positive control trains on another distribution: no seed of a condition
        grades = grades[grades["control"].fillna("") == ""]
    condition = [c for c in CONDITION if c in grades.columns]
    labels = grades.groupby(condition, dropna=False).ngroup() if condition else 0
    grades = grades.assign(condition=labels, answer_correct=grades["answer_correct"].astype(float))  # a caller may pass bools
    memorized = _memorization_steps(grades)
    evaluated = grades[grades["split"] != TRAINING_SPLIT]
    if evaluated.empty:
        raise UserError("power: the grades hold no evaluation split (only the train split)")
    spreads = []
    for (split, family), group in evaluated.groupby(["split", "family"], sort=True):
        spreads.append(_spreads(str(split), str(family), group, step, memorized, factor))
    return spreads


def _memorization_steps(grades: pd.DataFrame) -> pd.Series:
    """Each cell's memorization step: the first budget at which it answers every item of its train split."""
    train = grades[grades["split"] == TRAINING_SPLIT]
    if train.empty:
        return pd.Series(dtype=float)
    perfect = train.groupby(["cell_id", "step"])["answer_correct"].min()
    perfect = perfect[perfect == 1.0].reset_index()
    return perfect.groupby("cell_id")["step"].min().astype(float)


def _table(group: pd.DataFrame, step: int, cells: list[str]) -> np.ndarray:
    """The cells x items answers at one budget, over the items every one of these cells graded there."""
    here = group[(group["step"] == step) & group["cell_id"].isin(cells)]
    table = here.pivot_table(index="cell_id", columns="key", values="answer_correct", aggfunc="mean")
    return table.reindex(cells).dropna(axis=1).to_numpy()


def _spreads(split: str, family: str, group: pd.DataFrame, step: int, memorized: pd.Series, factor: int) -> Spreads:
    """One split and family's spreads: conditions with the most runs (two at least) at `step`, and the gains."""
    runs_of = group[group["step"] == step].groupby("condition")["cell_id"].unique()
    runs = max((len(cells) for cells in runs_of), default=0)
    used = [sorted(cells) for cells in runs_of if len(cells) == runs] if runs >= 2 else []
    y_CxSxK = _table(group, step, [cell for cells in used for cell in cells]).reshape(len(used), runs, -1)
    conditions, _, items = y_CxSxK.shape
    shares = _shares(y_CxSxK) if conditions and items >= 2 else (np.nan,) * 4
    return Spreads(split=split, family=family, step=step, level=float(y_CxSxK.mean()) if y_CxSxK.size else np.nan,
                   conditions=conditions, runs=runs, items=items, run=shares[0], item=shares[1],
                   interaction=shares[2], residual=shares[3], **_gain_components(group, memorized, factor))


def _shares(y_CxSxK: np.ndarray) -> tuple[float, float, float, float]:
    """Run, item, item x condition and residual shares of a balanced conditions x seeds x items table (method of
    moments: each mean square's expectation is a known sum of components)."""
    c, s, k = y_CxSxK.shape
    ms_run, ms_item, ms_interaction, ms_residual = (float(ms) for ms in _mean_squares(y_CxSxK))
    run = max((ms_run - ms_residual) / k, 0.0)
    if c >= 2:
        interaction, item = max((ms_interaction - ms_residual) / s, 0.0), max((ms_item - ms_interaction) / (c * s), 0.0)
    else:
        interaction, item = 0.0, max((ms_item - ms_residual) / s, 0.0)
    total = run + item + interaction + ms_residual
    if total <= 0:
        return (np.nan,) * 4
    return run / total, item / total, (interaction / total if c >= 2 else np.nan), ms_residual / total


def _mean_squares(y_CxSxK: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs within conditions, items, item x condition and residual mean squares of a conditions x seeds x items
    table (over the last three axes; item x condition NaN with one condition)."""
    c, s, k = y_CxSxK.shape[-3:]
    grand = y_CxSxK.mean(axis=(-3, -2, -1), keepdims=True)
    condition, run = y_CxSxK.mean(axis=(-2, -1), keepdims=True), y_CxSxK.mean(axis=-1, keepdims=True)
    item, cell = y_CxSxK.mean(axis=(-3, -2), keepdims=True), y_CxSxK.mean(axis=-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (k * ((run - condition) ** 2).sum(axis=(-3, -2, -1)) / (c * (s - 1)),
                c * s * ((item - grand) ** 2).sum(axis=(-3, -2, -1)) / (k - 1),
                s * ((cell - condition - item + grand) ** 2).sum(axis=(-3, -2, -1)) / ((c - 1) * (k - 1)),
                ((y_CxSxK - run - cell + condition) ** 2).sum(axis=(-3, -2, -1)) / (c * (s - 1) * (k - 1)))


def _gain_components(group: pd.DataFrame, memorized: pd.Series, factor: int) -> dict:
    """The pilot's answers at m and factor * m: per condition with two runs or more that reached f * m, the
    runs x items tables at both budgets, their run, item and residual components (shares of p(1 - p)) and the
    covariance of each across the two budgets, by the method of moments, averaged over conditions (weighted by
    runs)."""
    nothing = {"gain_runs": 0, "gain_level": np.nan, "gain_shares": (np.nan,) * 3, "gain_carry": (np.nan,) * 3}
    if memorized.empty:
        return nothing | {"gain_reason": "no train split: memorization unknown"}
    steps = set(int(s) for s in group["step"].unique())
    answers = group.pivot_table(index=["cell_id", "step"], columns="key", values="answer_correct", aggfunc="mean")
    reached = {cell: int(m) for cell, m in memorized.items() if int(m) * factor in steps and cell in answers.index}
    conditions = group[group["cell_id"].isin(reached)].groupby("condition")["cell_id"].unique()
    pooled, weights = [], []
    for cells in (c for c in conditions if len(c) >= 2):
        at_m = answers.loc[[(cell, reached[cell]) for cell in cells]]
        at_fm = answers.loc[[(cell, reached[cell] * factor) for cell in cells]]
        keep = at_m.notna().all().to_numpy() & at_fm.notna().all().to_numpy()
        if keep.sum() < 2:
            continue
        before, after = at_m.to_numpy()[:, keep], at_fm.to_numpy()[:, keep]
        pooled.append([*_components(before, before), *_components(after, after), *_components(before, after),
                       _variance(before.mean()), _variance(after.mean()), before.mean()])
        weights.append(len(cells))
    if not pooled:
        return nothing | {"gain_reason": f"no condition with 2 runs reaching {factor} x m"}
    mean = np.average(pooled, axis=0, weights=weights)
    at_m, at_fm, across, (v_m, v_fm, level) = np.maximum(mean[0:3], 0), np.maximum(mean[3:6], 0), mean[6:9], mean[9:]
    if v_m + v_fm <= 0:
        return nothing | {"gain_runs": int(sum(weights)), "gain_reason": f"every answer the same at m and {factor} x m"}
    with np.errstate(divide="ignore", invalid="ignore"):
        carry = np.clip(np.nan_to_num(across / np.sqrt(at_m * at_fm)), -1.0, 1.0)
    return {"gain_runs": int(sum(weights)), "gain_level": float(level),
            "gain_shares": tuple(float(x) for x in (at_m + at_fm) / (v_m + v_fm)),
            "gain_carry": tuple(float(x) for x in carry), "gain_reason": ""}


def _components(a_RxK: np.ndarray, b_RxK: np.ndarray) -> tuple[float, float, float]:
    """Run, item and residual (co)variance components of two runs x items tables of the same runs and items
    (a table with itself: variances), from their mean products (over the last two axes)."""
    r, k = a_RxK.shape[-2:]
    products = _mean_products(a_RxK, b_RxK)
    return (products[0] - products[2]) / k, (products[1] - products[2]) / r, products[2]


def _mean_products(a_RxK: np.ndarray, b_RxK: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and residual mean products of two tables without replication (over the last two axes);
    of a table with itself, the mean squares of a two-way analysis of variance."""
    r, k = a_RxK.shape[-2:]

    def parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        grand = x.mean(axis=(-2, -1), keepdims=True)
        rows, columns = x.mean(axis=-1, keepdims=True), x.mean(axis=-2, keepdims=True)
        return rows - grand, columns - grand, x - rows - columns + grand

    (rows_a, columns_a, rest_a), (rows_b, columns_b, rest_b) = parts(a_RxK), parts(b_RxK)
    return (k * (rows_a * rows_b).sum(axis=(-2, -1)) / (r - 1), r * (columns_a * columns_b).sum(axis=(-2, -1)) / (k - 1),
            (rest_a * rest_b).sum(axis=(-2, -1)) / ((r - 1) * (k - 1)))


# --- the tests a grid runs, and their power ------------------------------------------------------------------

def _satterthwaite(terms: list[tuple[float, float]]) -> tuple[float, float]:
    """A sum of independent mean squares, given as (value, degrees of freedom), and its Satterthwaite degrees of
    freedom (infinite where nothing varies: the sum is exact)."""
    total = sum(value for value, _ in terms)
    spread = sum(value ** 2 / df for value, df in terms)
    return total, (total ** 2 / spread if spread > 0 else np.inf)


@dataclass(frozen=True)
class PlannedTest:
    """A difference's t-test as a grid would run it: its estimate's true standard error, the standard error its
    mean squares estimate on average (larger: the residual is counted twice, so the estimate is never negative),
    and that estimate's degrees of freedom."""

    se: float  # the true standard error of the estimated difference
    estimated_se: float  # the square root of the variance estimate's expectation
    df: float  # Satterthwaite's degrees of freedom of the variance estimate

    def power(self, difference: float, alpha: float) -> float:
        """The probability that the two-sided test at alpha rejects when the true difference is `difference`:
        estimate / estimated se = (a noncentral t) x se / estimated_se."""
        if self.se <= 0:  # answers that cannot vary: any difference shows
            return 1.0
        critical = stats.t.ppf(1 - alpha / 2, self.df) * self.estimated_se / self.se
        shift = difference / self.se
        # The far tail as the upper tail of the mirrored shift: scipy's nct.cdf returns NaN there for large shifts.
        return float(stats.nct.sf(critical, self.df, shift) + stats.nct.sf(critical, self.df, -shift))


def _smallest(power_at: Callable[[float], float], most: float, power: float) -> float:
    """The smallest difference in (0, most] whose power reaches `power`; NaN where even `most` does not."""
    if power_at(most) < power:
        return np.nan
    return float(optimize.brentq(lambda d: power_at(d) - power, 1e-9, most, xtol=1e-6))


def _variance(level: float) -> float:
    return level * (1 - level)


def _other_level(level: float, difference: float) -> float:
    """The compared condition's accuracy: `difference` toward 1/2 from the pilot's level (the noisier side)."""
    return level + difference if level <= 0.5 else level - difference


def conditions_test(s: Spreads, levels: tuple[float, float], seeds: int, items: int) -> PlannedTest:
    """Two conditions' difference at these accuracies, tested with the variance estimate 2 (MS_run + MS_item x
    condition) / (seeds x items), at the expected mean squares of the pilot's shares."""
    v_a, v_b = (_variance(p) for p in levels)
    # Items are shared: what remains of them is the interaction, and the part of the item effect that scales with
    # each condition's own spread (sqrt(v_a) - sqrt(v_b), zero for conditions at one accuracy).
    interaction = (s.interaction * (v_a + v_b) + s.item * (np.sqrt(v_a) - np.sqrt(v_b)) ** 2) / 2
    ms_residual = s.residual * (v_a + v_b) / 2
    # The run mean square pools the two conditions, each half with its own spread: a condition near an accuracy
    # of 0 adds almost nothing, and the pooled square has the degrees of freedom of the other alone.
    runs = [(v * (s.residual + items * s.run) / 2, seeds - 1) for v in (v_a, v_b)]
    estimated, df = _satterthwaite([*runs, (ms_residual + seeds * interaction, items - 1)])
    true = estimated - ms_residual
    return PlannedTest(se=float(np.sqrt(2 * true / (seeds * items))),
                       estimated_se=float(np.sqrt(2 * estimated / (seeds * items))), df=float(df))


def gain_variances(s: Spreads, gain: float) -> np.ndarray:
    """The run, item and residual variance of a paired gain from the pilot's accuracy at m to `gain` above it:
    each component at both budgets, less what carries over from one to the other."""
    v_m, v_fm = _variance(s.gain_level), _variance(s.gain_level + gain)
    shares, carry = np.asarray(s.gain_shares), np.asarray(s.gain_carry)
    return shares * (v_m + v_fm) - 2 * carry * shares * np.sqrt(v_m * v_fm)


def gain_test(s: Spreads, gain: float, seeds: int, items: int) -> PlannedTest:
    """A condition's mean paired gain over `seeds` runs and `items`, tested with the variance estimate
    (MS_run + MS_item) / (seeds x items) of the runs x items table of answer differences."""
    run, item, ms_residual = gain_variances(s, gain)
    estimated, df = _satterthwaite([(ms_residual + items * run, seeds - 1), (ms_residual + seeds * item, items - 1)])
    return PlannedTest(se=float(np.sqrt(max(estimated - ms_residual, 0.0) / (seeds * items))),
                       estimated_se=float(np.sqrt(estimated / (seeds * items))), df=float(df))


def conditions_mdd(s: Spreads, seeds: int, items: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest difference of accuracy between two conditions (runs independent, items shared) detected
    with `power`; NaN where the pilot cannot say or no difference inside [0, 1] is."""
    if s.reason or seeds < 2 or items < 2:
        return np.nan
    most = 1 - s.level if s.level <= 0.5 else s.level

    def power_at(d: float) -> float:
        return conditions_test(s, (s.level, _other_level(s.level, d)), seeds, items).power(d, alpha)

    return _smallest(power_at, most, power)


def gain_mdd(s: Spreads, seeds: int, items: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest mean gain past memorization (the same runs and items at m and f * m) detected with `power`."""
    if s.gain_reason or seeds < 2 or items < 2:
        return np.nan
    return _smallest(lambda d: gain_test(s, d, seeds, items).power(d, alpha), 1 - s.gain_level, power)


# --- tables --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Design:
    """What a planned grid holds and how its contrasts are tested."""

    seeds: int | None = None  # runs per condition (None: the pilot's)
    items: dict[tuple[str, str], int] | None = None  # items per (split, family) (None: the pilot's; absent: left out)
    alpha: float = ALPHA  # two-sided significance level
    power: float = POWER  # the chance of detecting the difference
    detect: float | None = None  # a difference to plan for: the seeds and items it needs

    def __post_init__(self) -> None:
        if self.seeds is not None and self.seeds < 2:
            raise UserError(f"power: seeds must be at least 2 (a spread between runs needs two), got {self.seeds}")
        if not 0 < self.alpha < 1 or not 0 < self.power < 1:
            raise UserError(f"power: alpha and power must lie in (0, 1), got {self.alpha} and {self.power}")
        if self.detect is not None and not 0 < self.detect < 1:
            raise UserError(f"power: --detect must lie in (0, 1) (a difference of accuracy), got {self.detect}")


def power_table(spreads: list[Spreads], design: Design) -> pd.DataFrame:
    """One row per split and family: the pilot's spreads, the planned seeds and items, and the two MDDs; with
    `design.detect`, the seeds that difference needs at the planned items, and the items it needs at the planned
    seeds and at SEED_LADDER multiples of them (NaN: more than MOST_SEEDS or MOST_ITEMS, or no MDD at all)."""
    rows = []
    for s in spreads:
        items = s.items if design.items is None else design.items.get((s.split, s.family))
        if items is None:
            continue
        seeds = design.seeds or s.runs
        row = {"split": s.split, "family": s.family, "step": s.step, "pilot_conditions": s.conditions,
               "pilot_runs": s.runs, "pilot_items": s.items, "accuracy": s.level,
               "run_share": s.run, "item_share": s.item, "interaction_share": s.interaction, "residual_share": s.residual,
               "gain_runs": s.gain_runs, "seeds": seeds, "items": items, "alpha": design.alpha, "power": design.power,
               "mdd_conditions": conditions_mdd(s, seeds, items, design.alpha, design.power),
               "mdd_gain": gain_mdd(s, seeds, items, design.alpha, design.power),
               "reason": s.reason, "gain_reason": s.gain_reason}
        if design.detect is not None:
            for name, mdd in (("conditions", conditions_mdd), ("gain", gain_mdd)):
                def detects(n_seeds: int, n_items: int, mdd=mdd) -> bool:
                    found = mdd(s, n_seeds, n_items, design.alpha, design.power)
                    return bool(found <= design.detect)

                row[f"seeds_for_{name}"] = _fewest(lambda n: detects(n, items), MOST_SEEDS)
                for more in SEED_LADDER:
                    row[f"items_for_{name}_at_{more * seeds}_seeds"] = _fewest(lambda n: detects(more * seeds, n), MOST_ITEMS)
        rows.append(row)
    return pd.DataFrame(rows)


def _fewest(enough: Callable[[int], bool], most: int) -> float:
    """The smallest n in 2..most for which `enough(n)` holds (it only turns true as n grows); NaN if none."""
    if not enough(most):
        return np.nan
    low, high = 2, most
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle + 1, high)
    return float(low)


def checked(table: pd.DataFrame, spreads: list[Spreads], grids: int, seed: int = 0) -> pd.DataFrame:
    """The table with each MDD's check: the share of `grids` simulated grids at that difference whose test
    detects it (`check_conditions`, `check_gain`; NaN where there is no MDD or the spreads have no threshold
    model at those accuracies), to hold against the stated power within its Monte Carlo error."""
    found = {(s.split, s.family): s for s in spreads}
    shares = {name: [] for name in ("conditions", "gain")}
    for row in table.itertuples(index=False):
        for name in shares:
            mdd = getattr(row, f"mdd_{name}")
            try:
                share = simulated_power(found[(row.split, row.family)], row.seeds, row.items, mdd, name,
                                        row.alpha, grids, seed) if np.isfinite(mdd) else np.nan
            except ValueError:
                share = np.nan
            shares[name].append(share)
    return table.assign(check_conditions=shares["conditions"], check_gain=shares["gain"], check_grids=grids)


ASSUMPTIONS = """\
Assumptions (scaling.power): answers are 0/1 and accuracies their means. Spreads are shares of p(1-p), the
Bernoulli variance within a condition, estimated by the method of moments at the pilot's step and averaged
over its conditions; a planned condition is taken to have the same shares at its own accuracy. conditions:
a condition at the pilot's mean accuracy against one `mdd` nearer 1/2, runs independent, the same items in
both; the test is the difference of mean accuracies over runs and items, its variance estimated from the
run and item x condition mean squares, its degrees of freedom Satterthwaite's for this design at these
spreads. Item effects shared by both conditions cancel; item x condition interaction, run spread
and binomial noise do not. gain: the same runs and items at memorization m and at {factor} x m, paired, tested
the same way; the spreads at both budgets and how much of each carries over from m are the pilot's (its runs
that reached {factor} x m), starting at their accuracy at m. Two-sided alpha {alpha}, power {power}. The
population is the family (new items of it), not these items. Near an accuracy of 0 the test is conservative:
simulated grids detect an MDD there more often than the stated power (--check simulates them)."""


def format_power(table: pd.DataFrame, design: Design, factor: int = FACTOR) -> str:
    """The table for people, then (with --detect) what the difference needs, then the assumptions in words and
    (with checks) what the simulation found."""
    def share(column: str) -> pd.Series:
        return table[column].map(lambda v: "-" if np.isnan(v) else f"{v:.2f}")

    def mdd(column: str, reason: str) -> pd.Series:
        return table.apply(lambda r: f"{r[column]:.3f}" if np.isfinite(r[column]) else (r[reason] or "none in [0, 1]"),
                           axis=1)

    shown = table[["split", "family", "pilot_runs", "accuracy"]].assign(
        accuracy=table["accuracy"].map("{:.3f}".format), run=share("run_share"), item=share("item_share"),
        item_x_cond=share("interaction_share"), residual=share("residual_share"), seeds=table["seeds"],
        items=table["items"], mdd_conditions=mdd("mdd_conditions", "reason"), mdd_gain=mdd("mdd_gain", "gain_reason"))
    checks = "check_grids" in table
    if checks:
        shown = shown.assign(check_conditions=share("check_conditions"), check_gain=share("check_gain"))
    parts = [f"Minimum detectable differences of accuracy (power {design.power}, two-sided alpha {design.alpha}) "
             f"at step {int(table['step'].iloc[0])}:", shown.to_string(index=False)]
    if design.detect is not None:
        parts += ["", f"To detect {design.detect}: the seeds needed at the planned items, and the items per family "
                      f"needed at 1, 2, 4 and 8 times the planned seeds ({', '.join(map(str, sorted(set(table['seeds']))))}); "
                      f"- where there is no MDD:",
                  _needed(table).to_string(index=False)]
    parts += ["", ASSUMPTIONS.format(factor=factor, alpha=design.alpha, power=design.power)]
    if checks:
        grids = int(table["check_grids"].iloc[0])
        parts.append(f"check: the share of {grids} simulated grids at the MDD whose test detects it, against power "
                     f"{design.power} +- {np.sqrt(design.power * (1 - design.power) / grids):.3f} (its Monte Carlo standard "
                     f"error); - where no threshold model reproduces the spreads at those accuracies.")
    return "\n".join(parts)


def _needed(table: pd.DataFrame) -> pd.DataFrame:
    """One row per split, family and contrast: the seeds and items `detect` needs, as counts or bounds."""
    rows = []
    for r in table.to_dict("records"):
        for name, reason in (("conditions", r["reason"]), ("gain", r["gain_reason"])):
            def shown(value: float, most: int) -> str:
                return "-" if reason else f"> {most}" if np.isnan(value) else f"{int(value)}"

            rows.append({"split": r["split"], "family": r["family"], "contrast": name, "items": r["items"],
                         "seeds_needed": shown(r[f"seeds_for_{name}"], MOST_SEEDS),
                         **{f"items_at_{more}x_seeds": shown(r[f"items_for_{name}_at_{more * r['seeds']}_seeds"], MOST_ITEMS)
                            for more in SEED_LADDER}})
    return pd.DataFrame(rows)


def write_power_csv(table: pd.DataFrame, path: Path) -> None:
    """The table as CSV, in place at once (a reader never sees half of it)."""
    staging.write_file_atomic(Path(path), table.to_csv(index=False).encode())


# --- the check by simulation ---------------------------------------------------------------------------------

def _bivariate(h: float, k: float, rho: float) -> float:
    """P(Z1 < h, Z2 < k) for standard normals of correlation rho."""
    return float(stats.multivariate_normal(cov=[[1.0, rho], [rho, 1.0]]).cdf([h, k]))


def _correlation(level_a: float, level_b: float, covariance: float) -> float:
    """The latent correlation that makes two threshold answers (right with these probabilities) covary so much."""
    if abs(covariance) < 1e-12:  # none (or rounding): independent
        return 0.0
    h, k = stats.norm.ppf(level_a), stats.norm.ppf(level_b)
    gap = lambda rho: _bivariate(h, k, rho) - level_a * level_b - covariance  # noqa: E731 (a root's function)
    if gap(0.999) < 0 or gap(-0.999) > 0:
        raise ValueError(f"no threshold model gives answers at {level_a:.3f} and {level_b:.3f} a covariance of {covariance:.4f}")
    return float(optimize.brentq(gap, -0.999, 0.999, xtol=1e-8))


def _answers(latent: np.ndarray, level: float) -> np.ndarray:
    """Right where the latent lies below the level's normal quantile: right with probability `level`."""
    return (latent < stats.norm.ppf(level)).astype(float)


def simulated_power(s: Spreads, seeds: int, items: int, difference: float, contrast: str = "conditions",
                    alpha: float = ALPHA, grids: int = 400, seed: int = 0) -> float:
    """The share of `grids` simulated grids whose test detects a true `difference` (contrast "conditions" or
    "gain"). Answers are thresholded Gaussians (a probit model) whose latent correlations are matched so each
    condition's (or budget's) answers have exactly the spreads the MDD assumes; the test is the one it describes."""
    rng = np.random.default_rng(seed)
    if contrast == "conditions":
        detected = _simulate_conditions(rng, s, seeds, items, difference, alpha, grids)
    else:
        detected = _simulate_gain(rng, s, seeds, items, difference, alpha, grids)
    return float(detected.mean())


def _simulate_conditions(rng, s: Spreads, seeds: int, items: int, difference: float, alpha: float, grids: int) -> np.ndarray:
    levels = (s.level, _other_level(s.level, difference))
    shared = rng.standard_normal((grids, 1, items))  # an item's difficulty, the same in both conditions
    y = []
    for level in levels:
        v = _variance(level)
        rho_run = _correlation(level, level, s.run * v)
        rho_item = _correlation(level, level, (s.item + s.interaction) * v)
        if rho_run + rho_item > 1:
            raise ValueError("the run and item spreads are too large for a threshold model at this accuracy")
        own = s.item / (s.item + s.interaction) if s.item + s.interaction > 0 else 0.0
        item_GxK = np.sqrt(own) * shared + np.sqrt(1 - own) * rng.standard_normal((grids, 1, items))
        latent = (np.sqrt(rho_run) * rng.standard_normal((grids, seeds, 1)) + np.sqrt(rho_item) * item_GxK
                  + np.sqrt(1 - rho_run - rho_item) * rng.standard_normal((grids, seeds, items)))
        y.append(_answers(latent, level))
    y_GxCxSxK = np.stack(y, axis=1)
    ms_run, _, ms_interaction, ms_residual = _mean_squares(y_GxCxSxK)
    df = conditions_test(s, levels, seeds, items).df  # planned in advance: see the module's docstring
    total = ms_run + ms_interaction
    condition_GxC = y_GxCxSxK.mean(axis=(2, 3))
    return _rejects(condition_GxC[:, 1] - condition_GxC[:, 0], 2 * total / (seeds * items), df, alpha)


def _simulate_gain(rng, s: Spreads, seeds: int, items: int, difference: float, alpha: float, grids: int) -> np.ndarray:
    levels = (s.gain_level, s.gain_level + difference)
    v_m, v_fm = (_variance(p) for p in levels)
    shares, carry = np.asarray(s.gain_shares), np.asarray(s.gain_carry)
    # Within each budget: latent run and item factors matched to their shares; across the budgets: each factor
    # correlated so that the answers covary as the pilot's carried over.
    within = np.array([[_correlation(p, p, share * _variance(p)) for share in shares[:2]] for p in levels])  # budget x (run, item)
    if (within.sum(axis=1) > 1).any():
        raise ValueError("the run and item spreads are too large for a threshold model at these accuracies")
    within = np.column_stack([within, 1 - within.sum(axis=1)])
    scale = np.sqrt(within[0] * within[1])
    across = [_correlation(*levels, c * share * np.sqrt(v_m * v_fm)) for c, share in zip(carry[:2], shares[:2])]
    together = _correlation(*levels, float((carry * shares).sum() * np.sqrt(v_m * v_fm)))
    across.append(together - sum(across))
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(scale > 0, np.asarray(across) / scale, 0.0)
    if (np.abs(kappa) > 1).any():
        raise ValueError("what carries over from m to f x m is too large for a threshold model at these accuracies")
    shapes = ((grids, seeds, 1), (grids, 1, items), (grids, seeds, items))
    first = [rng.standard_normal(shape) for shape in shapes]
    second = [k * z + np.sqrt(1 - k ** 2) * rng.standard_normal(z.shape) for k, z in zip(kappa, first)]
    before = sum(np.sqrt(w) * z for w, z in zip(within[0], first))
    after = sum(np.sqrt(w) * z for w, z in zip(within[1], second))
    d_GxRxK = _answers(after, levels[1]) - _answers(before, levels[0])
    ms_run, ms_item, ms_residual = _mean_products(d_GxRxK, d_GxRxK)
    df = gain_test(s, difference, seeds, items).df
    total = ms_run + ms_item
    return _rejects(d_GxRxK.mean(axis=(1, 2)), total / (seeds * items), df, alpha)


def _rejects(estimate: np.ndarray, variance: np.ndarray, df: np.ndarray, alpha: float) -> np.ndarray:
    """Whether each grid's two-sided t-test rejects (a variance estimate at or below zero: every answer alike)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = estimate / np.sqrt(variance)
        return (variance > 0) & (np.abs(t) > stats.t.ppf(1 - alpha / 2, np.maximum(df, 1e-3)))
