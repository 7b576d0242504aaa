"""Data parallelism over the local devices: the batch split on a "data" mesh axis, the state replicated.

The step runs under `shard_map`: each device computes the loss sums and gradient of its own rows
(`scaling.trainer.train.loss_sums`), the sums and gradients are added across devices, divided by the
batch's completion-token count, and every device applies the same AdamW update. The result equals the
single-device `train_step` up to the order of floating-point sums. Written per device rather than as one
program with sharding annotations because XLA's partitioner cannot split a custom call: the fused CPU
attention kernel (`scaling.trainer.fused_attention`) would get the whole batch all-gathered on every device.
Grids do not use this step on CPU (the numbers would depend on the device count, and rows would have to be
padded to a multiple of it); `bench_train_vs_torch` measures it.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scaling.trainer.train import apply_gradients, loss_sums

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
def _sharded_step(mesh: Mesh, graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation):
    """The data-parallel step for one mesh, model and optimizer: state replicated in and out, batch split."""

    def loss_and_counts(params, batch: dict):
        loss_sum, correct_sum, count = loss_sums(params, batch, graphdef)
        return loss_sum, (correct_sum, count)

    def per_device(state, batch: dict, lr):
        (loss_sum, (correct_sum, count)), grads = jax.value_and_grad(loss_and_counts, has_aux=True)(state[0], batch)
        loss_sum, correct_sum, count, grads = jax.lax.psum((loss_sum, correct_sum, count, grads), DATA)
        total = jnp.maximum(count, 1.0)
        state = apply_gradients(state, jax.tree.map(lambda g: g / total, grads), optimizer, lr)
        return state, {"loss": loss_sum / total, "token_acc": correct_sum / total}

    # check_vma off: the attention kernel's custom gradient returns plain arrays, which the checker would refuse
    # as gradients of device-varying inputs; the psum above is what makes every output the same on all devices.
    step = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(DATA), P()), out_specs=(P(), P()), check_vma=False)
    return jax.jit(step, donate_argnums=0)


def data_parallel_train_step(
    state, batch: dict, graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, lr, mesh: Mesh | None = None
):
    """`train_step` with the batch split across the mesh's devices: new replicated state, {loss, token_acc}."""
    mesh = data_mesh() if mesh is None else mesh
    check_divisible(len(batch["inputs"]), mesh)
    return _sharded_step(mesh, graphdef, optimizer)(state, batch, lr)
