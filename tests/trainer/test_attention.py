"""Both CPU forms of causal attention, the fused kernel and XLA's blocked one, equal the dense reference,
values and gradients, on packed and padded rows; the masks the forms (and cuDNN on a GPU) are given say
what packing means."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.trainer import attention, fused_attention
from scaling.trainer.attention import (attention_mask, blocked_attention, causal_attention, dense_attention, segment_mask,
                                       span_bucket)


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
    segments = jnp.asarray(packed_segments(B, T, longest, seed=T))
    mask = attention_mask(segments)
    assert_equals_dense(lambda q, k, v: blocked_attention(q, k, v, mask, span), segments, (B, T, H, K, 16))


def assert_equals_dense(form, segments, shape: tuple[int, int, int, int, int], window: int | None = None,
                        scale: float | None = None) -> None:
    """form(q, k, v) against jax's dense attention under the same mask: values, and gradients of q, k and v."""
    B, T, H, K, Dh = shape
    keys = jax.random.split(jax.random.key(T), 4)
    q = jax.random.normal(keys[0], (B, T, H, Dh))
    k, v = (jax.random.normal(key, (B, T, K, Dh)) for key in keys[1:3])
    cotangent = jax.random.normal(keys[3], (B, T, H, Dh))
    mask = attention_mask(segments, window)

    def loss(fn):
        return lambda q, k, v: (fn(q, k, v) * cotangent).sum()

    dense = lambda q, k, v: dense_attention(q, k, v, mask, scale)  # noqa: E731
    np.testing.assert_allclose(jax.jit(form)(q, k, v), jax.jit(dense)(q, k, v), rtol=1e-5, atol=1e-5)
    for ours, reference in zip(jax.jit(jax.grad(loss(form), argnums=(0, 1, 2)))(q, k, v),
                               jax.jit(jax.grad(loss(dense), argnums=(0, 1, 2)))(q, k, v), strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_a_span_too_short_for_the_rows_changes_the_result():
    """The span is a promise about the data: break it and the blocks miss keys the mask allows (so the
    equality above is not vacuous)."""
    B, T = 1, 64
    q, k, v = (jax.random.normal(key, (B, T, 2, 16)) for key in jax.random.split(jax.random.key(0), 3))
    mask = attention_mask(jnp.ones((B, T), jnp.int32))  # one 64-token example
    assert not np.allclose(blocked_attention(q, k, v, mask, span=16), dense_attention(q, k, v, mask), atol=1e-3)


def test_blocks_leave_out_the_scores_a_causal_row_never_uses(monkeypatch):
    shapes = []
    block = attention._attend_block

    def recording(q, k, v, mask, scale):
        shapes.append((q.shape[1], k.shape[1]))
        return block(q, k, v, mask, scale)

    monkeypatch.setattr(attention, "_attend_block", recording)
    q = k = v = jnp.ones((1, 144, 2, 16))
    mask = attention_mask(jnp.ones((1, 144), jnp.int32))
    blocked_attention(q, k, v, mask)
    assert shapes == [(36, 36), (36, 72), (36, 108), (36, 144)]  # 10 of the 16 36×36 score blocks
    shapes.clear()
    blocked_attention(q, k, v, mask, span=32)
    assert shapes == [(36, 36), (36, 67), (36, 67), (36, 67)]  # each block reaches 31 keys before its first query


def test_span_buckets_are_few_and_only_where_they_pay():
    assert span_bucket(77, 144) is None  # over half the row: the whole row, one compilation with the others
    assert span_bucket(60, 144) == 64 and span_bucket(33, 144) == 64 and span_bucket(32, 144) == 32
    assert span_bucket(1, 144) == 1


def test_the_fused_kernel_builds_on_this_machine():
    """CI machines have a C++ compiler: a kernel that stopped building would otherwise only show as slowness."""
    assert fused_attention.available()
    assert fused_attention.library_path().exists()


def gapped_segments(B: int, T: int, seed: int) -> np.ndarray:
    """Segment ids that reappear after other segments and padding in between: the kernel's ranges start at an
    id's first occurrence, and the mask inside them must still hide the other ids."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([0, 1, 2, 3], np.int32), size=(B, T), p=[0.1, 0.5, 0.3, 0.1])


@pytest.mark.parametrize("B, T, H, K, Dh, layout", [
    (3, 144, 4, 4, 16, "packed"),  # the reference grid's rows
    (2, 77, 4, 2, 16, "packed"),  # grouped-query heads, a length no vector divides
    (2, 40, 2, 1, 8, "packed"),  # multi-query heads, the narrowest head
    (2, 50, 2, 2, 24, "packed"),  # a head width the kernel pads (to 32)
    (1, 33, 2, 2, 64, "gapped"),  # ids that come back after a gap
    (2, 9, 3, 3, 32, "gapped"),
    (1, 1, 1, 1, 16, "packed"),  # a single position
])
def test_fused_attention_equals_the_dense_one_values_and_gradients(B, T, H, K, Dh, layout):
    segments = jnp.asarray(packed_segments(B, T, 60, seed=T) if layout == "packed" else gapped_segments(B, T, seed=T))
    assert_equals_dense(lambda q, k, v: fused_attention.fused_attention(q, k, v, segments), segments, (B, T, H, K, Dh))


@pytest.mark.parametrize("B, T, H, K, Dh, window, layout", [
    (2, 77, 4, 1, 32, 16, "packed"),  # rows longer than the window, examples longer and shorter than it
    (1, 70, 2, 2, 64, 9, "gapped"),  # a window that is no multiple of the kernel's vectors
    (1, 40, 2, 1, 256, 5, "packed"),  # Gemma 3's head width
    (1, 20, 2, 2, 16, 1, "packed"),  # a window of one: each query sees only itself
])
def test_sliding_windows_equal_the_dense_mask_in_every_cpu_form(B, T, H, K, Dh, window, layout):
    segments = jnp.asarray(packed_segments(B, T, 60, seed=T) if layout == "packed" else gapped_segments(B, T, seed=T))
    # A scale of the model's own (Gemma's query_pre_attn_scalar), not 1/sqrt(Dh); at Dh 256 Gemma 3's own,
    # 256 ** -0.5 (a larger one sharpens the softmax until float32 rounding of the gradients exceeds 1e-5).
    scale = 0.3 if Dh < 256 else 256 ** -0.5
    assert_equals_dense(lambda q, k, v: fused_attention.fused_attention(q, k, v, segments, window, scale), segments,
                        (B, T, H, K, Dh), window, scale)
    mask = attention_mask(segments, window)
    assert_equals_dense(lambda q, k, v: blocked_attention(q, k, v, mask, window, scale), segments, (B, T, H, K, Dh),
                        window, scale)
    band = np.asarray(attention_mask(jnp.ones((1, T), jnp.int32), window))[0, 0]
    assert band.sum(1).tolist() == [min(t + 1, window) for t in range(T)]  # the last `window` keys, itself included


def test_fused_attention_vmapped_is_each_member_computed_alone_bit_for_bit():
    """Ensembles vmap the train step over members with shared rows: each member's numbers are its own."""
    M, B, T, H, Dh = 3, 2, 30, 2, 16
    q, k, v = (jax.random.normal(key, (M, B, T, H, Dh)) for key in jax.random.split(jax.random.key(0), 3))
    segments = jnp.asarray(packed_segments(B, T, 12, seed=1))
    cotangent = jax.random.normal(jax.random.key(1), (M, B, T, H, Dh))

    def outputs_and_gradients(q, k, v, cotangent):
        out, pullback = jax.vjp(lambda q, k, v: fused_attention.fused_attention(q, k, v, segments), q, k, v)
        return out, pullback(cotangent)

    together = jax.jit(jax.vmap(outputs_and_gradients))(q, k, v, cotangent)
    for member in range(M):
        alone = jax.jit(outputs_and_gradients)(q[member], k[member], v[member], cotangent[member])
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(together), strict=True):
            np.testing.assert_array_equal(a, b[member])


def test_masks_let_a_query_see_its_own_example_up_to_itself_and_padding_only_itself():
    segments = np.array([[1, 1, 1, 2, 2, 2, 2, 3, 0, 0, 0, 0],
                         [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2],
                         [1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 0, 0]], np.int32)
    B, T = segments.shape
    expected = np.zeros((B, 1, T, T), bool)
    for b, t, s in np.ndindex(B, T, T):
        expected[b, 0, t, s] = (segments[b, t] != 0 and segments[b, s] == segments[b, t] and s <= t) or s == t
    np.testing.assert_array_equal(attention_mask(jnp.asarray(segments)), expected)
    # cuDNN is given segment_mask with its own causal mask type: together they must be attention_mask.
    causal = np.tril(np.ones((T, T), bool))
    np.testing.assert_array_equal(segment_mask(jnp.asarray(segments)) & causal, expected)


def test_cudnn_is_never_chosen_off_a_gpu(monkeypatch):
    monkeypatch.setenv("SCALING_GPU_ATTENTION", "cudnn")
    monkeypatch.setattr(attention, "cudnn_attention", lambda *args: pytest.fail("cuDNN chosen on a CPU"))
    q = k = v = jax.random.normal(jax.random.key(0), (1, 16, 2, 16), jnp.bfloat16)
    segments = jnp.asarray(packed_segments(1, 16, 8, seed=1))
    np.testing.assert_allclose(causal_attention(q, k, v, segments).astype(np.float32),
                               dense_attention(q, k, v, attention_mask(segments)).astype(np.float32), atol=2e-2)


def test_causal_attention_runs_the_fused_kernel_on_cpu_and_the_blocked_form_without_it(monkeypatch):
    q = k = v = jax.random.normal(jax.random.key(0), (2, 20, 2, 16))
    segments = jnp.asarray(packed_segments(2, 20, 8, seed=0))
    calls = []
    monkeypatch.setattr(fused_attention, "fused_attention", lambda *args: calls.append("fused") or dense_attention(
        *args[:3], attention_mask(args[3])))
    causal_attention(q, k, v, segments)
    monkeypatch.setattr(fused_attention, "available", lambda: False)
    monkeypatch.setattr(attention, "blocked_attention", lambda *args: calls.append("blocked") or args[0])
    causal_attention(q, k, v, segments)
    assert calls == ["fused", "blocked"]


def test_without_a_compiler_the_kernel_is_unavailable_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "cache"))
    with pytest.warns(RuntimeWarning, match="fused CPU attention unavailable"):
        assert fused_attention.available.__wrapped__() is False
    assert not list((tmp_path / "cache").rglob("*.so*"))  # no partial build left behind
