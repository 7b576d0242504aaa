"""`scaling run --dry-run`: each cell's parameters, estimated FLOPs, time and peak memory on this machine.

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
import functools
import itertools
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from scaling.grid.spec import Cell, GridSpec, cell_shapes, iter_cells, train_config
from scaling.grid.plan import cell_data
from scaling.power import Design, estimate_spreads, format_power, power_table, read_grades
from scaling.tasks.tokenizer import Tokenizer
from scaling.trainer.config import ModelConfig
from scaling.trainer.flops import PHASES, forward_flops_per_token, sampling_flops, training_flops
from scaling.trainer.probe import ROW, measured_tokens

SAMPLE = 512  # examples drawn to estimate a cell's sequence length
SHOWN = 20  # cells a dry run lists one by one; a larger grid's others are counted ("... and N more cells")
BYTES_PER_PARAM = 16  # float32 parameters, their gradients and AdamW's two moments (compute_dtype never changes them)


@dataclass(frozen=True)
class CellEstimate:
    cell: Cell  # the first cell of its shape (scaling.grid.spec.cell_shapes)
    params: int  # non-embedding parameters
    flops: float  # training (SFT and pretraining) plus evaluation FLOPs
    seconds: float  # estimated wall time on this machine
    peak_bytes: int  # estimated peak memory of its largest step, SFT's, pretraining's or evaluation's (`peak_bytes`)
    count: int = 1  # cells it stands for: those differing from it only in quality and seed cost the same
    flops_by_phase: tuple[float, ...] = ()  # the training FLOPs of each of scaling.trainer.flops.PHASES, arms included


def estimate_cells(spec: GridSpec, shapes: list[tuple[Cell, int]]) -> list[CellEstimate]:
    """The cost of each of the grid's shapes (`cell_shapes`): quality and seed change no cell's model, rows or
    steps, so a million cells are estimated from their few shapes, each estimated once."""
    length_of = functools.cache(lambda cell: _estimated_length(spec, cell, cell.base.tokenizer()))
    measured_of = functools.cache(lambda base: measured_tokens(base.tokenizer()))
    rows = []
    for cell, _ in shapes:
        length = length_of(dataclasses.replace(cell, cell_id="", pretrain_tokens=0, quality=1.0, seed=spec.axes.seed[0]))
        # A control's rows grow to its longest problem (plan.cell_plan); this bounds it by the cell's longest sequence.
        rows.append((length, max(spec.data.pack_length, length) if cell.control else spec.data.pack_length or length))
    evaluated = memorization_and_evaluation_items(spec)
    # One timed step per size, at its longest row; other rows of that size scale by their FLOPs.
    longest = {}
    for (cell, _), (_, row) in zip(shapes, rows):
        longest[cell.size] = max(row, longest.get(cell.size, 0))
    steps = train_config(spec, spec.axes.seed[0]).total_steps  # the seed never changes the step count
    eval_batch = spec.eval.decode_batch
    estimates = []
    for (cell, count), (length, row) in zip(shapes, rows):
        cfg = cell.base.model_config(max(row, length))
        per_step = cfg.train_flops_per_token(row) * spec.train.batch_size * row
        # Pretraining, and evaluation: a forward pass (a third of a train step) per token of each split at each budget.
        pretrain = cfg.train_flops_per_token(spec.train.pretrain_context) * cell.pretrain_tokens
        evaluation = cfg.train_flops_per_token(length) / 3 * length * evaluated * len(spec.train.budgets)
        # Measuring the base (held-out corpus loss and the probe) runs forward once over their tokens.
        measuring = cfg.train_flops_per_token(ROW) / 3 * measured_of(cell.base)
        by_phase = dict.fromkeys(PHASES, 0.0) | {"pretraining": cell.base.pretraining_flops(
            cell.pretrain_tokens, spec.train.pretraining), "sft": steps * per_step}
        if not cell.control:  # controls run no arms (plan.cell_plan)
            for phase, spent in arm_flops(spec, cfg, length, spec.data.examples_at(cell.diversity)).items():
                by_phase[phase] += spent
        arm_evaluations = sum(len(a.from_budgets) * sum(b > 0 for b in a.budgets) for a in spec.arms.values())
        evaluation *= 1 + arm_evaluations / len(spec.train.budgets) * (not cell.control)
        flops = sum(by_phase.values()) - by_phase["pretraining"] + pretrain + evaluation + measuring
        step = cell.base.step_time(cfg, row, longest[cell.size], spec.train.batch_size)
        peak = peak_bytes(cfg, spec.train.batch_size, row, eval_batch, length)
        if cell.pretrain_tokens:  # pretraining's rows may make the larger step
            p = spec.train.pretraining
            peak = max(peak, peak_bytes(cell.base.model_config(p.context), p.batch_size, p.context, 1, 1))
        estimates.append(CellEstimate(cell, cfg.non_embedding_params, flops, step.fixed + flops * step.per_flop, peak,
                                      count, tuple(by_phase.values())))
    return estimates


def arm_flops(spec: GridSpec, cfg: ModelConfig, length: int, pool: int) -> dict[str, float]:
    """The arms' training FLOPs in one cell, by phase, from every SFT budget they start from: each sampled row
    filling the cell's row `length` (prompt and completion), each update a train step over those rows. An upper
    bound where completions stop early."""
    spent = {}
    if (rl := spec.rl) is not None:
        rows, steps = rl.prompts_per_step * rl.group_size, rl.budgets[-1] * len(rl.from_budgets)
        # The policy's and, with a KL penalty, the SFT model's log-probabilities of the samples: a forward each.
        scoring = (1 + (rl.kl_coef > 0)) * forward_flops_per_token(cfg, length) * rows * length
        spent["rl_sampling"] = steps * sampling_flops(cfg, rows, length, 0, length)
        spent["rl_update"] = steps * (rl.updates_per_step * training_flops(cfg, rows, length) + scoring)
    if (rft := spec.rft) is not None:
        rows = (rft.prompts or pool) * rft.samples
        spent["rft_sampling"] = len(rft.from_budgets) * sampling_flops(cfg, rows, length, 0, length)
        spent["rft_update"] = len(rft.from_budgets) * rft.budgets[-1] * training_flops(cfg, rft.batch_size, length)
    return spent


def peak_bytes(cfg: ModelConfig, batch: int, row: int, eval_batch: int, eval_length: int) -> int:
    """A cell's peak memory: its parameters, gradients and AdamW moments, plus the larger of a train step's
    activations (what the backward pass keeps: each layer's inputs, projections, attention probabilities and
    MLP hidden units per token, and the logits with their softmax and gradient) and evaluation's (the decode
    key/value cache of `eval_batch` rows of `eval_length` tokens, and their teacher-forced logits). Against XLA's
    memory analysis of the compiled train step it came within 10% for presets tiny to m at rows of 128 and 256
    tokens, and 1.8x high at 1024 (XLA keeps fewer attention buffers); the process's own ~0.5 GB is not counted."""
    width = 2 if cfg.compute_dtype == "bfloat16" else 4
    d, f, q, kv = cfg.d_model, cfg.d_ff, cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    per_token_layer = (6 * d + 2 * q + 2 * kv + 4 * f) * width + cfg.n_heads * row * 4  # probabilities in float32
    train = batch * row * (cfg.n_layers * per_token_layer + 3 * cfg.vocab_size * 4)
    evaluation = eval_batch * eval_length * (cfg.n_layers * 2 * kv * width + cfg.vocab_size * 4)
    return BYTES_PER_PARAM * cfg.total_params + max(train, evaluation)


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


def describe_grid(spec: GridSpec, say: Callable[[str], None]) -> list[CellEstimate]:
    """Print the grid's first cells with their parameters, FLOPs, estimated time and peak memory, then the count
    and totals of all of them, and a warning per shape whose peak exceeds this machine's memory; writes nothing.
    Costs are estimated per shape (`cell_shapes`), so a grid of millions of cells is described in seconds."""
    estimates = estimate_cells(spec, cell_shapes(spec))
    of_shape = {_shape_key(e.cell): e for e in estimates}
    say(f"{'cell':<16} {'size':<8} {'pretrain':>10} {'diversity':>9} {'quality':>7} {'cot':<5} {'seed':>4} "
        f"{'params':>10} {'FLOPs':>9} {'est. time':>9} {'memory':>9}")
    for c in itertools.islice(iter_cells(spec), SHOWN):
        e = of_shape[_shape_key(c)]
        say(f"{c.cell_id:<16} {c.size:<8} {c.pretrain_tokens:>10} {c.diversity:>9} {c.quality:>7g} {c.cot:<5} {c.seed:>4} "
            f"{e.params:>10,} {e.flops:>9.2e} {_duration(e.seconds):>9} {_size(e.peak_bytes):>9}"
            + (f"  control for {c.control}" if c.control else ""))
    cells = sum(e.count for e in estimates)
    if cells > SHOWN:
        say(f"... and {cells - SHOWN:,} more cells")
    total = sum(e.seconds * e.count for e in estimates)
    say(f"{cells:,} cells, {sum(e.flops * e.count for e in estimates):.2e} FLOPs, about {_duration(total)} "
        f"in one process on this machine (dry run: nothing written)")
    if spec.arms:  # the compute axis SFT and the arms share; a grid without arms prints what it always did
        by_phase = [sum(e.flops_by_phase[i] * e.count for e in estimates) for i in range(len(PHASES))]
        per_flop = total / max(sum(e.flops * e.count for e in estimates), 1.0)
        say("training FLOPs by phase: " + ", ".join(f"{phase} {flops:.2e} (about {_duration(flops * per_flop)})"
                                                   for phase, flops in zip(PHASES, by_phase) if flops))
    warn_memory(estimates, spec.train.batch_size, say)
    if spec.design.pilot:
        say("")
        describe_power(spec, say)
    return estimates


def warn_memory(estimates: list[CellEstimate], batch: int, say: Callable[[str], None]) -> None:
    """A line per distinct model and row whose estimated peak exceeds this machine's memory (not one per cell)."""
    available, where = machine_memory()
    warned = set()
    for e in estimates:
        shape = (e.cell.size, e.peak_bytes)
        if e.peak_bytes > available and shape not in warned:
            warned.add(shape)
            cells = sum(other.count for other in estimates if (other.cell.size, other.peak_bytes) == shape)
            say(f"warning: {cells:,} cells of size {e.cell.size} (batch {batch}) need about {_size(e.peak_bytes)} at "
                f"peak, more than the {_size(available)} of {where}: lower [train] batch_size or [eval] batch_size")


def machine_memory() -> tuple[int, str]:
    """The memory a cell's arrays live in, and what it is: the accelerator's where jax has one, else this
    machine's physical memory."""
    import jax

    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]), f"this {device.device_kind}"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine"


def _shape_key(cell: Cell) -> tuple:
    """What a cell's estimate depends on: all of its axes but quality and seed (`cell_shapes`)."""
    return cell.size, cell.pretrain_tokens, cell.diversity, cell.cot, cell.control


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


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"
