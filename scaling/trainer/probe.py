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
ROW = 128  # tokens per row of held-out corpus
LOGITS_BUDGET = 1 << 25  # logits (float32) one forward pass may hold: 128 MiB, whatever the vocabulary


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _sequence_losses(params, tokens_BxT: jax.Array, weights_BxT: jax.Array, graphdef: nnx.GraphDef) -> jax.Array:
    """Each row's summed next-token loss over the weighted positions: B."""
    B, T = tokens_BxT.shape
    model = nnx.merge(graphdef, params)
    logits_BxTxV = model(tokens_BxT, jnp.broadcast_to(jnp.arange(T), (B, T)), jnp.ones((B, T), jnp.int32))
    return (token_losses(logits_BxTxV[:, :-1], tokens_BxT[:, 1:]) * weights_BxT[:, 1:]).sum(-1)


def _summed_losses(graphdef: nnx.GraphDef, params, tokens_BxT: np.ndarray, weights_BxT: np.ndarray,
                   vocab_size: int) -> np.ndarray:
    """`_sequence_losses` over rows in equal chunks, each holding at most LOGITS_BUDGET logits: a 49k-token
    vocabulary over all probe rows at once would need tens of GB. The last chunk is padded to the same shape,
    so one compilation serves them all."""
    B, T = tokens_BxT.shape
    chunk = max(1, min(B, LOGITS_BUDGET // (T * vocab_size)))
    pad = -B % chunk
    tokens_BxT = np.concatenate([tokens_BxT, np.repeat(tokens_BxT[:1], pad, axis=0)])
    weights_BxT = np.concatenate([weights_BxT, np.zeros((pad, T), weights_BxT.dtype)])
    losses = [_sequence_losses(params, jnp.asarray(tokens_BxT[i:i + chunk]), jnp.asarray(weights_BxT[i:i + chunk]),
                               graphdef=graphdef) for i in range(0, B + pad, chunk)]
    return np.concatenate([np.asarray(part) for part in losses])[:B]


def _rows(sequences: list[tuple[list[int], int]], pad: int, row: int = ROW) -> tuple[np.ndarray, np.ndarray]:
    """Sequences padded to `row` tokens, each weighted from its `scored_from` position on."""
    tokens = np.full((len(sequences), row), pad, np.int32)
    weights = np.zeros((len(sequences), row), np.float32)
    for index, (ids, scored_from) in enumerate(sequences):
        ids = ids[:row]
        tokens[index, :len(ids)] = ids
        weights[index, scored_from:len(ids)] = 1.0
    return tokens, weights


def corpus_loss(graphdef: nnx.GraphDef, params, tokenizer: Tokenizer) -> float:
    """Nats per character on held-out corpus documents (each cut into rows, every token but a row's first scored)."""
    text, tokens, weights = _corpus_rows(tokenizer)
    nats = float(np.sum(_summed_losses(graphdef, params, tokens, weights, tokenizer.vocab_size)))
    return nats / len(text)  # per character: ids per character differ between tokenizers


def _corpus_rows(tokenizer: Tokenizer) -> tuple[str, np.ndarray, np.ndarray]:
    text = " ".join(held_out(HELD_OUT_CHARS))
    ids = tokenizer.encode(text)
    chunks = [(ids[i:i + ROW], 1) for i in range(0, len(ids) - 1, ROW - 1)]
    return text, *_rows(chunks, tokenizer.pad_id)


def _probe_rows(tokenizer: Tokenizer) -> tuple[list, np.ndarray, np.ndarray]:
    items = probe_items(PROBE_ITEMS)
    sequences = []
    for item in items:
        prefix = tokenizer.encode(item.prefix)
        sequences += [(prefix + tokenizer.encode(choice), len(prefix)) for choice in item.choices]
    # Rows as long as the longest item (rounded up to 16, for few compilations): a probe item is a few dozen
    # characters, and padding to ROW would multiply a big base's work by 4 to 8 for nothing (causal: the
    # padding after a sequence never changes its loss).
    longest = max(len(ids) for ids, _ in sequences)
    return items, *_rows(sequences, tokenizer.pad_id, row=min(ROW, -(-longest // 16) * 16))


def measured_tokens(tokenizer: Tokenizer) -> int:
    """Tokens (padding included) that measuring a base runs forward: what its time scales with."""
    return _corpus_rows(tokenizer)[1].size + _probe_rows(tokenizer)[1].size


def probe_accuracy(graphdef: nnx.GraphDef, params, tokenizer: Tokenizer) -> float:
    """The share of probe items whose right choice is the likeliest continuation."""
    items, tokens, weights = _probe_rows(tokenizer)
    losses = _summed_losses(graphdef, params, tokens, weights, tokenizer.vocab_size)
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
