"""Where one grid cell's wall time goes, phase by phase, and inside a train step.

Runs one cell of `runs/reference.toml` (or --spec's; default: xs, diversity 4, quality 1, seed 0, no
pretraining) for real through the grid's own plan and `run_cell`, timing each phase by wrapping the
functions the cell calls:

    process start   a fresh interpreter importing what a worker imports
    data            building the cell's pool, splits and packed rows
    compile         tracing and compiling the train step (the persistent cache off: a cold compile)
    train           the optimizer steps, all budgets' trunk and branches
    evaluate        `evaluate_splits` at every budget: teacher-forced metrics and greedy decoding of every
                    split (printed as a share of the cell's time too)
    checkpoint      Orbax saves after each budget

and then, on the cell's own shapes, one train step taken apart: attention, MLP, the loss head (forward
and backward each) and the optimizer update, each jitted and timed alone (the parts overlap a little
in a real step, so they need not sum to it). Usage: python benchmarks/profile_cell.py [--spec runs/X.toml]
[--size xs] [--diversity 4] [--budgets 32,64,...]. Last line: a JSON object with every number.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)  # a cold compile is what this measures

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from scaling.grid import cell as cell_module  # noqa: E402
from scaling.grid.plan import cell_plan, load_or_pretrain_base  # noqa: E402
from scaling.grid.spec import expand, load_spec  # noqa: E402
from scaling.results import DONE  # noqa: E402
from scaling.trainer.model import init_model  # noqa: E402
from scaling.trainer.attention import span_bucket  # noqa: E402
from scaling.trainer.train import batch_indices, bound_step, optimizer_for, token_losses, train_step  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[1] / "runs" / "reference.toml"
REPEATS = 20  # timed calls of each part of a step (after one warm call); the median counts


def median_ms(function, *args, repeats: int = REPEATS) -> float:
    jax.block_until_ready(function(*args))  # compile and warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def process_start() -> float:
    """Seconds for a fresh interpreter to import what a cell's worker imports."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import scaling.grid.runner, scaling.grid.cell, scaling.grid.plan"], check=True)
    return time.perf_counter() - started


class Clock:
    """Seconds spent inside wrapped functions, by phase."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, phase: str, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started
        return timed


def cell_phases(spec, cell) -> tuple[dict[str, float], object]:
    clock = Clock()
    started = time.perf_counter()
    plan = cell_plan(spec, cell, load_or_pretrain_base(spec, cell, None))
    data_s = time.perf_counter() - started
    state = (init_model(plan.model_cfg, 0)[1],)
    state = (state[0], optimizer_for(plan.train_cfg).init(state[0]))
    batch = {k: jnp.asarray(v) for k, v in plan.train_data.take(batch_indices(len(plan.train_data), plan.train_cfg.batch_size, 0, 0)).items()}
    graphdef = init_model(plan.model_cfg, 0)[0]
    started = time.perf_counter()
    train_step.lower(state, batch, graphdef=graphdef, optimizer=optimizer_for(plan.train_cfg), lr=1e-3).compile()
    compile_s = time.perf_counter() - started
    originals = {name: getattr(cell_module, name) for name in ("evaluate_splits", "save_checkpoint")}
    cell_module.evaluate_splits = clock.wrap("evaluate", originals["evaluate_splits"])
    cell_module.save_checkpoint = clock.wrap("checkpoint", originals["save_checkpoint"])
    try:
        with tempfile.TemporaryDirectory() as checkpoints:
            started = time.perf_counter()
            result = cell_module.run_cell(plan, checkpoints=Path(checkpoints))
            total_s = time.perf_counter() - started
    finally:
        for name, function in originals.items():
            setattr(cell_module, name, function)
    assert result.status == DONE, result.status
    phases = {"process start": process_start(), "data": data_s, "compile": compile_s,
              "train": total_s - clock.seconds.get("evaluate", 0.0) - clock.seconds.get("checkpoint", 0.0),
              "evaluate": clock.seconds.get("evaluate", 0.0), "checkpoint": clock.seconds.get("checkpoint", 0.0)}
    return phases, plan


def step_parts(plan) -> dict[str, float]:
    """One train step on the cell's shapes, and its parts alone (forward and backward), in ms."""
    cfg = plan.model_cfg
    graphdef, params = init_model(cfg, 0)
    optimizer = optimizer_for(plan.train_cfg)
    rows = plan.train_data.take(batch_indices(len(plan.train_data), plan.train_cfg.batch_size, 0, 0))
    batch = {k: jnp.asarray(v) for k, v in rows.items()}
    B, T = batch["inputs"].shape
    model = nnx.merge(graphdef, params)
    block = model.blocks[0]
    x_BxTxD = jax.random.normal(jax.random.key(0), (B, T, cfg.d_model))

    state = (params, optimizer.init(params))
    # The loop's own step (static arguments bound once, the rows' span). It donates its state: each timed
    # call gets a fresh copy (a few hundred kB: noise next to the step).
    step = bound_step(graphdef, optimizer, span_bucket(plan.train_data.span, T))
    step_ms = median_ms(lambda s: step(jax.tree.map(jnp.copy, s), batch, 1e-3)[1]["loss"], state)

    def grad_of(module, call):
        graph, weights = nnx.split(module)
        return jax.jit(jax.grad(lambda w, x: call(nnx.merge(graph, w), x).sum(), argnums=(0, 1))), weights

    attention, attention_weights = grad_of(block.attention, lambda m, x: m(x, batch["positions"], batch["segments"]))
    mlp, mlp_weights = grad_of(block.mlp, lambda m, x: m(x))

    def head_loss(w, x):
        head = nnx.merge(*w)
        logits = head.embed.attend(head.final_norm(x))
        return (token_losses(logits, batch["targets"]) * batch["loss_mask"]).sum()

    head = jax.jit(jax.grad(head_loss, argnums=(0, 1)))
    grads = jax.tree.map(jnp.zeros_like, params)
    update = jax.jit(lambda g, o, p: optimizer.update(g, o, p))
    return {
        "step": step_ms,
        "attention (all layers)": cfg.n_layers * median_ms(attention, attention_weights, x_BxTxD),
        "mlp (all layers)": cfg.n_layers * median_ms(mlp, mlp_weights, x_BxTxD),
        "loss head": median_ms(head, nnx.split(model), x_BxTxD),
        "optimizer": median_ms(update, grads, state[1], params),
        "shape": f"B {B} x T {T}, D {cfg.d_model}, {cfg.n_layers} layers, H {cfg.n_heads}, Dh {cfg.head_dim}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(REFERENCE), help="the grid spec whose cell to profile [runs/reference.toml]")
    parser.add_argument("--size", default="xs")
    parser.add_argument("--diversity", type=int, default=4)
    parser.add_argument("--budgets", default=None, help="comma-separated budgets instead of the spec's")
    args = parser.parse_args()
    spec = load_spec(Path(args.spec))
    if args.budgets:
        spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, budgets=tuple(map(int, args.budgets.split(",")))))
    cell = next(c for c in expand(spec) if c.size == args.size and c.diversity == args.diversity and c.quality == 1.0
                and c.seed == 0 and c.pretrain_tokens == 0)
    phases, plan = cell_phases(spec, cell)
    total = sum(phases.values())
    print(f"cell {cell.label}: {plan.train_cfg.total_steps} optimizer steps, {len(plan.splits)} splits × "
          f"{len(plan.train_cfg.budgets)} budgets evaluated")
    print(f"{'phase':<16}{'seconds':>9}{'share':>8}")
    for phase, seconds in phases.items():
        print(f"{phase:<16}{seconds:>9.1f}{seconds / total:>8.0%}")
    print(f"{'total':<16}{total:>9.1f}")
    evaluate_share = phases["evaluate"] / total
    print(f"evaluation share of the cell's time: {evaluate_share:.1%} ({phases['evaluate']:.1f} s of {total:.1f} s)")
    parts = step_parts(plan)
    print(f"\none train step ({parts.pop('shape')}), ms (median of {REPEATS}):")
    for part, ms in parts.items():
        print(f"  {part:<24}{ms:>8.1f}")
    print(json.dumps({"benchmark": "profile_cell", "ratio": None, "phases_s": phases, "evaluate_share": evaluate_share,
                      "step_ms": parts, "steps": plan.train_cfg.total_steps}))


if __name__ == "__main__":
    main()
