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
import functools
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from scaling.grid.spec import Base, Cell, GridSpec, train_config
from scaling.grid.plan import cell_data, cell_tokenizer, model_config
from scaling.tasks.tokenizer import CHARACTERS, Tokenizer
from scaling.trainer.probe import ROW, measured_tokens

SAMPLE = 512  # examples drawn to estimate a cell's sequence length
TIMED_FLOPS_LIMIT = 5e10  # sizes whose step needs more FLOPs than this are extrapolated, not timed


@dataclass(frozen=True)
class CellEstimate:
    cell: Cell
    params: int  # non-embedding parameters
    flops: float  # training (SFT and pretraining) plus evaluation FLOPs
    seconds: float  # estimated wall time on this machine


def estimate_cells(spec: GridSpec, cells: list[Cell]) -> list[CellEstimate]:
    shapes = []
    for cell in cells:
        length = _estimated_length(spec, cell.diversity, cell.cot, cell_tokenizer(cell))
        shapes.append((length, spec.data.pack_length or length))
    # One timed step per size, at its longest row; other rows of that size scale by their FLOPs.
    longest = {}
    for cell, (_, row) in zip(cells, shapes):
        longest[cell.size] = max(row, longest.get(cell.size, 0))
    estimates = []
    for cell, (length, row) in zip(cells, shapes):
        cfg = model_config(cell, max(row, length))
        steps = train_config(spec, cell.seed).total_steps
        per_step = cfg.train_flops_per_token(row) * spec.train.batch_size * row
        # Pretraining, and evaluation: a forward pass (a third of a train step) per token of each split at each budget.
        pretrain = cfg.train_flops_per_token(spec.train.pretrain_context) * cell.pretrain_tokens
        evaluation = cfg.train_flops_per_token(length) / 3 * length * spec.eval.n * len(spec.eval.splits) * len(spec.train.budgets)
        # Measuring the base (held-out corpus loss and the probe) runs forward once over their tokens.
        measuring = cfg.train_flops_per_token(ROW) / 3 * measured_tokens(cell_tokenizer(cell))
        flops = steps * per_step + pretrain + evaluation + measuring
        if cell.base.is_checkpoint:
            step_seconds, compile_seconds = _checkpoint_step(cfg, row, spec.train.batch_size)
            seconds = compile_seconds + flops * step_seconds / per_step
        else:
            seconds = flops * _seconds_per_flop(cell.base, longest[cell.size], spec.train.batch_size)
        estimates.append(CellEstimate(cell, cfg.non_embedding_params, flops, seconds))
    return estimates


def _estimated_length(spec: GridSpec, diversity: int, cot: str, tokenizer: Tokenizer) -> int:
    """The sequence length of cells at this diversity and CoT style, from a sample of their data (fast)."""
    data = dataclasses.replace(spec.data, examples=min(spec.data.examples_at(diversity), SAMPLE), examples_per="cell")
    sampled = dataclasses.replace(spec, data=data,
                                  eval=dataclasses.replace(spec.eval, n=min(spec.eval.n, SAMPLE)))
    first = spec.axes.seed[0]
    return cell_data(sampled, Cell("tiny", 0, diversity, 1.0, cot, first, cell_id="", base=Base("tiny")), tokenizer).length


@functools.lru_cache(maxsize=None)
def _seconds_per_flop(base: Base, row: int, batch: int) -> float:
    """Measured train-step time per FLOP of a preset at this shape; big sizes take the largest timed size's rate."""
    from scaling.trainer.config import PRESETS, preset

    size = base.name

    def step_flops(name: str) -> float:
        return preset(name, CHARACTERS.vocab_size, row).train_flops_per_token(row) * batch * row

    timed = size if step_flops(size) <= TIMED_FLOPS_LIMIT else (
        [p for p in PRESETS if step_flops(p) <= TIMED_FLOPS_LIMIT] or [PRESETS[0]])[-1]
    return _time_step(timed, row, batch) / step_flops(timed)


@functools.lru_cache(maxsize=None)
def _checkpoint_step(cfg, row: int, batch: int) -> tuple[float, float]:
    """(seconds per train step, seconds to compile it and take the first) of a checkpoint's model at this shape."""
    first, step = _time_cfg_step(cfg, row, batch)
    return step, first


def _time_step(size: str, row: int, batch: int) -> float:
    from scaling.trainer.config import preset

    return _time_cfg_step(preset(size, CHARACTERS.vocab_size, row), row, batch)[1]


def _time_cfg_step(cfg, row: int, batch: int) -> tuple[float, float]:
    """(seconds of the first call, compilation included; seconds per step after it) of a model's train step."""
    from scaling.trainer.model import init_model
    from scaling.trainer.train import build_optimizer, train_step

    graphdef, params = init_model(cfg, 0)
    optimizer = build_optimizer(0.1, 1.0)
    state = (params, optimizer.init(params))
    rng = np.random.default_rng(0)
    batch_arrays = {
        "inputs": rng.integers(0, cfg.vocab_size, (batch, row), dtype=np.int32),
        "targets": rng.integers(0, cfg.vocab_size, (batch, row), dtype=np.int32),
        "loss_mask": np.ones((batch, row), np.float32),
        "positions": np.tile(np.arange(row, dtype=np.int32), (batch, 1)),
        "segments": np.ones((batch, row), np.int32),
    }
    started = time.perf_counter()
    state, metrics = train_step(state, batch_arrays, graphdef=graphdef, optimizer=optimizer, lr=1e-3)  # compile
    metrics["loss"].block_until_ready()
    first = time.perf_counter() - started
    repeats, started = 3, time.perf_counter()
    for _ in range(repeats):
        state, metrics = train_step(state, batch_arrays, graphdef=graphdef, optimizer=optimizer, lr=1e-3)
    metrics["loss"].block_until_ready()
    return first, (time.perf_counter() - started) / repeats


def describe_grid(spec: GridSpec, cells: list[Cell], say: Callable[[str], None]) -> list[CellEstimate]:
    """Print every cell with its parameters, FLOPs and estimated time, then the totals; writes nothing."""
    estimates = estimate_cells(spec, cells)
    say(f"{'cell':<16} {'size':<8} {'pretrain':>10} {'diversity':>9} {'quality':>7} {'cot':<5} {'seed':>4} "
        f"{'params':>10} {'FLOPs':>9} {'est. time':>9}")
    for e in estimates:
        c = e.cell
        say(f"{c.cell_id:<16} {c.size:<8} {c.pretrain_tokens:>10} {c.diversity:>9} {c.quality:>7g} {c.cot:<5} {c.seed:>4} "
            f"{e.params:>10,} {e.flops:>9.2e} {_duration(e.seconds):>9}")
    total = sum(e.seconds for e in estimates)
    say(f"{len(estimates)} cells, {sum(e.flops for e in estimates):.2e} FLOPs, about {_duration(total)} "
        f"in one process on this machine (dry run: nothing written)")
    return estimates


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
