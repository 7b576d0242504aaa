"""`scaling demo`: a small real grid on CPU -> per-cell results -> results.nc -> NUTS fit -> figures.

Everything is written into a staging folder beside OUT and moved into place at the end, so a
failure or an interrupt leaves nothing partial behind, and a folder the demo did not write is never
overwritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
from tqdm import tqdm

from scaling.batches import sequence_length
from scaling.cell import CellPlan, run_cell
from scaling.config import TrainConfig, preset
from scaling.errors import UserError
from scaling.fit.infer import MAX_R_HAT, MIN_ESS_BULK, SamplerConfig, fit_accuracy_law, fit_power_law
from scaling.fit.table import tidy_table
from scaling.figures import accuracy_by_split_figure, steps_fit_figure
from scaling.packing import pack
from scaling.provenance import provenance
from scaling.schema import METRICS
from scaling.store import CellResult, cell_dataset, hypercube, open_results, write_atomic
from scaling.tasks import tokenizer
from scaling.tasks.diversity import diversity_stats
from scaling.tasks.mixture import evaluation_split, training_pool

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


def grid_axes(cfg: DemoConfig) -> dict[str, list]:
    return {
        "size": list(cfg.sizes),
        "pretrain": [0],
        "diversity": list(cfg.diversities),
        "quality": [1.0],
        "cot": ["full"],
        "seed": [cfg.seed],
    }


def expand_cells(cfg: DemoConfig) -> list[dict]:
    """Every combination of the grid axes, in order."""
    cells = [{}]
    for name, values in grid_axes(cfg).items():
        cells = [cell | {name: value} for cell in cells for value in values]
    return cells


def cell_id(cell: dict, cfg: DemoConfig) -> str:
    """A content hash of everything that determines the cell's results."""
    content = {"cell": cell, "config": dataclasses.asdict(cfg) | {"sampler": None}}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


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


def cell_plan(cell: dict, cfg: DemoConfig, data: dict, length: int) -> CellPlan:
    """The plan of one demo cell: its model, optimizer settings, data and evaluation splits."""
    pool, splits = data[cell["diversity"]]
    return CellPlan(
        cell_id=cell_id(cell, cfg),
        axes=cell,
        model_cfg=preset(cell["size"], tokenizer.VOCAB_SIZE, max(length, cfg.pack_length)),
        train_cfg=TrainConfig(budgets=cfg.budgets, batch_size=cfg.batch_size, lr=cfg.lr,
                              warmup_steps=cfg.warmup_steps, seed=cell["seed"], schedule=cfg.schedule),
        train_data=pack(pool, cfg.pack_length),
        splits=splits,
        eval_length=length,
        eval_batch=cfg.eval_n,
        tokens_per_step=cfg.batch_size * cfg.pack_length,
        pool_stats=diversity_stats(pool),
    )


def _run_with_progress(plan: CellPlan, label: str) -> CellResult:
    with tqdm(total=plan.train_cfg.total_steps, desc=label, unit="step", mininterval=0.5) as bar:
        def show(step: int, loss: float) -> None:
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

        return run_cell(plan, on_step=show)


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
    spec = cfg.to_toml()
    (folder / MARKER).write_text(spec)
    paths = _outputs(folder)
    attrs = provenance(spec)

    data = {}
    for k in cfg.diversities:
        pool = training_pool(cfg.families, k, cfg.examples, cfg.seed)
        data[k] = (pool, {s: evaluation_split(s, pool, cfg.families, k, cfg.ood_families, cfg.eval_n, cfg.seed) for s in cfg.splits})
    # One sequence length for the whole grid, so every cell of a size reuses one compiled step.
    length = sequence_length([e for pool, splits in data.values() for e in pool + sum(splits.values(), [])])

    cells = expand_cells(cfg)
    say(f"Training {len(cells)} cells ({' × '.join(f'{len(v)} {k}' for k, v in grid_axes(cfg).items() if len(v) > 1)}), "
        f"budgets {list(cfg.budgets)}, sequence length {length}, on {attrs['device']}")
    datasets = []
    for index, cell in enumerate(cells, start=1):
        label = f"cell {index}/{len(cells)} size={cell['size']} diversity={cell['diversity']}"
        result = _run_with_progress(cell_plan(cell, cfg, data, length), label)
        ds = cell_dataset(result, attrs)
        write_atomic(ds, paths["cells"] / f"{result.cell_id}.nc")
        datasets.append(ds)
    write_atomic(hypercube(datasets, grid_axes(cfg), attrs), paths["results"])

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
