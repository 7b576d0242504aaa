"""The FLOPs counts of trainer/flops.py against an independent count: XLA's own cost analysis of the compiled
forward pass, train step, prefill, decode step and whole sampler of the `tiny` and `xs` presets.

Where the two differ, and why (the residual each test bounds):
- XLA counts the attention that runs. On CPU that is a fused C++ kernel, a custom call XLA cannot see (it counts
  it as nothing), so these tests run the model with the dense reference attention instead, which XLA counts
  score by score: every TxT score of a row, where the convention counts the causal half a fused kernel visits
  (`masked_half`). A decode step is dense in the convention too (it reads the whole cache), so nothing is added.
- The convention counts 6N: the non-embedding matrices. XLA also counts the output projection to the
  vocabulary (2·D·V per token forward, three times that trained: `logits`).
- What is left is elementwise work, which the convention leaves out by design: norms, softmax, rotary,
  SwiGLU, the residual adds, the loss and (in a train step) AdamW over every parameter. That is a few operations
  per activation against D or T multiply-adds per activation in a matmul, so it is a small share, largest in
  the smallest model (measured, tiny / xs: forward 4.6% / 2.7%, train step with the optimizer 6.9% / 4.2%,
  prefill 3.9% / 2.0%, decode step 5.6% / 3.2%). The tests bound it at 8% of XLA's count (forward, prefill) and 10% (train step, decode step: one token against
  every parameter's update or a whole cache's softmax), and below by 0: the convention never counts more than
  XLA computes.
"""

import jax
import jax.numpy as jnp
import pytest

from scaling.tasks.tokenizer import CHARACTERS
from scaling.trainer import decode, flops, model, train
from scaling.trainer.attention import attention_mask, dense_attention
from scaling.trainer.config import preset
from scaling.trainer.sample import sample_cached

B, T = 4, 64  # rows and positions of the buffers counted


@pytest.fixture
def dense(monkeypatch):
    """Attention through the dense reference XLA can count (the CPU kernel is a custom call it cannot)."""
    monkeypatch.setattr(model, "causal_attention",
                        lambda q, k, v, segments, span=None, window=None, scale=None:
                        dense_attention(q, k, v, attention_mask(segments, window), scale))


def _xla_flops(fn, *args) -> float:
    """XLA's count of the compiled `fn` (a fresh jit: no program compiled with the fused kernel is reused)."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def _rows(cfg, rows: int, length: int):
    tokens = jnp.ones((rows, length), jnp.int32)
    return tokens, jnp.broadcast_to(jnp.arange(length), (rows, length)), jnp.ones((rows, length), jnp.int32)


def _masked_half(cfg, tokens: int, context: int) -> float:
    """The attention scores and weighted values above the causal diagonal, which dense attention computes too."""
    return 2.0 * cfg.n_layers * context * cfg.n_heads * cfg.head_dim * tokens


def _logits(cfg, tokens: int) -> float:
    return 2.0 * cfg.d_model * cfg.vocab_size * tokens


def _assert_elementwise_share(xla: float, counted: float, bound: float) -> None:
    """XLA's count is the convention plus the matmuls it leaves out (`counted`) plus elementwise work, which is
    at least nothing and at most `bound` of the whole."""
    assert 0.0 <= (xla - counted) / xla <= bound, (xla, counted)


@pytest.mark.parametrize("size", ["tiny", "xs"])
def test_a_forward_pass_is_the_convention_plus_logits_and_the_masked_half(size, dense):
    cfg = preset(size, CHARACTERS.vocab_size, T)
    graphdef, params = model.init_model(cfg, 0)
    tokens, positions, segments = _rows(cfg, B, T)
    xla = _xla_flops(lambda p, t: model.logits.__wrapped__(p, t, positions, segments, graphdef), params, tokens)
    convention = flops.forward_flops_per_token(cfg, T) * B * T
    _assert_elementwise_share(xla, convention + _masked_half(cfg, B * T, T) + _logits(cfg, B * T), 0.08)


@pytest.mark.parametrize("size", ["tiny", "xs"])
def test_a_train_step_is_three_forward_passes(size, dense):
    cfg = preset(size, CHARACTERS.vocab_size, T)
    graphdef, params = model.init_model(cfg, 0)
    tokens, positions, segments = _rows(cfg, B, T)
    batch = {"inputs": tokens, "targets": tokens, "loss_mask": jnp.ones((B, T)), "positions": positions,
             "segments": segments}
    optimizer = train.build_optimizer(0.1, 1.0)
    step = lambda state, batch: train.train_step.__wrapped__(state, batch, graphdef, optimizer, 1e-3)  # noqa: E731
    xla = _xla_flops(step, (params, optimizer.init(params)), batch)
    counted = flops.training_flops(cfg, B, T) + 3 * (_masked_half(cfg, B * T, T) + _logits(cfg, B * T))
    _assert_elementwise_share(xla, counted, 0.10)


@pytest.mark.parametrize("size", ["tiny", "xs"])
def test_sampling_is_a_causal_prefill_and_dense_decode_steps(size, dense):
    cfg = preset(size, CHARACTERS.vocab_size, T)
    graphdef, params = model.init_model(cfg, 0)
    span, steps = 16, 5  # a prompt span shorter than the buffer, as a sampler prefills
    tokens, _, _ = _rows(cfg, B, T)
    prefill = _xla_flops(lambda p, t: decode.prefill.__wrapped__(p, t, graphdef), params, tokens[:, :span])
    _, cache = decode.prefill(params, tokens, graphdef=graphdef)  # a cache of the whole buffer, as decoding reads
    step = _xla_flops(lambda p, t, at, c: decode.decode_step.__wrapped__(p, t, at, c, graphdef),
                      params, tokens[:, 0], jnp.full((B,), span), cache)
    prefill_counted = flops.sampling_flops(cfg, B, span, 0, T)
    step_counted = flops.sampling_flops(cfg, B, span, 1, T) - prefill_counted
    _assert_elementwise_share(prefill, prefill_counted + _masked_half(cfg, B * span, span) + _logits(cfg, B * span),
                              0.08)
    _assert_elementwise_share(step, step_counted + _logits(cfg, B), 0.10)
    # A sampling run is its prefill and `steps` decode steps, every row running each one.
    assert flops.sampling_flops(cfg, B, span, steps, T) == pytest.approx(prefill_counted + steps * step_counted)
    # The sampler compiled whole runs just these: XLA counts its decode loop's body once (it cannot know the trip
    # count), so its count is one prefill and one decode step, and the drawing of tokens (a softmax and a draw
    # over the vocabulary per row and step, the rows' bookkeeping): 1.5% of tiny's.
    lengths = jnp.full((B,), span - 2)
    whole = _xla_flops(lambda p, t, key: sample_cached.__wrapped__(p, t, lengths, graphdef, steps, key, 1.0, 1.0,
                                                                     prompt_span=span), params, tokens, jax.random.key(0))
    assert 0.0 <= (whole - prefill - step) / whole <= 0.03
