"""`scaling run --dry-run`: each cell's parameters, estimated FLOPs and time on this machine.

Time comes from real train steps timed here, one per distinct (size, row length), so the estimate
reflects this machine and its compiled step; sizes too large to time quickly are extrapolated at
the measured FLOP rate of the largest size timed. A checkpoint base is timed in its own shape, from a
random init (no weights read), compilation included: SmolLM2-135M's step takes ~40 s to compile and
time (timing it cut to one and three layers and extrapolating missed its compilation by 3x).
Evaluation, and measuring the base, are estimated at the same FLOP rate; greedy decoding is slower per
FLOP on CPU, and loading a checkpoint is not counted, so read the estimate as a lower bound.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from scaling.grid.spec import Cell, GridSpec, train_config
from scaling.grid.plan import cell_data
from scaling.power import Design, estimate_spreads, format_power, power_table, read_grades
from scaling.tasks.tokenizer import Tokenizer
from scaling.trainer.probe import ROW, measured_tokens

SAMPLE = 512  # examples drawn to estimate a cell's sequence length


@dataclass(frozen=True)
class CellEstimate:
    cell: Cell
    params: int  # non-embedding parameters
    flops: float  # training (SFT and pretraining) plus evaluation FLOPs
    seconds: float  # estimated wall time on this machine


def estimate_cells(spec: GridSpec, cells: list[Cell]) -> list[CellEstimate]:
    shapes = []
    for cell in cells:
        length = _estimated_length(spec, cell, cell.base.tokenizer())
        # A control's rows grow to its longest problem (plan.cell_plan); this bounds it by the cell's longest sequence.
        shapes.append((length, max(spec.data.pack_length, length) if cell.control else spec.data.pack_length or length))
    evaluated = memorization_and_evaluation_items(spec)
    # One timed step per size, at its longest row; other rows of that size scale by their FLOPs.
    longest = {}
    for cell, (_, row) in zip(cells, shapes):
        longest[cell.size] = max(row, longest.get(cell.size, 0))
    estimates = []
    for cell, (length, row) in zip(cells, shapes):
        cfg = cell.base.model_config(max(row, length))
        steps = train_config(spec, cell.seed).total_steps
        per_step = cfg.train_flops_per_token(row) * spec.train.batch_size * row
        # Pretraining, and evaluation: a forward pass (a third of a train step) per token of each split at each budget.
        pretrain = cfg.train_flops_per_token(spec.train.pretrain_context) * cell.pretrain_tokens
        evaluation = cfg.train_flops_per_token(length) / 3 * length * evaluated * len(spec.train.budgets)
        # Measuring the base (held-out corpus loss and the probe) runs forward once over their tokens.
        measuring = cfg.train_flops_per_token(ROW) / 3 * measured_tokens(cell.base.tokenizer())
        flops = steps * per_step + pretrain + evaluation + measuring
        step = cell.base.step_time(cfg, row, longest[cell.size], spec.train.batch_size)
        estimates.append(CellEstimate(cell, cfg.non_embedding_params, flops, step.fixed + flops * step.per_flop))
    return estimates


def memorization_and_evaluation_items(spec: GridSpec) -> int:
    """The examples a cell grades at each budget: its train split's and the grid's evaluation set."""
    evaluation = spec.source.evaluation_set(spec.eval.splits, spec.eval.n, spec.eval.seed, "full")
    return sum(len(rows) for rows in evaluation.values()) + (spec.eval.memorization_n if "train" in spec.eval.splits else 0)


def _estimated_length(spec: GridSpec, cell: Cell, tokenizer: Tokenizer) -> int:
    """The sequence length of cells at this cell's diversity and CoT style, from a sample of their data (fast)."""
    data = dataclasses.replace(spec.data, examples=min(spec.data.examples_at(cell.diversity), SAMPLE), examples_per="cell")
    sampled = dataclasses.replace(spec, data=data,
                                  eval=dataclasses.replace(spec.eval, n=min(spec.eval.n, SAMPLE)))
    like = dataclasses.replace(cell, quality=1.0, seed=spec.axes.seed[0])
    return cell_data(sampled, like, tokenizer).length


def describe_grid(spec: GridSpec, cells: list[Cell], say: Callable[[str], None]) -> list[CellEstimate]:
    """Print every cell with its parameters, FLOPs and estimated time, then the totals; writes nothing."""
    estimates = estimate_cells(spec, cells)
    say(f"{'cell':<16} {'size':<8} {'pretrain':>10} {'diversity':>9} {'quality':>7} {'cot':<5} {'seed':>4} "
        f"{'params':>10} {'FLOPs':>9} {'est. time':>9}")
    for e in estimates:
        c = e.cell
        say(f"{c.cell_id:<16} {c.size:<8} {c.pretrain_tokens:>10} {c.diversity:>9} {c.quality:>7g} {c.cot:<5} {c.seed:>4} "
            f"{e.params:>10,} {e.flops:>9.2e} {_duration(e.seconds):>9}" + (f"  control for {c.control}" if c.control else ""))
    total = sum(e.seconds for e in estimates)
    say(f"{len(estimates)} cells, {sum(e.flops for e in estimates):.2e} FLOPs, about {_duration(total)} "
        f"in one process on this machine (dry run: nothing written)")
    if spec.design.pilot:
        say("")
        describe_power(spec, say)
    return estimates


def describe_power(spec: GridSpec, say: Callable[[str], None]) -> None:
    """The minimum detectable differences of this grid (its seeds, its evaluation set's items per split and
    family) at the spreads of its [design] pilot (scaling.power)."""
    if len(spec.axes.seed) < 2:
        say("power: one seed per condition leaves no spread between runs to test against; give [axes] seed two or more")
        return
    evaluation = spec.source.evaluation_set(spec.eval.splits, spec.eval.n, spec.eval.seed, "full")
    items = {(split, family): count for split, rows in evaluation.items()
             for family, count in Counter(example.family for example in rows).items()}
    design = Design(seeds=len(spec.axes.seed), items=items, alpha=spec.design.alpha, power=spec.design.power)
    pilot = spec.design.pilot_path(Path(spec.base_dir))
    table = power_table(estimate_spreads(read_grades(pilot)), design)
    if table.empty:
        say(f"power: no split and family of the pilot {pilot} is in this grid's evaluation set")
        return
    say(f"Planned from the pilot {pilot}:")
    say(format_power(table, design))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
