"""Greedy generation with a key/value cache: one prefill pass over the prompt buffer, then one token per
row per step, so a step costs B tokens instead of the B·T of rerunning the whole buffer.

The package's one greedy decoder. Its contract: prompts left-aligned in a zero-padded BxT buffer with
per-row lengths (each >= 1), greedy tokens appended after each prompt until end of sequence, max_new
tokens, or T is full (tests/greedy_reference.py decodes the same contract by rerunning the whole buffer).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.trainer.model import KVCache
from scaling.tasks import tokenizer


@functools.partial(jax.jit, static_argnames=("graphdef",))
def prefill(params: nnx.State, tokens_BxT: jax.Array, graphdef: nnx.GraphDef) -> tuple[jax.Array, KVCache]:
    """Next-token logits BxTxV of a left-aligned buffer (one sequence per row) and its keys and values."""
    B, T = tokens_BxT.shape
    positions_BxT, segments_BxT = _unpacked(B, T)
    return nnx.merge(graphdef, params).prefill(tokens_BxT, positions_BxT, segments_BxT)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def decode_step(
    params: nnx.State, tokens_B: jax.Array, positions_B: jax.Array, cache: KVCache, graphdef: nnx.GraphDef
) -> tuple[jax.Array, KVCache]:
    """Next-token logits BxV of one token per row at its own position, and the cache with it written."""
    logits_Bx1xV, cache = nnx.merge(graphdef, params).decode(tokens_B[:, None], positions_B[:, None], cache)
    return logits_Bx1xV[:, 0], cache


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new", "eos_id"))
def generate_greedy_cached(
    params: nnx.State, tokens_BxT: jax.Array, lengths_B: jax.Array, graphdef: nnx.GraphDef, max_new: int,
    eos_id: int = tokenizer.EOS,
) -> jax.Array:
    """Append greedy tokens after each prompt until end of sequence (`eos_id`), max_new tokens, or T is full.

    The prompt buffer is run once with a causal mask; its zero padding after each prompt is cached too,
    but each row only ever attends to cache entries at or before its own position, and every entry it
    reaches has been overwritten by a generated token by then.
    """
    if max_new == 0:
        return tokens_BxT
    model = nnx.merge(graphdef, params)
    B, T = tokens_BxT.shape
    rows_B = jnp.arange(B)
    positions_BxT, segments_BxT = _unpacked(B, T)
    logits_BxTxV, cache = model.prefill(tokens_BxT, positions_BxT, segments_BxT)
    # The first token comes from the prefill logits, so the loop below never runs a step whose logits go unused.
    done_B = lengths_B >= T
    tokens_BxT, lengths_B, done_B = _append(logits_BxTxV[rows_B, lengths_B - 1], tokens_BxT, lengths_B, done_B, eos_id)

    def keep_going(carry):
        count, _, _, done_B, _ = carry
        return (count < max_new) & ~done_B.all()

    def next_token(carry):
        count, tokens_BxT, lengths_B, done_B, cache = carry
        # Finished rows rerun their last token: rewriting a cache entry they never read again is harmless.
        last_B = lengths_B - 1
        logits_Bx1xV, cache = model.decode(tokens_BxT[rows_B, last_B][:, None], last_B[:, None], cache)
        tokens_BxT, lengths_B, done_B = _append(logits_Bx1xV[:, 0], tokens_BxT, lengths_B, done_B, eos_id)
        return count + 1, tokens_BxT, lengths_B, done_B, cache

    _, tokens_BxT, _, _, _ = jax.lax.while_loop(keep_going, next_token, (1, tokens_BxT, lengths_B, done_B, cache))
    return tokens_BxT


def _unpacked(B: int, T: int) -> tuple[jax.Array, jax.Array]:
    """Positions 0..T-1 and one segment per row: each row is a single sequence."""
    return jnp.broadcast_to(jnp.arange(T), (B, T)), jnp.ones((B, T), jnp.int32)


def _append(
    logits_BxV: jax.Array, tokens_BxT: jax.Array, lengths_B: jax.Array, done_B: jax.Array, eos_id: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Write each unfinished row's argmax after its sequence; a row finishes at end of sequence or when full."""
    B, T = tokens_BxT.shape
    rows_B = jnp.arange(B)
    chosen_B = logits_BxV.argmax(-1).astype(tokens_BxT.dtype)
    write_B = ~done_B & (lengths_B < T)
    at_B = jnp.minimum(lengths_B, T - 1)
    tokens_BxT = tokens_BxT.at[rows_B, at_B].set(jnp.where(write_B, chosen_B, tokens_BxT[rows_B, at_B]))
    lengths_B = lengths_B + write_B
    done_B = done_B | (write_B & (chosen_B == eos_id)) | (lengths_B >= T)
    return tokens_BxT, lengths_B, done_B
