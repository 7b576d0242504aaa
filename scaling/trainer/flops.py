"""Training compute by phase: what a cell spends before its base is trained on (pretraining), in SFT, and in
the arms after SFT (RL's sampling and updates, RFT's sampling and fine-tuning), so that SFT and RL stand on one
compute axis and a table can carry the article's "training compute (relative)".

Counts are of matrix-multiply FLOPs, the convention of `ModelConfig.train_flops_per_token` (6N per trained
token plus the attention scores): a forward pass is a third of a training step (2N). Attention is counted as
the kernels that run it compute it. A row run whole (a training row, a prefill) is causal: its scores below the
diagonal, 2·L·T·(H·Dh) per token forward, which the CPU kernel and cuDNN visit and no more. A token decoded with
the key/value cache reads the whole buffer it is written into, masked: 4·L·T·(H·Dh), every score of the buffer.

Left out, as the convention leaves them out: the output projection to the vocabulary (2·D·V per token), the
embedding lookups and every elementwise operation (norms, softmax, rotary, activations, the optimizer).
tests/trainer/test_flops.py measures how far that puts a count below XLA's own.
"""

from __future__ import annotations

from scaling.trainer.config import ModelConfig

# The phases a cell's compute is counted in, in the order they happen; results.nc's `phase` coordinate.
PHASES = ("pretraining", "sft", "rl_sampling", "rl_update", "rft_sampling", "rft_update")


def forward_flops_per_token(cfg: ModelConfig, context: int) -> float:
    """One token's forward pass in a causal row of `context` positions: a third of a training step's."""
    return cfg.train_flops_per_token(context) / 3.0


def decode_flops_per_token(cfg: ModelConfig, length: int) -> float:
    """One token decoded against a key/value cache of `length` positions: 2N, and its query's scores and
    weighted values over every position of the cache (read whole, the positions past the row masked)."""
    return 2.0 * cfg.non_embedding_params + 4.0 * cfg.n_layers * length * cfg.n_heads * cfg.head_dim


def training_flops(cfg: ModelConfig, rows: int, length: int) -> float:
    """One optimizer step over `rows` rows of `length` tokens (forward and backward)."""
    return cfg.train_flops_per_token(length) * rows * length


def sampling_flops(cfg: ModelConfig, rows: int, prompt_span: int, decode_steps: int, length: int) -> float:
    """Sampling `rows` rows in a buffer of `length` positions: the causal prefill of the first `prompt_span`
    positions, then `decode_steps` cached steps of one token per row (every row runs each step, finished or not)."""
    prefill = forward_flops_per_token(cfg, prompt_span) * prompt_span
    return rows * (prefill + decode_steps * decode_flops_per_token(cfg, length))
