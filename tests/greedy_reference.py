"""The reference greedy decoder that tests check `scaling.trainer.decode.generate_greedy_cached` against and
benchmarks/bench_decode.py times it against: the same contract, with no key/value cache to get wrong."""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.tasks.tokenizer import EOS


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new", "eos_id"))
def generate_greedy_full(
    params, tokens_BxT: jax.Array, lengths_B: jax.Array, graphdef: nnx.GraphDef, max_new: int, eos_id: int = EOS
):
    """Append greedy tokens after each prompt until end of sequence (`eos_id`), max_new tokens, or T is full.

    Each new token reruns the whole sequence (causal masking keeps the zero padding after a prompt invisible).
    """
    model = nnx.merge(graphdef, params)
    B, T = tokens_BxT.shape
    positions_BxT = jnp.broadcast_to(jnp.arange(T), (B, T))
    segments_BxT = jnp.ones((B, T), jnp.int32)
    rows_B = jnp.arange(B)

    def keep_going(carry):
        count, _, _, done_B = carry
        return (count < max_new) & ~done_B.all()

    def next_token(carry):
        count, tokens_BxT, lengths_B, done_B = carry
        logits_BxTxV = model(tokens_BxT, positions_BxT, segments_BxT)
        chosen_B = logits_BxTxV[rows_B, lengths_B - 1].argmax(-1).astype(tokens_BxT.dtype)
        write_B = ~done_B & (lengths_B < T)
        at_B = jnp.minimum(lengths_B, T - 1)
        tokens_BxT = tokens_BxT.at[rows_B, at_B].set(jnp.where(write_B, chosen_B, tokens_BxT[rows_B, at_B]))
        lengths_B = lengths_B + write_B
        done_B = done_B | (write_B & (chosen_B == eos_id)) | (lengths_B >= T)
        return count + 1, tokens_BxT, lengths_B, done_B

    done_B = lengths_B >= T
    _, tokens_BxT, _, _ = jax.lax.while_loop(keep_going, next_token, (0, tokens_BxT, lengths_B, done_B))
    return tokens_BxT
