"""Figures: each reads result and fit files and draws; none trains or fits."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from scaling.fit.laws import LAWS  # noqa: E402
from scaling.fit.table import tidy_table  # noqa: E402
from scaling.store import open_results  # noqa: E402


def _step_ticks(axis: plt.Axes, steps) -> None:
    """Label a log step axis with the budgets themselves (log ticks like 3x10^1 collide)."""
    steps = sorted(set(int(s) for s in steps))
    axis.set_xticks(steps, labels=[str(s) for s in steps])
    axis.minorticks_off()


def _save(figure: plt.Figure, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        figure.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(figure)
    return paths


def steps_fit_figure(results_path: Path, posterior_path: Path, metric: str, split: str, group_by: tuple[str, ...], stem: Path) -> list[Path]:
    """Measured metric over steps per group, with the fitted law's mean and 90% credible band."""
    measured = tidy_table(open_results(results_path), metric, split, group_by)
    posterior = az.from_netcdf(posterior_path).posterior
    x_ref = float(posterior.attrs["x_ref"])
    law_name = str(posterior.attrs.get("law", "power"))
    law = LAWS[law_name]
    # The grouped power law's A is per unit of x / x_ref (older files lack the attribute).
    x_unit = float(posterior.attrs.get("x_unit", x_ref if law_name == "power" else 1.0))
    grid = np.geomspace(measured["step"].min(), measured["step"].max(), 100)
    sns.set_theme(style="whitegrid", context="paper")
    figure, axis = plt.subplots(figsize=(6, 4))
    palette = dict(zip(posterior.group.values, sns.color_palette("colorblind", len(posterior.group))))
    for label in posterior.group.values:
        draws = {name: posterior[name].sel(group=label).values.reshape(-1, 1) for name in law.params}
        curves = law.mean(draws, {law.axes[0]: grid[None, :] / x_unit})
        low, high = np.percentile(np.asarray(curves), [5, 95], axis=0)
        axis.fill_between(grid, low, high, color=palette[label], alpha=0.25, linewidth=0)
        axis.plot(grid, np.asarray(curves).mean(0), color=palette[label], linewidth=1)
    sns.scatterplot(data=measured, x="step", y=metric, hue="group", palette=palette, ax=axis, zorder=3)
    axis.set(xscale="log", yscale="log" if law_name == "power" else "linear", xlabel="SFT steps", ylabel=f"{split} {metric}",
             title=f"{split} {metric} over SFT steps: measured, and fit with 90% band")
    _step_ticks(axis, measured["step"])
    axis.legend(title=" × ".join(group_by), fontsize="small")
    return _save(figure, stem)


def accuracy_by_split_figure(results_path: Path, group_by: tuple[str, ...], stem: Path) -> list[Path]:
    """Greedy-decoding answer accuracy over steps, one panel per split: memorization vs generalization."""
    results = open_results(results_path)
    measured = pd.concat([tidy_table(results, "answer_acc", split, group_by) for split in results.split.values])
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(data=measured, x="step", y="answer_acc", hue="group", col="split", kind="line",
                       marker="o", palette="colorblind", height=3, aspect=1.1, errorbar=None)
    grid.set(xscale="log", ylim=(-0.02, 1.02), xlabel="SFT steps", ylabel="answer accuracy")
    for axis in grid.axes.flat:
        _step_ticks(axis, measured["step"])
    grid.legend.set_title(" × ".join(group_by))
    return _save(grid.figure, stem)
