"""Tiny random transformers models the Hugging Face tests share, one per architecture edge case."""

import os

# Set before transformers is imported: nothing in these tests may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

transformers.logging.set_verbosity_error()  # shard progress bars and init notices would bury test output

VOCAB = 211  # odd on purpose: no size coincides with another
SIZES = {"llama": dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                       max_position_embeddings=64),
         "gpt_neox": dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=64),
         "gpt2": dict(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64)}
GEMMA3_LAYERS = ["sliding_attention", "full_attention", "sliding_attention"]
GEMMA3_ROPE = {"full_attention": {"rope_type": "default", "rope_theta": 30_000.0},
               "sliding_attention": {"rope_type": "default", "rope_theta": 700.0}}
NO_SPECIAL_TOKENS = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)

# name: (config class, its options); each case is an edge of the mapping that a mistake would show in the logits.
CASES = {
    "llama_gqa_untied": (transformers.LlamaConfig, {**SIZES["llama"], "num_key_value_heads": 2, "tie_word_embeddings": False,
                                                    "rope_theta": 500.0, "rms_norm_eps": 1e-5}),
    "llama_tied_wide_heads": (transformers.LlamaConfig, {**SIZES["llama"], "num_key_value_heads": 1, "head_dim": 32,
                                                         "tie_word_embeddings": True}),
    "qwen2_gqa_bias_tied": (transformers.Qwen2Config, {**SIZES["llama"], "num_key_value_heads": 2, "tie_word_embeddings": True}),
    "neox_quarter_rotary_parallel": (transformers.GPTNeoXConfig, {**SIZES["gpt_neox"], "rotary_pct": 0.25,
                                                                   "use_parallel_residual": True}),
    "neox_half_rotary_sequential": (transformers.GPTNeoXConfig, {**SIZES["gpt_neox"], "rotary_pct": 0.5,
                                                                  "rotary_emb_base": 1000.0, "use_parallel_residual": False}),
    "gpt2_tied_learned_positions": (transformers.GPT2Config, {**SIZES["gpt2"], "n_inner": 96}),
    "qwen3_gqa_qk_norm_untied": (transformers.Qwen3Config, {**SIZES["llama"], "num_key_value_heads": 2, "head_dim": 32,
                                                           "tie_word_embeddings": False, "rope_theta": 5000.0}),
    "qwen3_mqa_tied": (transformers.Qwen3Config, {**SIZES["llama"], "num_key_value_heads": 1, "head_dim": 16,
                                                  "tie_word_embeddings": True}),
    # Windows shorter than the tests' sequences (12 tokens scored, 28 generated); head width apart from D / H; a
    # score scale apart from the head width; each layer type its own rotary base.
    "gemma3_sliding_tied": (transformers.Gemma3TextConfig, {**SIZES["llama"], "num_hidden_layers": 3,
                                                            "num_key_value_heads": 1, "head_dim": 32,
                                                            "query_pre_attn_scalar": 24, "sliding_window": 5,
                                                            "layer_types": GEMMA3_LAYERS, "tie_word_embeddings": True,
                                                            "rope_parameters": GEMMA3_ROPE}),
    "gemma3_sliding_untied": (transformers.Gemma3TextConfig, {**SIZES["llama"], "num_hidden_layers": 3,
                                                              "num_key_value_heads": 2, "head_dim": 16,
                                                              "sliding_window": 7, "layer_types": GEMMA3_LAYERS[::-1],
                                                              "tie_word_embeddings": False}),
}


def hf_model(case: str, seed: int = 0) -> transformers.PreTrainedModel:
    """A float32 model of `case` whose every parameter (norm scales and biases too) is random."""
    config_class, options = CASES[case]
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config_class(**options, **NO_SPECIAL_TOKENS))
    with torch.no_grad():
        for parameter in model.parameters():  # init leaves norms at 1 and biases at 0: a swap would not show
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


def save(model: transformers.PreTrainedModel, folder: Path, **options) -> Path:
    model.save_pretrained(folder, **options)
    (folder / "tokenizer.json").write_text('{"stand-in": "copied verbatim"}')
    return folder


def hf_logits(model: transformers.PreTrainedModel, tokens_BxT: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(tokens_BxT)).logits.float().numpy()


def tokens(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, shape)
