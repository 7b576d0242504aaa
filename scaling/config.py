"""Typed, validated configs: model size presets from one scale knob, and the training config.

Letters used in shapes across the package: B batch, T sequence length, D model width,
H query heads, K key/value heads, Dh head width, F MLP width, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer (RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention)."""

    vocab_size: int  # tokens in the vocabulary, padding and end of sequence included
    d_model: int  # residual stream width D
    n_layers: int  # transformer blocks
    n_heads: int  # query heads H; D must be divisible by H
    n_kv_heads: int  # key/value heads K; H must be divisible by K (K < H is grouped-query attention)
    d_ff: int  # SwiGLU hidden width F
    max_len: int  # longest sequence the model is trained or evaluated on, in tokens
    tie_embeddings: bool = True  # reuse the input embedding as the output projection
    rope_theta: float = 10_000.0  # rotary base frequency
    compute_dtype: str = "float32"  # activations and matrix products ("bfloat16" on accelerators);
    # parameters and optimizer state stay float32, and losses are computed in float32

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"ModelConfig.d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"ModelConfig.n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"ModelConfig.compute_dtype must be float32 or bfloat16, got {self.compute_dtype!r}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("ModelConfig head width d_model / n_heads must be even for rotary positions")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def non_embedding_params(self) -> int:
        """Parameters outside the embedding and output projection (the N of scaling laws)."""
        d, dh = self.d_model, self.head_dim
        attention = d * self.n_heads * dh * 2 + d * self.n_kv_heads * dh * 2  # q, o and k, v
        mlp = 3 * d * self.d_ff
        norms = 2 * d
        return self.n_layers * (attention + mlp + norms) + d  # + the final norm

    @property
    def total_params(self) -> int:
        embeddings = self.vocab_size * self.d_model * (1 if self.tie_embeddings else 2)
        return self.non_embedding_params + embeddings

    def train_flops_per_token(self, context: int) -> float:
        """Training FLOPs per token: 6N plus the attention-score term 6·L·T·D, which dominates tiny models."""
        return 6.0 * self.non_embedding_params + 6.0 * self.n_layers * context * self.d_model


# One scale knob: each preset is (d_model, n_layers, n_heads); the MLP is 4x wide (SwiGLU at 8/3 x,
# rounded to a multiple of 8), and K = H except where grouped-query attention pays off at larger sizes.
_PRESET_SHAPES: dict[str, tuple[int, int, int, int]] = {
    # name: (d_model, n_layers, n_heads, n_kv_heads)
    "tiny": (32, 2, 2, 2),
    "xs": (64, 2, 4, 4),
    "s": (128, 4, 4, 4),
    "m": (256, 6, 8, 8),
    "l": (512, 8, 8, 4),
    "xl": (1024, 16, 16, 4),
    "xxl": (2048, 20, 16, 4),
}
PRESETS: tuple[str, ...] = tuple(_PRESET_SHAPES)


def preset(name: str, vocab_size: int, max_len: int) -> ModelConfig:
    """The ModelConfig of a named size preset for a given vocabulary and context length."""
    if name not in _PRESET_SHAPES:
        raise ValueError(f"unknown model size {name!r}; presets are {', '.join(PRESETS)}")
    d_model, n_layers, n_heads, n_kv_heads = _PRESET_SHAPES[name]
    d_ff = 8 * (d_model * 8 // 3 // 8)
    return ModelConfig(
        vocab_size=vocab_size,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        d_ff=d_ff,
        max_len=max_len,
    )


@dataclass(frozen=True)
class TrainConfig:
    """How one cell is optimized: AdamW with warmup, then a constant rate, evaluated at each budget."""

    budgets: tuple[int, ...]  # optimizer steps at which the model is evaluated (the steps axis)
    batch_size: int = 32  # sequences per step
    lr: float = 3e-3  # peak learning rate
    warmup_steps: int = 20  # linear warmup from 0 to lr
    weight_decay: float = 0.1  # AdamW decoupled weight decay (not applied to norms)
    grad_clip: float = 1.0  # global gradient-norm clip
    seed: int = 0  # initialization and data-order seed
    schedule: str = "wsd"  # "wsd" (warmup-stable-decay), "cosine" or "constant"
    decay_fraction: float = 0.2  # wsd: each budget's decay branch is this fraction of the budget
    steps_axis: str = "branches"  # "branches": one run, evaluated at each budget (wsd: an annealed
    # branch per budget); "separate": one fresh run per budget, to validate the branches

    def __post_init__(self) -> None:
        if not self.budgets or any(b < 1 for b in self.budgets):
            raise ValueError(f"TrainConfig.budgets must be positive step counts, got {self.budgets}")
        if list(self.budgets) != sorted(set(self.budgets)):
            raise ValueError(f"TrainConfig.budgets must be strictly increasing, got {self.budgets}")
        if self.batch_size < 1:
            raise ValueError(f"TrainConfig.batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"TrainConfig.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule not in ("wsd", "cosine", "constant"):
            raise ValueError(f"TrainConfig.schedule must be wsd, cosine or constant, got {self.schedule!r}")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError(f"TrainConfig.decay_fraction must lie in (0, 1], got {self.decay_fraction}")
        if self.steps_axis not in ("branches", "separate"):
            raise ValueError(f"TrainConfig.steps_axis must be branches or separate, got {self.steps_axis!r}")

    @property
    def total_steps(self) -> int:
        """Optimizer steps actually run for all budgets (the compute, in steps)."""
        if self.steps_axis == "separate":
            return sum(self.budgets)
        if self.schedule == "wsd":
            return self.budgets[-1] - self.decay_steps(self.budgets[-1]) + sum(map(self.decay_steps, self.budgets))
        return self.budgets[-1]

    def decay_steps(self, budget: int) -> int:
        """Length of the wsd decay branch that ends at `budget`."""
        return max(1, int(self.decay_fraction * budget + 0.5))  # half up: 2.5 steps -> 3

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
