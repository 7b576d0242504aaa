"""A base's capability, measured before SFT: its loss on held-out corpus documents, and a zero-shot
probe of the sub-skills the corpus teaches (`scaling.tasks.corpus.probe_items`).

Both read the base through the tokenizer it is fine-tuned with, so a preset and a checkpoint are
measured alike: the loss is in nats per character (comparable across tokenizers), and a probe item
counts as right when the right choice is the likeliest continuation of its prefix (summed log
probability of the choice's tokens).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling.tasks.corpus import held_out, probe_items
from scaling.tasks.tokenizer import Tokenizer
from scaling.trainer.config import ModelConfig
from scaling.trainer.model import abstract_model
from scaling.trainer.train import token_losses

HELD_OUT_CHARS = 8_192  # corpus characters the loss is measured on
PROBE_ITEMS = 160  # probe questions, 40 per skill
ROW = 128  # tokens per row when measuring


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _sequence_losses(params, tokens_BxT: jax.Array, weights_BxT: jax.Array, graphdef: nnx.GraphDef) -> jax.Array:
    """Each row's summed next-token loss over the weighted positions: B."""
    B, T = tokens_BxT.shape
    model = nnx.merge(graphdef, params)
    logits_BxTxV = model(tokens_BxT, jnp.broadcast_to(jnp.arange(T), (B, T)), jnp.ones((B, T), jnp.int32))
    return (token_losses(logits_BxTxV[:, :-1], tokens_BxT[:, 1:]) * weights_BxT[:, 1:]).sum(-1)


def _rows(sequences: list[tuple[list[int], int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequences padded to ROW tokens, each weighted from its `scored_from` position on."""
    tokens = np.full((len(sequences), ROW), pad, np.int32)
    weights = np.zeros((len(sequences), ROW), np.float32)
    for row, (ids, scored_from) in enumerate(sequences):
        ids = ids[:ROW]
        tokens[row, :len(ids)] = ids
        weights[row, scored_from:len(ids)] = 1.0
    return tokens, weights


def corpus_loss(graphdef: nnx.GraphDef, params, tokenizer: Tokenizer) -> float:
    """Nats per character on held-out corpus documents (each cut into rows, every token but a row's first scored)."""
    text = " ".join(held_out(HELD_OUT_CHARS))
    ids = tokenizer.encode(text)
    chunks = [(ids[i:i + ROW], 1) for i in range(0, len(ids) - 1, ROW - 1)]
    tokens, weights = _rows(chunks, tokenizer.pad_id)
    nats = float(np.sum(_sequence_losses(params, jnp.asarray(tokens), jnp.asarray(weights), graphdef=graphdef)))
    return nats / len(text)  # per character: ids per character differ between tokenizers


def probe_accuracy(graphdef: nnx.GraphDef, params, tokenizer: Tokenizer) -> float:
    """The share of probe items whose right choice is the likeliest continuation."""
    items = probe_items(PROBE_ITEMS)
    sequences = []
    for item in items:
        prefix = tokenizer.encode(item.prefix)
        sequences += [(prefix + tokenizer.encode(choice), len(prefix)) for choice in item.choices]
    tokens, weights = _rows(sequences, tokenizer.pad_id)
    losses = np.asarray(_sequence_losses(params, jnp.asarray(tokens), jnp.asarray(weights), graphdef=graphdef))
    right, at = 0, 0
    for item in items:
        right += int(np.argmin(losses[at:at + len(item.choices)]) == item.answer)
        at += len(item.choices)
    return right / len(items)


def measure_base(model_cfg: ModelConfig, params, tokenizer: Tokenizer) -> dict[str, float]:
    """`base_loss` (nats per character of held-out corpus) and `base_probe_acc` of a base's parameters."""
    graphdef = abstract_model(model_cfg)[0]
    return {"base_loss": corpus_loss(graphdef, params, tokenizer),
            "base_probe_acc": probe_accuracy(graphdef, params, tokenizer)}
