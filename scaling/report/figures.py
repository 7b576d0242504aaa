"""Figures: each reads result and fit files and draws; none trains or fits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from scaling.fit.data import axis_columns, load_table, query  # noqa: E402
from scaling.report.claims import (  # noqa: E402
    condition_means,
    memorization_table,
    post_memorization_gains,
    summarize_gains,
)
from scaling.fit.laws import LAWS  # noqa: E402
from scaling.fit.record import FitRecord, read_fit  # noqa: E402
from scaling.errors import UserError  # noqa: E402
from scaling.results import group_labels, open_results, results_table, splits_of  # noqa: E402
from scaling.schema import AXES  # noqa: E402

PERSISTENCE = "persistence"  # backtest.csv's persistence baseline (scaling.fit.backtest.PERSISTENCE; figures never fit)


def _step_ticks(axis: plt.Axes, steps) -> None:
    """Label a log step axis with the budgets themselves (log ticks like 3x10^1 collide)."""
    steps = sorted(set(int(s) for s in steps))
    axis.set_xticks(steps, labels=[str(s) for s in steps])
    axis.minorticks_off()


def _save(figure: plt.Figure, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        # No creation date in the PDF: the same files redraw to the same bytes, so a redraw shows in git
        # only where a figure changed.
        metadata = {"CreationDate": None} if path.suffix == ".pdf" else None
        figure.savefig(path, dpi=150, bbox_inches="tight", metadata=metadata)
    plt.close(figure)
    return paths


def _theme(font_scale: float = 1.0) -> None:
    """Every figure's look: white grid, paper-sized text (smaller still for dense small multiples)."""
    sns.set_theme(style="whitegrid", context="paper", font_scale=font_scale)


def _panels(rows: int, columns: int, size: tuple[float, float], font_scale: float = 1.0,
            sharex: bool = True) -> tuple[plt.Figure, np.ndarray]:
    """The theme and a rows × columns grid of panels (always 2-d) sharing their y axis, and their x axis unless
    told not to; size is the whole figure's (width, height) in inches."""
    _theme(font_scale)
    return plt.subplots(rows, columns, figsize=size, sharex=sharex, sharey=True, squeeze=False)


def _label_edges(axes: np.ndarray, titles=(), ylabels=(), xlabel: str | None = None, size=None,
                 title_size=None) -> None:
    """Label a grid by its edges: a title over each top panel, a y label left of each row, the x label under
    each bottom panel. Sizes left out keep the theme's (its label and title sizes differ from its text size)."""
    for axis, title in zip(axes[0], titles):
        axis.set_title(title, **_sized(title_size))
    for axis, label in zip(axes[:, 0], ylabels):
        axis.set_ylabel(label, **_sized(size))
    for axis in axes[-1] if xlabel is not None else ():
        axis.set_xlabel(xlabel, **_sized(size))


def _sized(size) -> dict:
    return {} if size is None else {"fontsize": size}


def _legend_beside(figure: plt.Figure, handles, labels, title: str | None = None, size=7) -> None:
    """The figure's legend right of its panels, centred: over one row of panels it would cover their titles."""
    figure.legend(handles, labels, title=title, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=size,
                  title_fontsize=size, frameon=False)


def _line_handles(colours) -> list[plt.Line2D]:
    """Legend entries for lines with dots, one per colour."""
    return [plt.Line2D([], [], color=colour, marker="o", markersize=3, linewidth=1) for colour in colours]


def _chance_handle() -> plt.Line2D:
    """The legend entry of the dashed chance line."""
    return plt.Line2D([], [], color="gray", linestyle="--", linewidth=0.7)


def accuracy_by_split_figure(results_path: Path, group_by: tuple[str, ...], stem: Path) -> list[Path]:
    """Greedy-decoding answer accuracy over steps, small multiples: a row per split (memorization in `train`
    against generalization in the others), a column per value of all but the last `group_by` axis, and a
    line per value of the last (means over seeds). Chance is dashed; a triangle on top marks the median step
    at which a line's runs memorized their training items."""
    results = open_results(results_path)
    measured = pd.concat([results_table(results, split).assign(split=split) for split in splits_of(results)])
    *panels, hue = group_by
    # Named in full even for one axis ("pretrain_tokens=0", not "0"): a column title must say what it is.
    measured["panel"] = (measured[panels].astype(str).apply(lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1)
                         if panels else "")
    levels = sorted(measured[hue].unique())
    palette = dict(zip(levels, sns.color_palette("colorblind", len(levels))))  # at most 10 distinct colours
    if len(levels) > len(sns.color_palette("colorblind")):
        raise UserError(f"accuracy_by_split: {hue} has {len(levels)} values, more than 10 distinguishable colours: "
                        "put it earlier in group_by (a column each) and a smaller axis last")
    splits, columns = splits_of(results), list(dict.fromkeys(measured["panel"]))
    figure, axes = _panels(len(splits), len(columns), (1.7 * len(columns) + 1.2, 1.35 * len(splits) + 0.6), font_scale=0.8)
    for row, split in enumerate(splits):
        for col, panel in enumerate(columns):
            axis, here = axes[row, col], measured[(measured["split"] == split) & (measured["panel"] == panel)]
            for level in levels:
                line = here[here[hue] == level].groupby("step")["answer_acc"].mean()
                axis.plot(line.index, line.values, marker="o", markersize=2.5, linewidth=1, color=palette[level],
                          label=str(level))
                cells = here[here[hue] == level].drop_duplicates([a for a in AXES if a in here])  # a row per run
                steps = cells["memorization_step"].dropna() if "memorization_step" in cells else []
                if len(steps):
                    axis.plot(np.median(steps), 1.0, marker="v", markersize=4, color=palette[level], clip_on=False)
            if "chance" in here and here["chance"].notna().any():  # what guessing the answer's type scores
                axis.axhline(here["chance"].mean(), color="gray", linestyle="--", linewidth=0.7)
            axis.set(xscale="log", ylim=(-0.02, 1.05))
            _step_ticks(axis, measured["step"])
            axis.tick_params(axis="x", labelrotation=90, labelsize=6)
    _label_edges(axes, columns, [f"{split}\nanswer accuracy" for split in splits], "SFT steps", size=7, title_size=7)
    memorized = plt.Line2D([], [], color="black", marker="v", linestyle="none", markersize=4)
    _legend_beside(figure, [*_line_handles(palette[level] for level in levels), _chance_handle(), memorized],
                   [*map(str, levels), "chance", "memorized (median of the runs that did)"], title=hue)
    figure.tight_layout()
    return _save(figure, stem)


def accuracy_by_condition_figure(results_paths: list[Path], x: list[str], hue: list[str], splits: list[str],
                                 steps: list[int], stem: Path, where: str | None = None) -> list[Path]:
    """Answer accuracy per condition at fixed budgets, with 90% intervals across runs (none below 3 runs or where
    they all agree: claims.condition_means): the values of `x` along the axis, a line per value of `hue`, a panel
    per split (columns) and budget (rows); chance dashed. Several collected runs pool their cells (grids drawn on
    one evaluation set, such as a study's specs), each cell labelled with its run folder's name in a `run` column
    that x, hue and `where` may use; `where` keeps the cells matching a row condition."""
    tables = []
    for path in results_paths:
        results = open_results(path)
        for split in splits:
            if split not in splits_of(results):
                raise UserError(f"accuracy_by_condition: {path} has no split {split!r}")
            tables.append(results_table(results, split).assign(split=split, run=path.parent.name))
    measured = query(pd.concat(tables), where, "where")
    missing = [s for s in steps if s not in set(measured["step"])]
    if missing:
        raise UserError(f"accuracy_by_condition: no budget {missing[0]} in {', '.join(map(str, results_paths))}")
    means = condition_means(measured[measured["step"].isin(steps)], list(x), list(hue))
    order = list(dict.fromkeys(means.sort_values("x", key=_natural)["x"]))
    levels = list(dict.fromkeys(means.sort_values("hue", key=_natural)["hue"]))
    palette = dict(zip(levels, sns.color_palette("colorblind", len(levels))))
    figure, axes = _panels(len(steps), len(splits), (2.0 * len(splits) + 1.4, 1.7 * len(steps) + 0.7), font_scale=0.8)
    for row, step in enumerate(steps):
        for col, split in enumerate(splits):
            axis, here = axes[row, col], means[(means["split"] == split) & (means["step"] == step)]
            for offset, level in enumerate(levels):
                one = here[here["hue"] == level].set_index("x").reindex(order)
                at = np.arange(len(order)) + 0.08 * (offset - (len(levels) - 1) / 2)  # dodge the error bars
                axis.errorbar(at, one["mean"], yerr=[one["mean"] - one["lo"], one["hi"] - one["mean"]], marker="o",
                              markersize=3, linewidth=1, capsize=2, color=palette[level], label=level)
            if here["chance"].notna().any():
                axis.axhline(here["chance"].mean(), color="gray", linestyle="--", linewidth=0.7)
            axis.set_xticks(np.arange(len(order)), labels=order, fontsize=7)
            axis.set_ylim(-0.02, 1.02)
    _label_edges(axes, splits, [f"answer accuracy\nat {step} steps" for step in steps], ", ".join(x), size=7,
                 title_size=8)
    _legend_beside(figure, [*_line_handles(palette[level] for level in levels), _chance_handle()], [*levels, "chance"],
                   title=", ".join(hue) + "\n(90% interval across runs,\nfrom 3 runs that differ)")
    figure.tight_layout()
    return _save(figure, stem)


def post_memorization_figure(results_paths: list[Path], splits: list[str], factors: list[int], by: list[str],
                             stem: Path) -> list[Path]:
    """What training past memorization buys: each run's paired gain in answer accuracy from its memorization step
    m to f·m (dots), and the mean per condition with its 90% interval across runs (from 3 reaching runs that
    differ), a panel per split. Runs that never memorized, or whose budgets stop before f·m, are counted under the
    axis ("reached/runs")."""
    frames = []
    for path in results_paths:
        grades = pd.read_parquet(path.parent / "grades.parquet")
        memorization = memorization_table(results_table(open_results(path), "train"), grades)
        frames += [post_memorization_gains(grades, memorization, split, tuple(factors)).assign(split=split) for split in splits]
    gains = pd.concat(frames)
    gains["condition"] = gains[by].astype(str).agg(", ".join, axis=1)
    order = list(dict.fromkeys(gains.sort_values("condition", key=_natural)["condition"]))
    palette = dict(zip(factors, sns.color_palette("colorblind", len(factors))))
    figure, axes = _panels(1, len(splits), (max(2.2, 0.5 * len(order)) * len(splits) + 1.2, 2.8), font_scale=0.8,
                           sharex=False)
    for axis, split in zip(axes[0], splits):
        here = gains[gains["split"] == split]
        summary = summarize_gains(here, ["condition"]).set_index(["condition", "factor"])
        for offset, factor in enumerate(factors):
            shift = 0.25 * (offset - (len(factors) - 1) / 2)
            for position, condition in enumerate(order):
                runs = here[(here["condition"] == condition) & (here["factor"] == factor) & here["reached"]]
                axis.scatter(np.full(len(runs), position + shift), runs["gain"], s=8, alpha=0.5, color=palette[factor])
                if (condition, factor) in summary.index and np.isfinite(summary.loc[(condition, factor), "gain"]):
                    row = summary.loc[(condition, factor)]
                    axis.errorbar(position + shift, row["gain"], yerr=[[row["gain"] - row["lo"]], [row["hi"] - row["gain"]]]
                                  if np.isfinite(row["lo"]) else None, fmt="D", markersize=4, capsize=2, color=palette[factor],
                                  markeredgecolor="black", markeredgewidth=0.4)
        counts = summarize_gains(here, ["condition"]).groupby("condition")[["reached", "runs"]].max()
        axis.set_xticks(np.arange(len(order)), labels=[f"{c}\n{counts.loc[c, 'reached']}/{counts.loc[c, 'runs']}" for c in order],
                        fontsize=6, rotation=90)
        axis.axhline(0, color="black", linewidth=0.6)
    _label_edges(axes, splits, ["gain past memorization\n(points of answer accuracy)"], size=7, title_size=8)
    figure.supxlabel(", ".join(by) + f" (runs measured at {min(factors)}x / runs)", fontsize=7)
    handles = [plt.Line2D([], [], color=palette[f], marker="D", linestyle="none", markersize=4) for f in factors]
    _legend_beside(figure, handles, [f"{f}x the memorization step" for f in factors],
                   title="mean, 90% interval across runs\n(from 3 runs that differ)")
    figure.tight_layout()
    return _save(figure, stem)


# A summary.csv's columns other than its --by groups (scaling.fit.groups.SUMMARY_COLUMNS, and older folders').
SUMMARY_STATISTICS = ("param", "mean", "sd", "hdi_5%", "hdi_95%", "r_hat", "ess_bulk", "contraction", "prior_share",
                      "prior_tail", "identified", "p_positive", "converged")


def posterior_figure(fit_dir: Path, params: list[str], stem: Path) -> list[Path]:
    """The posterior of chosen law parameters per group (a fit's summary.csv): mean and 90% interval, zero marked,
    P(> 0) beside each, in grey where the data did not determine it: its `identified` label is not `data` (a fit
    written before that label: its contraction below 0.5)."""
    record = read_fit(fit_dir)
    summary = pd.read_csv(fit_dir / "summary.csv")
    missing = [p for p in params if p not in set(summary["param"])]
    if missing:
        raise UserError(f"posterior: {fit_dir} has no parameter {missing[0]!r} (it has {', '.join(dict.fromkeys(summary['param']))})")
    group = next((c for c in summary.columns if c not in SUMMARY_STATISTICS), None)
    figure, axes = _panels(1, len(params), (1.9 * len(params) + 0.8, 0.35 * summary[group].nunique() + 1.3
                                            if group else 1.6), font_scale=0.8, sharex=False)
    for axis, param in zip(axes[0], params):
        rows = summary[summary["param"] == param].reset_index(drop=True)
        labels = rows[group].astype(str) if group else pd.Series(["all"])
        for i, row in rows.iterrows():
            weak = (row["identified"] != "data" if "identified" in row
                    else np.isfinite(row["contraction"]) and row["contraction"] < 0.5)
            colour = "gray" if weak else "tab:blue"
            axis.errorbar(row["mean"], i, xerr=[[row["mean"] - row["hdi_5%"]], [row["hdi_95%"] - row["mean"]]], fmt="o",
                          markersize=3, capsize=2, color=colour)
            if "p_positive" in row and np.isfinite(row["p_positive"]):
                axis.annotate(f"P(>0) {row['p_positive']:.2f}", (1.0, i), xycoords=("axes fraction", "data"), fontsize=5,
                              ha="right", va="bottom", color=colour)
        axis.axvline(0, color="black", linewidth=0.6)
        axis.set_yticks(range(len(labels)), labels=labels, fontsize=7)
    _label_edges(axes, params, title_size=8)
    axes[0, 0].invert_yaxis()
    figure.suptitle(f"{record.law}: posterior mean and 90% interval (grey: not determined by the data)", fontsize=7)
    figure.tight_layout()
    return _save(figure, stem)


def _natural(labels: pd.Series) -> pd.Series:
    """Sort keys that order numbers as numbers ("2" before "10") and text as text."""
    return labels.map(lambda text: tuple((0, float(p), "") if _is_number(p) else (1, 0.0, p) for p in text.split(", ")))


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def training_curves_figure(results_path: Path, group_by: tuple[str, ...], stem: Path) -> list[Path]:
    """Each cell's training loss along its last budget's trajectory (scaling.trainer.curve), between and past
    its budgets (dotted lines), one line per cell coloured by group: where a run's loss flattens, spikes
    or keeps falling after its training set is memorized."""
    results = open_results(results_path)
    if "train_loss" not in results or not results.sizes.get("train_step"):
        raise UserError(f"{results_path} holds no training curves (its cells were trained before curves were kept)")
    curves = results["train_loss"].to_dataframe().reset_index().dropna(subset=["train_loss"])
    curves["group"] = group_labels(curves, tuple(group_by))
    curves["run"] = group_labels(curves, tuple(a for a in AXES if a in curves.columns))
    _theme()
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    sns.lineplot(data=curves, x="train_step", y="train_loss", hue="group", units="run", estimator=None,
                 palette="colorblind", linewidth=0.8, ax=axis)
    for step in results.step.values:
        axis.axvline(step, color="gray", linestyle=":", linewidth=0.6)
    axis.set(xscale="log", yscale="log", xlabel="SFT steps", ylabel="training loss (completion tokens)")
    _step_ticks(axis, results.step.values)
    # Labelled at 1, 2, 5 × 10^k: a loss that falls by less than a decade still gets numbers on its axis.
    axis.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axis.legend(title=" × ".join(group_by), fontsize="small")
    return _save(figure, stem)


def accuracy_by_family_figure(families_path: Path, stem: Path, where: str | None = None) -> list[Path]:
    """Answer accuracy over steps per family, one panel per split, each family's chance as a dashed line of
    its colour and, where the table has one, its headroom (the positive control's accuracy) as a dash-dotted
    line: a split's number means something only between the two. Solid where the family was trained in the
    cells shown, dotted where it was not. Cells matching `where` (a row condition on the families table) are
    averaged; control cells (a non-empty `control`) only give the headroom, never a line of their own."""
    table = query(pd.read_parquet(families_path), where, "where")
    if "control" in table:
        table = table[table["control"] == ""]
    if table.empty:  # a condition that selects no rows at all is refused by query
        chosen = f"where {where!r} selects" if where else f"{families_path} holds"
        raise UserError(f"{chosen} no regular cells (a control cell gives the headroom, never a line of its own)")
    headroom = "headroom" in table and table["headroom"].notna().any()
    measured = (table.groupby(["split", "family", "trained", "step"], as_index=False)
                .agg(answer_acc=("answer_acc", "mean"), chance=("chance", "mean"),
                     **({"headroom": ("headroom", "mean")} if headroom else {})))
    families = list(dict.fromkeys(measured["family"]))
    # The colour-blind palette has 10 colours and repeats after them: more families take distinct hues instead.
    palette = dict(zip(families, sns.color_palette("colorblind" if len(families) <= 10 else "husl", len(families))))
    _theme()
    grid = sns.relplot(data=measured, x="step", y="answer_acc", hue="family", style="trained", col="split", col_wrap=3,
                       kind="line", marker="o", palette=palette, height=2.8, aspect=1.1, errorbar=None,
                       style_order=[True, False], dashes={True: "", False: (1, 1)})
    grid.set(xscale="log", ylim=(-0.02, 1.02), xlabel="SFT steps", ylabel="answer accuracy")
    for split, axis in zip(grid.col_names, grid.axes.flat):
        _step_ticks(axis, measured["step"])
        here = measured[measured.split == split]
        for family, chance in here.groupby("family")["chance"].mean().items():
            axis.axhline(chance, color=palette[family], linestyle="--", linewidth=0.7, alpha=0.8)
        for family, ceiling in (here.groupby("family") if headroom else ()):
            ceiling = ceiling.groupby("step")["headroom"].mean().dropna()
            axis.plot(ceiling.index, ceiling.values, color=palette[family], linestyle="-.", linewidth=0.9, alpha=0.8)
    lines = "dashed: chance; dash-dotted: headroom" if headroom else "dashed: chance"
    grid.figure.suptitle(f"answer accuracy by family ({lines}){'; ' + where if where else ''}", y=1.02,
                         fontsize="small")
    return _save(grid.figure, stem)


# --- figures of a `scaling fit` folder --------------------------------------------------------------

def fit_input(fit_dir: Path, root: Path) -> Path:
    """The table or results.nc a fit read (see scaling.fit.record)."""
    return read_fit(fit_dir, root).input


@dataclass(frozen=True)
class Roles:
    """Which column each visual role shows in a law-fit figure."""

    steps: str  # the x axis: the column of the law's steps axis
    hue: str | None
    col: str | None
    row: str | None
    extra: tuple[str, ...]  # axes given no role: one curve each, in the same colour

    @property
    def keys(self) -> list[str]:
        return [c for c in (self.hue, self.col, self.row) if c]


def law_fit_figure(fit_dir: Path, stem: Path, hue: str | None = None, col: str | None = None,
                   row: str | None = None, root: Path = Path(".")) -> list[Path]:
    """A fitted law over its steps axis: the measured rows (seeds as points, their mean as markers) and the
    law's posterior mean with its 90% credible band, one curve per combination of the other axes.

    hue/col/row name columns (law axes' columns or --by columns); by default the law's other axes, then the
    --by columns, fill them in order.
    """
    record = read_fit(fit_dir, root)
    law = LAWS[record.law]
    table = query(load_table(record.input, record.split), record.where, "--where")
    x_columns = axis_columns(law, list(record.x), table)
    measured = table.dropna(subset=[record.y])
    roles = _roles(record, law, x_columns, hue, col, row)
    fitted = _posterior_curves(record, law, measured, x_columns, roles)
    return _save(_draw_law_fit(record, measured, fitted, roles), stem)


def _roles(record: FitRecord, law, x_columns: dict[str, str], hue, col, row) -> Roles:
    steps_axis = next((a for a, c in x_columns.items() if c == "step"), law.axes[0])
    others = [c for a, c in x_columns.items() if a != steps_axis and a in law.axes]
    chosen = [c for c in (hue, col, row) if c]
    free = [c for c in [*others, *record.by] if c not in chosen]
    hue, col, row = (hue or (free.pop(0) if free else None), col or (free.pop(0) if free else None),
                     row or (free.pop(0) if free else None))
    keys = {c for c in (hue, col, row) if c}
    return Roles(x_columns[steps_axis], hue, col, row, tuple(c for c in others if c not in keys))


def _posterior_curves(record: FitRecord, law, measured: pd.DataFrame, x_columns: dict[str, str], roles: Roles) -> pd.DataFrame:
    """The law's posterior mean and 90% band over the steps axis, for every combination of the other columns."""
    posterior = az.from_netcdf(record.folder / "posterior.nc").posterior
    grid = np.geomspace(measured[roles.steps].min(), measured[roles.steps].max(), 80)
    labels = group_labels(measured, record.by) if record.by else None
    axis_columns_ = {a: c for a, c in x_columns.items() if a in law.axes}
    columns = list(dict.fromkeys([*roles.keys, *roles.extra, *(c for c in axis_columns_.values() if c != roles.steps),
                                  *record.by]))
    curves = []
    for index in measured[columns].drop_duplicates().index:
        combo = measured.loc[index, columns].to_dict()
        post = posterior.sel({record.group_dim: labels[index]}) if record.by else posterior
        theta = {name: post[name].values.reshape(-1, 1) for name in law.params}
        x = {a: grid[None, :] if c == roles.steps else np.full((1, grid.size), float(combo[c])) for a, c in axis_columns_.items()}
        x |= _covariate_curves(law, measured[(measured[columns] == measured.loc[index, columns]).all(axis=1)], x_columns, grid)
        draws = np.asarray(law.mean(theta, x))
        low, high = np.percentile(draws, [5, 95], axis=0)
        curves.append(pd.DataFrame({**combo, roles.steps: grid, "mean": draws.mean(0), "lo": low, "hi": high}))
    return pd.concat(curves, ignore_index=True)


def _covariate_curves(law, rows: pd.DataFrame, x_columns: dict[str, str], grid: np.ndarray) -> dict[str, np.ndarray]:
    """A law's covariates along a curve over steps: each at its median over the curve's rows, except `past`,
    which follows the steps from the rows' median memorization step (0 throughout where none memorized)."""
    out = {}
    for name in law.covariates:
        if name == "past":
            memorized = rows["memorization_step"].median() if "memorization_step" in rows else np.nan
            past = np.log(grid / memorized) if np.isfinite(memorized) else np.zeros(grid.size)
            out[name] = np.maximum(past, 0.0)[None, :]
        else:
            out[name] = np.full((1, grid.size), float(rows[x_columns[name]].median()))
    return out


def _draw_law_fit(record: FitRecord, measured: pd.DataFrame, fitted: pd.DataFrame, roles: Roles) -> plt.Figure:
    """Panels by row and column, a colour per hue value: fitted bands and lines, measured points and means."""
    values = {role: sorted(measured[column].unique()) if column else [None]
              for role, column in (("col", roles.col), ("row", roles.row), ("hue", roles.hue))}
    palette = dict(zip(values["hue"], sns.color_palette("colorblind", len(values["hue"]))))
    figure, axes = _panels(len(values["row"]), len(values["col"]), (3.2 * len(values["col"]), 2.6 * len(values["row"])))
    for i, r in enumerate(values["row"]):
        for j, c in enumerate(values["col"]):
            axis = axes[i, j]
            for h in values["hue"]:
                chosen = {roles.row: r, roles.col: c, roles.hue: h}
                points, curve = _pick(measured, chosen), _pick(fitted, chosen).sort_values(roles.steps)
                for one in (part for _, part in curve.groupby(list(roles.extra))) if roles.extra else [curve]:
                    axis.fill_between(one[roles.steps], one["lo"], one["hi"], color=palette[h], alpha=0.2, linewidth=0)
                    axis.plot(one[roles.steps], one["mean"], color=palette[h], linewidth=1,
                              label=f"{roles.hue}={h}" if roles.hue else "fit")
                axis.scatter(points[roles.steps], points[record.y], color=palette[h], s=8, alpha=0.5)
                means = points.groupby(roles.steps)[record.y].mean()
                axis.scatter(means.index, means.values, color=palette[h], s=22, marker="D", edgecolor="black", linewidth=0.4)
            title = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in ((roles.row, r), (roles.col, c)) if k)
            axis.set(xscale="log", title=title)
            _step_ticks(axis, measured[roles.steps])
    _label_edges(axes, ylabels=[f"{record.split or ''} {record.y}".strip()] * len(values["row"]), xlabel=roles.steps)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    _legend_beside(figure, list(unique.values()), list(unique.keys()), size="small")
    figure.suptitle(f"{record.law} law fit: posterior mean and 90% credible band; points: seeds, diamonds: their mean",
                    y=1.02, fontsize="small")
    return figure


def _pick(frame: pd.DataFrame, chosen: dict) -> pd.DataFrame:
    """The rows of frame with the chosen value in each column that has a role (None: no such role)."""
    mask = np.ones(len(frame), bool)
    for column, value in chosen.items():
        if column:
            mask &= (frame[column] == value).to_numpy()
    return frame[mask]


def backtest_panels(table: pd.DataFrame, by: tuple[str, ...]) -> list[tuple[str, pd.DataFrame]]:
    """A backtest's rows per group of the fit (one panel each), titled with the group, the law's mean absolute
    error against the persistence baseline's on the held-out rows persistence predicts (a folder written before
    it has no such column), and the share of its held-out rows whose 90% interval holds the observed value."""
    groups = list(table.groupby(list(by), sort=True)) if by else [((), table)]
    panels = []
    for values, rows in groups:
        name = ", ".join(str(v) for v in (values if isinstance(values, tuple) else (values,)))
        held = rows[rows["held_out"]]
        if len(held):
            covered = ((held["lo"] <= held["observed"]) & (held["observed"] <= held["hi"])).mean()
            name = f"{name}: " if name else ""
            carried = held[held[PERSISTENCE].notna()] if PERSISTENCE in held else held.iloc[:0]
            if len(carried):
                law, baseline = ((carried[c] - carried["observed"]).abs().mean() for c in ("mean", PERSISTENCE))
                name += f"MAE {law:.3g} vs persistence {baseline:.3g}, "
            name += f"{covered:.2f} of {len(held)} held out covered"
        panels.append((name, rows))
    return panels


def backtest_figure(fit_dir: Path, stem: Path) -> list[Path]:
    """Predicted against observed, with 90% predictive intervals, a panel per group of the fit; held-out rows
    are what a backtest scores."""
    record = read_fit(fit_dir)
    table = pd.read_csv(fit_dir / "backtest.csv")
    panels = backtest_panels(table, record.by)
    rows_of_panels = math.ceil(len(panels) / 3)  # at most 3 across; 4 panels as 2 x 2
    columns = math.ceil(len(panels) / rows_of_panels)
    figure, axes = _panels(rows_of_panels, columns, (2.9 * columns + 0.6, 3.0 * rows_of_panels + 0.3))
    for axis in axes.flat[len(panels):]:
        axis.set_visible(False)
    low, high = table[["observed", "lo"]].min().min(), table[["observed", "hi"]].max().max()
    for axis, (name, rows) in zip(axes.flat, panels):
        for held, colour, label in ((False, "tab:gray", "fitted"), (True, "tab:red", "held out")):
            part = rows[rows["held_out"] == held]
            if part.empty:
                continue
            # The interval as a bar of its own: a skewed prediction's mean can sit outside its 90% interval
            # (an accuracy near 0 or 1), which errorbar cannot draw.
            axis.vlines(part["observed"], part["lo"], part["hi"], color=colour, alpha=0.7, linewidth=0.6)
            axis.plot(part["observed"], part["mean"], "o", markersize=3, color=colour, alpha=0.7, label=label)
        axis.plot([low, high], [low, high], color="black", linewidth=0.6)
        axis.set(xlabel=f"observed {record.y}", title=name)
        axis.title.set_fontsize("small")
        axis.xaxis.set_tick_params(labelbottom=True)  # shared x: every panel keeps its tick labels
    _label_edges(axes, ylabels=["predicted (90% interval)"] * rows_of_panels)
    axes[0][0].legend(fontsize="small")
    figure.suptitle(f"{record.law} backtest")
    figure.tight_layout()
    return _save(figure, stem)


def returns_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The gains of a returns.csv that have an estimate, each with the label its row of the figure shows."""
    gains = table[table["quantity"].str.startswith(("gain_per_", "post_memorization"))].dropna(subset=["estimate"]).copy()
    steps = {"gain_per_doubling": "×2", "gain_per_halved_error": "error ÷2"}  # see scaling.fit.returns
    gains["label"] = [f"{a}: {steps[q]} at {at:.4g}" if q in steps else f"{a}: {q.replace('_', ' ')}"
                      for a, q, at in zip(gains["axis"], gains["quantity"], gains["at"])]
    # A fit by groups (--by) writes its group columns first; without them the groups' rows look alike.
    groups = list(table.columns[:list(table.columns).index("axis")])
    if groups:
        gains["label"] = [", ".join(str(v) for v in values) + " · " + label
                          for values, label in zip(gains[groups].itertuples(index=False), gains["label"])]
    return gains


def returns_figure(fit_dir: Path, stem: Path) -> list[Path]:
    """Gain per doubling of each axis at its reference points, with 90% intervals (what the next doubling buys)."""
    record = read_fit(fit_dir)
    table = pd.read_csv(fit_dir / "returns.csv")
    gains = returns_rows(table)
    _theme()
    figure, axis = plt.subplots(figsize=(5, 0.45 * len(gains) + 1.2))
    positions = np.arange(len(gains))
    axis.errorbar(gains["estimate"], positions, xerr=[gains["estimate"] - gains["lo"], gains["hi"] - gains["estimate"]],
                  fmt="o", color="tab:blue", capsize=3)
    axis.set_yticks(positions, labels=gains["label"])
    axis.axvline(0, color="black", linewidth=0.6)
    unit = gains["unit"].iloc[0] if len(gains) else ""
    axis.set(xlabel=f"gain ({unit}), 90% interval", title=f"{record.law}: diminishing returns of {record.y}")
    return _save(figure, stem)
