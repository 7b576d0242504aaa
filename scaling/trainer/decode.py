"""Greedy generation with a key/value cache: one prefill pass over the prompt buffer, then one token per
row per step, so a step costs B tokens instead of the B·T of rerunning the whole buffer.

The package's one greedy decoder. Its contract: prompts left-aligned in a zero-padded BxT buffer with
per-row lengths (each >= 1), greedy tokens appended after each prompt until end of sequence, the row's
budget of new tokens (`max_new`: one for every row, or one per row), T is full, or the row's generated
tokens drive an optional stop automaton from each row's start state to its last state
(tests/greedy_reference.py decodes the same contract by rerunning the whole buffer). Budgets, start states
and the automaton are traced, not static: the compiled program depends only on the buffer's shape (and on
whether an automaton is given), so rows of any budget share it.

`generate_rows` is the prefill/decode loop and row bookkeeping itself, with the choice of each token left to a
policy: greedy here, temperature / top-p sampling in `scaling.trainer.sample`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.trainer.model import KVCache, Transformer
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


@functools.partial(jax.jit, static_argnames=("graphdef", "eos_id", "prompt_span"))
def generate_greedy_cached(
    params: nnx.State, tokens_BxT: jax.Array, lengths_B: jax.Array, graphdef: nnx.GraphDef, max_new: jax.Array | int,
    eos_id: int = tokenizer.EOS, stop_VxS: jax.Array | None = None, prompt_span: int | None = None,
    states_B: jax.Array | None = None,
) -> jax.Array:
    """Append greedy tokens after each prompt until end of sequence (`eos_id`), the row's `max_new` tokens (a
    scalar for every row, or B budgets), T is full, or `stop_VxS` says so: an automaton over the generated
    tokens (state 0 before the first; a row in state s that writes token v goes to stop_VxS[v, s]) whose last
    state S-1 finishes the row. `states_B`: each row's state before its first new token (None: 0), where a
    prompt already holds tokens the automaton has read (a prompt continued by a verified draft).

    The prompt buffer's first `prompt_span` positions (static, at least every row's prompt; None: all T) are
    run once with a causal mask, and the cache is zero past them; its zero padding after each prompt is
    cached too, but each row only ever attends to cache entries at or before its own position, and every
    entry it reaches has been overwritten by a generated token by then. A span shorter than T saves the
    prefill of positions only generation fills (as costly per token as a decode step); the result is the same.
    """
    rows, _ = generate_rows(nnx.merge(graphdef, params), tokens_BxT, lengths_B, max_new, argmax, eos_id, stop_VxS,
                            prompt_span, states_B)
    return rows.tokens_BxT


def argmax(logits_BxV: jax.Array, step: jax.Array) -> tuple[jax.Array, None]:
    """Greedy choice: each row's most likely token (no log-probabilities kept)."""
    del step
    return logits_BxV.argmax(-1), None


# A decoding policy: the tokens B chosen from next-token logits BxV at a decode step (0: the token chosen from
# the prefill), and each one's log-probability under the policy, or None where the caller keeps none.
Choose = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array | None]]


def generate_rows(
    model: Transformer, tokens_BxT: jax.Array, lengths_B: jax.Array, max_new: jax.Array | int, choose: Choose,
    eos_id: int, stop_VxS: jax.Array | None, prompt_span: int | None, states_B: jax.Array | None = None,
) -> tuple[Rows, jax.Array]:
    """The rows after appending `choose`'s tokens under `generate_greedy_cached`'s contract, and the number of
    decode steps run (each one a cached forward pass of every row, finished or not). Called inside a jit: the
    one prefill/decode loop greedy and sampled generation share."""
    B, T = tokens_BxT.shape
    rows_B = jnp.arange(B)
    P = T if prompt_span is None else prompt_span
    positions_BxP, segments_BxP = _unpacked(B, P)
    ends_B = jnp.minimum(lengths_B + jnp.broadcast_to(jnp.asarray(max_new, lengths_B.dtype), (B,)), T)
    logits_BxPxV, cache = model.prefill(tokens_BxT[:, :P], positions_BxP, segments_BxP)
    cache = jax.tree.map(lambda x_BxPxKxDh: jnp.pad(x_BxPxKxDh, ((0, 0), (0, T - P), (0, 0), (0, 0))), cache)
    # The first token comes from the prefill logits, so the loop below never runs a step whose logits go unused.
    states_B = jnp.zeros((B,), jnp.int32) if states_B is None else jnp.asarray(states_B, jnp.int32)
    first_B, logprob_B = choose(logits_BxPxV[rows_B, lengths_B - 1], jnp.int32(0))
    logprobs_BxT = None if logprob_B is None else jnp.zeros((B, T), jnp.float32)
    rows = Rows(tokens_BxT, lengths_B, ends_B, lengths_B >= ends_B, states_B, logprobs_BxT)
    rows = rows.append(first_B, logprob_B, eos_id, stop_VxS)

    def next_token(carry):
        rows, cache, steps = carry
        # Finished rows rerun their last token: rewriting a cache entry they never read again is harmless.
        last_B = rows.lengths_B - 1
        logits_Bx1xV, cache = model.decode(rows.tokens_BxT[rows_B, last_B][:, None], last_B[:, None], cache)
        steps = steps + 1
        return rows.append(*choose(logits_Bx1xV[:, 0], steps), eos_id, stop_VxS), cache, steps

    rows, _, steps = jax.lax.while_loop(lambda carry: ~carry[0].done_B.all(), next_token, (rows, cache, jnp.int32(0)))
    return rows, steps


def _unpacked(B: int, T: int) -> tuple[jax.Array, jax.Array]:
    """Positions 0..T-1 and one segment per row: each row is a single sequence."""
    return jnp.broadcast_to(jnp.arange(T), (B, T)), jnp.ones((B, T), jnp.int32)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Rows:
    """The decoding state of a buffer's rows."""

    tokens_BxT: jax.Array  # prompts and what has been generated after them
    lengths_B: jax.Array  # tokens in each row so far
    ends_B: jax.Array  # the length at which each row's budget (or the buffer) is spent
    done_B: jax.Array  # rows that write nothing more
    states_B: jax.Array  # each row's stop-automaton state (0 where there is no automaton)
    logprobs_BxT: jax.Array | None = None  # each generated token's log-probability (0 elsewhere), if kept

    def append(self, chosen_B: jax.Array, logprob_B: jax.Array | None, eos_id: int,
               stop_VxS: jax.Array | None) -> Rows:
        """Each unfinished row's chosen token (and its log-probability) written after its sequence; a row
        finishes at end of sequence, at its end, or when the automaton reaches its last state."""
        B, T = self.tokens_BxT.shape
        rows_B = jnp.arange(B)
        chosen_B = chosen_B.astype(self.tokens_BxT.dtype)
        write_B = ~self.done_B
        at_B = jnp.minimum(self.lengths_B, T - 1)
        tokens_BxT = self.tokens_BxT.at[rows_B, at_B].set(jnp.where(write_B, chosen_B, self.tokens_BxT[rows_B, at_B]))
        logprobs_BxT = self.logprobs_BxT
        if logprobs_BxT is not None:
            logprobs_BxT = logprobs_BxT.at[rows_B, at_B].set(jnp.where(write_B, logprob_B, logprobs_BxT[rows_B, at_B]))
        lengths_B = self.lengths_B + write_B
        done_B = self.done_B | (write_B & (chosen_B == eos_id)) | (lengths_B >= self.ends_B)
        states_B = self.states_B
        if stop_VxS is not None:
            states_B = jnp.where(write_B, stop_VxS[chosen_B, states_B].astype(states_B.dtype), states_B)
            done_B = done_B | (states_B == stop_VxS.shape[1] - 1)
        return Rows(tokens_BxT, lengths_B, self.ends_B, done_B, states_B, logprobs_BxT)
