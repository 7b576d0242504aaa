"""Data parallelism over the local devices: the batch split on a "data" mesh axis, the state replicated.

The step is `scaling.trainer.train.train_step`'s own function jitted again with sharding annotations: each
device computes the gradient of its slice of the batch and XLA inserts the all-reduce, so the
result equals the single-device step up to the order of floating-point sums. One exception to the split: XLA's
partitioner cannot divide a custom call, so on CPU the fused attention kernel (`scaling.trainer.fused_attention`)
gets the whole batch all-gathered on every device (checked in the compiled program); the result is the same,
the attention work is not shared. Grids do not use this step on CPU.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scaling.trainer.train import train_step

DATA = "data"  # the mesh axis the batch dimension is split over


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named "data" over the given devices (default: all of jax.devices())."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA,))


def check_divisible(batch_size: int, mesh: Mesh) -> None:
    """Raise ValueError unless every device of the mesh gets an equal slice of the batch."""
    n_devices = mesh.shape[DATA]
    if batch_size % n_devices:
        raise ValueError(f"batch size {batch_size} is not divisible by the {n_devices} devices of the data mesh")


def shard_batch(batch: dict, mesh: Mesh | None = None) -> dict:
    """Place a batch with its leading (batch) dimension split across the mesh's devices."""
    mesh = data_mesh() if mesh is None else mesh
    check_divisible(len(batch["inputs"]), mesh)
    return jax.device_put(batch, NamedSharding(mesh, P(DATA)))


def replicate(tree, mesh: Mesh | None = None):
    """Place a pytree (params, optimizer state) whole on every device of the mesh."""
    mesh = data_mesh() if mesh is None else mesh
    return jax.device_put(tree, NamedSharding(mesh, P()))


@functools.lru_cache(maxsize=None)
def _sharded_step(mesh: Mesh):
    """The train step jitted for one mesh: state replicated in and out, batch split on "data"."""
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P(DATA))
    return jax.jit(
        train_step.__wrapped__,  # the pure function under train_step's own jit
        in_shardings=(replicated, split, replicated),  # state, batch, learning rate
        out_shardings=replicated,
        static_argnums=(2, 3),  # graphdef, optimizer; positional, as jit takes no kwargs with in_shardings
        donate_argnums=0,
    )


def data_parallel_train_step(
    state, batch: dict, graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, lr, mesh: Mesh | None = None
):
    """`train_step` with the batch split across the mesh's devices: new replicated state, {loss, token_acc}."""
    mesh = data_mesh() if mesh is None else mesh
    check_divisible(len(batch["inputs"]), mesh)
    return _sharded_step(mesh)(state, batch, graphdef, optimizer, lr)
