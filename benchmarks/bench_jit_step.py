"""Train-step time: our pure `jax.jit` step on split state versus the same step under `nnx.jit`.

For small models the Python graph walk of `nnx.jit` on every call costs more than the step itself;
this measures that choice side by side on identical models, optimizer and batches.
Last line: a JSON object whose "ratio" is nnx.jit time / our time per step (above 1: ours is faster).
"""

from __future__ import annotations

import json
import time

import jax
import optax
from flax import nnx

from scaling.trainer.batches import sequence_length, token_arrays
from scaling.trainer.config import TrainConfig, preset
from scaling.trainer.model import Transformer, init_model
from scaling.tasks import tokenizer
from scaling.tasks.mixture import training_pool
from scaling.trainer.train import batch_indices, masked_loss, optimizer_for, train_step

STEPS = 200


def _batches(size: str):
    pool = training_pool(("add", "reverse"), 2, 2000, seed=0)
    length = sequence_length(pool)
    data = token_arrays(pool, length)
    batches = [data.take(batch_indices(len(data), 32, step, 0)) for step in range(STEPS + 1)]
    return preset(size, tokenizer.VOCAB_SIZE, length), batches


def time_ours(model_cfg, batches, train_cfg) -> float:
    graphdef, params = init_model(model_cfg, seed=0)
    optimizer = optimizer_for(train_cfg)
    state = (params, optimizer.init(params))
    state, metrics = train_step(state, batches[0], graphdef=graphdef, optimizer=optimizer, lr=train_cfg.lr)  # compile
    jax.block_until_ready(metrics)
    started = time.perf_counter()
    for batch in batches[1:]:
        state, metrics = train_step(state, batch, graphdef=graphdef, optimizer=optimizer, lr=train_cfg.lr)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - started) / STEPS


def time_nnx_jit(model_cfg, batches, train_cfg) -> float:
    model = Transformer(model_cfg, nnx.Rngs(params=0))
    # The same AdamW at the same rate (ours applies the rate inside train_step instead).
    optimizer = nnx.Optimizer(model, optax.chain(optimizer_for(train_cfg), optax.scale(train_cfg.lr)), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, batch):
        def loss_of(model):
            graphdef, params = nnx.split(model)
            return masked_loss(params, batch, graphdef)

        (loss, _), grads = nnx.value_and_grad(loss_of, has_aux=True)(model)
        optimizer.update(model, grads)
        return loss

    jax.block_until_ready(step(model, optimizer, batches[0]))  # compile
    started = time.perf_counter()
    for batch in batches[1:]:
        loss = step(model, optimizer, batch)
    jax.block_until_ready(loss)
    return (time.perf_counter() - started) / STEPS


def main() -> None:
    train_cfg = TrainConfig(budgets=(STEPS,))
    rows = {}
    for size in ("tiny", "xs"):
        model_cfg, batches = _batches(size)
        ours, theirs = time_ours(model_cfg, batches, train_cfg), time_nnx_jit(model_cfg, batches, train_cfg)
        rows[size] = {"ours_ms": round(ours * 1e3, 2), "nnx_jit_ms": round(theirs * 1e3, 2), "ratio": round(theirs / ours, 3)}
        print(f"{size:>5}: jax.jit split/merge {ours * 1e3:7.2f} ms/step   nnx.jit {theirs * 1e3:7.2f} ms/step   ratio {theirs / ours:.2f}")
    print(json.dumps({"benchmark": "jit_step", "ratio": rows["tiny"]["ratio"], "by_size": rows}))


if __name__ == "__main__":
    main()
