"""Ensemble step time: 8 `tiny` models trained by one vmapped step (benchmarks/ensemble.py) versus the same 8
trained in turn.

Both train identical members (seeds 0..7, each on its own data order) on identical batches that are
on the device before timing starts; each is timed over STEPS steps after its compile, in ROUNDS
interleaved rounds, and the fastest round counts (the machine may be shared).
Last line: a JSON object whose "ratio" is sequential time / vmapped time per step (above 1: vmap is faster).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from scaling.trainer.batches import sequence_length, token_arrays
from scaling.trainer.config import TrainConfig, preset
from scaling.trainer.model import init_model
from scaling.tasks import tokenizer
from scaling.tasks.mixture import training_pool
from scaling.trainer.train import optimizer_for, train_step

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or through runpy
from ensemble import ensemble_train_step, init_ensemble, init_ensemble_state, member, member_batches  # noqa: E402

SEEDS = tuple(range(8))
BATCH_SIZE = 32
STEPS = 30
ROUNDS = 3


def _setup():
    pool = training_pool(("add", "reverse"), 2, 2000, seed=0)
    length = sequence_length(pool)
    data = token_arrays(pool, length)
    # Step 0 compiles; the timed steps follow it.
    batches_M = [jax.device_put(member_batches(data, BATCH_SIZE, step, SEEDS)) for step in range(ROUNDS * STEPS + 1)]
    return preset("tiny", tokenizer.VOCAB_SIZE, length), batches_M


def _timed(step_once, n_steps: int, first: int) -> float:
    """Seconds per step of `step_once(step)` over steps first..first + n_steps - 1, waiting for the last."""
    started = time.perf_counter()
    for step in range(first, first + n_steps):
        metrics = step_once(step)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - started) / n_steps


def main() -> None:
    model_cfg, batches_M = _setup()
    optimizer = optimizer_for(TrainConfig(budgets=(ROUNDS * STEPS + 1,)))

    graphdef, params_M = init_ensemble(model_cfg, SEEDS)
    ensemble = [init_ensemble_state(params_M, optimizer)]
    alone_batches = [[member(batch_M, i) for i in range(len(SEEDS))] for batch_M in batches_M]
    singles = []
    for seed in SEEDS:
        _, params = init_model(model_cfg, seed)
        singles.append((params, optimizer.init(params)))

    def vmapped(step):
        ensemble[0], metrics = ensemble_train_step(ensemble[0], batches_M[step], graphdef=graphdef, optimizer=optimizer, lr=3e-3)
        return metrics["loss"]

    def sequential(step):
        losses = []
        for i in range(len(SEEDS)):
            singles[i], metrics = train_step(singles[i], alone_batches[step][i], graphdef=graphdef, optimizer=optimizer, lr=3e-3)
            losses.append(metrics["loss"])
        return losses

    started = time.perf_counter()
    jax.block_until_ready(vmapped(0))
    compile_vmapped = time.perf_counter() - started
    started = time.perf_counter()
    jax.block_until_ready(sequential(0))
    compile_sequential = time.perf_counter() - started

    times = {"vmapped": [], "sequential": []}
    for round_ in range(ROUNDS):
        first = 1 + round_ * STEPS
        times["vmapped"].append(_timed(vmapped, STEPS, first))
        times["sequential"].append(_timed(sequential, STEPS, first))
    vmapped_s, sequential_s = min(times["vmapped"]), min(times["sequential"])
    # Same members, same batches: the two runs must agree, or the comparison means nothing.
    last_gap = float(np.max(np.abs(np.asarray(vmapped(ROUNDS * STEPS)) - np.asarray(sequential(ROUNDS * STEPS)))))

    members = len(SEEDS)
    length = batches_M[0]["inputs"].shape[-1]
    print(f"{members} x tiny ({model_cfg.total_params} params each), batch {BATCH_SIZE}x{length}, "
          f"{STEPS} steps x {ROUNDS} rounds on {jax.devices()[0].device_kind}")
    print(f"{'':>11} {'first step s':>13} {'ms/step (all)':>14} {'ms/member-step':>15}")
    rows = (("vmapped", compile_vmapped, vmapped_s), ("sequential", compile_sequential, sequential_s))
    for name, first_s, step_s in rows:
        print(f"{name:>11} {first_s:13.2f} {step_s * 1e3:14.2f} {step_s * 1e3 / members:15.3f}")
    print(f"ratio sequential / vmapped: {sequential_s / vmapped_s:.2f}   loss gap at the last step: {last_gap:.2e}")
    print(json.dumps({
        "benchmark": "ensemble",
        "ratio": round(sequential_s / vmapped_s, 3),
        "members": members,
        "vmapped_ms_per_step": round(vmapped_s * 1e3, 3),
        "sequential_ms_per_step": round(sequential_s * 1e3, 3),
        "vmapped_rounds_ms": [round(t * 1e3, 3) for t in times["vmapped"]],
        "sequential_rounds_ms": [round(t * 1e3, 3) for t in times["sequential"]],
        "compile_s": {"vmapped": round(compile_vmapped, 2), "sequential": round(compile_sequential, 2)},
        "last_step_loss_gap": last_gap,
        "device_kind": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
    }))


if __name__ == "__main__":
    main()
