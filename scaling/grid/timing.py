"""How long a train step takes on this machine: what `scaling run --dry-run` estimates a cell's time from.

One real step is timed per distinct shape; sizes too large to time quickly are extrapolated at the
measured FLOP rate of the largest preset timed.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from scaling.tasks.tokenizer import CHARACTERS
from scaling.trainer.config import PRESETS, ModelConfig, preset

TIMED_FLOPS_LIMIT = 5e10  # sizes whose step needs more FLOPs than this are extrapolated, not timed
# Rows of a timed step at most: its arrays are allocated for real, so a grid's batch_size of 10^11 must not be (numpy
# asked for 34.9 TiB); beyond a few dozen rows the time per FLOP is flat, so larger batches scale by their FLOPs.
TIMED_BATCH = 32


def timed_batch(batch: int) -> int:
    """The rows a step is timed with to estimate a step of `batch` rows."""
    return min(batch, TIMED_BATCH)


@functools.lru_cache(maxsize=None)
def preset_seconds_per_flop(size: str, row: int, batch: int) -> float:
    """Measured train-step time per FLOP of a preset at this shape; big sizes take the largest timed size's rate."""
    batch = timed_batch(batch)

    def step_flops(name: str) -> float:
        return preset(name, CHARACTERS.vocab_size, row).train_flops_per_token(row) * batch * row

    timed = size if step_flops(size) <= TIMED_FLOPS_LIMIT else (
        [p for p in PRESETS if step_flops(p) <= TIMED_FLOPS_LIMIT] or [PRESETS[0]])[-1]
    return time_step(preset(timed, CHARACTERS.vocab_size, row), row, batch)[1] / step_flops(timed)


@functools.lru_cache(maxsize=None)
def time_step(cfg: ModelConfig, row: int, batch: int) -> tuple[float, float]:
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
