"""SFT of one cell: a pure, jitted train step and a loop that yields the model at each budget.

Steps compile once per model shape: the graph definition and the optimizer are static arguments,
and the optimizer for a given setting is built once (cached), so cells of a grid share compilations.
"""

from __future__ import annotations

import functools
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from scaling.batches import TokenArrays
from scaling.config import ModelConfig, TrainConfig
from scaling.model import init_model


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the cell stops with this reason instead of crashing the grid."""


def token_losses(logits_BxTxV: jax.Array, targets_BxT: jax.Array) -> jax.Array:
    """Cross-entropy of each target token, BxT."""
    log_probs_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32))
    return -jnp.take_along_axis(log_probs_BxTxV, targets_BxT[..., None], axis=-1)[..., 0]


def masked_loss(params: nnx.State, batch: dict, graphdef: nnx.GraphDef) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy over completion tokens, and the token accuracy there."""
    model = nnx.merge(graphdef, params)
    logits_BxTxV = model(batch["inputs"], batch["positions"], batch["segments"])
    weights_BxT = batch["loss_mask"]
    total = jnp.maximum(weights_BxT.sum(), 1.0)
    loss = (token_losses(logits_BxTxV, batch["targets"]) * weights_BxT).sum() / total
    correct_BxT = logits_BxTxV.argmax(-1) == batch["targets"]
    return loss, (correct_BxT * weights_BxT).sum() / total


@functools.lru_cache(maxsize=None)
def build_optimizer(lr: float, warmup_steps: int, weight_decay: float, grad_clip: float) -> optax.GradientTransformation:
    """AdamW after a global-norm clip; linear warmup then a constant rate. Cached: same args, same object."""
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, lr, max(warmup_steps, 1)), optax.constant_schedule(lr)], [max(warmup_steps, 1)]
    )
    decay_matrices_only = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731 no decay on norms
    return optax.chain(
        optax.clip_by_global_norm(grad_clip),
        optax.adamw(schedule, b1=0.9, b2=0.95, weight_decay=weight_decay, mask=decay_matrices_only),
    )


def optimizer_for(cfg: TrainConfig) -> optax.GradientTransformation:
    return build_optimizer(cfg.lr, cfg.warmup_steps, cfg.weight_decay, cfg.grad_clip)


@functools.partial(jax.jit, static_argnames=("graphdef", "optimizer"), donate_argnums=0)
def train_step(state, batch: dict, graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation):
    """One AdamW step on a batch: (params, opt_state) -> new state, {loss, token_acc}."""
    params, opt_state = state
    (loss, token_acc), grads = jax.value_and_grad(masked_loss, has_aux=True)(params, batch, graphdef)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state), {"loss": loss, "token_acc": token_acc}


def batch_indices(n_examples: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Rows of step `step`: consecutive slices of per-epoch permutations, reproducible from (seed, step)."""
    start = step * batch_size
    rows = []
    for position in range(start, start + batch_size):
        epoch, offset = divmod(position, n_examples)
        rows.append(_epoch_order(n_examples, seed, epoch)[offset])
    return np.asarray(rows)


@functools.lru_cache(maxsize=8)
def _epoch_order(n_examples: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n_examples)


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    data: TokenArrays,
    on_step=None,
) -> Iterator[tuple[int, nnx.GraphDef, nnx.State]]:
    """Train one model, yielding (step, graphdef, params) at each budget of train_cfg.budgets.

    `on_step(step, loss)` is called with the loss of the step before the latest one, so reading it
    never waits for the step that was just dispatched.
    """
    graphdef, params = init_model(model_cfg, train_cfg.seed)
    optimizer = optimizer_for(train_cfg)
    state = (params, optimizer.init(params))
    pending_loss = None
    for step in range(1, train_cfg.total_steps + 1):
        batch = data.take(batch_indices(len(data), train_cfg.batch_size, step - 1, train_cfg.seed))
        state, metrics = train_step(state, batch, graphdef=graphdef, optimizer=optimizer)
        if pending_loss is not None and on_step is not None:
            on_step(step - 1, float(pending_loss))
        pending_loss = metrics["loss"]
        if step in train_cfg.budgets:
            loss = float(pending_loss)
            if not np.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss} at step {step}")
            # A copy: the trunk's buffers are donated to the next step while the caller evaluates.
            yield step, graphdef, jax.tree.map(jnp.copy, state[0])
    if on_step is not None and pending_loss is not None:
        on_step(train_cfg.total_steps, float(pending_loss))
