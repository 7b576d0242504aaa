"""Training compute by phase: what a cell spends before its base is trained on (pretraining), in SFT, and in
the arms after SFT (RL's sampling and updates, RFT's sampling and fine-tuning), so that SFT and RL stand on one
compute axis and a table can carry the article's "training compute (relative)".

Counts are of matrix-multiply FLOPs, the convention of `ModelConfig.train_flops_per_token` (6N per trained
token plus the attention scores): a forward pass is a third of a training step (2N), and a token decoded with
the key/value cache attends over the buffer it is written into.
"""

from __future__ import annotations

from scaling.trainer.config import ModelConfig

# The phases a cell's compute is counted in, in the order they happen; results.nc's `phase` coordinate.
PHASES = ("pretraining", "sft", "rl_sampling", "rl_update", "rft_sampling", "rft_update")


def forward_flops_per_token(cfg: ModelConfig, context: int) -> float:
    """One token's forward pass attending over `context` positions: a third of a training step's."""
    return cfg.train_flops_per_token(context) / 3.0


def training_flops(cfg: ModelConfig, rows: int, length: int) -> float:
    """One optimizer step over `rows` rows of `length` tokens (forward and backward)."""
    return cfg.train_flops_per_token(length) * rows * length


def sampling_flops(cfg: ModelConfig, rows: int, prompt_span: int, decode_steps: int, length: int) -> float:
    """Sampling `rows` rows in a buffer of `length` positions: the prefill of the first `prompt_span` positions,
    then `decode_steps` cached steps of one token per row (every row runs each step, finished or not)."""
    return forward_flops_per_token(cfg, length) * rows * (prompt_span + decode_steps)
