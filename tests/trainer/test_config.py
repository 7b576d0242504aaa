import pytest

from scaling.trainer.config import PRESETS, ModelConfig, TrainConfig, preset
from scaling.trainer.model import count_params, init_model


def test_presets_grow_and_their_parameter_counts_match_the_model():
    sizes = [preset(name, vocab_size=90, max_len=64) for name in PRESETS]
    counts = [cfg.non_embedding_params for cfg in sizes]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert PRESETS[:2] == ("tiny", "xs")
    for cfg in sizes[:3]:
        _, params = init_model(cfg, seed=0)
        assert count_params(params) == cfg.total_params


def test_the_tiny_preset_counted_by_hand():
    cfg = preset("tiny", vocab_size=90, max_len=64)
    # width 32, 2 layers, SwiGLU width 8·⌊(32·8/3)/8⌋ = 80. Per layer: q, k, v, o 4·32·32 = 4,096; gate, up,
    # down 3·32·80 = 7,680; two RMSNorm scales 64: 11,840. Two layers and the final norm: 23,712.
    assert cfg.non_embedding_params == 23_712
    # Training FLOPs per token at context 64: 6N = 142,272 for the weights, and for attention the scores
    # and weighted values (2 · 2 FLOPs per position and width, forward), tripled for the backward pass and
    # halved by the causal mask: 6 · 2 layers · 64 positions · 32 width = 24,576.
    assert cfg.train_flops_per_token(64) == 142_272 + 24_576


@pytest.mark.parametrize(
    "changes, field",
    [({"d_model": 30, "n_heads": 4}, "d_model"), ({"n_heads": 4, "n_kv_heads": 3}, "n_heads"), ({"n_layers": 0}, "n_layers")],
)
def test_bad_model_config_names_the_field(changes, field):
    base = dict(vocab_size=10, d_model=32, n_layers=1, n_heads=4, n_kv_heads=4, d_ff=64, max_len=16)
    with pytest.raises(ValueError, match=field):
        ModelConfig(**(base | changes))


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match="tiny"):
        preset("huge", vocab_size=10, max_len=16)


@pytest.mark.parametrize("budgets", [(), (0, 10), (20, 10), (10, 10)])
def test_budgets_must_be_positive_and_increasing(budgets):
    with pytest.raises(ValueError, match="budgets"):
        TrainConfig(budgets=budgets)


@pytest.mark.parametrize("options", [
    dict(norm="layer", mlp="gelu", rotary_fraction=0.25, qkv_bias=True, out_bias=True, mlp_bias=True, parallel_residual=True),
    dict(norm="layer", mlp="gelu_tanh", positions="learned", qkv_bias=True, out_bias=True, mlp_bias=True),
    dict(qkv_bias=True, head_width=24, n_kv_heads=2, tie_embeddings=False),
    dict(mlp_bias=True),  # SwiGLU with biases: gate, up and down each get one
])
def test_parameter_counts_match_the_model_for_every_option(options):
    cfg = ModelConfig(**(dict(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, d_ff=48, max_len=16) | options))
    _, params = init_model(cfg, seed=0)
    assert count_params(params) == cfg.total_params
    embeddings = cfg.vocab_size * cfg.d_model * (1 if cfg.tie_embeddings else 2)
    assert cfg.total_params - cfg.non_embedding_params == embeddings + cfg.max_len * cfg.d_model * (cfg.positions == "learned")


def test_flops_attention_term_uses_the_attention_width():
    # Heads 4 × 16 wide = 64, twice the residual width 32: the attention term counts 64, not 32.
    narrow = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, d_ff=48, max_len=16)
    wide = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, d_ff=48, max_len=16, head_width=16)
    attention = {cfg: cfg.train_flops_per_token(16) - 6 * cfg.non_embedding_params for cfg in (narrow, wide)}
    assert attention[narrow] == 6 * 2 * 16 * 32 and attention[wide] == 6 * 2 * 16 * 64


@pytest.mark.parametrize(
    "changes, field",
    [({"norm": "batch"}, "norm"), ({"mlp": "relu"}, "mlp"), ({"positions": "alibi"}, "positions"),
     ({"rotary_fraction": 0.0}, "rotary_fraction"), ({"head_width": -1}, "head_width"), ({"norm_eps": 0.0}, "norm_eps"),
     ({"head_width": 6, "rotary_fraction": 0.5}, "rotary dims")],
)
def test_bad_model_options_name_the_field(changes, field):
    base = dict(vocab_size=10, d_model=32, n_layers=1, n_heads=4, n_kv_heads=4, d_ff=64, max_len=16)
    with pytest.raises(ValueError, match=field):
        ModelConfig(**(base | changes))


def test_an_explicit_head_width_lifts_the_divisibility_rule():
    cfg = ModelConfig(vocab_size=10, d_model=30, n_layers=1, n_heads=4, n_kv_heads=4, d_ff=64, max_len=16, head_width=8)
    assert cfg.head_dim == 8
