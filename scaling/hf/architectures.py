"""The Hugging Face architectures we read and write: config.json <-> ModelConfig, and each checkpoint
tensor's place in our parameter tree, with the transpose, split or fuse it takes.

One table per architecture (`Architecture.tensors`) drives both directions: import splits each HF
tensor into our parameters, export fuses ours back. HF `nn.Linear` weights are [out, in] and our
kernels [in, out]; GPT-2's `Conv1D` weights are already [in, out]. GPT-NeoX fuses query, key and value
row-wise per head as [H, 3, Dh] (its attention views the projection as (..., H, 3·Dh) and chunks the
last axis), GPT-2 column-wise as [q | k | v].
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scaling.trainer.config import ModelConfig
from scaling.errors import UserError


@dataclass(frozen=True)
class Tensor:
    """One checkpoint tensor and the parameters of ours it holds."""

    name: str  # HF name, as export writes it
    shape: tuple[int, ...]  # HF shape
    ours: tuple[str, ...]  # our parameter paths ("/"-joined), in the order `split` returns them
    split: Callable[[np.ndarray], tuple[np.ndarray, ...]]  # HF tensor -> our parameters
    fuse: Callable[..., np.ndarray]  # our parameters (in `ours` order) -> HF tensor


@dataclass(frozen=True)
class Architecture:
    name: str  # HF model_type
    hf_class: str  # the transformers class export names in config.json "architectures"
    model_config: Callable[[dict], ModelConfig]  # config.json -> ModelConfig, UserError on what we lack
    tensors: Callable[[ModelConfig], list[Tensor]]  # the checkpoint's tensors for a config
    hf_fields: Callable[[ModelConfig, dict], dict]  # config.json fields that carry a ModelConfig
    aliases: dict[str, str]  # other names checkpoints use for a tensor -> the name in `tensors`
    ignored: str  # regex of checkpoint entries that are buffers, not parameters (fullmatch)


def _copy(name: str, shape: tuple[int, ...], ours: str) -> Tensor:
    return Tensor(name, shape, (ours,), lambda a: (a,), lambda a: a)


def _linear(name: str, ours: str, d_out: int, d_in: int, bias: bool) -> list[Tensor]:
    """An nn.Linear: weight [out, in] is our kernel transposed."""
    weight = Tensor(f"{name}.weight", (d_out, d_in), (f"{ours}/kernel",), lambda w: (w.T,), lambda k: k.T)
    return [weight, _copy(f"{name}.bias", (d_out,), f"{ours}/bias")] if bias else [weight]


def _conv1d(name: str, ours: str, d_in: int, d_out: int) -> list[Tensor]:
    """A GPT-2 Conv1D: weight [in, out] is our kernel as is."""
    return [_copy(f"{name}.weight", (d_in, d_out), f"{ours}/kernel"), _copy(f"{name}.bias", (d_out,), f"{ours}/bias")]


def _norm(name: str, ours: str, d: int, bias: bool) -> list[Tensor]:
    scale = _copy(f"{name}.weight", (d,), f"{ours}/scale")
    return [scale, _copy(f"{name}.bias", (d,), f"{ours}/bias")] if bias else [scale]


def _attention_paths(block: str, leaf: str) -> tuple[str, ...]:
    return tuple(f"{block}/attention/{p}/{leaf}" for p in ("query", "key", "value"))


def _neox_qkv(name: str, block: str, H: int, Dh: int, D: int, bias: bool) -> list[Tensor]:
    """query_key_value: rows laid out [H, 3, Dh] (per head: its query, key, value rows)."""

    def split_weight(w_3HDhxD):
        w_Hx3xDhxD = w_3HDhxD.reshape(H, 3, Dh, D)
        return tuple(w_Hx3xDhxD[:, j].reshape(H * Dh, D).T for j in range(3))

    def fuse_weight(*kernels_DxHDh):
        return np.stack([k.T.reshape(H, Dh, D) for k in kernels_DxHDh], axis=1).reshape(3 * H * Dh, D)

    def split_bias(b_3HDh):
        return tuple(b_3HDh.reshape(H, 3, Dh)[:, j].reshape(H * Dh) for j in range(3))

    def fuse_bias(*biases_HDh):
        return np.stack([b.reshape(H, Dh) for b in biases_HDh], axis=1).reshape(3 * H * Dh)

    tensors = [Tensor(f"{name}.weight", (3 * H * Dh, D), _attention_paths(block, "kernel"), split_weight, fuse_weight)]
    if bias:
        tensors.append(Tensor(f"{name}.bias", (3 * H * Dh,), _attention_paths(block, "bias"), split_bias, fuse_bias))
    return tensors


def _gpt2_c_attn(name: str, block: str, D: int) -> list[Tensor]:
    """c_attn: a Conv1D [D, 3D] whose output columns are [q | k | v]."""
    return [
        Tensor(f"{name}.weight", (D, 3 * D), _attention_paths(block, "kernel"),
               lambda w: tuple(np.split(w, 3, axis=1)), lambda *k: np.concatenate(k, axis=1)),
        Tensor(f"{name}.bias", (3 * D,), _attention_paths(block, "bias"),
               lambda b: tuple(np.split(b, 3)), lambda *b: np.concatenate(b)),
    ]


# --- config.json -> ModelConfig -----------------------------------------------------------------------------

def _int(hf: dict, key: str, default: int | None = None) -> int:
    value = hf.get(key, default)
    if value is None:
        raise UserError(f"config.json lacks {key}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"config.json {key} must be an integer, got {value!r}")
    return value


def _refuse(hf: dict, **unsupported) -> None:
    """Fail on an option whose value we do not implement; `unsupported` maps key -> (default, supported value)."""
    for key, (default, supported) in unsupported.items():
        value = hf.get(key, default)
        if value != supported:
            raise UserError(f"config.json {key}={json.dumps(value)} is not supported (only {json.dumps(supported)})")


def _rope(hf: dict, theta_key: str, fraction_key: str | None = None, fraction: float = 1.0) -> tuple[float, float]:
    """(theta, rotary fraction) from v5 rope_parameters or v4 top-level keys; only unscaled rotary is supported."""
    for key in ("rope_parameters", "rope_scaling"):
        value = hf.get(key)
        if value is None:
            continue
        kind = value.get("rope_type", value.get("type", "default")) if isinstance(value, dict) else value
        if kind != "default":
            raise UserError(f"config.json {key} of type {kind!r} is not supported (only plain rotary: null or default)")
    parameters = hf.get("rope_parameters") or {}
    theta = parameters.get("rope_theta", hf.get(theta_key, 10_000.0))
    if fraction_key:
        fraction = parameters.get("partial_rotary_factor", hf.get(fraction_key, fraction))
    return float(theta), float(fraction)


_GELU = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


def _gelu(hf: dict, key: str, default: str) -> str:
    act = hf.get(key, default)
    if act not in _GELU:
        raise UserError(f"config.json {key}={act!r} is not supported (only {', '.join(_GELU)})")
    return _GELU[act]


def _build(**fields) -> ModelConfig:
    try:
        return ModelConfig(**fields)
    except ValueError as error:
        raise UserError(f"config.json describes a model we cannot build: {error}") from None


def _llama_config(hf: dict, qkv_bias: bool = False) -> ModelConfig:
    _refuse(hf, hidden_act=("silu", "silu"), attention_bias=(False, False), mlp_bias=(False, False))
    d, h = _int(hf, "hidden_size"), _int(hf, "num_attention_heads")
    head_dim = hf.get("head_dim") or d // h
    theta, _ = _rope(hf, "rope_theta")
    return _build(vocab_size=_int(hf, "vocab_size"), d_model=d, n_layers=_int(hf, "num_hidden_layers"), n_heads=h,
                  n_kv_heads=hf.get("num_key_value_heads") or h, d_ff=_int(hf, "intermediate_size"),
                  max_len=_int(hf, "max_position_embeddings", 2048), tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
                  rope_theta=theta, head_width=0 if head_dim * h == d else head_dim,
                  norm_eps=float(hf.get("rms_norm_eps", 1e-6)), qkv_bias=qkv_bias)


def _qwen2_config(hf: dict) -> ModelConfig:
    _refuse(hf, use_sliding_window=(False, False))
    if "sliding_attention" in (hf.get("layer_types") or ()):
        raise UserError("config.json layer_types has sliding_attention layers, which are not supported")
    return _llama_config(hf, qkv_bias=True)


def _qwen3_config(hf: dict) -> ModelConfig:
    _refuse(hf, use_sliding_window=(False, False))
    if "sliding_attention" in (hf.get("layer_types") or ()):
        raise UserError("config.json layer_types has sliding_attention layers, which are not supported")
    return dataclasses.replace(_llama_config(hf), qk_norm=True)


def _gemma3_rope(hf: dict) -> tuple[float, float]:
    """(global theta, local theta): v5 rope_parameters per layer type, or v4 rope_theta / rope_local_base_freq
    (transformers' defaults 1e6 and 1e4); only unscaled rotary is supported."""
    parameters = hf.get("rope_parameters")
    if isinstance(parameters, dict) and parameters and set(parameters) <= {"full_attention", "sliding_attention"}:
        for layer_type, value in parameters.items():
            kind = (value or {}).get("rope_type", "default")
            if kind != "default":
                raise UserError(f"config.json rope_parameters of {layer_type} of type {kind!r} is not supported "
                                "(only plain rotary: default)")
        full, local = parameters.get("full_attention") or {}, parameters.get("sliding_attention") or {}
        return float(full.get("rope_theta", 1_000_000.0)), float(local.get("rope_theta", 10_000.0))
    _rope(hf, "rope_theta")  # refuses scaled rotary
    theta = (parameters or {}).get("rope_theta", hf.get("rope_theta", 1_000_000.0))
    return float(theta), float(hf.get("rope_local_base_freq", 10_000.0))


def _gemma3_config(hf: dict) -> ModelConfig:
    _refuse(hf, hidden_activation=("gelu_pytorch_tanh", "gelu_pytorch_tanh"), attention_bias=(False, False),
            attn_logit_softcapping=(None, None), final_logit_softcapping=(None, None),
            use_bidirectional_attention=(False, False))
    layers = _int(hf, "num_hidden_layers")
    layer_types = hf.get("layer_types")
    if layer_types is None:  # transformers' default: every sliding_window_pattern-th layer full, the rest sliding
        pattern = _int(hf, "sliding_window_pattern", 6)
        layer_types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(layers)]
    sliding = "sliding_attention" in layer_types
    window = _int(hf, "sliding_window") if sliding else 0
    theta, local_theta = _gemma3_rope(hf)
    d, h = _int(hf, "hidden_size"), _int(hf, "num_attention_heads")
    head_dim = _int(hf, "head_dim", 256)
    return _build(vocab_size=_int(hf, "vocab_size"), d_model=d, n_layers=layers, n_heads=h,
                  n_kv_heads=hf.get("num_key_value_heads") or h, d_ff=_int(hf, "intermediate_size"),
                  max_len=_int(hf, "max_position_embeddings", 131_072),
                  tie_embeddings=bool(hf.get("tie_word_embeddings", True)), rope_theta=theta,
                  head_width=0 if head_dim * h == d else head_dim, norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
                  mlp="geglu_tanh", qk_norm=True, norm_scale_offset=1.0, sandwich_norms=True, scale_embeddings=True,
                  layer_types=tuple(layer_types), sliding_window=window,
                  rope_local_theta=local_theta if sliding else 0.0,
                  attention_scale_width=_int(hf, "query_pre_attn_scalar", 256))


def _gpt_neox_config(hf: dict) -> ModelConfig:
    theta, fraction = _rope(hf, "rotary_emb_base", "rotary_pct", 0.25)
    bias = bool(hf.get("attention_bias", True))
    return _build(vocab_size=_int(hf, "vocab_size"), d_model=_int(hf, "hidden_size"), n_layers=_int(hf, "num_hidden_layers"),
                  n_heads=_int(hf, "num_attention_heads"), n_kv_heads=_int(hf, "num_attention_heads"),
                  d_ff=_int(hf, "intermediate_size"), max_len=_int(hf, "max_position_embeddings", 2048),
                  tie_embeddings=bool(hf.get("tie_word_embeddings", False)), rope_theta=theta, norm="layer",
                  norm_eps=float(hf.get("layer_norm_eps", 1e-5)), mlp=_gelu(hf, "hidden_act", "gelu"),
                  rotary_fraction=fraction, qkv_bias=bias, out_bias=bias, mlp_bias=True,
                  parallel_residual=bool(hf.get("use_parallel_residual", True)))


def _gpt2_config(hf: dict) -> ModelConfig:
    _refuse(hf, scale_attn_weights=(True, True), scale_attn_by_inverse_layer_idx=(False, False),
            reorder_and_upcast_attn=(False, False), add_cross_attention=(False, False))
    d = _int(hf, "n_embd")
    return _build(vocab_size=_int(hf, "vocab_size"), d_model=d, n_layers=_int(hf, "n_layer"), n_heads=_int(hf, "n_head"),
                  n_kv_heads=_int(hf, "n_head"), d_ff=hf.get("n_inner") or 4 * d, max_len=_int(hf, "n_positions", 1024),
                  tie_embeddings=bool(hf.get("tie_word_embeddings", True)), norm="layer",
                  norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)), mlp=_gelu(hf, "activation_function", "gelu_new"),
                  positions="learned", qkv_bias=True, out_bias=True, mlp_bias=True)


# --- tensor tables ------------------------------------------------------------------------------------------

def _llama_tensors(cfg: ModelConfig) -> list[Tensor]:
    """Llama, and the models that add parts to it: Qwen2 (biases), Qwen3 (q/k norms), Gemma 3 (q/k norms and
    four norms a layer: input, after attention, before and after the MLP)."""
    V, D, F, Dh = cfg.vocab_size, cfg.d_model, cfg.d_ff, cfg.head_dim
    tensors = [_copy("model.embed_tokens.weight", (V, D), "embed/embedding")]
    for i in range(cfg.n_layers):
        hf, ours = f"model.layers.{i}", f"blocks/{i}"
        tensors += _norm(f"{hf}.input_layernorm", f"{ours}/attention_norm", D, bias=False)
        for name, path, heads in (("q_proj", "query", cfg.n_heads), ("k_proj", "key", cfg.n_kv_heads),
                                  ("v_proj", "value", cfg.n_kv_heads)):
            tensors += _linear(f"{hf}.self_attn.{name}", f"{ours}/attention/{path}", heads * Dh, D, cfg.qkv_bias)
        if cfg.qk_norm:
            tensors += _norm(f"{hf}.self_attn.q_norm", f"{ours}/attention/query_norm", Dh, bias=False)
            tensors += _norm(f"{hf}.self_attn.k_norm", f"{ours}/attention/key_norm", Dh, bias=False)
        tensors += _linear(f"{hf}.self_attn.o_proj", f"{ours}/attention/out", D, cfg.n_heads * Dh, bias=False)
        if cfg.sandwich_norms:  # Gemma: post_attention_layernorm is the norm after attention, not before the MLP
            tensors += _norm(f"{hf}.post_attention_layernorm", f"{ours}/attention_post_norm", D, bias=False)
            tensors += _norm(f"{hf}.pre_feedforward_layernorm", f"{ours}/mlp_norm", D, bias=False)
            tensors += _norm(f"{hf}.post_feedforward_layernorm", f"{ours}/mlp_post_norm", D, bias=False)
        else:
            tensors += _norm(f"{hf}.post_attention_layernorm", f"{ours}/mlp_norm", D, bias=False)
        tensors += _linear(f"{hf}.mlp.gate_proj", f"{ours}/mlp/gate", F, D, bias=False)
        tensors += _linear(f"{hf}.mlp.up_proj", f"{ours}/mlp/up", F, D, bias=False)
        tensors += _linear(f"{hf}.mlp.down_proj", f"{ours}/mlp/down", D, F, bias=False)
    tensors += _norm("model.norm", "final_norm", D, bias=False)
    return tensors if cfg.tie_embeddings else tensors + _linear("lm_head", "lm_head", V, D, bias=False)


def _gpt_neox_tensors(cfg: ModelConfig) -> list[Tensor]:
    V, D, F, H, Dh = cfg.vocab_size, cfg.d_model, cfg.d_ff, cfg.n_heads, cfg.head_dim
    tensors = [_copy("gpt_neox.embed_in.weight", (V, D), "embed/embedding")]
    for i in range(cfg.n_layers):
        hf, ours = f"gpt_neox.layers.{i}", f"blocks/{i}"
        tensors += _norm(f"{hf}.input_layernorm", f"{ours}/attention_norm", D, bias=True)
        tensors += _neox_qkv(f"{hf}.attention.query_key_value", ours, H, Dh, D, cfg.qkv_bias)
        tensors += _linear(f"{hf}.attention.dense", f"{ours}/attention/out", D, H * Dh, cfg.out_bias)
        tensors += _norm(f"{hf}.post_attention_layernorm", f"{ours}/mlp_norm", D, bias=True)
        tensors += _linear(f"{hf}.mlp.dense_h_to_4h", f"{ours}/mlp/up", F, D, bias=True)
        tensors += _linear(f"{hf}.mlp.dense_4h_to_h", f"{ours}/mlp/down", D, F, bias=True)
    tensors += _norm("gpt_neox.final_layer_norm", "final_norm", D, bias=True)
    return tensors if cfg.tie_embeddings else tensors + _linear("embed_out", "lm_head", V, D, bias=False)


def _gpt2_tensors(cfg: ModelConfig) -> list[Tensor]:
    V, D, F = cfg.vocab_size, cfg.d_model, cfg.d_ff
    tensors = [_copy("transformer.wte.weight", (V, D), "embed/embedding"),
               _copy("transformer.wpe.weight", (cfg.max_len, D), "position_embed/embedding")]
    for i in range(cfg.n_layers):
        hf, ours = f"transformer.h.{i}", f"blocks/{i}"
        tensors += _norm(f"{hf}.ln_1", f"{ours}/attention_norm", D, bias=True)
        tensors += _gpt2_c_attn(f"{hf}.attn.c_attn", ours, D)
        tensors += _conv1d(f"{hf}.attn.c_proj", f"{ours}/attention/out", D, D)
        tensors += _norm(f"{hf}.ln_2", f"{ours}/mlp_norm", D, bias=True)
        tensors += _conv1d(f"{hf}.mlp.c_fc", f"{ours}/mlp/up", D, F)
        tensors += _conv1d(f"{hf}.mlp.c_proj", f"{ours}/mlp/down", F, D)
    tensors += _norm("transformer.ln_f", "final_norm", D, bias=True)
    return tensors if cfg.tie_embeddings else tensors + _linear("lm_head", "lm_head", V, D, bias=False)


# --- ModelConfig -> config.json fields ----------------------------------------------------------------------

def _set_rope(hf: dict, theta_key: str, theta: float, fraction_key: str | None = None, fraction: float = 1.0) -> dict:
    """The rotary fields in the style the config already uses (v5 rope_parameters, else v4 top-level keys)."""
    if isinstance(hf.get("rope_parameters"), dict):
        parameters = {**hf["rope_parameters"], "rope_theta": theta}
        if fraction_key:
            parameters["partial_rotary_factor"] = fraction
        return {"rope_parameters": parameters}
    return {theta_key: theta, **({fraction_key: fraction} if fraction_key else {})}


def _llama_fields(cfg: ModelConfig, hf: dict) -> dict:
    fields = {"vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "intermediate_size": cfg.d_ff,
              "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads,
              "max_position_embeddings": cfg.max_len, "rms_norm_eps": cfg.norm_eps, "tie_word_embeddings": cfg.tie_embeddings,
              **_set_rope(hf, "rope_theta", cfg.rope_theta)}
    if cfg.head_width or hf.get("head_dim") is not None:
        fields["head_dim"] = cfg.head_dim
    return fields


def _gemma3_fields(cfg: ModelConfig, hf: dict) -> dict:
    fields = {"vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "intermediate_size": cfg.d_ff,
              "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads,
              "head_dim": cfg.head_dim, "max_position_embeddings": cfg.max_len, "rms_norm_eps": cfg.norm_eps,
              "tie_word_embeddings": cfg.tie_embeddings, "query_pre_attn_scalar": cfg.attention_scale_width or cfg.head_dim,
              "layer_types": list(cfg.layer_types) or ["full_attention"] * cfg.n_layers,
              "sliding_window": cfg.sliding_window or hf.get("sliding_window")}
    local_theta = cfg.rope_local_theta or cfg.rope_theta
    if isinstance(hf.get("rope_parameters"), dict) or not hf:
        parameters = hf.get("rope_parameters") or {}
        fields["rope_parameters"] = {
            "full_attention": {**parameters.get("full_attention", {"rope_type": "default"}), "rope_theta": cfg.rope_theta},
            "sliding_attention": {**parameters.get("sliding_attention", {"rope_type": "default"}),
                                  "rope_theta": local_theta}}
    else:
        fields |= {"rope_theta": cfg.rope_theta, "rope_local_base_freq": local_theta}
    return fields


def _gpt_neox_fields(cfg: ModelConfig, hf: dict) -> dict:
    return {"vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "intermediate_size": cfg.d_ff,
            "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads, "max_position_embeddings": cfg.max_len,
            "layer_norm_eps": cfg.norm_eps, "tie_word_embeddings": cfg.tie_embeddings,
            "use_parallel_residual": cfg.parallel_residual, "attention_bias": cfg.qkv_bias,
            **_set_rope(hf, "rotary_emb_base", cfg.rope_theta, "rotary_pct", cfg.rotary_fraction)}


def _gpt2_fields(cfg: ModelConfig, hf: dict) -> dict:
    return {"vocab_size": cfg.vocab_size, "n_embd": cfg.d_model, "n_inner": cfg.d_ff, "n_layer": cfg.n_layers,
            "n_head": cfg.n_heads, "n_positions": cfg.max_len, "layer_norm_epsilon": cfg.norm_eps,
            "tie_word_embeddings": cfg.tie_embeddings}


_LLAMA_BUFFERS = r".*\.rotary_emb\.inv_freq"
ARCHITECTURES: dict[str, Architecture] = {
    "llama": Architecture("llama", "LlamaForCausalLM", _llama_config, _llama_tensors, _llama_fields, {}, _LLAMA_BUFFERS),
    "qwen2": Architecture("qwen2", "Qwen2ForCausalLM", _qwen2_config, _llama_tensors, _llama_fields, {}, _LLAMA_BUFFERS),
    "qwen3": Architecture("qwen3", "Qwen3ForCausalLM", _qwen3_config, _llama_tensors, _llama_fields, {}, _LLAMA_BUFFERS),
    # The text-only Gemma 3 (Gemma 3 270M and 1B); the multimodal "gemma3" (4B and up) is refused by name.
    "gemma3_text": Architecture("gemma3_text", "Gemma3ForCausalLM", _gemma3_config, _llama_tensors, _gemma3_fields, {},
                                r".*\.rotary_emb\..*inv_freq|model\.embed_tokens\.embed_scale"),
    # transformers 5 names GPT-NeoX's output layer lm_head; Pythia checkpoints call it embed_out.
    "gpt_neox": Architecture("gpt_neox", "GPTNeoXForCausalLM", _gpt_neox_config, _gpt_neox_tensors, _gpt_neox_fields,
                             {"lm_head.weight": "embed_out.weight"},
                             r"gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)"),
    "gpt2": Architecture("gpt2", "GPT2LMHeadModel", _gpt2_config, _gpt2_tensors, _gpt2_fields, {},
                         r"transformer\.h\.\d+\.attn\.(bias|masked_bias)"),
}
SUPPORTED = tuple(ARCHITECTURES)


def architecture_of(hf: dict) -> Architecture:
    """The architecture of a config.json, after refusing what none of ours can run."""
    model_type = hf.get("model_type")
    if model_type == "gemma3":
        raise UserError("model_type 'gemma3' (Gemma 3 with its vision tower) is not supported; text-only "
                        "gemma3_text checkpoints are")
    if model_type not in ARCHITECTURES:
        raise UserError(f"model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED)}")
    if hf.get("quantization_config") is not None:
        raise UserError("quantized checkpoints (config.json quantization_config) are not supported; use float weights")
    return ARCHITECTURES[model_type]


def canonical_name(arch: Architecture, name: str) -> str:
    """A checkpoint tensor's name in `arch.tensors` terms (GPT-2's original checkpoints lack `transformer.`)."""
    name = arch.aliases.get(name, name)
    if arch.name == "gpt2" and not name.startswith(("transformer.", "lm_head.")):
        name = f"transformer.{name}"
    return name


def is_buffer(arch: Architecture, cfg: ModelConfig, name: str) -> bool:
    """Entries that are not parameters: saved buffers, and an output layer that tied embeddings replace."""
    tied_head = cfg.tie_embeddings and name in ("lm_head.weight", "embed_out.weight")
    return tied_head or re.fullmatch(arch.ignored, name) is not None


def hf_config(arch: Architecture, cfg: ModelConfig, original: dict) -> dict:
    """config.json for `cfg`: the original one (kept for every field we do not model) with ours written over it,
    or, for a model not imported from Hugging Face, a Llama config."""
    if not original:
        original = _native_llama(cfg)
    fields = {**original, **arch.hf_fields(cfg, original), "model_type": arch.name, "architectures": [arch.hf_class]}
    # Weights are written float32; a bfloat16 dtype left in config.json would make transformers downcast them.
    fields["dtype"] = "float32"
    if "torch_dtype" in fields:
        fields["torch_dtype"] = "float32"
    fields.pop("quantization_config", None)
    return fields


def _native_llama(cfg: ModelConfig) -> dict:
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    differing = [name for name in _NOT_IN_LLAMA if getattr(cfg, name) != defaults[name]]
    if differing:
        raise UserError(f"this model cannot be written as a Llama checkpoint: it sets {', '.join(differing)}")
    return {"hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "rope_scaling": None,
            "initializer_range": 0.02, "use_cache": True}


# ModelConfig options a Llama checkpoint cannot express; a native model must leave them at their defaults.
_NOT_IN_LLAMA = ("norm", "mlp", "positions", "rotary_fraction", "qkv_bias", "out_bias", "mlp_bias", "parallel_residual",
                 "qk_norm", "norm_scale_offset", "sandwich_norms", "scale_embeddings", "layer_types", "sliding_window",
                 "rope_local_theta", "attention_scale_width")
