"""Pretraining a base from scratch on the generic corpus: the base-capability axis.

Documents are concatenated, each followed by end of sequence, and cut into rows of the model's
context; each document is its own segment (no attention across documents) and every real token is
trained on. The token budget sets how capable the base becomes; 0 means a random initialization.
Tokens are the character tokenizer's: the vocabulary of every preset model.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from scaling.trainer.batches import TokenArrays
from scaling.trainer.config import ModelConfig, TrainConfig
from scaling.trainer.model import init_model
from scaling.tasks.corpus import corpus
from scaling.tasks.tokenizer import CHARACTERS
from scaling.trainer.train import train


def corpus_rows(documents: list[str], length: int) -> TokenArrays:
    """Documents as full rows of `length` tokens with per-document segments and positions."""
    ids, segments, positions = [], [], []
    for index, document in enumerate(documents):
        tokens = CHARACTERS.encode(document) + [CHARACTERS.eos_id]
        ids += tokens
        segments += [index + 1] * len(tokens)
        positions += range(len(tokens))
    rows = (len(ids) - 1) // length
    if rows < 1:
        raise ValueError(f"a corpus of {len(ids)} tokens does not fill one row of {length}")
    take = rows * length
    ids_arr, seg_arr, pos_arr = (np.asarray(a[: take + 1], np.int32) for a in (ids, segments, positions))
    inputs, targets = ids_arr[:take].reshape(rows, length), ids_arr[1 : take + 1].reshape(rows, length)
    segments_rows = seg_arr[:take].reshape(rows, length)
    # A target belongs to the same document as its input, else it would teach one document to predict the next.
    same_document = (seg_arr[:take] == seg_arr[1 : take + 1]).reshape(rows, length)
    # Segment ids restart in each row so that they stay small; equality within a row is all attention needs.
    segments_rows = segments_rows - segments_rows[:, :1] + 1
    positions_rows = pos_arr[:take].reshape(rows, length)
    return TokenArrays(inputs, targets, same_document.astype(np.float32), positions_rows, segments_rows)


def pretrain(model_cfg: ModelConfig, tokens: int, seed: int, batch_size: int = 32, lr: float = 3e-3) -> nnx.State:
    """Parameters of a base pretrained on `tokens` corpus tokens with a cosine schedule (0: random init)."""
    if tokens < 0:
        raise ValueError(f"pretraining tokens must be non-negative, got {tokens}")
    params = init_model(model_cfg, seed)[1]
    steps = tokens // (batch_size * model_cfg.max_len)
    if steps == 0:
        return params
    data = corpus_rows(corpus(tokens + model_cfg.max_len, seed), model_cfg.max_len)
    cfg = TrainConfig(budgets=(steps,), batch_size=batch_size, lr=lr, warmup_steps=min(100, steps // 10),
                      seed=seed, schedule="cosine")
    (_, _, params), = train(model_cfg, cfg, data)
    return params
