"""Attention that computes only the scores a causal mask can reach, chosen per backend.

A transformer's training rows are causal, and when packed, no position looks further back than the
longest example in the row (`span`). The dense form computes every one of the T×T scores and masks
most away; on XLA CPU, with the small heads of the models a grid sweeps, those scores are most of a
train step. `causal_attention` picks, for the same mask and to float32 rounding:
- on a GPU, with half-precision inputs, cuDNN's flash attention (causal, the segments as a mask), which
  skips the blocks above the diagonal (`SCALING_GPU_ATTENTION=xla` turns it off; `benchmarks/gpu_check.py`
  measures both); otherwise on accelerators, jax's dense `dot_product_attention`, fused by XLA;
- on CPU, the fused C++ kernel (`scaling.trainer.fused_attention`), which visits only each query's own
  segment up to itself, where it could be built;
- else `blocked_attention`: the queries split into blocks, each given only the keys from `span` before
  its first query up to its last. The scores left out are exactly the ones the mask zeroes, so within
  each block the softmax is the dense one; the rest of the mask (segments, padding) is applied inside.

A sliding-window layer (`window`: a query sees its last `window` keys, itself included) narrows the same
mask further; every form above takes it (the fused kernel starts each query's range later, the blocked
form bounds its span by it).

Letters: B batch, S queries, T keys, H query heads, K key/value heads (H = K·G, grouped-query), Dh head
width.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp

from scaling.trainer import fused_attention as fused

BLOCKS = 4  # query blocks per row: measured on XLA CPU, fewer leave masked work, more add per-block overhead
MIN_BLOCK = 16  # no block shorter than this: below it the per-block overhead outweighs the scores saved


def dense_attention(q_BxSxHxDh: jax.Array, k_BxTxKxDh: jax.Array, v_BxTxKxDh: jax.Array,
                    mask_Bx1xSxT: jax.Array, scale: float | None = None) -> jax.Array:
    """The reference: every score computed, then masked (grouped-query heads shared by jax); scores scaled by
    `scale` (None: 1/sqrt(Dh))."""
    return jax.nn.dot_product_attention(q_BxSxHxDh, k_BxTxKxDh, v_BxTxKxDh, mask=mask_Bx1xSxT, scale=scale)


def attention_mask(segments_BxT: jax.Array, window: int | None = None) -> jax.Array:
    """Causal, same-segment, non-padding mask of shape Bx1xTxT (every token may see itself), within the last
    `window` keys of each query where given."""
    T = segments_BxT.shape[1]
    return segment_mask(segments_BxT) & causal_band(T, window)


def causal_band(T: int, window: int | None = None) -> jax.Array:
    """TxT: key j seen by query t iff j <= t (and j > t - window under a sliding window)."""
    causal_TxT = jnp.tril(jnp.ones((T, T), dtype=bool))
    return causal_TxT if window is None else causal_TxT & ~jnp.tril(jnp.ones((T, T), dtype=bool), -window)


def segment_mask(segments_BxT: jax.Array) -> jax.Array:
    """`attention_mask` without its causal part (Bx1xTxT): a key of the query's own segment, not padding, or
    the query itself, so that no row is left with every key masked (a padding query sees only itself)."""
    T = segments_BxT.shape[1]
    same_BxTxT = segments_BxT[:, :, None] == segments_BxT[:, None, :]
    key_is_real_Bx1xT = (segments_BxT != 0)[:, None, :]
    return ((same_BxTxT & key_is_real_Bx1xT) | jnp.eye(T, dtype=bool))[:, None]


def causal_attention(q_BxTxHxDh: jax.Array, k_BxTxKxDh: jax.Array, v_BxTxKxDh: jax.Array, segments_BxT: jax.Array,
                     span: int | None = None, window: int | None = None, scale: float | None = None) -> jax.Array:
    """Attention under `attention_mask(segments_BxT, window)`, scores scaled by `scale` (None: 1/sqrt(Dh));
    `span` (static) is the furthest any position may look back (None: the whole row), which only the blocked
    form needs."""
    if jax.default_backend() != "cpu":  # accelerators: a fused dense kernel beats slicing into blocks
        if _cudnn_chosen(q_BxTxHxDh):
            return cudnn_attention(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, segments_BxT, window, scale)
        return dense_attention(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, attention_mask(segments_BxT, window), scale)
    if q_BxTxHxDh.shape[-1] <= fused.MAX_WIDTH and fused.available():
        return fused.fused_attention(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, segments_BxT, window, scale)
    if window is not None:
        span = window if span is None else min(span, window)
    return blocked_attention(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, attention_mask(segments_BxT, window), span, scale)


def cudnn_attention(q_BxTxHxDh: jax.Array, k_BxTxKxDh: jax.Array, v_BxTxKxDh: jax.Array,
                    segments_BxT: jax.Array, window: int | None = None, scale: float | None = None) -> jax.Array:
    """`attention_mask(segments_BxT, window)` through cuDNN's fused flash attention (GPU, bf16 or fp16 inputs
    only): causal as cuDNN's own mask type, so it skips the blocks above the diagonal; segments, padding and
    the sliding window as a mask."""
    mask_Bx1xTxT = segment_mask(segments_BxT)
    if window is not None:
        mask_Bx1xTxT = mask_Bx1xTxT & causal_band(segments_BxT.shape[1], window)
    return jax.nn.dot_product_attention(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, mask=mask_Bx1xTxT, scale=scale,
                                        is_causal=True, implementation="cudnn")


def _cudnn_chosen(q_BxTxHxDh: jax.Array) -> bool:
    """cuDNN where it can take these inputs, unless SCALING_GPU_ATTENTION=xla: an NVIDIA GPU of compute
    capability 8.0 or later, half precision (cuDNN's flash attention has no float32 form) and a head width
    that is a multiple of 8 up to 128. Measured on an H200 (gpu_check): one layer 1.5 ms against XLA's 5.7,
    the 85M model's bf16 step 56 ms against 105."""
    if os.environ.get("SCALING_GPU_ATTENTION", "cudnn") != "cudnn" or jax.default_backend() != "gpu":
        return False
    head_width = q_BxTxHxDh.shape[-1]
    return (_nvidia_capability() >= 8.0 and q_BxTxHxDh.dtype in (jnp.bfloat16, jnp.float16)
            and head_width % 8 == 0 and head_width <= 128)


def _nvidia_capability() -> float:
    """The first device's CUDA compute capability ("9.0" on Hopper), or 0 where it has none (a ROCm GPU names
    its architecture instead, e.g. "gfx90a")."""
    try:
        return float(getattr(jax.devices()[0], "compute_capability", "0"))
    except ValueError:
        return 0.0


def blocked_attention(q_BxTxHxDh: jax.Array, k_BxTxKxDh: jax.Array, v_BxTxKxDh: jax.Array, mask_Bx1xTxT: jax.Array,
                      span: int | None = None, scale: float | None = None) -> jax.Array:
    """Attention for a mask that is causal (query t sees keys <= t) and reaches at most `span` positions back
    (None: the whole row), in XLA; the mask may remove more (segments, padding), never add."""
    B, T, H, Dh = q_BxTxHxDh.shape
    K = k_BxTxKxDh.shape[2]
    if K != H:  # grouped-query: each key/value head serves H/K query heads (a copy is cheap next to the scores)
        k_BxTxKxDh, v_BxTxKxDh = (jnp.repeat(x, H // K, axis=2) for x in (k_BxTxKxDh, v_BxTxKxDh))
    block = max(MIN_BLOCK, math.ceil(T / BLOCKS))
    reach = T if span is None else min(T, span)
    outputs = []
    for start in range(0, T, block):
        end = min(T, start + block)
        first_key = max(0, start - reach + 1)  # the earliest key any query of this block may see
        outputs.append(_attend_block(q_BxTxHxDh[:, start:end], k_BxTxKxDh[:, first_key:end],
                                     v_BxTxKxDh[:, first_key:end], mask_Bx1xTxT[:, :, start:end, first_key:end],
                                     scale))
    return jnp.concatenate(outputs, axis=1)


def _attend_block(q_BxSxHxDh: jax.Array, k_BxTxHxDh: jax.Array, v_BxTxHxDh: jax.Array,
                  mask_Bx1xSxT: jax.Array, scale: float | None) -> jax.Array:
    """Softmax attention of one block of queries over its keys: BxSxHxDh."""
    scale = q_BxSxHxDh.shape[-1] ** -0.5 if scale is None else scale
    scores_BxHxSxT = jnp.einsum("bshd,bthd->bhst", q_BxSxHxDh, k_BxTxHxDh).astype(jnp.float32) * scale
    # The same large negative as jax's dense attention: a masked score's weight is exactly zero.
    scores_BxHxSxT = jnp.where(mask_Bx1xSxT, scores_BxHxSxT, jnp.finfo(jnp.float32).min)
    weights_BxHxSxT = jax.nn.softmax(scores_BxHxSxT, axis=-1).astype(v_BxTxHxDh.dtype)
    return jnp.einsum("bhst,bthd->bshd", weights_BxHxSxT, v_BxTxHxDh)


def span_bucket(span: int, row_length: int) -> int | None:
    """The span to compile attention for: None (the whole row) unless the longest example is at most half a
    row, then rounded up to a power of two, so that cells whose pools differ a little share a compilation.
    A span near the row length saves little and would cost a compilation of its own."""
    if 2 * span > row_length:
        return None
    return 1 << max(0, math.ceil(math.log2(max(1, span))))
