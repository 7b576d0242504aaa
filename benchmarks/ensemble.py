"""Many models of one shape per device: the train step vmapped over a leading member axis M.

Seeds of a cell, or cells whose ModelConfig matches and whose data differ, are members of one
ensemble: their params and optimizer states are stacked on axis 0, and one compiled step trains all
of them, each on its own batch (or all on the same one); batches of cells with different data are
joined with `stack`. The members share one optimizer (a static argument), so cells that differ in
optimizer settings need one ensemble each.

Member i follows the trajectory `scaling.trainer.train.train_step` gives it alone on the same batches: its
loss and gradients at a given state are bit-identical, but XLA orders the sum inside the
global-norm clip differently once vmapped, so states differ from the lone run's by float32 rounding.

Not in the package: a grid trains each cell alone today. bench_ensemble.py measures what vmapping would
save and tests/trainer/test_ensemble.py checks the members against lone runs, for the day a grid uses it.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from scaling.trainer.batches import TokenArrays
from scaling.trainer.config import ModelConfig
from scaling.trainer.model import init_model
from scaling.trainer.train import batch_indices, train_step


def stack(trees: Sequence):
    """Pytrees of one structure to one pytree whose leaves gain a leading axis M = len(trees)."""
    assert trees, "stack needs at least one tree"
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def member(tree, i: int):
    """Member i of a stacked pytree: every leaf indexed on its leading axis."""
    return jax.tree.map(lambda leaf: leaf[i], tree)


def init_ensemble(model_cfg: ModelConfig, seeds: Sequence[int]) -> tuple[nnx.GraphDef, nnx.State]:
    """The shared graph definition and params of one model per seed, stacked on a leading axis M.

    Member i is exactly `init_model(model_cfg, seeds[i])`.
    """
    if not seeds:
        raise ValueError("init_ensemble needs at least one seed")
    graphdefs, params = zip(*(init_model(model_cfg, seed) for seed in seeds))
    assert all(g == graphdefs[0] for g in graphdefs), "members of one ModelConfig share a graph definition"
    return graphdefs[0], stack(params)


def init_ensemble_state(params_M: nnx.State, optimizer: optax.GradientTransformation):
    """(params, opt_state) of an ensemble, each member's optimizer state initialized from its own params.

    vmapped so that shape-dependent choices (no weight decay on 1-D norms) see one member's shapes.
    """
    return params_M, jax.vmap(optimizer.init)(params_M)


def member_batches(data: TokenArrays, batch_size: int, step: int, seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """Batch `step` of each seed's data order, stacked MxBxT: the batches `train` would draw per seed."""
    rows_MxB = np.stack([batch_indices(len(data), batch_size, step, seed) for seed in seeds])
    return data.take(rows_MxB)


@functools.partial(jax.jit, static_argnames=("graphdef", "optimizer"), donate_argnums=0)
def ensemble_train_step(states_M, batches_M: dict, graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, lr):
    """One AdamW step of every member: stacked (params, opt_state) -> new stacked state, {loss, token_acc} of shape M.

    `batches_M` holds one batch per member (leaves MxBxT), or a single batch (leaves BxT) that
    every member trains on. Ranks are static, so each case compiles once per shape.
    """
    batch_axis = 0 if batches_M["inputs"].ndim == 3 else None
    # train_step is itself jitted; traced here it is inlined, and only this outer jit donates.
    step = lambda state, batch: train_step(state, batch, graphdef=graphdef, optimizer=optimizer, lr=lr)  # noqa: E731
    return jax.vmap(step, in_axes=(0, batch_axis))(states_M, batches_M)
