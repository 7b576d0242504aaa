"""`scaling demo`: a small real grid on CPU -> per-cell results -> results.nc -> NUTS fit -> figures.

Everything is written into a staging folder beside OUT and moved into place at the end, so a
failure or an interrupt leaves nothing partial behind, and a folder the demo did not write is never
overwritten.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
from rich.console import Console

from scaling.grid.collect import collect_run
from scaling.errors import UserError
from scaling.grid.executors.local import run_local
from scaling.fit.infer import MAX_R_HAT, MIN_ESS_BULK, SamplerConfig, fit_accuracy_law, fit_power_law
from scaling.fit.table import tidy_table
from scaling.report.figures import accuracy_by_split_figure, steps_fit_figure
from scaling.grid.spec import GridSpec, expand, grid_axes, parse_spec
from scaling.grid.launch import GridProgress
from scaling.provenance import provenance
from scaling.grid.runner import open_run
from scaling.schema import METRICS
from scaling.grid.store import open_results

MARKER = "demo.toml"  # the demo's config; its presence marks a folder the demo may replace
FORMULAS = {"accuracy": "acc = C / (1 + (step / x50)^(-k))", "power": "y = E + A * (step / step_ref)^(-alpha)"}


@dataclass(frozen=True)
class DemoConfig:
    """The demo grid: sizes × diversity levels × step budgets, one seed, full-quality full CoT."""

    sizes: tuple[str, ...] = ("tiny", "xs")  # model size presets, trained from random init
    diversities: tuple[int, ...] = (1, 2)  # number of SFT families, the first k of `families`
    families: tuple[str, ...] = ("add", "reverse")  # ordered SFT families
    ood_families: tuple[str, ...] = ("sub",)  # held out of every mixture: the ood_family split
    examples: int = 2000  # unique SFT examples, whatever the diversity
    budgets: tuple[int, ...] = (64, 128, 256, 512, 1024)  # the steps axis, doubling
    batch_size: int = 11  # packed rows per step (about 34 examples: rows hold ~3 each)
    pack_length: int = 144  # tokens per packed row; several examples each, never attending across
    lr: float = 3e-3  # AdamW peak learning rate
    warmup_steps: int = 20  # linear warmup steps
    schedule: str = "wsd"  # one run per cell, an annealed branch per budget
    splits: tuple[str, ...] = ("train", "id", "ood_family")  # evaluated at every budget
    eval_n: int = 64  # examples per split
    seed: int = 0  # data and initialization seed
    fit_metric: str = "answer_acc"  # the response the law is fitted to
    fit_split: str = "id"  # ... on this split
    # "accuracy": acc = C / (1 + (step / x50)^-k), for accuracies; "power": E + A·(step/ref)^-alpha, for losses
    fit_law: str = "accuracy"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        if max(self.diversities) > len(self.families) or min(self.diversities) < 1:
            raise ValueError(f"DemoConfig.diversities {self.diversities} must lie in 1..{len(self.families)}")
        if self.fit_metric not in METRICS or self.fit_split not in self.splits:
            raise ValueError("DemoConfig.fit_metric must be a metric and fit_split one of the splits")
        if self.fit_law not in FORMULAS:
            raise ValueError(f"DemoConfig.fit_law must be one of {', '.join(FORMULAS)}, got {self.fit_law!r}")
        if len(self.budgets) < 3:
            raise ValueError("DemoConfig.budgets needs at least 3 budgets to fit a 3-parameter law")

    def to_toml(self) -> str:
        return tomli_w.dumps({"demo": dataclasses.asdict(self)})


GROUP_BY = ("size", "diversity")


def grid_toml(cfg: DemoConfig) -> str:
    """The demo as a grid spec, run by the same runner as `scaling run`."""
    return tomli_w.dumps({
        "name": "demo",
        "axes": {"size": list(cfg.sizes), "pretrain_tokens": [0], "diversity": list(cfg.diversities),
                 "quality": [1.0], "cot": ["full"], "seed": [cfg.seed]},
        "data": {"families": list(cfg.families), "ood_families": list(cfg.ood_families), "examples": cfg.examples,
                 "pack_length": cfg.pack_length},
        "train": {"budgets": list(cfg.budgets), "batch_size": cfg.batch_size, "lr": cfg.lr,
                  "warmup_steps": cfg.warmup_steps, "schedule": cfg.schedule},
        "eval": {"splits": list(cfg.splits), "n": cfg.eval_n, "batch_size": cfg.eval_n},
    })


def demo_spec(cfg: DemoConfig) -> GridSpec:
    return parse_spec(grid_toml(cfg), source="the demo's grid")


def _check_out(out: Path) -> None:
    if out.is_file():
        raise UserError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise UserError(f"--out {out} exists and was not written by `scaling demo`; choose another folder")


def _publish(staging: Path, out: Path) -> None:
    """Move the finished staging folder to out, replacing an earlier demo's folder there."""
    retired = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(retired)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)


def run_demo(cfg: DemoConfig, out: Path, say=print) -> dict[str, Path]:
    """Run the whole demo into `out`; returns the paths written, by role."""
    out = Path(out)
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    started = time.perf_counter()
    try:
        _run_into(cfg, staging, say)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    paths = _outputs(out)
    say(f"\nDemo finished in {time.perf_counter() - started:.0f} s. Written under {out}/:")
    for role, path in paths.items():
        say(f"  {role:<12} {path}")
    return paths


def _outputs(out: Path) -> dict[str, Path]:
    return {
        "config": out / MARKER,
        "grid": out / "grid.toml",
        "cells": out / "cells",
        "results": out / "results.nc",
        "posterior": out / "fit" / "posterior.nc",
        "summary": out / "fit" / "summary.csv",
        "fit spec": out / "fit" / "fit.toml",
        "figure": out / "figures" / "steps_fit.png",
        "figure pdf": out / "figures" / "steps_fit.pdf",
        "accuracy": out / "figures" / "answer_acc.png",
    }


def _run_into(cfg: DemoConfig, folder: Path, say) -> None:
    text = grid_toml(cfg)
    spec = parse_spec(text, source="the demo's grid")
    run = open_run(spec, text, folder)
    (folder / MARKER).write_text(cfg.to_toml())
    paths = _outputs(folder)
    attrs = provenance(text)

    cells = expand(spec)
    say(f"Training {len(cells)} cells ({' × '.join(f'{len(v)} {k}' for k, v in grid_axes(spec).items() if len(v) > 1)}), "
        f"budgets {list(cfg.budgets)}, on {attrs['device']}")
    with GridProgress(Console(stderr=True, soft_wrap=True), len(cells), 0) as progress:
        outcomes = run_local(run, spec, text, cells, retry_failed=False, workers=1, on_event=progress.on_event)
    failed = [o for o in outcomes if o.status != "done"]
    if failed:
        raise RuntimeError(f"demo cell {failed[0].cell_id} {failed[0].status}")
    collect_run(str(folder))
    for leftover in ("locks", "scratch"):  # empty once every cell is done: the demo's folder holds results only
        shutil.rmtree(folder / leftover, ignore_errors=True)

    say(f"Fitting {cfg.fit_split} {cfg.fit_metric}: {FORMULAS[cfg.fit_law]} per {' × '.join(GROUP_BY)} by NUTS "
        f"({cfg.sampler.chains} chains × {cfg.sampler.samples} draws)")
    table = tidy_table(open_results(paths["results"]), cfg.fit_metric, cfg.fit_split, GROUP_BY, also=("n",))
    if cfg.fit_law == "accuracy":
        fit = fit_accuracy_law(table, "step", cfg.fit_metric, "n", "group", cfg.sampler)
    else:
        fit = fit_power_law(table, "step", cfg.fit_metric, "group", cfg.sampler)
    paths["posterior"].parent.mkdir(parents=True, exist_ok=True)
    fit.posterior.to_netcdf(str(paths["posterior"]))
    fit.summary.to_csv(paths["summary"], index=False)
    paths["fit spec"].write_text(tomli_w.dumps({
        "law": cfg.fit_law, "formula": FORMULAS[cfg.fit_law], "y": cfg.fit_metric,
        "split": cfg.fit_split, "x": "step", "step_ref": fit.x_ref, "by": list(GROUP_BY),
        "input": "results.nc", "method": "nuts", "sampler": dataclasses.asdict(cfg.sampler),
        "divergences": fit.divergences, "converged": fit.converged,
        "provenance": {k: v for k, v in attrs.items() if k != "spec"},
    }))
    say(fit.summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if fit.converged:
        say(f"Diagnostics: ok (r_hat <= {MAX_R_HAT}, bulk ESS >= {MIN_ESS_BULK}, no divergences).")
    else:
        say(f"Diagnostics: NOT converged (max r_hat {fit.summary['r_hat'].max():.3f}, min bulk ESS "
            f"{fit.summary['ess_bulk'].min():.0f}, {fit.divergences} divergences); read the intervals with care.")

    steps_fit_figure(paths["results"], paths["posterior"], cfg.fit_metric, cfg.fit_split, GROUP_BY, paths["figure"].with_suffix(""))
    accuracy_by_split_figure(paths["results"], GROUP_BY, paths["accuracy"].with_suffix(""))
