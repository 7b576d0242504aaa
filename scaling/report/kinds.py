"""The kinds of figure and table `paper/figures.toml` may list: for each figure, the function that draws it,
the options dataclass its [[figure]] table is typed as and the files it reads; for each table, what computes it,
its options and the files it reads.
`scaling figures` (report/paper.py) asks these registries and never tests a kind's name: a new kind of
figure is one entry here and its function in report/figures.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
import tomllib
from pathlib import Path

import pandas as pd

from scaling.errors import UserError
from scaling.fit.data import query
from scaling.report import claims, figures, ladder, transfer
from scaling.results import open_results, results_table

Inputs = Iterator[tuple[str, Path]]  # each file a figure reads, with what an error calls it ("" for a plain file)

# Options of each kind, typed by scaling.typed_toml from its [[figure]] or [[table]] (less name and kind). Paths
# are as written until report/paper.py resolves them against the repository root; a list of names may be one name.
BUDGETS = {"takes": "a list of budgets"}
MULTIPLES = {"takes": "a list of whole multiples of the memorization step"}
PATHS = {"takes": "a path or a list of paths"}
NAMES = {"takes": "a name or a list of names"}


def _positive(options, name: str, meta: dict) -> None:
    """ValueError unless every value of the field is above 0."""
    if not all(value > 0 for value in getattr(options, name)):
        raise ValueError(f"{name} must be {meta['takes']}, got {list(getattr(options, name))}")


@dataclass(frozen=True)
class RunOptions:
    """accuracy_by_split, training_curves."""

    results: Path  # a collected run's results.nc
    group_by: tuple[str, ...] = field(metadata=NAMES)  # a column per value of all but the last, a line per the last


@dataclass(frozen=True)
class FamilyOptions:
    """accuracy_by_family."""

    families: Path  # a collected run's per-family table
    where: str | None = None  # the cells to use


@dataclass(frozen=True)
class ConditionOptions:
    """accuracy_by_condition."""

    results: tuple[Path, ...] = field(metadata=PATHS)  # collected runs, pooled (told apart by `run`)
    x: tuple[str, ...] = field(metadata=NAMES)  # along the axis
    hue: tuple[str, ...] = field(metadata=NAMES)  # a line each
    splits: tuple[str, ...] = field(metadata=NAMES)  # a panel column each
    steps: tuple[int, ...] = field(metadata=BUDGETS)  # a panel row each
    where: str | None = None  # the cells to use

    def __post_init__(self):
        _positive(self, "steps", BUDGETS)


@dataclass(frozen=True)
class PostMemorizationOptions:
    """post_memorization (a figure)."""

    results: tuple[Path, ...] = field(metadata=PATHS)  # collected runs, pooled, each with its grades.parquet
    splits: tuple[str, ...] = field(metadata=NAMES)  # a panel each
    factors: tuple[int, ...] = field(metadata=MULTIPLES)  # gains from the memorization step m to f·m
    by: tuple[str, ...] = field(metadata=NAMES)  # the conditions the means are taken per

    def __post_init__(self):
        _positive(self, "factors", MULTIPLES)


@dataclass(frozen=True)
class FitOptions:
    """backtest, returns."""

    fit: Path  # a `scaling fit` folder


@dataclass(frozen=True)
class LawFitOptions:
    """law_fit."""

    fit: Path  # a `scaling fit` folder
    hue: str | None = None  # the column for colour
    col: str | None = None  # the column for panel columns
    row: str | None = None  # the column for panel rows


@dataclass(frozen=True)
class PosteriorOptions:
    """posterior."""

    fit: Path  # a `scaling fit` folder
    params: tuple[str, ...] = field(metadata=NAMES)  # the parameters drawn


@dataclass(frozen=True)
class FigureKind:
    """One kind of figure."""

    draw: Callable[[object, Path, Path], list[Path]]  # (options, file stem, repository root) -> the files drawn
    options: type  # its options dataclass: the keys its [[figure]] table takes
    inputs: Callable[[object, Path], Inputs]  # (options, root) -> the files it reads, in the order they are checked


def _files(key: str) -> Callable[[object, Path], Inputs]:
    """The file, or the files, an option names."""
    def inputs(options, root: Path) -> Inputs:
        value = getattr(options, key)
        yield from (("", path) for path in (value if isinstance(value, tuple) else [value]))
    return inputs


def _runs_and_grades(options, root: Path) -> Inputs:
    """Collected runs and the per-example grades beside each."""
    yield from _files("results")(options, root)
    yield from (("", path.parent / "grades.parquet") for path in options.results)


def _fit_files(*names: str) -> Callable[[object, Path], Inputs]:
    """Files of a `scaling fit` folder: its fit.toml and what the figure reads."""
    def inputs(options, root: Path) -> Inputs:
        yield from (("", options.fit / name) for name in ("fit.toml", *names))
    return inputs


def _law_fit_inputs(options, root: Path) -> Inputs:
    """A fit's posterior, then the table it was fitted to (its fit.toml, checked first, names it)."""
    yield from _fit_files("posterior.nc")(options, root)
    yield "the fit's input ", figures.fit_input(options.fit, root)


FIGURE_KINDS: dict[str, FigureKind] = {
    "accuracy_by_split": FigureKind(
        lambda o, stem, root: figures.accuracy_by_split_figure(o.results, o.group_by, stem),
        RunOptions, _files("results")),
    "training_curves": FigureKind(
        lambda o, stem, root: figures.training_curves_figure(o.results, o.group_by, stem),
        RunOptions, _files("results")),
    "accuracy_by_family": FigureKind(
        lambda o, stem, root: figures.accuracy_by_family_figure(o.families, stem, o.where),
        FamilyOptions, _files("families")),
    "accuracy_by_condition": FigureKind(
        lambda o, stem, root: figures.accuracy_by_condition_figure(list(o.results), list(o.x), list(o.hue),
                                                                   list(o.splits), list(o.steps), stem, o.where),
        ConditionOptions, _files("results")),
    "post_memorization": FigureKind(
        lambda o, stem, root: figures.post_memorization_figure(list(o.results), list(o.splits), list(o.factors),
                                                               list(o.by), stem),
        PostMemorizationOptions, _runs_and_grades),
    "law_fit": FigureKind(lambda o, stem, root: figures.law_fit_figure(o.fit, stem, o.hue, o.col, o.row, root),
                          LawFitOptions, _law_fit_inputs),
    "backtest": FigureKind(lambda o, stem, root: figures.backtest_figure(o.fit, stem),
                           FitOptions, _fit_files("backtest.csv")),
    "returns": FigureKind(lambda o, stem, root: figures.returns_figure(o.fit, stem),
                          FitOptions, _fit_files("returns.csv")),
    "posterior": FigureKind(lambda o, stem, root: figures.posterior_figure(o.fit, list(o.params), stem),
                            PosteriorOptions, _fit_files("summary.csv")),
}


@dataclass(frozen=True)
class PostMemorizationTableOptions:
    """post_memorization (a table)."""

    results: tuple[Path, ...] = field(metadata=PATHS)  # collected runs, pooled, each with its grades.parquet
    split: str  # the split the gains are measured on
    factors: tuple[int, ...] = field(metadata=MULTIPLES)  # gains from the memorization step m to f·m
    by: tuple[str, ...] = field(metadata=NAMES)  # the conditions the gains are summarized per

    def __post_init__(self):
        _positive(self, "factors", MULTIPLES)


@dataclass(frozen=True)
class ConditionsTableOptions:
    """conditions."""

    results: tuple[Path, ...] = field(metadata=PATHS)  # collected runs, pooled
    x: tuple[str, ...] = field(metadata=NAMES)  # a row per condition of x and hue
    hue: tuple[str, ...] = field(metadata={**NAMES, "empty": True})  # may be empty: conditions of x alone
    splits: tuple[str, ...] = field(metadata=NAMES)  # the splits measured
    steps: tuple[int, ...] = field(metadata=BUDGETS)  # the budgets
    metric: str = "answer_acc"  # the results variable averaged (a base measure: once per distinct base)
    where: str | None = None  # the cells to use

    def __post_init__(self):
        _positive(self, "steps", BUDGETS)


# An accuracy_rows row: per-example grades, and which of them: a condition, a budget, and in a run's
# arm_grades.parquet the arm after SFT ("rl" or "rft") and the SFT budget it started from (`step` is then the arm's).
ROW_KEYS = ({"label", "grades"}, {"where", "step", "arm", "sft_step"})
ARMS = ("rl", "rft")
SPLIT_COLUMNS = {"takes": 'a table of column = split, e.g. { ID = "id" }'}


@dataclass(frozen=True)
class AccuracyRowsOptions:
    """accuracy_rows: each row a label, per-example grades (a run's grades.parquet or arm_grades.parquet, or the
    baseline.parquet of `scaling baseline`), and optionally a row condition and a budget (of an arm: its steps,
    from an SFT budget)."""

    splits: dict[str, str] = field(metadata=SPLIT_COLUMNS)  # a column per split: its name = the split
    rows: tuple[dict, ...] = field(metadata={"takes": "a list of tables { label, grades, where, step, arm, sft_step }"})
    relative_compute: str | None = None  # the label of the row whose training FLOPs are 1 in a `compute` column
    # (the SFT row, as the article's table); left out: no compute column

    def __post_init__(self):
        if not self.splits:
            raise ValueError(f"splits must be {SPLIT_COLUMNS['takes']}, got {{}}")
        needed, optional = ROW_KEYS
        for number, row in enumerate(self.rows, 1):
            if missing := needed - set(row):
                raise ValueError(f"row {number}: missing key {sorted(missing)[0]!r}")
            if unknown := set(row) - needed - optional:
                raise ValueError(f"row {number}: unknown key {sorted(unknown)[0]!r}")
            if not isinstance(row["grades"], (str, Path)):
                raise ValueError(f"row {number}: grades must be a path, got {row['grades']!r}")
            if "arm" in row and row["arm"] not in ARMS:
                raise ValueError(f"row {number}: arm must be one of {', '.join(ARMS)}, got {row['arm']!r}")
        labels = [row["label"] for row in self.rows]
        if self.relative_compute is not None and self.relative_compute not in labels:
            raise ValueError(f"relative_compute must be the label of a row, got {self.relative_compute!r}")
        object.__setattr__(self, "rows", tuple({**row, "grades": Path(row["grades"])} for row in self.rows))


@dataclass(frozen=True)
class TransferOptions:
    """transfer: accuracy against chance and the control's headroom, and transfer, per group of a run's grades."""

    grades: Path  # a collected run's grades.parquet (its control cells give the headroom)
    by: tuple[str, ...] = field(default=("split", "family"), metadata=NAMES)  # a row per group; split among them
    step: int | None = None  # the budget (left out: the last one)
    where: str | None = None  # the regular cells to use (controls are matched to them by base)

    def __post_init__(self):
        if "split" not in self.by:  # a control gives the headroom of the split it trained on
            raise ValueError(f"by must include split, got {list(self.by)}")


@dataclass(frozen=True)
class BacktestScoresOptions:
    """backtest_scores: each fit's backtest scores (its fit.toml), a row per fit and group."""

    fits: tuple[Path, ...] = field(metadata=PATHS)  # `scaling fit` folders


@dataclass(frozen=True)
class LadderOptions:
    """ladder, ladder_ceilings: bases fine-tuned on one training set past memorization, read at multiples of each
    base's memorization step (report/ladder.py)."""

    results: tuple[Path, ...] = field(metadata=PATHS)  # collected runs, weakest base first, each with its grades.parquet
    splits: tuple[str, ...] = field(metadata=NAMES)  # the splits read
    factors: tuple[int, ...] = field(default=ladder.FACTORS, metadata=MULTIPLES)  # multiples of the memorization step

    def __post_init__(self):
        _positive(self, "factors", MULTIPLES)


@dataclass(frozen=True)
class TableKind:
    """One kind of table ([[table]] in figures.toml, written as CSV)."""

    table: Callable[[object], pd.DataFrame]  # options -> the table
    options: type  # its options dataclass: the keys its [[table]] entry takes
    inputs: Callable[[object, Path], Inputs]  # (options, root) -> the files it reads, in the order they are checked


def _row_grades(options: AccuracyRowsOptions, root: Path) -> Inputs:
    """Each row's per-example grades."""
    yield from ((f"row {number}: ", row["grades"]) for number, row in enumerate(options.rows, 1))


def _accuracy_rows(o: AccuracyRowsOptions) -> pd.DataFrame:
    """Accuracy per split of each row's per-example grades (a condition and a budget pick the row's examples)."""
    picked = []
    for number, row in enumerate(o.rows, 1):
        grades = query(pd.read_parquet(row["grades"]), row.get("where"), f"row {number}: where")
        for key in ("arm", "sft_step"):
            if key in row:
                grades = _picked(grades, key, row[key], number)
        if "step" in row:
            steps = sorted(set(grades["step"]))
            grades = grades[grades["step"] == row["step"]]
            if grades.empty:
                raise UserError(f"row {number}: no grades at step {row['step']} (steps are {', '.join(map(str, steps))})")
        picked.append((row["label"], grades))
    return claims.accuracy_rows(picked, dict(o.splits), o.relative_compute)


def _picked(grades: pd.DataFrame, key: str, value, number: int) -> pd.DataFrame:
    """The grades of one arm, or of one SFT budget an arm started from (arm_grades.parquet's columns)."""
    if key not in grades:
        raise UserError(f"row {number}: {key} is given but its grades have no {key} column (a run's arm_grades.parquet has)")
    picked = grades[grades[key] == value]
    if picked.empty:
        raise UserError(f"row {number}: no grades of {key} {value} ({key}s are {', '.join(map(str, sorted(set(grades[key]))))})")
    return picked


def _ladder_inputs(o: LadderOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ladder's rungs, in the order its runs are given, and their grades pooled."""
    grades = [ladder.labelled(pd.read_parquet(path.parent / "grades.parquet")) for path in o.results]
    bases = [ladder.base_rows(results_table(open_results(path), "train"), g) for path, g in zip(o.results, grades)]
    pooled = pd.concat(grades, ignore_index=True)
    return ladder.rungs(pd.concat(bases, ignore_index=True), pooled, list(o.splits), o.factors), pooled


def _ladder(o: LadderOptions) -> pd.DataFrame:
    """Per base, split and multiple of its memorization step: accuracy with its interval, chance and headroom."""
    return _ladder_inputs(o)[0]


def _ladder_ceilings(o: LadderOptions) -> pd.DataFrame:
    """Per split, each base against the one below it at the largest multiple all reached, paired on items."""
    rungs, pooled = _ladder_inputs(o)
    return ladder.ceilings(rungs, pooled, list(o.splits))


def _post_memorization(o: PostMemorizationTableOptions) -> pd.DataFrame:
    """What runs gain from their memorization step to each multiple of it, summarized per condition."""
    frames = []
    for path in o.results:
        grades = pd.read_parquet(path.parent / "grades.parquet")
        memorization = claims.memorization_table(results_table(open_results(path), "train"), grades)
        frames.append(claims.post_memorization_gains(grades, memorization, o.split, o.factors))
    return claims.summarize_gains(pd.concat(frames), list(o.by)).assign(split=o.split)


def _conditions(o: ConditionsTableOptions) -> pd.DataFrame:
    """A metric's mean and interval per condition at fixed budgets, over the pooled runs' cells."""
    frames = [results_table(open_results(path), split).assign(split=split, run=path.parent.name)
              for path in o.results for split in o.splits]
    measured = query(pd.concat(frames), o.where, "where")
    return claims.condition_means(measured[measured["step"].isin(list(o.steps))], list(o.x), list(o.hue), o.metric)


def _transfer(o: TransferOptions) -> pd.DataFrame:
    """Transfer per group at one budget, over runs and items (report/transfer.py)."""
    return transfer.transfer_table(transfer.read_grades_file(o.grades), o.by, o.step, o.where)


def _backtest_scores(o: BacktestScoresOptions) -> pd.DataFrame:
    """The law's and persistence's backtest scores of each fit and group, as its fit.toml records them."""
    return pd.concat([claims.backtest_scores(folder.name, tomllib.loads((folder / "fit.toml").read_text()))
                      for folder in o.fits], ignore_index=True)


def _fit_records(options: BacktestScoresOptions, root: Path) -> Inputs:
    """Each fit folder's fit.toml."""
    yield from (("", folder / "fit.toml") for folder in options.fits)


TABLE_KINDS: dict[str, TableKind] = {
    "post_memorization": TableKind(_post_memorization, PostMemorizationTableOptions, _runs_and_grades),
    "conditions": TableKind(_conditions, ConditionsTableOptions, _files("results")),
    "accuracy_rows": TableKind(_accuracy_rows, AccuracyRowsOptions, _row_grades),
    "transfer": TableKind(_transfer, TransferOptions, _files("grades")),
    "backtest_scores": TableKind(_backtest_scores, BacktestScoresOptions, _fit_records),
    "ladder": TableKind(_ladder, LadderOptions, _runs_and_grades),
    "ladder_ceilings": TableKind(_ladder_ceilings, LadderOptions, _runs_and_grades),
}
