"""How far each out-of-distribution split moved, against the floor it stands on and the ceiling its positive
control reached: accuracy beside chance and headroom, `transfer = (acc - chance) / (headroom - chance)`, and
"above chance" as a computed statement.

Runs and items are both random factors: the same evaluation problems recur in every cell, so one hard item
pulls every run down at once, and 36 runs x 256 items are not 9,216 independent draws. Intervals come from a
crossed ("pigeonhole") bootstrap (Owen 2007, Ann. Appl. Stat. 1(1)): each draw resamples runs (`cell_id`) and
items (family, key) independently, with replacement, and recomputes the statistic on the weighted cells x items
table. It is mildly conservative (the interaction is counted with both factors), never anti-conservative as a
binomial over every graded row would be. A control cell shares the evaluation items of the regular cells, so
it is drawn with the same item weights and its own run weights: transfer's interval carries both. Simulated
(12 runs x 64 items, run and item effects on the logit scale), the 90% interval covered the true mean 91% of
the time with strong item effects (sd 0.5 and 1.5; a binomial over the rows: 49%) and 85% with strong run
effects (sd 1.0 and 0.3; binomial: 34%): with a dozen runs the percentile interval is a little short.

Every interval carries its label (report/intervals.py's rule; columns `interval`, `control_interval` and
`transfer_interval`): "runs and items" from MIN_UNITS distinct runs; below that the runs are held fixed and only
the items are resampled ("items only: 2 runs": these runs on new items of the split, nothing about other runs;
two runs bootstrapped as a population would draw the same run twice half the time), and one run that graded
each item once gets the exact binomial interval of its items, as report/claims.py gives it ("items only: 1
run"; a percentile bootstrap of 2 right in 256 ends at 0.016, the exact interval at 0.024). Where every graded
answer of a set of cells agrees (all wrong, all right) no draw differs from another and the bootstrap
collapses to a point: the accuracy's interval is then the exact one over its distinct items ("exact over 256
items, all wrong"). Where either side's interval is exact, transfer's takes the ends of both intervals, each
at BOTH, so that both hold together at least LEVEL of the time ("ends of acc and headroom at 95%").

Chance is known exactly per item (the `chance` column), so accuracy - chance is paired per item, draw by draw.
A group is "above chance" when at least ABOVE of the draws put its accuracy above its chance and guessing
itself (every row right with its chance, independently) reaches its number right in at most 1 - ABOVE of
simulations (`p_guessing`); "below chance" the same on the other side; otherwise "not above chance" (never
"at chance": absence of evidence is stated as such). With ABOVE = 0.95, "above chance" is the one-sided test
matching the 90% interval's lower end. Where the interval is exact the interval decides instead: "below
chance" only where its upper end is below chance, so 0 right of 40 items, however many runs answered them, is
not below a chance of 0.05 (where every answer agrees the draws have no share to count: `p_above` and `p_below`
are NaN); and guessing must still be rare: 0 right where guessing expects 0.2 is not below chance. `runs` and
`items` stand beside every number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaling import staging
from scaling.errors import UserError
from scaling.fit.data import query
from scaling.report.intervals import LEVEL, MIN_UNITS, alike_interval, binomial_interval, counted

DRAWS = 2000  # bootstrap draws: the 5% and 95% quantiles move by well under a point between seeds
ABOVE = 0.95  # share of draws on one side of chance that makes a verdict (one-sided, as the 90% interval)
BOTH = 1 - (1 - LEVEL) / 2  # each of two intervals whose ends bound transfer: both hold at least LEVEL of the time
RUNS_AND_ITEMS = "runs and items"  # the label of the crossed bootstrap's intervals
TRAINING_SPLIT = "train"  # the SFT examples themselves: memorization, not transfer
ITEM = ("family", "key")  # an evaluation item; the same item recurs in every cell of a grid
# Columns a control cell is matched on besides the split: what an item is (a `by` over them picks the same
# items of the control), and the base and CoT style it was trained from (matched always).
ITEM_COLUMNS = ("split", "family", "phrasing", "difficulty", "distance", "key")
BASE_COLUMNS = ("size", "pretrain_tokens", "cot")
REGULAR = ""  # `control` of a regular cell; a control cell's is the split whose distribution it trained on
NEEDED = ("cell_id", "step", "split", *ITEM, "chance", "answer_correct")


def transfer_table(grades: pd.DataFrame, by: Sequence[str] = ("split", "family"), step: int | None = None,
                   where: str | None = None, draws: int = DRAWS, seed: int = 0) -> pd.DataFrame:
    """One row per group of `by` (which must include `split`) at one budget (the last one unless `step`):
    the regular cells' accuracy with its 90% interval, the mean chance, the share of bootstrap draws above
    and below chance and the verdict; the matched control cells' headroom with its interval and verdict;
    and transfer with its interval, NaN with a `reason` where there is no control or the control is not above
    chance; beside each interval its label (`interval`, `control_interval`, `transfer_interval`: see the module's
    docstring). `runs`, `items` and `n` count the regular cells, distinct items and graded rows behind each row.

    `grades` is a run's grades.parquet; a `control` column (absent: every cell is regular) marks control
    cells, which serve only as the headroom of the split they trained on, matched on the group's item
    columns and on the bases (size, pretrain_tokens) and CoT styles of its regular cells. `where` picks the
    regular cells (a row condition); the training split is left out."""
    by = list(dict.fromkeys(by))
    if "split" not in by:
        raise UserError(f"transfer: by must include split, got {', '.join(by) or 'nothing'}")
    if missing := [c for c in (*NEEDED, *by) if c not in grades.columns]:
        raise UserError(f"transfer: the grades have no column {missing[0]!r}; columns are {', '.join(grades.columns)}")
    if grades.empty:
        raise UserError("transfer: the grades hold no graded examples")
    step = _budget(grades, step)
    here = grades[(grades["step"] == step) & (grades["split"] != TRAINING_SPLIT)]
    role = here["control"] if "control" in here else pd.Series(REGULAR, index=here.index)
    regular, controls = query(here[role == REGULAR], where, "where"), here[role != REGULAR]
    if regular.empty:
        raise UserError(f"transfer: no regular cell's grades at step {step}" + (f" match {where!r}" if where else ""))
    rng = np.random.default_rng(seed)
    rows = []
    for keys, group in regular.groupby(by, sort=True, dropna=False):
        values = dict(zip(by, keys))
        control, unmatched = _matched_control(controls, group, values)
        rows.append({**values, "step": step, **_row(group, control, unmatched, draws, rng)})
    return pd.DataFrame(rows)


def accuracy_interval(rows: pd.DataFrame, draws: int = DRAWS, seed: int = 0) -> tuple[float, float]:
    """The LEVEL interval of the accuracy of graded rows (several runs on one evaluation set) over the crossed
    bootstrap of runs and items (below MIN_UNITS runs, of items alone): what a table row pooling runs quotes
    (report/claims.py's accuracy_rows). A point where every answer agrees: the caller says so."""
    rng = np.random.default_rng(seed)
    items = pd.MultiIndex.from_frame(rows[list(ITEM)].drop_duplicates())
    measured = _measure(rows, items, resample_counts(rng, draws, len(items)), rng)
    lo, hi = np.nanquantile(measured.acc_draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(lo), float(hi)


def _budget(grades: pd.DataFrame, step: int | None) -> int:
    """The budget asked for, or the last one; a budget the grades lack is refused with the ones they have."""
    steps = sorted(int(s) for s in grades["step"].unique())
    if step is None:
        return steps[-1]
    if step not in steps:
        raise UserError(f"transfer: no grades at step {step}; steps are {', '.join(map(str, steps))}")
    return step


def _matched_control(controls: pd.DataFrame, group: pd.DataFrame, values: dict) -> tuple[pd.DataFrame, str]:
    """The control cells' rows that give this group its headroom: trained on its split, evaluated on its
    items, from the bases and CoT styles its regular cells come from (one control per base: their average);
    and the first of those bases that has no control ("" when each has one), named as "size=xs, ...": a
    headroom missing a base is not the ceiling of the regular cells' average."""
    picked = controls[controls["control"] == values["split"]] if "control" in controls else controls.iloc[:0]
    for column in ITEM_COLUMNS:
        if column in values:
            picked = picked[picked[column] == values[column]]
    bases = [c for c in BASE_COLUMNS if c in group.columns and c in picked.columns]
    if not bases or picked.empty:
        return picked, ""
    wanted = group[bases].drop_duplicates()
    found = wanted.merge(picked[bases].drop_duplicates(), on=bases, how="left", indicator=True)
    lacking = found[found["_merge"] == "left_only"]
    unmatched = ", ".join(f"{c}={lacking.iloc[0][c]}" for c in bases) if len(lacking) else ""
    return picked.merge(wanted, on=bases), unmatched


def _row(group: pd.DataFrame, control: pd.DataFrame, unmatched: str, draws: int, rng: np.random.Generator) -> dict:
    """A group's numbers: its regular cells and its control cells, bootstrapped over shared item weights;
    transfer undefined where a base of the regular cells has no control (`unmatched` names it)."""
    items = pd.MultiIndex.from_frame(pd.concat([group[list(ITEM)], control[list(ITEM)]]).drop_duplicates())
    item_weights = resample_counts(rng, draws, len(items))
    measured = _measure(group, items, item_weights, rng)
    row = {"runs": measured.runs, "items": measured.items, "n": len(group),
           **_described("acc", "interval", measured), "chance": measured.chance,
           "p_above": measured.p_above, "p_below": measured.p_below, "p_guessing": measured.p_guessing,
           "verdict": measured.verdict,
           "control_runs": 0, "headroom": np.nan, "headroom_lo": np.nan, "headroom_hi": np.nan,
           "control_interval": "", "control_verdict": "",
           "transfer": np.nan, "transfer_lo": np.nan, "transfer_hi": np.nan, "transfer_interval": "",
           "reason": "no control"}
    if control.empty:
        return row
    ceiling = _measure(control, items, item_weights, rng)
    row.update({"control_runs": ceiling.runs, **_described("headroom", "control_interval", ceiling),
                "control_verdict": ceiling.verdict})
    row["reason"] = (f"control {ceiling.verdict}" if ceiling.verdict != "above chance" else
                     f"no control for {unmatched}" if unmatched else "")
    if row["reason"]:
        return row
    lo, hi, label = _transfer_interval(measured, ceiling)
    row.update(transfer=(measured.acc - measured.chance) / (ceiling.acc - ceiling.chance),
               transfer_lo=lo, transfer_hi=hi, transfer_interval=label)
    return row


def _transfer_interval(measured: Measured, ceiling: Measured) -> tuple[float, float, str]:
    """Transfer's LEVEL interval and its label: the bootstrap's, draw by draw, where both accuracies' intervals
    are the bootstrap's; where either is exact, the least and greatest transfer within both at BOTH."""
    if measured.exact or ceiling.exact:
        (acc_lo, acc_hi, _), (top_lo, top_hi, _) = measured.interval(BOTH), ceiling.interval(BOTH)
        lifts = (acc_lo - measured.chance, acc_hi - measured.chance)
        ceilings = (top_lo - ceiling.chance, top_hi - ceiling.chance)
        # the ratio falls as the ceiling rises where the lift is positive, and rises with it where it is negative
        lo = _ratio(lifts[0], ceilings[0] if lifts[0] < 0 else ceilings[1])
        hi = _ratio(lifts[1], ceilings[0] if lifts[1] > 0 else ceilings[1])
        return float(lo), float(hi), f"ends of acc and headroom at {BOTH:.0%}"
    ratio = _ratio(measured.lift, ceiling.lift)
    ratio = ratio[~np.isnan(ratio)]  # draws whose items none of the runs graded
    lo, hi = np.quantile(ratio, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], method="inverted_cdf")
    label = (RUNS_AND_ITEMS if measured.unit == ceiling.unit == RUNS_AND_ITEMS else
             f"{measured.unit}; control {ceiling.unit}" if RUNS_AND_ITEMS in (measured.unit, ceiling.unit) else
             f"items only: {counted(measured.runs, 'run')}, {counted(ceiling.runs, 'control run')}")
    return float(lo), float(hi), label


def _ratio(lift: np.ndarray | float, ceiling: np.ndarray | float) -> np.ndarray:
    """Transfer per draw; where a draw's control is not above chance the ratio is unbounded, signed by the
    regular cells' lift (infinite, so an interval that reaches it says the control was barely learned)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ceiling > 0, lift / np.where(ceiling > 0, ceiling, 1.0), np.sign(lift) * np.inf)


def _described(name: str, label: str, measured: Measured) -> dict:
    """An accuracy, its interval and the interval's label, under names."""
    lo, hi, unit = measured.interval()
    return {name: measured.acc, f"{name}_lo": lo, f"{name}_hi": hi, label: unit}


def resample_counts(rng: np.random.Generator, draws: int, units: int) -> np.ndarray:
    """draws x units bootstrap counts: each draw picks `units` of the units with replacement."""
    return rng.multinomial(units, np.full(units, 1 / units), size=draws).astype(float)


@dataclass(frozen=True)
class Measured:
    """One set of cells' accuracy against chance on a group's items: observed, and per bootstrap draw."""

    runs: int  # cells behind it (resampled from MIN_UNITS, held fixed below)
    items: int  # distinct items they graded
    right: int  # graded rows answered right
    n: int  # graded rows
    acc: float  # observed accuracy, every graded row counted once
    chance: float  # observed mean chance of the same rows
    acc_draws: np.ndarray  # accuracy per draw (NaN where a draw's runs graded none of its items)
    lift: np.ndarray  # accuracy minus chance per draw, paired per item
    p_above: float  # share of draws with accuracy above chance (NaN where every answer agrees)
    p_below: float  # share of draws with accuracy below chance (NaN where every answer agrees)
    p_guessing: float  # how often guessing every row scores at least as far from chance, on the observed side

    @property
    def alike(self) -> bool:
        """Every graded answer the same (all wrong or all right): no bootstrap draw differs from another."""
        return self.right in (0, self.n)

    @property
    def exact(self) -> bool:
        """Its interval is exact, not the bootstrap's: every answer alike, or one run that graded each item once."""
        return self.alike or (self.runs == 1 and self.n == self.items)

    @property
    def unit(self) -> str:
        """What the bootstrap resampled: runs and items from MIN_UNITS runs, items alone (these runs) below."""
        return RUNS_AND_ITEMS if self.runs >= MIN_UNITS else f"items only: {counted(self.runs, 'run')}"

    def interval(self, level: float = LEVEL) -> tuple[float, float, str]:
        """The accuracy's `level` interval and its label: exact over the distinct items where every answer
        agrees, exact over one run's items, the bootstrap's otherwise (NaN where its draws still all agree, which
        a label says)."""
        if self.alike:
            return alike_interval(self.right > 0, self.items, level)
        if self.exact:
            return *binomial_interval(self.right, self.n, level), self.unit
        lo, hi = np.nanquantile(self.acc_draws, [(1 - level) / 2, (1 + level) / 2])
        if lo == hi:  # every item scored alike by runs held fixed: no spread to show
            return np.nan, np.nan, f"n/a: {self.unit}, every draw alike"
        return float(lo), float(hi), self.unit

    @property
    def verdict(self) -> str:
        """Above or below chance where ABOVE of the draws agree (where the interval is exact: where it lies on
        that side of chance) and guessing would rarely score as far from chance; otherwise not shown to be above
        it."""
        rare = self.p_guessing <= 1 - ABOVE
        if self.exact:
            lo, hi, _ = self.interval()
            above, below = lo > self.chance, hi < self.chance
        else:
            above, below = self.p_above >= ABOVE, self.p_below >= ABOVE
        return "above chance" if above and rare else "below chance" if below and rare else "not above chance"


def _measure(rows: pd.DataFrame, items: pd.MultiIndex, item_weights_BxK: np.ndarray,
             rng: np.random.Generator) -> Measured:
    """Accuracy and chance of `rows` over the crossed bootstrap: its own run weights (each run once per draw
    below MIN_UNITS runs), the given item weights. B is the number of draws, C of cells, K of items."""
    cells = pd.Index(rows["cell_id"].unique())
    c, k = cells.get_indexer(rows["cell_id"]), items.get_indexer(pd.MultiIndex.from_frame(rows[list(ITEM)]))
    right_CxK, chance_CxK, n_CxK = (np.zeros((len(cells), len(items))) for _ in range(3))
    np.add.at(right_CxK, (c, k), rows["answer_correct"].to_numpy(float))
    np.add.at(chance_CxK, (c, k), rows["chance"].to_numpy(float))
    np.add.at(n_CxK, (c, k), 1.0)
    run_weights_BxC = (resample_counts(rng, len(item_weights_BxK), len(cells)) if len(cells) >= MIN_UNITS else
                       np.ones((len(item_weights_BxK), len(cells))))
    right_B, chance_B, n_B = (((run_weights_BxC @ table) * item_weights_BxK).sum(axis=1)
                              for table in (right_CxK, chance_CxK, n_CxK))
    with np.errstate(divide="ignore", invalid="ignore"):
        acc_B, lift_B = right_B / n_B, (right_B - chance_B) / n_B
    kept = lift_B[np.isfinite(lift_B)]
    right, n = int(right_CxK.sum()), len(rows)
    alike = right in (0, n)
    return Measured(runs=len(cells), items=int((n_CxK.sum(axis=0) > 0).sum()), right=right, n=n,
                    acc=right / n, chance=float(chance_CxK.sum() / n), acc_draws=acc_B, lift=lift_B,
                    p_above=np.nan if alike else float((kept > 0).mean()),
                    p_below=np.nan if alike else float((kept < 0).mean()),
                    p_guessing=_guessing_tail(rows, len(item_weights_BxK), rng))


def _guessing_tail(rows: pd.DataFrame, draws: int, rng: np.random.Generator) -> float:
    """The share of `draws` simulations of guessing every row (right with its chance, independently) that score
    at least as far from chance as the rows did, on their side of it. Where every answer is the same the
    bootstrap has nothing to resample: 0 right of 576 with a chance of 0.0004 is no evidence of being below a
    floor guessing itself would miss, and this tail (0.79 there) says so."""
    right = int(rows["answer_correct"].sum())
    counts = rows["chance"].value_counts()  # guessing's count right: a binomial per distinct chance, summed
    guessed = sum(rng.binomial(int(m), float(p), size=draws) for p, m in counts.items())
    return float((guessed >= right).mean() if right >= rows["chance"].sum() else (guessed <= right).mean())


def read_grades_file(path: Path) -> pd.DataFrame:
    """A collected run's grades.parquet; a missing folder, a missing or unreadable file: a UserError naming it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"no run folder {path.parent}")
    if not path.is_file():
        raise UserError(f"{path.parent} has no {path.name} (run `scaling collect {path.parent}` first)")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise UserError(f"grades file {path} is unreadable or truncated ({type(error).__name__})") from None


def format_transfer(table: pd.DataFrame) -> str:
    """The table for people: each number with its interval in brackets and, beside it, what the interval counts
    (its label); the reason where transfer is undefined."""
    def interval(name: str) -> pd.Series:
        return table.apply(lambda r: "-" if np.isnan(r[name]) else f"{r[name]:.3f}" if np.isnan(r[f"{name}_lo"]) else
                           f"{r[name]:.3f} [{r[f'{name}_lo']:.3f}, {r[f'{name}_hi']:.3f}]", axis=1)

    groups = list(table.columns[:list(table.columns).index("step")])
    shown = table[[*groups, "runs", "items"]].assign(
        accuracy=interval("acc"), interval=table["interval"], chance=table["chance"].map("{:.3f}".format),
        p_above=table["p_above"].map(lambda p: "-" if np.isnan(p) else f"{p:.2f}"), verdict=table["verdict"],
        headroom=interval("headroom"), control_interval=table["control_interval"].replace("", "-"),
        control=table["control_verdict"].replace("", "-"),
        transfer=interval("transfer").where(table["reason"] == "", table["reason"]),
        transfer_interval=table["transfer_interval"].replace("", "-"))
    return shown.to_string(index=False)


def write_transfer_csv(table: pd.DataFrame, path: Path) -> None:
    """The table as CSV, in place at once (a reader never sees half of it)."""
    staging.write_file_atomic(Path(path), table.to_csv(index=False).encode())
