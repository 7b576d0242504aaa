"""The reference greedy decoder that tests check `scaling.trainer.decode.generate_greedy_cached` against and
benchmarks/bench_decode.py times it against: the same contract, with no key/value cache to get wrong."""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.tasks.tokenizer import EOS


@functools.partial(jax.jit, static_argnames=("graphdef", "eos_id"))
def generate_greedy_full(
    params, tokens_BxT: jax.Array, lengths_B: jax.Array, graphdef: nnx.GraphDef, max_new, eos_id: int = EOS,
    stop_VxS: jax.Array | None = None,
):
    """Append greedy tokens after each prompt until end of sequence (`eos_id`), the row's max_new tokens (one
    for all rows or one per row), T is full, or the stop automaton `stop_VxS` reaches its last state.

    Each new token reruns the whole sequence (causal masking keeps the zero padding after a prompt invisible).
    """
    model = nnx.merge(graphdef, params)
    B, T = tokens_BxT.shape
    positions_BxT = jnp.broadcast_to(jnp.arange(T), (B, T))
    segments_BxT = jnp.ones((B, T), jnp.int32)
    rows_B = jnp.arange(B)
    budgets_B = jnp.broadcast_to(jnp.asarray(max_new), (B,))

    def keep_going(carry):
        _, _, _, done_B, _ = carry
        return ~done_B.all()

    def next_token(carry):
        count_B, tokens_BxT, lengths_B, done_B, state_B = carry
        logits_BxTxV = model(tokens_BxT, positions_BxT, segments_BxT)
        chosen_B = logits_BxTxV[rows_B, lengths_B - 1].argmax(-1).astype(tokens_BxT.dtype)
        write_B = ~done_B
        at_B = jnp.minimum(lengths_B, T - 1)
        tokens_BxT = tokens_BxT.at[rows_B, at_B].set(jnp.where(write_B, chosen_B, tokens_BxT[rows_B, at_B]))
        lengths_B = lengths_B + write_B
        count_B = count_B + write_B
        done_B = done_B | (write_B & (chosen_B == eos_id)) | (lengths_B >= T) | (count_B >= budgets_B)
        if stop_VxS is not None:
            state_B = jnp.where(write_B, stop_VxS[chosen_B, state_B], state_B)
            done_B = done_B | (state_B == stop_VxS.shape[1] - 1)
        return count_B, tokens_BxT, lengths_B, done_B, state_B

    done_B = (lengths_B >= T) | (budgets_B <= 0)
    zeros_B = jnp.zeros((B,), jnp.int32)
    _, tokens_BxT, _, _, _ = jax.lax.while_loop(keep_going, next_token, (zeros_B, tokens_BxT, lengths_B, done_B, zeros_B))
    return tokens_BxT
