"""The kinds of figure and table `paper/figures.toml` may list: for each figure, the function that draws it,
the keys its [[figure]] table takes and the files it reads; for each table, what computes it and its keys.
`scaling figures` (report/paper.py) asks these registries and never tests a kind's name: a new kind of
figure is one entry here and its function in report/figures.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scaling.fit.data import query
from scaling.report import claims, figures
from scaling.results import open_results, results_table

Inputs = Iterator[tuple[str, Path]]  # each file a figure reads, with what an error calls it ("" for a plain file)


@dataclass(frozen=True)
class FigureKind:
    """One kind of figure."""

    draw: Callable[[dict, Path, Path], list[Path]]  # (options, file stem, repository root) -> the files drawn
    needed: frozenset[str]  # keys its [[figure]] table must have
    inputs: Callable[[dict, Path], Inputs]  # (options, root) -> the files it reads, in the order they are checked
    optional: frozenset[str] = frozenset()  # keys its table may have
    # `results` may list several runs, pooled, and x, hue, splits and by name one column or a list of them.
    pooled: bool = False


def _files(key: str) -> Callable[[dict, Path], Inputs]:
    """The file, or the files, an option names."""
    def inputs(options: dict, root: Path) -> Inputs:
        value = options[key]
        yield from (("", path) for path in (value if isinstance(value, list) else [value]))
    return inputs


def _runs_and_grades(options: dict, root: Path) -> Inputs:
    """Collected runs and the per-example grades beside each."""
    yield from _files("results")(options, root)
    yield from (("", path.parent / "grades.parquet") for path in options["results"])


def _fit_files(*names: str) -> Callable[[dict, Path], Inputs]:
    """Files of a `scaling fit` folder: its fit.toml and what the figure reads."""
    def inputs(options: dict, root: Path) -> Inputs:
        yield from (("", options["fit"] / name) for name in ("fit.toml", *names))
    return inputs


def _law_fit_inputs(options: dict, root: Path) -> Inputs:
    """A fit's posterior, then the table it was fitted to (its fit.toml, checked first, names it)."""
    yield from _fit_files("posterior.nc")(options, root)
    yield "the fit's input ", figures.fit_input(options["fit"], root)


FIGURE_KINDS: dict[str, FigureKind] = {
    "accuracy_by_split": FigureKind(
        lambda o, stem, root: figures.accuracy_by_split_figure(o["results"], tuple(o["group_by"]), stem),
        frozenset({"results", "group_by"}), _files("results")),
    "training_curves": FigureKind(
        lambda o, stem, root: figures.training_curves_figure(o["results"], tuple(o["group_by"]), stem),
        frozenset({"results", "group_by"}), _files("results")),
    "accuracy_by_family": FigureKind(
        lambda o, stem, root: figures.accuracy_by_family_figure(o["families"], stem, o.get("where")),
        frozenset({"families"}), _files("families"), frozenset({"where"})),
    "accuracy_by_condition": FigureKind(
        lambda o, stem, root: figures.accuracy_by_condition_figure(o["results"], o["x"], o["hue"], o["splits"],
                                                                   o["steps"], stem, o.get("where")),
        frozenset({"results", "x", "hue", "splits", "steps"}), _files("results"), frozenset({"where"}), pooled=True),
    "post_memorization": FigureKind(
        lambda o, stem, root: figures.post_memorization_figure(o["results"], o["splits"], o["factors"], o["by"], stem),
        frozenset({"results", "splits", "factors", "by"}), _runs_and_grades, pooled=True),
    "law_fit": FigureKind(
        lambda o, stem, root: figures.law_fit_figure(o["fit"], stem, o.get("hue"), o.get("col"), o.get("row"), root),
        frozenset({"fit"}), _law_fit_inputs, frozenset({"hue", "col", "row"})),
    "backtest": FigureKind(lambda o, stem, root: figures.backtest_figure(o["fit"], stem),
                           frozenset({"fit"}), _fit_files("backtest.csv")),
    "returns": FigureKind(lambda o, stem, root: figures.returns_figure(o["fit"], stem),
                          frozenset({"fit"}), _fit_files("returns.csv")),
    "posterior": FigureKind(lambda o, stem, root: figures.posterior_figure(o["fit"], list(o["params"]), stem),
                            frozenset({"fit", "params"}), _fit_files("summary.csv")),
}


@dataclass(frozen=True)
class TableKind:
    """One kind of table ([[table]] in figures.toml, written as CSV)."""

    table: Callable[[dict], pd.DataFrame]  # options -> the table
    needed: frozenset[str]  # keys its [[table]] entry must have
    optional: frozenset[str] = frozenset()  # keys it may have


def _accuracy_rows(o: dict) -> pd.DataFrame:
    """Accuracy per split of each row's per-example grades (a condition and a budget pick the row's examples)."""
    picked = []
    for row in o["rows"]:
        grades = query(pd.read_parquet(row["grades"]), row.get("where"), "where")
        if "step" in row:
            grades = grades[grades["step"] == row["step"]]
        picked.append((row["label"], grades))
    return claims.accuracy_rows(picked, dict(o["splits"]))


def _post_memorization(o: dict) -> pd.DataFrame:
    """What runs gain from their memorization step to each multiple of it, summarized per condition."""
    frames = []
    for path in o["results"]:
        grades = pd.read_parquet(path.parent / "grades.parquet")
        memorization = claims.memorization_table(results_table(open_results(path), "train"), grades)
        frames.append(claims.post_memorization_gains(grades, memorization, o["split"], tuple(o["factors"])))
    return claims.summarize_gains(pd.concat(frames), list(o["by"])).assign(split=o["split"])


def _conditions(o: dict) -> pd.DataFrame:
    """A metric's mean and interval per condition at fixed budgets, over the pooled runs' cells."""
    frames = [results_table(open_results(path), split).assign(split=split, run=path.parent.name)
              for path in o["results"] for split in o["splits"]]
    measured = query(pd.concat(frames), o.get("where"), "where")
    return claims.condition_means(measured[measured["step"].isin(o["steps"])], list(o["x"]), list(o["hue"]),
                                  o.get("metric", "answer_acc"))


TABLE_KINDS: dict[str, TableKind] = {
    "post_memorization": TableKind(_post_memorization, frozenset({"results", "split", "factors", "by"})),
    "conditions": TableKind(_conditions, frozenset({"results", "x", "hue", "splits", "steps"}),
                            frozenset({"metric", "where"})),
    "accuracy_rows": TableKind(_accuracy_rows, frozenset({"rows", "splits"})),
}
