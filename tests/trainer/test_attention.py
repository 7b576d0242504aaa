"""Blocked causal attention equals the dense reference, values and gradients, on packed rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.trainer import attention
from scaling.trainer.attention import causal_attention, dense_attention, span_bucket
from scaling.trainer.model import attention_mask


def packed_segments(B: int, T: int, longest: int, seed: int) -> np.ndarray:
    """Rows of examples of random lengths up to `longest`, then padding (segment 0), as packing lays them out."""
    rng = np.random.default_rng(seed)
    segments = np.zeros((B, T), np.int32)
    for row in range(B):
        at, segment = 0, 1
        while at < T - 4 and rng.random() > 0.1:
            length = int(rng.integers(1, longest + 1))
            segments[row, at:at + length] = segment
            at, segment = at + length, segment + 1
    return segments


@pytest.mark.parametrize("B, T, H, K, longest, span", [
    (3, 144, 4, 4, 60, None),  # the reference grid's rows, whole-row reach
    (3, 144, 4, 4, 60, 64),  # the same, reach cut at the longest example's bucket
    (2, 77, 4, 2, 77, None),  # grouped-query heads, a length no block size divides
    (2, 40, 2, 1, 9, 16),  # multi-query heads, short examples in a row
    (1, 8, 2, 2, 8, None),  # shorter than one block
])
def test_blocked_attention_equals_the_dense_one_values_and_gradients(B, T, H, K, longest, span):
    keys = jax.random.split(jax.random.key(T), 4)
    q = jax.random.normal(keys[0], (B, T, H, 16))
    k, v = (jax.random.normal(key, (B, T, K, 16)) for key in keys[1:3])
    mask = attention_mask(jnp.asarray(packed_segments(B, T, longest, seed=T)))
    cotangent = jax.random.normal(keys[3], (B, T, H, 16))

    def loss(fn):
        return lambda q, k, v: (fn(q, k, v) * cotangent).sum()

    blocked = lambda q, k, v: causal_attention(q, k, v, mask, span)  # noqa: E731
    dense = lambda q, k, v: dense_attention(q, k, v, mask)  # noqa: E731
    np.testing.assert_allclose(jax.jit(blocked)(q, k, v), jax.jit(dense)(q, k, v), rtol=1e-5, atol=1e-5)
    for ours, reference in zip(jax.jit(jax.grad(loss(blocked), argnums=(0, 1, 2)))(q, k, v),
                               jax.jit(jax.grad(loss(dense), argnums=(0, 1, 2)))(q, k, v)):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_a_span_too_short_for_the_rows_changes_the_result():
    """The span is a promise about the data: break it and the blocks miss keys the mask allows (so the
    equality above is not vacuous)."""
    B, T = 1, 64
    q, k, v = (jax.random.normal(key, (B, T, 2, 16)) for key in jax.random.split(jax.random.key(0), 3))
    mask = attention_mask(jnp.ones((B, T), jnp.int32))  # one 64-token example
    assert not np.allclose(causal_attention(q, k, v, mask, span=16), dense_attention(q, k, v, mask), atol=1e-3)


def test_blocks_leave_out_the_scores_a_causal_row_never_uses(monkeypatch):
    shapes = []
    block = attention._attend_block

    def recording(q, k, v, mask):
        shapes.append((q.shape[1], k.shape[1]))
        return block(q, k, v, mask)

    monkeypatch.setattr(attention, "_attend_block", recording)
    q = k = v = jnp.ones((1, 144, 2, 16))
    mask = attention_mask(jnp.ones((1, 144), jnp.int32))
    causal_attention(q, k, v, mask)
    assert shapes == [(36, 36), (36, 72), (36, 108), (36, 144)]  # 10 of the 16 36×36 score blocks
    shapes.clear()
    causal_attention(q, k, v, mask, span=32)
    assert shapes == [(36, 36), (36, 67), (36, 67), (36, 67)]  # each block reaches 31 keys before its first query


def test_span_buckets_are_few_and_only_where_they_pay():
    assert span_bucket(77, 144) is None  # over half the row: the whole row, one compilation with the others
    assert span_bucket(60, 144) == 64 and span_bucket(33, 144) == 64 and span_bucket(32, 144) == 32
    assert span_bucket(1, 144) == 1
