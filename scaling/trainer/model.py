"""A decoder-only transformer in Flax NNX, with the parts of current open base models.

By default RMSNorm, rotary positions (Llama's rotate-half convention), SwiGLU MLP, grouped-query
attention, no biases, tied or untied embeddings. ModelConfig options switch in the parts of Qwen2
(query/key/value biases), Qwen3 (per-head query/key norms), Gemma 3 ((1 + w) norms, norms on the sublayer
outputs too, GELU-gated MLP, scaled embeddings, sliding-window layers with their own rotary base, its own
score scale), GPT-NeoX (LayerNorm, partial rotary, GELU MLP, biases, parallel residual) and GPT-2 (learned
positions, tanh GELU), so one model covers every imported checkpoint.

Attention is restricted to earlier tokens of the same segment, so packed sequences never attend
across examples and padding (segment 0) is never attended to. On CPU it is computed by a fused kernel
that visits only the keys the mask lets each query see (`scaling.trainer.attention`); on accelerators, by
a fused kernel of XLA's, or of cuDNN's on an NVIDIA GPU in half precision.

For generation, `prefill` runs a whole buffer and also returns every layer's keys and values (a
`KVCache`), and `decode` advances one token per row against that cache. Both reuse the weights of
`__call__`, so the parameter tree is the same with or without caching.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling.trainer.attention import causal_attention, dense_attention
from scaling.trainer.config import ModelConfig


def rotary(x_BxTxNxDh: jax.Array, positions_BxT: jax.Array, theta: float) -> jax.Array:
    """Rotate feature pairs (i, i + Dh/2) by position-dependent angles."""
    half = x_BxTxNxDh.shape[-1] // 2
    # transformers' frequencies bit for bit: 1 / theta^(2i/Dh) in float32, computed by numpy at trace time (XLA
    # folds pow differently and differs in the last bit of 11 of 32 at Dh 64, which 30 layers of a pretrained
    # model amplify to 1.7e-4 in the logits).
    exponents = np.arange(0, 2 * half, 2, dtype=np.float32) / np.float32(2 * half)
    inverse_freq = np.float32(1.0) / np.float32(theta) ** exponents
    angles_BxTx1xHalf = positions_BxT[:, :, None, None].astype(jnp.float32) * inverse_freq
    sin, cos = jnp.sin(angles_BxTx1xHalf), jnp.cos(angles_BxTx1xHalf)
    first, second = x_BxTxNxDh[..., :half], x_BxTxNxDh[..., half:]
    rotated = jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
    return rotated.astype(x_BxTxNxDh.dtype)  # float32 angles must not promote bf16 activations


def per_token(layer, x_BxSxD: jax.Array) -> jax.Array:
    """`layer` applied to every token as the rows of one NxD matrix (N = B·S), shaped back to BxSx…: the same
    function of x, to float32 rounding. Why: XLA CPU computes a weight's gradient about 3× slower when its dot
    contracts over two dims (batch and position) than over one (measured on the MLP of `xs` at 32 × 184)."""
    return layer(x_BxSxD.reshape(-1, x_BxSxD.shape[-1])).reshape(*x_BxSxD.shape[:-1], -1)


class LayerCache(NamedTuple):
    """One layer's rotated keys and values for every position of a BxT buffer (cache index = position)."""

    k_BxTxKxDh: jax.Array
    v_BxTxKxDh: jax.Array


KVCache = tuple[LayerCache, ...]  # one entry per block, a plain pytree so it can ride a lax.while_loop


def partial_rotary(x_BxTxNxDh: jax.Array, positions_BxT: jax.Array, theta: float, rotary_dim: int) -> jax.Array:
    """Rotate the first rotary_dim dims of each head (GPT-NeoX rotary_pct); the rest pass through."""
    if rotary_dim == x_BxTxNxDh.shape[-1]:
        return rotary(x_BxTxNxDh, positions_BxT, theta)
    turned = rotary(x_BxTxNxDh[..., :rotary_dim], positions_BxT, theta)
    return jnp.concatenate([turned, x_BxTxNxDh[..., rotary_dim:]], axis=-1)


class OffsetRMSNorm(nnx.Module):
    """RMSNorm scaled by (offset + w), computed in float32 and cast back to the input's dtype, as Gemma's
    norm is (its w starts at 0: the identity)."""

    def __init__(self, width: int, epsilon: float, offset: float):
        self.scale = nnx.Param(jnp.zeros((width,), jnp.float32))
        self.epsilon, self.offset = epsilon, offset

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.epsilon)
        return (normed * (self.offset + self.scale[...].astype(jnp.float32))).astype(x.dtype)


def norm(cfg: ModelConfig, rngs: nnx.Rngs, width: int | None = None) -> nnx.Module:
    """The configured norm over D (or `width`): RMSNorm (scale, offset where the config sets one), or LayerNorm
    (scale and bias)."""
    width = width or cfg.d_model
    if cfg.norm == "rms" and cfg.norm_scale_offset:
        return OffsetRMSNorm(width, cfg.norm_eps, cfg.norm_scale_offset)
    if cfg.norm == "rms":
        return nnx.RMSNorm(width, epsilon=cfg.norm_eps, dtype=cfg.compute_dtype, rngs=rngs)
    # Two-pass variance, as torch computes it: the one-pass E[x²] - E[x]² loses digits imported logits need.
    return nnx.LayerNorm(cfg.d_model, epsilon=cfg.norm_eps, use_fast_variance=False, dtype=cfg.compute_dtype, rngs=rngs)


class Prefilled(nnx.Module):
    """A layer, or the model, that runs whole sequences with `prefill` (which also returns the keys and values
    `decode` continues from) and one token per row with `decode`. Called, it runs the sequences and drops them."""

    def __call__(self, inputs: jax.Array, positions_BxT: jax.Array, segments_BxT: jax.Array,
                 span: int | None = None) -> jax.Array:
        """The output of `prefill` on inputs (tokens BxT for the model, activations BxTxD for a layer)."""
        return self.prefill(inputs, positions_BxT, segments_BxT, span)[0]


class Attention(Prefilled):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, layer: int = 0):
        d, dh = cfg.d_model, cfg.head_dim
        self.cfg = cfg
        self.window, self.theta = cfg.window(layer), cfg.layer_theta(layer)  # static per layer
        self.query_norm = norm(cfg, rngs, dh) if cfg.qk_norm else None
        self.key_norm = norm(cfg, rngs, dh) if cfg.qk_norm else None
        self.query = nnx.Linear(d, cfg.n_heads * dh, use_bias=cfg.qkv_bias, dtype=cfg.compute_dtype, rngs=rngs)
        self.key = nnx.Linear(d, cfg.n_kv_heads * dh, use_bias=cfg.qkv_bias, dtype=cfg.compute_dtype, rngs=rngs)
        self.value = nnx.Linear(d, cfg.n_kv_heads * dh, use_bias=cfg.qkv_bias, dtype=cfg.compute_dtype, rngs=rngs)
        self.out = nnx.Linear(cfg.n_heads * dh, d, use_bias=cfg.out_bias, dtype=cfg.compute_dtype, rngs=rngs)

    def prefill(
        self, x_BxTxD: jax.Array, positions_BxT: jax.Array, segments_BxT: jax.Array, span: int | None = None
    ) -> tuple[jax.Array, LayerCache]:
        """The attention output and this layer's keys and values at every position (see `causal_attention`
        for `span`, the furthest any position looks back)."""
        B, T, _ = x_BxTxD.shape
        q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh = self._project(x_BxTxD, positions_BxT)
        y_BxTxHxDh = causal_attention(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, segments_BxT, span, self.window,
                                      self.cfg.attention_scale)
        return per_token(self.out, y_BxTxHxDh.reshape(B, T, -1)), LayerCache(k_BxTxKxDh, v_BxTxKxDh)

    def decode(self, x_Bx1xD: jax.Array, positions_Bx1: jax.Array, cache: LayerCache) -> tuple[jax.Array, LayerCache]:
        """One new token per row at its own position: write its key and value there, attend to cache[<= position]."""
        B, T = cache.k_BxTxKxDh.shape[:2]
        q_Bx1xHxDh, k_Bx1xKxDh, v_Bx1xKxDh = self._project(x_Bx1xD, positions_Bx1)
        rows_B, at_B = jnp.arange(B), positions_Bx1[:, 0]
        cache = LayerCache(cache.k_BxTxKxDh.at[rows_B, at_B].set(k_Bx1xKxDh[:, 0]),
                           cache.v_BxTxKxDh.at[rows_B, at_B].set(v_Bx1xKxDh[:, 0]))
        # Entries past a row's position hold stale prefill values of its padding: masked, never read.
        seen_BxT = jnp.arange(T)[None, :] <= at_B[:, None]
        if self.window is not None:  # a sliding layer sees its last `window` keys, itself included
            seen_BxT = seen_BxT & (jnp.arange(T)[None, :] > at_B[:, None] - self.window)
        y_Bx1xHxDh = dense_attention(q_Bx1xHxDh, cache.k_BxTxKxDh, cache.v_BxTxKxDh, seen_BxT[:, None, None, :],
                                     self.cfg.attention_scale)
        return per_token(self.out, y_Bx1xHxDh.reshape(B, 1, -1)), cache

    def _project(self, x_BxSxD: jax.Array, positions_BxS: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Rotated queries and keys, and values, of S tokens."""
        B, S, _ = x_BxSxD.shape
        cfg = self.cfg
        q_BxSxHxDh = per_token(self.query, x_BxSxD).reshape(B, S, cfg.n_heads, cfg.head_dim)
        k_BxSxKxDh = per_token(self.key, x_BxSxD).reshape(B, S, cfg.n_kv_heads, cfg.head_dim)
        v_BxSxKxDh = per_token(self.value, x_BxSxD).reshape(B, S, cfg.n_kv_heads, cfg.head_dim)
        if self.query_norm is not None:  # per head, before rotary (Qwen3, Gemma 3)
            q_BxSxHxDh, k_BxSxKxDh = self.query_norm(q_BxSxHxDh), self.key_norm(k_BxSxKxDh)
        if cfg.positions == "rotary":
            q_BxSxHxDh = partial_rotary(q_BxSxHxDh, positions_BxS, self.theta, cfg.rotary_dim)
            k_BxSxKxDh = partial_rotary(k_BxSxKxDh, positions_BxS, self.theta, cfg.rotary_dim)
        return q_BxSxHxDh, k_BxSxKxDh, v_BxSxKxDh


class SwiGLU(nnx.Module):
    """down(act(gate x) * up x): SiLU (Llama's SwiGLU), or the tanh GELU (Gemma's GeGLU)."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.act = jax.nn.silu if cfg.mlp == "swiglu" else functools.partial(jax.nn.gelu, approximate=True)
        self.gate = nnx.Linear(cfg.d_model, cfg.d_ff, use_bias=cfg.mlp_bias, dtype=cfg.compute_dtype, rngs=rngs)
        self.up = nnx.Linear(cfg.d_model, cfg.d_ff, use_bias=cfg.mlp_bias, dtype=cfg.compute_dtype, rngs=rngs)
        self.down = nnx.Linear(cfg.d_ff, cfg.d_model, use_bias=cfg.mlp_bias, dtype=cfg.compute_dtype, rngs=rngs)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        return per_token(lambda x_NxD: self.down(self.act(self.gate(x_NxD)) * self.up(x_NxD)), x_BxTxD)


class GeluMLP(nnx.Module):
    """up, GELU (exact, or the tanh approximation), down: the MLP of GPT-NeoX and GPT-2."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.approximate = cfg.mlp == "gelu_tanh"
        self.up = nnx.Linear(cfg.d_model, cfg.d_ff, use_bias=cfg.mlp_bias, dtype=cfg.compute_dtype, rngs=rngs)
        self.down = nnx.Linear(cfg.d_ff, cfg.d_model, use_bias=cfg.mlp_bias, dtype=cfg.compute_dtype, rngs=rngs)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        return per_token(lambda x_NxD: self.down(jax.nn.gelu(self.up(x_NxD), approximate=self.approximate)), x_BxTxD)


class Block(Prefilled):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, layer: int = 0):
        self.parallel_residual = cfg.parallel_residual
        self.attention_norm = norm(cfg, rngs)
        self.attention = Attention(cfg, rngs, layer)
        self.mlp_norm = norm(cfg, rngs)
        self.mlp = SwiGLU(cfg, rngs) if cfg.mlp in ("swiglu", "geglu_tanh") else GeluMLP(cfg, rngs)
        # Sandwich norms (Gemma 3): each sublayer's output is normed before its residual add.
        self.attention_post_norm = norm(cfg, rngs) if cfg.sandwich_norms else None
        self.mlp_post_norm = norm(cfg, rngs) if cfg.sandwich_norms else None

    def prefill(
        self, x_BxTxD: jax.Array, positions_BxT: jax.Array, segments_BxT: jax.Array, span: int | None = None
    ) -> tuple[jax.Array, LayerCache]:
        y_BxTxD, cache = self.attention.prefill(self.attention_norm(x_BxTxD), positions_BxT, segments_BxT, span)
        return self._mlp_residual(x_BxTxD, y_BxTxD), cache

    def decode(self, x_Bx1xD: jax.Array, positions_Bx1: jax.Array, cache: LayerCache) -> tuple[jax.Array, LayerCache]:
        y_Bx1xD, cache = self.attention.decode(self.attention_norm(x_Bx1xD), positions_Bx1, cache)
        return self._mlp_residual(x_Bx1xD, y_Bx1xD), cache

    def _mlp_residual(self, x_BxSxD: jax.Array, attended_BxSxD: jax.Array) -> jax.Array:
        """Add the attention output and the MLP's: the MLP reads x (parallel) or x plus attention (sequential)."""
        if self.attention_post_norm is not None:
            attended_BxSxD = self.attention_post_norm(attended_BxSxD)
        if self.parallel_residual:
            return x_BxSxD + attended_BxSxD + self._mlp(x_BxSxD)
        x_BxSxD = x_BxSxD + attended_BxSxD
        return x_BxSxD + self._mlp(x_BxSxD)

    def _mlp(self, x_BxSxD: jax.Array) -> jax.Array:
        y_BxSxD = self.mlp(self.mlp_norm(x_BxSxD))
        return y_BxSxD if self.mlp_post_norm is None else self.mlp_post_norm(y_BxSxD)


class Transformer(Prefilled):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        # Unit-variance logits at init with tied embeddings need embeddings of scale 1/sqrt(D).
        init = nnx.initializers.normal(stddev=cfg.d_model**-0.5)
        self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, embedding_init=init, dtype=cfg.compute_dtype, rngs=rngs)
        self.position_embed = None if cfg.positions != "learned" else nnx.Embed(
            cfg.max_len, cfg.d_model, embedding_init=nnx.initializers.normal(0.02), dtype=cfg.compute_dtype, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs, layer) for layer in range(cfg.n_layers)])
        self.final_norm = norm(cfg, rngs)
        self.lm_head = None if cfg.tie_embeddings else nnx.Linear(cfg.d_model, cfg.vocab_size, use_bias=False, dtype=cfg.compute_dtype, rngs=rngs)

    def prefill(
        self, tokens_BxT: jax.Array, positions_BxT: jax.Array, segments_BxT: jax.Array, span: int | None = None
    ) -> tuple[jax.Array, KVCache]:
        """Next-token logits BxTxV and every layer's keys and values, to continue with `decode`. `span` (static)
        bounds how far back any position looks, as no segment is longer (packed rows: the longest example);
        None: the whole row."""
        x_BxTxD = self._embed(tokens_BxT, positions_BxT)
        cache = []
        for block in self.blocks:
            x_BxTxD, layer_cache = block.prefill(x_BxTxD, positions_BxT, segments_BxT, span)
            cache.append(layer_cache)
        return self._head(x_BxTxD), tuple(cache)

    def decode(self, tokens_Bx1: jax.Array, positions_Bx1: jax.Array, cache: KVCache) -> tuple[jax.Array, KVCache]:
        """Next-token logits Bx1xV of one new token per row, which sees cache entries up to its own position.

        Cache index is position, so this continues unpacked rows (positions 0..T-1) only.
        """
        x_Bx1xD = self._embed(tokens_Bx1, positions_Bx1)
        new_cache = []
        for block, layer_cache in zip(self.blocks, cache, strict=True):
            x_Bx1xD, layer_cache = block.decode(x_Bx1xD, positions_Bx1, layer_cache)
            new_cache.append(layer_cache)
        return self._head(x_Bx1xD), tuple(new_cache)

    def _embed(self, tokens_BxS: jax.Array, positions_BxS: jax.Array) -> jax.Array:
        x_BxSxD = self.embed(tokens_BxS)
        if self.cfg.scale_embeddings:  # Gemma: the factor rounded to the compute dtype first, as transformers does
            x_BxSxD = x_BxSxD * jnp.asarray(np.float32(self.cfg.d_model ** 0.5), x_BxSxD.dtype)
        if self.position_embed is None:
            return x_BxSxD
        return x_BxSxD + self.position_embed(positions_BxS)

    def _head(self, x_BxSxD: jax.Array) -> jax.Array:
        x_BxSxD = self.final_norm(x_BxSxD)
        return per_token(self.embed.attend if self.lm_head is None else self.lm_head, x_BxSxD)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def logits(params: nnx.State, tokens_BxT: jax.Array, positions_BxT: jax.Array, segments_BxT: jax.Array,
           graphdef: nnx.GraphDef) -> jax.Array:
    """Next-token logits BxTxV of the model (graphdef, params), compiled once per shape."""
    return nnx.merge(graphdef, params)(tokens_BxT, positions_BxT, segments_BxT)


def init_model(cfg: ModelConfig, seed: int) -> tuple[nnx.GraphDef, nnx.State]:
    """The static graph definition and the parameters of a freshly initialized model."""
    return nnx.split(Transformer(cfg, nnx.Rngs(params=seed)))


def abstract_model(cfg: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """The graph definition and the parameters as shapes only: no initialization, no memory.

    What a model needs where its weights come from elsewhere (a checkpoint, a base): a random
    initialization of a 1B-parameter model would cost gigabytes and seconds for nothing.
    """
    return nnx.split(nnx.eval_shape(lambda: Transformer(cfg, nnx.Rngs(params=0))))


def count_params(params: nnx.State) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
