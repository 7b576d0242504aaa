"""`scaling demo`: a small real grid on CPU -> per-cell results -> results.nc -> `scaling fit` -> figures.

Its headline fit compares trained families: an accuracy law is fitted per size × trained family × diversity
to the per-family table, never to a split's accuracy pooled over families, where a family the cell did not
train scores 0 and more diversity would "raise" accuracy by covering more of the split by construction.

The grid runs through the same runner as `scaling run`, the fit through the same request as `scaling
fit` (its outputs are a fit folder like any other, which `scaling figures` can draw), and the figures
through the same functions as the paper's. Everything is written into a staging folder beside OUT and
moved into place at the end, so a failure or an interrupt leaves nothing partial behind, and a folder
the demo did not write is never overwritten.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
from rich.console import Console

from scaling.fit.command import run_fit
from scaling.fit.infer import SamplerConfig
from scaling.fit.laws import LAWS
from scaling.fit.request import FitRequest
from scaling.grid.collect import FAMILIES, FAMILY_METRICS, collect_run
from scaling.grid.executors.local import LocalExecutor
from scaling.grid.launch import run_spec
from scaling.grid.spec import GridSpec, expand, grid_axes, parse_spec
from scaling.provenance import provenance
from scaling.report.figures import accuracy_by_split_figure, law_fit_figure, training_curves_figure
from scaling.schema import METRICS
from scaling.staging import staged_folder

MARKER = "demo.toml"  # the demo's config; its presence marks a folder the demo may replace
WRITER = "scaling demo"
GROUP_BY = ("size", "diversity")  # the result figures: a column per size, a line per diversity
# An accuracy fit: a curve per size × trained family × diversity, so each family's curves at diversity 1 and 2
# compare the same family trained alone and beside another.
FAMILY_GROUP_BY = ("size", "family", "diversity")


@dataclass(frozen=True)
class DemoConfig:
    """The demo grid: sizes × diversity levels × step budgets, one seed, full-quality full CoT."""

    sizes: tuple[str, ...] = ("tiny", "xs")  # model size presets, trained from random init
    diversities: tuple[int, ...] = (1, 2)  # number of SFT families, the first k of `families`
    families: tuple[str, ...] = ("add", "reverse")  # ordered SFT families
    ood_families: tuple[str, ...] = ("sum3", "sub")  # held out of every mixture: sum3 can transfer from add, sub cannot
    examples: int = 2000  # unique SFT examples, whatever the diversity
    budgets: tuple[int, ...] = (64, 128, 256, 512, 1024)  # the steps axis, doubling
    batch_size: int = 11  # packed rows per step (about 34 examples: rows hold ~3 each)
    pack_length: int = 144  # tokens per packed row; several examples each, never attending across
    lr: float = 3e-3  # AdamW peak learning rate
    warmup_steps: int = 20  # linear warmup steps
    schedule: str = "wsd"  # one run per cell, an annealed branch per budget
    splits: tuple[str, ...] = ("train", "id", "ood_family", "ood_phrasing")  # evaluated at every budget
    eval_n: int = 64  # problems per family of each split
    memorization_n: int = 128  # the train split: the first correct training items, for the memorization step
    seed: int = 0  # data and initialization seed
    fit_metric: str = "answer_acc"  # the response the law is fitted to
    fit_split: str = "id"  # ... on this split
    # a one-axis law of the registry over steps: "accuracy" (C / (1 + (step / x50)^-k), Beta-Binomial over
    # the evaluated examples) for accuracies, fitted per trained family; "power" (E + A·step^-alpha) for
    # losses, which are measured per cell only, fitted per size × diversity
    fit_law: str = "accuracy"
    # 1000 draws per chain, not the fitter's 2000: the demo's curves are well identified and its time is budgeted.
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(samples=1000))

    def __post_init__(self) -> None:
        if max(self.diversities) > len(self.families) or min(self.diversities) < 1:
            raise ValueError(f"DemoConfig.diversities {self.diversities} must lie in 1..{len(self.families)}")
        if self.fit_metric not in METRICS or self.fit_split not in self.splits:
            raise ValueError("DemoConfig.fit_metric must be a metric and fit_split one of the splits")
        if self.fit_law not in LAWS or len(LAWS[self.fit_law].axes) != 1:
            raise ValueError(f"DemoConfig.fit_law must be a one-axis law of the registry, got {self.fit_law!r}")
        if self.per_family and self.fit_metric not in FAMILY_METRICS:
            raise ValueError(f"DemoConfig.fit_metric of an accuracy law must be one of {tuple(FAMILY_METRICS)} (per family)")
        if len(self.budgets) < len(LAWS[self.fit_law].params):
            raise ValueError(f"DemoConfig.budgets needs at least {len(LAWS[self.fit_law].params)} budgets to fit {self.fit_law}")

    def to_toml(self) -> str:
        return tomli_w.dumps({"demo": dataclasses.asdict(self)})

    @property
    def per_family(self) -> bool:
        """Whether the law is fitted per trained family: accuracies are graded per family, losses only per cell."""
        return LAWS[self.fit_law].response == "accuracy"

    def fit_request(self, folder: Path) -> FitRequest:
        """The `scaling fit` request the demo makes of its own results: an accuracy per trained family from the
        per-family table (its rows of families the cell did not train left out), a loss per cell from results.nc."""
        common = dict(law=self.fit_law, y=self.fit_metric, sampler=self.sampler, allow_unconverged=True,
                      out=folder / "fit")
        if self.per_family:
            return FitRequest(input=folder / FAMILIES, n="n", by=FAMILY_GROUP_BY,
                              where=f"split == '{self.fit_split}' and trained", **common)
        return FitRequest(input=folder / "results.nc", by=GROUP_BY, split=self.fit_split, **common)


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
        "eval": {"splits": list(cfg.splits), "n": cfg.eval_n, "batch_size": cfg.eval_n,
                 "memorization_n": cfg.memorization_n},
    })


def demo_spec(cfg: DemoConfig) -> GridSpec:
    return parse_spec(grid_toml(cfg), source="the demo's grid")


def run_demo(cfg: DemoConfig, out: Path, say=print) -> dict[str, Path]:
    """Run the whole demo into `out`; returns the paths written, by role."""
    out = Path(out)
    started = time.perf_counter()
    with staged_folder(out, MARKER, WRITER) as staging:
        # What is written where, said as where it will be once the staging folder is moved into place.
        _run_into(cfg, staging, lambda text: say(str(text).replace(str(staging), str(out))))
    paths = outputs(out)
    say(f"\nDemo finished in {time.perf_counter() - started:.0f} s. Written under {out}/:")
    for role, path in paths.items():
        say(f"  {role:<12} {path}")
    return paths


def outputs(out: Path) -> dict[str, Path]:
    """What the demo writes under out, by role."""
    return {
        "config": out / MARKER,
        "grid": out / "grid.toml",
        "cells": out / "cells",
        "results": out / "results.nc",
        "fit": out / "fit",
        "posterior": out / "fit" / "posterior.nc",
        "summary": out / "fit" / "summary.csv",
        "returns": out / "fit" / "returns.csv",
        "fit spec": out / "fit" / "fit.toml",
        "figure": out / "figures" / "steps_fit.png",
        "figure pdf": out / "figures" / "steps_fit.pdf",
        "accuracy": out / "figures" / "answer_acc.png",
        "curves": out / "figures" / "train_loss.png",
    }


def _run_into(cfg: DemoConfig, folder: Path, say) -> None:
    spec = demo_spec(cfg)
    paths = outputs(folder)

    cells = expand(spec)
    say(f"Training {len(cells)} cells ({' × '.join(f'{len(v)} {k}' for k, v in grid_axes(spec).items() if len(v) > 1)}), "
        f"budgets {list(cfg.budgets)}, on {provenance(spec.text)['device']}")
    # Not resumable: a stopped demo's staging folder is thrown away, so a signal ends it at once, not at a checkpoint.
    report = run_spec(spec, folder, LocalExecutor(workers=1, resumable=False), console=Console(stderr=True, soft_wrap=True),
                      say=say)
    if report.failed:
        raise RuntimeError(f"demo cell {report.failed[0].cell_id} {report.failed[0].status}")
    (folder / MARKER).write_text(cfg.to_toml())
    collect_run(str(folder))
    for leftover in ("locks", "scratch"):  # empty once every cell is done: the demo's folder holds results only
        shutil.rmtree(folder / leftover, ignore_errors=True)

    run_fit(cfg.fit_request(folder), say)
    # A column per size, a colour per diversity, and (an accuracy fit) a row per trained family.
    law_fit_figure(paths["fit"], paths["figure"].with_suffix(""), hue="diversity", col="size")
    accuracy_by_split_figure(paths["results"], GROUP_BY, paths["accuracy"].with_suffix(""))
    training_curves_figure(paths["results"], GROUP_BY, paths["curves"].with_suffix(""))
