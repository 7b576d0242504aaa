"""Typed, validated configs: the model (with a table of size presets) and the training config.

Letters used in shapes across the package: B batch, T sequence length, D model width,
H query heads, K key/value heads, Dh head width, F MLP width, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from scaling.trainer.schedules import SCHEDULES


LAYER_TYPES = ("full_attention", "sliding_attention")  # ModelConfig.layer_types values, HF's names


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer; the defaults are Llama's (RMSNorm, rotary positions, SwiGLU MLP,
    grouped-query attention, no biases), and the options below cover Qwen2, Qwen3, Gemma 3, GPT-NeoX and GPT-2."""

    vocab_size: int  # tokens in the vocabulary, padding and end of sequence included
    d_model: int  # residual stream width D
    n_layers: int  # transformer blocks
    n_heads: int  # query heads H; D must be divisible by H unless head_width is given
    n_kv_heads: int  # key/value heads K; H must be divisible by K (K < H is grouped-query attention)
    d_ff: int  # MLP hidden width F
    max_len: int  # longest sequence the model is trained or evaluated on, in tokens (learned positions: table rows)
    tie_embeddings: bool = True  # reuse the input embedding as the output projection
    rope_theta: float = 10_000.0  # rotary base frequency
    compute_dtype: str = "float32"  # activations and matrix products ("bfloat16" on accelerators);
    # parameters and optimizer state stay float32, and losses are computed in float32
    head_width: int = 0  # head width Dh where a checkpoint sets it apart from D / H (some Llamas); 0: D / H
    norm: str = "rms"  # "rms" (RMSNorm, a scale) or "layer" (LayerNorm, a scale and a bias: GPT-NeoX, GPT-2)
    norm_eps: float = 1e-6  # added to the variance in every norm (HF rms_norm_eps / layer_norm_eps)
    mlp: str = "swiglu"  # "swiglu" (gate, up, down), "geglu_tanh" (gate, up, down with the tanh GELU on the
    # gate: Gemma), or up, activation, down with "gelu" (exact erf, GPT-NeoX) or "gelu_tanh" (the tanh
    # approximation GPT-2 calls gelu_new)
    positions: str = "rotary"  # "rotary" (queries and keys rotate) or "learned" (a max_len x D table added
    # to the token embeddings, GPT-2)
    rotary_fraction: float = 1.0  # leading fraction of each head's Dh dims that rotate, the rest pass through
    # unchanged (GPT-NeoX rotary_pct); rotary dims = int(Dh * fraction), as transformers rounds it
    qkv_bias: bool = False  # biases on the query, key and value projections (Qwen2, GPT-NeoX, GPT-2)
    out_bias: bool = False  # a bias on the attention output projection (GPT-NeoX, GPT-2)
    mlp_bias: bool = False  # biases on the MLP projections (GPT-NeoX, GPT-2)
    parallel_residual: bool = False  # x + attn(norm1 x) + mlp(norm2 x) instead of attention then MLP in
    # sequence (GPT-NeoX use_parallel_residual)
    qk_norm: bool = False  # an RMSNorm over each head's Dh on queries and keys, before rotary (Qwen3, Gemma 3)
    norm_scale_offset: float = 0.0  # RMSNorms scale by (offset + w), in float32 (Gemma: 1.0, its w starting at 0)
    sandwich_norms: bool = False  # norms on the attention and MLP outputs before each residual add, besides
    # the norms on their inputs (Gemma 3's post_attention_layernorm / post_feedforward_layernorm)
    scale_embeddings: bool = False  # token embeddings x sqrt(D) on input, the factor in the compute dtype (Gemma);
    # the output projection (tied) uses the table unscaled
    layer_types: tuple[str, ...] = ()  # per layer "full_attention" or "sliding_attention", as HF's config
    # names them; empty: every layer full
    sliding_window: int = 0  # keys a sliding layer's query sees, itself included (key j > t - window)
    rope_local_theta: float = 0.0  # rotary base of the sliding layers (Gemma 3 rope_local_base_freq); 0: rope_theta
    attention_scale_width: int = 0  # scores are scaled by this ** -0.5 (Gemma query_pre_attn_scalar); 0: Dh

    def __post_init__(self) -> None:
        # A config read back from JSON holds a list: frozen dataclasses compare and hash tuples.
        object.__setattr__(self, "layer_types", tuple(self.layer_types))
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.head_width < 0:
            raise ValueError(f"ModelConfig.head_width must be >= 0 (0: d_model / n_heads), got {self.head_width}")
        if not self.head_width and self.d_model % self.n_heads:
            raise ValueError(f"ModelConfig.d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"ModelConfig.n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"ModelConfig.compute_dtype must be float32 or bfloat16, got {self.compute_dtype!r}")
        for name, allowed in (("norm", ("rms", "layer")), ("mlp", ("swiglu", "geglu_tanh", "gelu", "gelu_tanh")),
                              ("positions", ("rotary", "learned"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"ModelConfig.norm_eps must be > 0, got {self.norm_eps}")
        if not 0.0 < self.rotary_fraction <= 1.0:
            raise ValueError(f"ModelConfig.rotary_fraction must lie in (0, 1], got {self.rotary_fraction}")
        if self.positions == "rotary" and self.rotary_dim % 2:
            raise ValueError(f"ModelConfig head width {self.head_dim} x rotary_fraction {self.rotary_fraction} "
                             "must give an even number of rotary dims")
        if self.norm != "rms" and (self.qk_norm or self.norm_scale_offset):
            raise ValueError("ModelConfig.qk_norm and norm_scale_offset need norm = \"rms\"")
        if self.layer_types and len(self.layer_types) != self.n_layers:
            raise ValueError(f"ModelConfig.layer_types has {len(self.layer_types)} entries for {self.n_layers} layers")
        unknown = set(self.layer_types) - set(LAYER_TYPES)
        if unknown:
            raise ValueError(f"ModelConfig.layer_types must be {' or '.join(LAYER_TYPES)}, got {sorted(unknown)[0]!r}")
        if self.sliding_window < 0 or ("sliding_attention" in self.layer_types) != (self.sliding_window > 0):
            raise ValueError(f"ModelConfig.sliding_window must be >= 1 exactly when a layer is sliding_attention, "
                             f"got {self.sliding_window}")
        if self.rope_local_theta < 0 or self.attention_scale_width < 0:
            raise ValueError("ModelConfig.rope_local_theta and attention_scale_width must be >= 0 (0: the default)")

    def window(self, layer: int) -> int | None:
        """Keys a query of `layer` sees back from itself, itself included (None: the whole causal prefix)."""
        sliding = self.layer_types and self.layer_types[layer] == "sliding_attention"
        return self.sliding_window if sliding else None

    def layer_theta(self, layer: int) -> float:
        """The rotary base of `layer`: rope_local_theta on sliding layers where it is set, else rope_theta."""
        return self.rope_local_theta if self.window(layer) is not None and self.rope_local_theta else self.rope_theta

    @property
    def attention_scale(self) -> float:
        """What attention scores are multiplied by before the softmax."""
        return (self.attention_scale_width or self.head_dim) ** -0.5

    @property
    def head_dim(self) -> int:
        return self.head_width or self.d_model // self.n_heads

    @property
    def rotary_dim(self) -> int:
        """Leading dims of each head that rotate (0 with learned positions)."""
        return int(self.head_dim * self.rotary_fraction) if self.positions == "rotary" else 0

    @property
    def non_embedding_params(self) -> int:
        """Parameters outside the embeddings (token and learned position tables) and the output
        projection: the N of scaling laws. Biases and norms count."""
        d, dh, f = self.d_model, self.head_dim, self.d_ff
        q_width, kv_width = self.n_heads * dh, self.n_kv_heads * dh
        attention = d * q_width * 2 + d * kv_width * 2  # q, o and k, v
        attention += (q_width + 2 * kv_width) * self.qkv_bias + d * self.out_bias
        gated = self.mlp in ("swiglu", "geglu_tanh")
        mlp = (3 if gated else 2) * d * f
        mlp += ((2 * f if gated else f) + d) * self.mlp_bias
        norm = d if self.norm == "rms" else 2 * d
        per_layer = attention + mlp + (4 if self.sandwich_norms else 2) * norm + 2 * dh * self.qk_norm
        return self.n_layers * per_layer + norm  # + the final norm

    @property
    def total_params(self) -> int:
        embeddings = self.vocab_size * self.d_model * (1 if self.tie_embeddings else 2)
        positions = self.max_len * self.d_model if self.positions == "learned" else 0
        return self.non_embedding_params + embeddings + positions

    def train_flops_per_token(self, context: int) -> float:
        """Training FLOPs per token: 6N plus the attention-score term 6·L·T·(H·Dh), which dominates tiny
        models (H·Dh = D unless head_width says otherwise); a sliding layer's T is at most its window."""
        keys = sum(min(context, self.window(layer) or context) for layer in range(self.n_layers))  # L·T unwindowed
        return 6.0 * self.non_embedding_params + 6.0 * keys * self.n_heads * self.head_dim


# The size presets, written out: each is (d_model, n_layers, n_heads, n_kv_heads), width doubling from one to
# the next; the MLP is 4x wide (SwiGLU at 8/3 x, rounded to a multiple of 8), and K = H except where
# grouped-query attention pays off at larger sizes.
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


# The projections an adapter may target, by their names in the model: attention's query, key, value and output, and
# the MLP's gate (SwiGLU only), up and down.
LORA_TARGETS = ("query", "key", "value", "out", "gate", "up", "down")


@dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters (LoRA, Hu et al. 2021) on some projections of a frozen base: each targeted W (D_in x D_out)
    computes x W + (alpha / rank) · dropout(x) A B with A (D_in x rank) and B (rank x D_out, zero at init) trained."""

    rank: int = 8  # r, the adapters' inner width
    alpha: float = 16.0  # the update is scaled by alpha / rank (PEFT's lora_alpha)
    dropout: float = 0.0  # dropout on the adapters' input while training (PEFT's lora_dropout)
    targets: tuple[str, ...] = ("query", "value")  # projections adapted, of LORA_TARGETS (PEFT's default for llama)

    def __post_init__(self) -> None:
        if not 1 <= self.rank <= 65_536:
            raise ValueError(f"adapter rank must lie in 1..65536, got {self.rank}")
        if not (self.alpha > 0 and self.alpha < float("inf")):
            raise ValueError(f"adapter alpha must be a number > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"adapter dropout must lie in [0, 1), got {self.dropout}")
        unknown = [t for t in self.targets if t not in LORA_TARGETS]
        if not self.targets or unknown or len(set(self.targets)) != len(self.targets):
            raise ValueError(f"adapter targets must be distinct names among {', '.join(LORA_TARGETS)}, "
                             f"got {list(self.targets)}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def label(self) -> str:
        """A short canonical name: lora-r8-a16, plus what differs from the defaults (-d0.05, -t<targets>)."""
        text = f"lora-r{self.rank}-a{self.alpha:g}"
        if self.dropout != LoraConfig.dropout:
            text += f"-d{self.dropout:g}"
        if self.targets != LoraConfig.targets:
            text += "-t" + ".".join(self.targets)
        return text


FULL = "full"  # the adapter label of full fine-tuning


def adapter_label(adapter: LoraConfig | None) -> str:
    """The label of an adapter on the results' `adapter` axis: "full" (none: every weight trains) or its own."""
    return FULL if adapter is None else adapter.label


@dataclass(frozen=True)
class TrainConfig:
    """How one cell is optimized: AdamW with linear warmup, then its schedule (wsd, cosine or constant),
    evaluated at each budget."""

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
    checkpoint_every: int = 0  # also offer a checkpoint every this many trunk steps (0: after each budget only);
    # where a run resumes from, never what it computes
    adapter: LoraConfig | None = None  # LoRA adapters on a frozen base; None: full fine-tuning (every weight trains)

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
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError(f"TrainConfig.decay_fraction must lie in (0, 1], got {self.decay_fraction}")
        if self.steps_axis not in ("branches", "separate"):
            raise ValueError(f"TrainConfig.steps_axis must be branches or separate, got {self.steps_axis!r}")
        if self.checkpoint_every < 0:
            raise ValueError(f"TrainConfig.checkpoint_every must be >= 0, got {self.checkpoint_every}")

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
