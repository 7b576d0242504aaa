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
from scaling.grid.store import open_results  # noqa: E402


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


# --- figures of a `scaling fit` folder --------------------------------------------------------------

def _fit_spec(fit_dir: Path) -> dict:
    import tomllib

    return tomllib.loads((fit_dir / "fit.toml").read_text())["fit"]


def fit_input(fit_dir: Path, root: Path) -> Path:
    """The table or results.nc a fit read; a relative path is relative to where it ran (the repository root)."""
    path = Path(_fit_spec(fit_dir)["input"])
    return path if path.is_absolute() else root / path


def law_fit_figure(fit_dir: Path, stem: Path, hue: str | None = None, col: str | None = None,
                   row: str | None = None, root: Path = Path(".")) -> list[Path]:
    """A fitted law over its steps axis: the measured rows (seeds as points, their mean as markers) and the
    law's posterior mean with its 90% credible band, one curve per combination of the other axes.

    hue/col/row name columns (law axes' columns or --by); by default the law's other axes fill them in order.
    """
    from scaling.fit.data import axis_columns, load_table, query

    spec = _fit_spec(fit_dir)
    law = LAWS[spec["law"]]
    table = query(load_table(fit_input(fit_dir, root), spec.get("split")), spec.get("where"), "--where")
    x_columns = axis_columns(law, list(spec.get("x", [])), table)
    steps_axis = next((a for a, c in x_columns.items() if c == "step"), law.axes[0])
    steps_column = x_columns[steps_axis]
    others = [c for a, c in x_columns.items() if a != steps_axis]
    by = spec.get("by")
    roles = [c for c in (hue, col, row) if c]
    free = [c for c in [*others, *([by] if by else [])] if c not in roles]
    hue, col, row = (hue or (free.pop(0) if free else None), col or (free.pop(0) if free else None),
                     row or (free.pop(0) if free else None))
    posterior = az.from_netcdf(fit_dir / "posterior.nc").posterior
    y = spec["y"]
    measured = table.dropna(subset=[y])
    grid = np.geomspace(measured[steps_column].min(), measured[steps_column].max(), 80)
    keys = [c for c in (hue, col, row) if c]
    extra = [c for c in others if c not in keys]
    combos = measured[list(dict.fromkeys(keys + others))].drop_duplicates().to_dict("records")
    curves = []
    for combo in combos:
        post = posterior.sel({by: str(combo[by])}) if by and by in posterior.dims else posterior
        theta = {name: post[name].values.reshape(-1, 1) for name in law.params}
        x = {a: (grid[None, :] if a == steps_axis else np.full((1, grid.size), float(combo[c]))) for a, c in x_columns.items()}
        draws = np.asarray(law.mean(theta, x))
        low, high = np.percentile(draws, [5, 95], axis=0)
        curves.append(pd.DataFrame({**combo, steps_column: grid, "mean": draws.mean(0), "lo": low, "hi": high}))
    fitted = pd.concat(curves, ignore_index=True)
    sns.set_theme(style="whitegrid", context="paper")
    col_values = sorted(measured[col].unique()) if col else [None]
    row_values = sorted(measured[row].unique()) if row else [None]
    hue_values = sorted(measured[hue].unique()) if hue else [None]
    palette = dict(zip(hue_values, sns.color_palette("colorblind", len(hue_values))))
    figure, axes = plt.subplots(len(row_values), len(col_values), figsize=(3.2 * len(col_values), 2.6 * len(row_values)),
                                squeeze=False, sharex=True, sharey=True)
    for i, r in enumerate(row_values):
        for j, c in enumerate(col_values):
            axis = axes[i, j]
            for h in hue_values:
                pick = lambda frame: frame[((frame[row] == r) if row else True) & ((frame[col] == c) if col else True)
                                           & ((frame[hue] == h) if hue else True)]  # noqa: E731
                points, curve = pick(measured), pick(fitted).sort_values(steps_column)
                # Axes given no role (more than three) draw one curve each in the same colour.
                for one in (part for _, part in curve.groupby(extra)) if extra else [curve]:
                    axis.fill_between(one[steps_column], one["lo"], one["hi"], color=palette[h], alpha=0.2, linewidth=0)
                    axis.plot(one[steps_column], one["mean"], color=palette[h], linewidth=1,
                              label=f"{hue}={h}" if hue else "fit")
                axis.scatter(points[steps_column], points[y], color=palette[h], s=8, alpha=0.5)
                means = points.groupby(steps_column)[y].mean()
                axis.scatter(means.index, means.values, color=palette[h], s=22, marker="D", edgecolor="black", linewidth=0.4)
            title = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in ((row, r), (col, c)) if k)
            axis.set(xscale="log", title=title)
            _step_ticks(axis, measured[steps_column])
            if j == 0:
                axis.set_ylabel(f"{spec.get('split') or ''} {y}".strip())
            if i == len(row_values) - 1:
                axis.set_xlabel(steps_column)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    figure.legend(unique.values(), unique.keys(), loc="upper center", ncol=max(1, len(unique)), frameon=False,
                  bbox_to_anchor=(0.5, 1.02), fontsize="small")
    figure.suptitle(f"{law.name} law fit: posterior mean and 90% credible band; points: seeds, diamonds: their mean",
                    y=1.07, fontsize="small")
    return _save(figure, stem)


def backtest_figure(fit_dir: Path, stem: Path) -> list[Path]:
    """Predicted against observed, with 90% predictive intervals; held-out rows are what a backtest scores."""
    spec = _fit_spec(fit_dir)
    table = pd.read_csv(fit_dir / "backtest.csv")
    sns.set_theme(style="whitegrid", context="paper")
    figure, axis = plt.subplots(figsize=(4.2, 4))
    for held, colour, label in ((False, "tab:gray", "fitted"), (True, "tab:red", "held out")):
        part = table[table["held_out"] == held]
        if part.empty:
            continue
        axis.errorbar(part["observed"], part["mean"], yerr=[part["mean"] - part["lo"], part["hi"] - part["mean"]],
                      fmt="o", markersize=3, color=colour, alpha=0.7, elinewidth=0.6, label=label)
    low, high = table[["observed", "lo"]].min().min(), table[["observed", "hi"]].max().max()
    axis.plot([low, high], [low, high], color="black", linewidth=0.6)
    axis.set(xlabel=f"observed {spec['y']}", ylabel="predicted (90% interval)", title=f"{spec['law']} backtest")
    axis.legend(fontsize="small")
    return _save(figure, stem)


def returns_figure(fit_dir: Path, stem: Path) -> list[Path]:
    """Gain per doubling of each axis at its reference points, with 90% intervals (what the next doubling buys)."""
    spec = _fit_spec(fit_dir)
    table = pd.read_csv(fit_dir / "returns.csv")
    gains = table[table["quantity"].str.startswith(("gain_per_doubling", "post_memorization"))].copy()
    gains["label"] = [f"{a}: ×2 at {at:.3g}" if q == "gain_per_doubling" else f"{a}: {q.replace('_', ' ')}"
                      for a, q, at in zip(gains["axis"], gains["quantity"], gains["at"])]
    sns.set_theme(style="whitegrid", context="paper")
    figure, axis = plt.subplots(figsize=(5, 0.45 * len(gains) + 1.2))
    positions = np.arange(len(gains))
    axis.errorbar(gains["estimate"], positions, xerr=[gains["estimate"] - gains["lo"], gains["hi"] - gains["estimate"]],
                  fmt="o", color="tab:blue", capsize=3)
    axis.set_yticks(positions, labels=gains["label"])
    axis.axvline(0, color="black", linewidth=0.6)
    unit = gains["unit"].iloc[0] if len(gains) else ""
    axis.set(xlabel=f"gain ({unit}), 90% interval", title=f"{spec['law']}: diminishing returns of {spec['y']}")
    return _save(figure, stem)
