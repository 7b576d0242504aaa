"""LoRA adapters put into the model by module surgery: targeted projections become `LoraLinear`.

A `LoraLinear` keeps its base layer's `kernel` and `bias` (so every base parameter path is unchanged and a base's
weights load as they are) and adds `lora_a` (D_in x r) and `lora_b` (r x D_out, zero at init) as `LoraParam`, which
an nnx filter splits from the base. The output is x W (+ b) + (alpha / r) · (dropout(x) A) B, computed unmerged: the
frozen W enters only through x W, so differentiating with respect to the adapters alone never computes W's weight
gradient, which is most of a full step's backward pass.

Dropout draws from a key given to each training call (`dropout_key`), not from state in the model: evaluation, which
gives none, is deterministic, and a step's mask depends on (seed, step) alone, so a resumed run repeats it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling.trainer.config import LoraConfig, ModelConfig
from scaling.trainer.model import Transformer


class LoraParam(nnx.Param):
    """An adapter weight: trained, where the base's nnx.Param are frozen."""


_DROPOUT_KEY: contextvars.ContextVar[jax.Array | None] = contextvars.ContextVar("lora_dropout_key", default=None)


@contextlib.contextmanager
def dropout_key(key: jax.Array | None):
    """Adapters called inside (while tracing) drop their inputs with keys derived from `key`; None: no dropout."""
    token = _DROPOUT_KEY.set(key)
    try:
        yield
    finally:
        _DROPOUT_KEY.reset(token)


class LoraLinear(nnx.Linear):
    """A base nnx.Linear (its kernel and bias, shared, not copied) with a low-rank update beside it."""

    def __init__(self, base: nnx.Linear, config: LoraConfig, index: int):
        super().__init__(base.in_features, base.out_features, use_bias=base.use_bias, dtype=base.dtype,
                         param_dtype=base.param_dtype, rngs=nnx.Rngs(0))
        self.kernel, self.bias = base.kernel, base.bias
        self.scale, self.dropout, self.index = config.scale, config.dropout, index  # index: its own dropout stream
        # Values are set by `init_adapter`; here only shapes matter (surgery runs on an abstract model).
        self.lora_a = LoraParam(jnp.zeros((base.in_features, config.rank), base.param_dtype))
        self.lora_b = LoraParam(jnp.zeros((config.rank, base.out_features), base.param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = super().__call__(x)
        key = _DROPOUT_KEY.get()
        if self.dropout > 0 and key is not None:
            keep = jax.random.bernoulli(jax.random.fold_in(key, self.index), 1.0 - self.dropout, x.shape)
            x = jnp.where(keep, x / (1.0 - self.dropout), 0).astype(x.dtype)
        a, b = self.lora_a[...].astype(y.dtype), self.lora_b[...].astype(y.dtype)
        return y + (self.scale * ((x.astype(y.dtype) @ a) @ b)).astype(y.dtype)


def targeted(model: Transformer, targets: tuple[str, ...]):
    """(layer index, module holding it, attribute name) of each targeted nnx.Linear, in layer order."""
    for layer, block in enumerate(model.blocks):
        for holder in (block.attention, block.mlp):
            for name in targets:
                if isinstance(getattr(holder, name, None), nnx.Linear):
                    yield layer, holder, name


def adapt(model: Transformer, config: LoraConfig) -> Transformer:
    """The model with each targeted projection replaced by a LoraLinear around it (in place)."""
    found = list(targeted(model, config.targets))
    present = {name for _, _, name in found}
    missing = [t for t in config.targets if t not in present]
    if missing:
        raise ValueError(f"adapter target {missing[0]!r} is no projection of this model (it has "
                         f"{', '.join(sorted(_projections(model)))})")
    for index, (_, holder, name) in enumerate(found):
        setattr(holder, name, LoraLinear(getattr(holder, name), config, index))
    return model


def _projections(model: Transformer) -> set[str]:
    block = model.blocks[0]
    return {name for holder in (block.attention, block.mlp) for name, value in vars(holder).items()
            if isinstance(value, nnx.Linear)}


@functools.lru_cache(maxsize=16)
def lora_graph(model_cfg: ModelConfig, config: LoraConfig) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """The adapted model as (graphdef, adapter shapes, base shapes): no weight is initialized. Cached: one graphdef
    object per model and adapter, so the compiled steps of a grid's cells are shared."""
    abstract = nnx.eval_shape(lambda: adapt(Transformer(model_cfg, nnx.Rngs(params=0)), config))
    return nnx.split(abstract, LoraParam, ...)


def init_adapter(model_cfg: ModelConfig, config: LoraConfig, seed: int) -> nnx.State:
    """Fresh adapters, initialized as PEFT does: A uniform in ±1/sqrt(D_in) (kaiming_uniform with a = sqrt(5)),
    B zero, so the adapted model starts equal to its base. Each A draws from (seed, its place in the model)."""
    shapes = lora_graph(model_cfg, config)[1]
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    values = []
    for index, (path, leaf) in enumerate(leaves):
        if any(getattr(key, "key", None) == "lora_a" for key in path):
            bound = 1.0 / math.sqrt(leaf.shape[0])
            key = jax.random.fold_in(jax.random.key(seed), index)
            values.append(jax.random.uniform(key, leaf.shape, leaf.dtype, -bound, bound))
        else:
            values.append(jnp.zeros(leaf.shape, leaf.dtype))
    return jax.tree_util.tree_unflatten(treedef, values)


def adapted_params(base: nnx.State, adapter: nnx.State) -> nnx.State:
    """One state of the adapted model: the base's arrays and the adapter's, shared, not copied."""
    return nnx.merge_state(base, adapter)


def split_adapter(params: nnx.State) -> tuple[nnx.State, nnx.State]:
    """(adapter, base) of an adapted model's state, the inverse of `adapted_params`."""
    adapter, base = nnx.split_state(params, LoraParam, ...)
    return adapter, base


def is_adapted(params: nnx.State) -> bool:
    return any(isinstance(v, LoraParam) for v in jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nnx.Variable)))


def adapter_arrays(adapter: nnx.State) -> dict[tuple[int, str, str], tuple[np.ndarray, np.ndarray]]:
    """{(layer, holder, projection): (A D_in x r, B r x D_out)} of an adapter state, as numpy."""
    flat = {tuple(str(k) for k in path): np.asarray(v) for path, v in nnx.to_flat_state(adapter)}
    out: dict = {}
    for path, value in flat.items():
        # blocks / layer / attention|mlp / projection / lora_a|lora_b
        layer, holder, projection, which = int(path[1]), path[2], path[3], path[-1]
        pair = out.setdefault((layer, holder, projection), [None, None])
        pair[0 if which == "lora_a" else 1] = value
    return {k: (a, b) for k, (a, b) in out.items()}


def merged_params(params: nnx.State, config: LoraConfig) -> nnx.State:
    """The base's state with each adapter folded in, W + (alpha / r) A B: a plain model's parameters."""
    adapter, base = split_adapter(params)
    merged = nnx.to_flat_state(base)
    updates = {}
    for (layer, holder, projection), (a, b) in adapter_arrays(adapter).items():
        updates[("blocks", layer, holder, projection, "kernel")] = config.scale * (a @ b)
    rows = []
    for path, variable in merged:
        key = tuple(int(k) if isinstance(k, int) or str(k).isdigit() else str(k) for k in path)
        value = variable[...] if isinstance(variable, nnx.Variable) else variable
        if key in updates:
            value = (np.asarray(value, np.float32) + updates[key]).astype(np.asarray(value).dtype)
            value = jnp.asarray(value)
        rows.append((path, variable.replace(value) if isinstance(variable, nnx.Variable) else value))
    return nnx.from_flat_state(rows)
