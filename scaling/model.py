"""A decoder-only transformer in Flax NNX, with the parts of current open base models.

RMSNorm, rotary positions (Llama's rotate-half convention), SwiGLU MLP, grouped-query attention,
tied or untied embeddings. Attention is restricted to earlier tokens of the same segment, so packed
sequences never attend across examples and padding (segment 0) is never attended to.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.config import ModelConfig


def rotary(x_BxTxNxDh: jax.Array, positions_BxT: jax.Array, theta: float) -> jax.Array:
    """Rotate feature pairs (i, i + Dh/2) by position-dependent angles."""
    half = x_BxTxNxDh.shape[-1] // 2
    inverse_freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles_BxTx1xHalf = positions_BxT[:, :, None, None].astype(jnp.float32) * inverse_freq
    sin, cos = jnp.sin(angles_BxTx1xHalf), jnp.cos(angles_BxTx1xHalf)
    first, second = x_BxTxNxDh[..., :half], x_BxTxNxDh[..., half:]
    return jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


def attention_mask(segments_BxT: jax.Array) -> jax.Array:
    """Causal, same-segment, non-padding mask of shape Bx1xTxT (every token may see itself)."""
    T = segments_BxT.shape[1]
    causal_TxT = jnp.tril(jnp.ones((T, T), dtype=bool))
    same_BxTxT = segments_BxT[:, :, None] == segments_BxT[:, None, :]
    key_is_real_Bx1xT = (segments_BxT != 0)[:, None, :]
    mask_BxTxT = (causal_TxT & same_BxTxT & key_is_real_Bx1xT) | jnp.eye(T, dtype=bool)
    return mask_BxTxT[:, None]


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, dh = cfg.d_model, cfg.head_dim
        self.cfg = cfg
        self.query = nnx.Linear(d, cfg.n_heads * dh, use_bias=False, rngs=rngs)
        self.key = nnx.Linear(d, cfg.n_kv_heads * dh, use_bias=False, rngs=rngs)
        self.value = nnx.Linear(d, cfg.n_kv_heads * dh, use_bias=False, rngs=rngs)
        self.out = nnx.Linear(cfg.n_heads * dh, d, use_bias=False, rngs=rngs)

    def __call__(self, x_BxTxD: jax.Array, positions_BxT: jax.Array, mask_Bx1xTxT: jax.Array) -> jax.Array:
        B, T, _ = x_BxTxD.shape
        cfg = self.cfg
        q_BxTxHxDh = self.query(x_BxTxD).reshape(B, T, cfg.n_heads, cfg.head_dim)
        k_BxTxKxDh = self.key(x_BxTxD).reshape(B, T, cfg.n_kv_heads, cfg.head_dim)
        v_BxTxKxDh = self.value(x_BxTxD).reshape(B, T, cfg.n_kv_heads, cfg.head_dim)
        q_BxTxHxDh = rotary(q_BxTxHxDh, positions_BxT, cfg.rope_theta)
        k_BxTxKxDh = rotary(k_BxTxKxDh, positions_BxT, cfg.rope_theta)
        # dot_product_attention shares each key/value head across H/K query heads (grouped-query).
        y_BxTxHxDh = jax.nn.dot_product_attention(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, mask=mask_Bx1xTxT)
        return self.out(y_BxTxHxDh.reshape(B, T, cfg.n_heads * cfg.head_dim))


class SwiGLU(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.gate = nnx.Linear(cfg.d_model, cfg.d_ff, use_bias=False, rngs=rngs)
        self.up = nnx.Linear(cfg.d_model, cfg.d_ff, use_bias=False, rngs=rngs)
        self.down = nnx.Linear(cfg.d_ff, cfg.d_model, use_bias=False, rngs=rngs)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        return self.down(jax.nn.silu(self.gate(x_BxTxD)) * self.up(x_BxTxD))


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.attention_norm = nnx.RMSNorm(cfg.d_model, rngs=rngs)
        self.attention = Attention(cfg, rngs)
        self.mlp_norm = nnx.RMSNorm(cfg.d_model, rngs=rngs)
        self.mlp = SwiGLU(cfg, rngs)

    def __call__(self, x_BxTxD: jax.Array, positions_BxT: jax.Array, mask_Bx1xTxT: jax.Array) -> jax.Array:
        x_BxTxD = x_BxTxD + self.attention(self.attention_norm(x_BxTxD), positions_BxT, mask_Bx1xTxT)
        return x_BxTxD + self.mlp(self.mlp_norm(x_BxTxD))


class Transformer(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        # Unit-variance logits at init with tied embeddings need embeddings of scale 1/sqrt(D).
        init = nnx.initializers.normal(stddev=cfg.d_model**-0.5)
        self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, embedding_init=init, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.final_norm = nnx.RMSNorm(cfg.d_model, rngs=rngs)
        self.lm_head = None if cfg.tie_embeddings else nnx.Linear(cfg.d_model, cfg.vocab_size, use_bias=False, rngs=rngs)

    def __call__(self, tokens_BxT: jax.Array, positions_BxT: jax.Array, segments_BxT: jax.Array) -> jax.Array:
        """Next-token logits BxTxV."""
        mask_Bx1xTxT = attention_mask(segments_BxT)
        x_BxTxD = self.embed(tokens_BxT)
        for block in self.blocks:
            x_BxTxD = block(x_BxTxD, positions_BxT, mask_Bx1xTxT)
        x_BxTxD = self.final_norm(x_BxTxD)
        if self.lm_head is None:
            return self.embed.attend(x_BxTxD)
        return self.lm_head(x_BxTxD)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def logits(params: nnx.State, tokens_BxT: jax.Array, positions_BxT: jax.Array, segments_BxT: jax.Array,
           graphdef: nnx.GraphDef) -> jax.Array:
    """Next-token logits BxTxV of the model (graphdef, params), compiled once per shape."""
    return nnx.merge(graphdef, params)(tokens_BxT, positions_BxT, segments_BxT)


def init_model(cfg: ModelConfig, seed: int) -> tuple[nnx.GraphDef, nnx.State]:
    """The static graph definition and the parameters of a freshly initialized model."""
    return nnx.split(Transformer(cfg, nnx.Rngs(params=seed)))


def count_params(params: nnx.State) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
