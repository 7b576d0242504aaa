import pytest

from scaling.config import PRESETS, ModelConfig, TrainConfig, preset
from scaling.model import count_params, init_model


def test_presets_grow_and_their_parameter_counts_match_the_model():
    sizes = [preset(name, vocab_size=90, max_len=64) for name in PRESETS]
    counts = [cfg.non_embedding_params for cfg in sizes]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert PRESETS[:2] == ("tiny", "xs")
    for cfg in sizes[:3]:
        _, params = init_model(cfg, seed=0)
        assert count_params(params) == cfg.total_params


def test_flops_include_the_attention_term():
    cfg = preset("tiny", vocab_size=90, max_len=64)
    assert cfg.train_flops_per_token(64) == 6 * cfg.non_embedding_params + 6 * cfg.n_layers * 64 * cfg.d_model


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
