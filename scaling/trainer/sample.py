"""Temperature / top-p sampling with the key/value cache, and the teacher-forced log-probabilities it is checked
against: what the RL and rejection-sampling arms draw completions with.

Sampling runs `scaling.trainer.decode`'s one prefill/decode loop under `generate_greedy_cached`'s contract
(left-aligned prompts, per-row budgets, end of sequence, the optional stop automaton); only the choice of each
token differs. The token at decode step s of a call keyed `key` is drawn with `fold_in(key, s)`, one draw per
row, so the same key gives the same samples, and G samples of a prompt are its row repeated G times.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.tasks import tokenizer
from scaling.trainer.decode import Choose, generate_rows


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Sampled:
    """Sampled completions after their prompts."""

    tokens_BxT: jax.Array  # prompts and the tokens sampled after them, zero past each row's end
    logprobs_BxT: jax.Array  # float32: each sampled token's log-probability under the sampling policy; 0 elsewhere
    lengths_B: jax.Array  # each row's final length
    decode_steps: jax.Array  # int32 scalar: cached decode steps run after the prefill (each one of every row)


@functools.partial(jax.jit, static_argnames=("graphdef", "eos_id", "prompt_span"))
def sample_cached(
    params: nnx.State, tokens_BxT: jax.Array, lengths_B: jax.Array, graphdef: nnx.GraphDef, max_new: jax.Array | int,
    key: jax.Array, temperature: jax.Array | float, top_p: jax.Array | float, eos_id: int = tokenizer.EOS,
    stop_VxS: jax.Array | None = None, prompt_span: int | None = None,
) -> Sampled:
    """Append sampled tokens after each prompt, with `generate_greedy_cached`'s stopping rules and arguments.

    Each token is drawn from softmax(logits / temperature) restricted to its nucleus: the most likely tokens
    whose probabilities, before the last one, sum to less than `top_p` (so the argmax always stays), and
    renormalized; its log-probability under that distribution is kept. Temperature 0 is greedy decoding (the
    argmax; its log-probability under the logits at temperature 1). Temperature, top_p, max_new and the key are
    traced: one compilation serves them all.
    """
    choose = policy(key, jnp.asarray(temperature, jnp.float32), jnp.asarray(top_p, jnp.float32))
    rows, steps = generate_rows(nnx.merge(graphdef, params), tokens_BxT, lengths_B, max_new, choose, eos_id, stop_VxS,
                                prompt_span)
    return Sampled(rows.tokens_BxT, rows.logprobs_BxT, rows.lengths_B, steps)


# Tokens a nucleus is first looked for among (the most likely, by top-k); only where it is wider does a step sort
# the whole vocabulary, which costs about 50 times more on CPU (78 ms against 1.4 ms at 8 x 49,152).
NUCLEUS_CANDIDATES = 256


def policy(key: jax.Array, temperature: jax.Array, top_p: jax.Array) -> Choose:
    """The sampling policy as a decoding choice: tokens and their log-probabilities from next-token logits."""

    def choose(logits_BxV: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits_BxV = logits_BxV.astype(jnp.float32)
        greedy = temperature == 0
        scaled_BxV = logits_BxV / jnp.where(greedy, 1.0, temperature)
        kept_BxV = jax.lax.cond(top_p < 1, nucleus, lambda s_BxV, _: s_BxV, scaled_BxV, top_p)
        logprobs_BxV = jax.nn.log_softmax(jnp.where(greedy, scaled_BxV, kept_BxV), axis=-1)
        sampled_B = draw(jax.random.fold_in(key, step), logprobs_BxV)
        chosen_B = jnp.where(greedy, logits_BxV.argmax(-1), sampled_B)
        return chosen_B, jnp.take_along_axis(logprobs_BxV, chosen_B[:, None], axis=-1)[:, 0]

    return choose


def draw(key: jax.Array, logprobs_BxV: jax.Array) -> jax.Array:
    """One token a row from its distribution, by inverting the cumulative distribution at one uniform draw a row:
    a cumulative sum of B x V, where the Gumbel-max trick (`jax.random.categorical`) draws B x V random numbers
    (2.7 ms against 11.7 ms at 8 x 49,152 on CPU)."""
    B, V = logprobs_BxV.shape
    cumulative_BxV = jnp.cumsum(jnp.exp(logprobs_BxV), axis=-1)
    target_Bx1 = jax.random.uniform(key, (B, 1)) * cumulative_BxV[:, -1:]
    drawn_B = (cumulative_BxV <= target_Bx1).sum(-1)
    # Where rounding put the target at the total, the last token of nonzero probability (never one outside a nucleus).
    last_B = V - 1 - (logprobs_BxV[:, ::-1] > -jnp.inf).argmax(-1)
    return jnp.minimum(drawn_B, last_B)


def nucleus(scaled_BxV: jax.Array, top_p: jax.Array, candidates: int = NUCLEUS_CANDIDATES) -> jax.Array:
    """The logits with every token outside the top-p nucleus set to -inf: the nucleus is the most likely tokens
    whose probabilities, before the last one, sum to less than top_p, and every token as likely as its last.
    Looked for among the `candidates` most likely tokens, and in the whole sorted vocabulary where some row's
    nucleus takes them all."""
    logz_Bx1 = jax.nn.logsumexp(scaled_BxV, axis=-1, keepdims=True)

    def threshold(descending_BxK: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The least likely value kept in each row, and how many of these values are kept."""
        probs_BxK = jnp.exp(descending_BxK - logz_Bx1)
        before_BxK = jnp.cumsum(probs_BxK, axis=-1) - probs_BxK  # mass of the more likely tokens
        kept_B = (before_BxK < top_p).sum(-1)  # at least 1: the argmax has nothing before it
        return jnp.take_along_axis(descending_BxK, kept_B[:, None] - 1, axis=-1), kept_B

    K = min(candidates, scaled_BxV.shape[-1])
    threshold_Bx1, kept_B = threshold(jax.lax.top_k(scaled_BxV, K)[0])
    threshold_Bx1 = jax.lax.cond((kept_B == K).any(), lambda: threshold(-jnp.sort(-scaled_BxV, axis=-1))[0],
                                 lambda: threshold_Bx1)
    # Ties at the threshold all stay: a nucleus cannot tell equally likely tokens apart.
    return jnp.where(scaled_BxV >= threshold_Bx1, scaled_BxV, -jnp.inf)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def sequence_logprobs(
    params: nnx.State, tokens_BxT: jax.Array, graphdef: nnx.GraphDef, temperature: jax.Array | float = 1.0
) -> jax.Array:
    """Teacher-forced log-probability BxT of tokens_BxT[:, t] given tokens_BxT[:, :t] under softmax(logits /
    temperature), at index t (0 at t = 0; past a row's end, the padding's: mask it): one forward pass,
    differentiable (GRPO's ratio and KL)."""
    B, T = tokens_BxT.shape
    positions_BxT, segments_BxT = jnp.broadcast_to(jnp.arange(T), (B, T)), jnp.ones((B, T), jnp.int32)
    logits_BxTxV = nnx.merge(graphdef, params)(tokens_BxT, positions_BxT, segments_BxT).astype(jnp.float32)
    logprobs_BxTxV = jax.nn.log_softmax(logits_BxTxV[:, :-1] / temperature, axis=-1)
    next_BxT = jnp.take_along_axis(logprobs_BxTxV, tokens_BxT[:, 1:, None], axis=-1)[..., 0]
    return jnp.pad(next_BxT, ((0, 0), (1, 0)))
