import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling.tasks.mixture import training_pool
from scaling.trainer import lora
from scaling.trainer.batches import sequence_length, token_arrays
from scaling.trainer.config import LoraConfig, TrainConfig, adapter_label
from scaling.trainer.model import init_model
from scaling.trainer.train import optimizer_for, train
from tests.trainer.test_train import _stop_then_resume

ADAPTER = LoraConfig(rank=4, alpha=8, targets=("query", "value", "down"))


@pytest.fixture(scope="module")
def data():
    pool = training_pool(("add",), 1, 64, seed=0)
    return token_arrays(pool, sequence_length(pool))


def _inputs(cfg, rows=2, length=12):
    tokens = jax.random.randint(jax.random.key(3), (rows, length), 1, cfg.vocab_size)
    return tokens, jnp.tile(jnp.arange(length), (rows, 1)), jnp.ones((rows, length), jnp.int32)


def test_at_init_the_adapted_model_is_its_base_exactly(tiny_model_cfg):
    graphdef, base = init_model(tiny_model_cfg, 1)
    adapter = lora.init_adapter(tiny_model_cfg, ADAPTER, 0)
    assert all(float(jnp.abs(leaf).max()) > 0 for path, leaf in jax.tree_util.tree_flatten_with_path(adapter)[0]
               if "lora_a" in str(path))  # A is random: only B = 0 makes the update vanish
    adapted = nnx.merge(lora.lora_graph(tiny_model_cfg, ADAPTER)[0], lora.adapted_params(base, adapter))
    np.testing.assert_array_equal(adapted(*_inputs(tiny_model_cfg)), nnx.merge(graphdef, base)(*_inputs(tiny_model_cfg)))


def test_training_moves_only_the_adapter_and_only_it_has_optimizer_state(tiny_model_cfg, data):
    _, base = init_model(tiny_model_cfg, 1)
    before = jax.tree.map(np.array, base)
    cfg = TrainConfig(budgets=(4, 10), batch_size=8, lr=1e-2, warmup_steps=2, adapter=ADAPTER)
    states = []
    models = list(train(tiny_model_cfg, cfg, data, init_params=base,
                        on_checkpoint=lambda step, state, done: states.append(jax.tree.map(np.asarray, state))))
    for (_, _, params), _ in zip(models, cfg.budgets):
        adapter, frozen = lora.split_adapter(params)
        for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(before), strict=True):
            np.testing.assert_array_equal(a, b)  # bit for bit
        assert any(float(np.abs(leaf).max()) > 0 for path, leaf in jax.tree_util.tree_flatten_with_path(adapter)[0]
                   if "lora_b" in str(path))  # B left zero
    for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(before), strict=True):
        np.testing.assert_array_equal(a, b)  # the base given was neither donated nor changed
    adapter_shapes = lora.lora_graph(tiny_model_cfg, ADAPTER)[1]
    n_adapter = len(jax.tree.leaves(adapter_shapes))
    assert n_adapter == 2 * 3 * tiny_model_cfg.n_layers
    trained, opt_state = states[-1]
    assert jax.tree.structure(trained) == jax.tree.structure(adapter_shapes)
    # AdamW's moments: one per adapter leaf, twice; nothing the size of a base weight
    moments = [leaf for leaf in jax.tree.leaves(opt_state) if np.ndim(leaf) >= 1]
    assert len(moments) == 2 * n_adapter
    assert sorted(m.shape for m in moments) == sorted(2 * [leaf.shape for leaf in jax.tree.leaves(adapter_shapes)])


def test_lora_lowers_the_loss(tiny_model_cfg, data):
    losses = {}
    cfg = TrainConfig(budgets=(40,), batch_size=16, lr=3e-2, warmup_steps=2, adapter=LoraConfig(
        rank=8, alpha=16, targets=("query", "key", "value", "out", "gate", "up", "down")))
    list(train(tiny_model_cfg, cfg, data, on_step=lambda step, loss: losses.__setitem__(step, loss)))
    assert np.mean([losses[s] for s in range(35, 41)]) < 0.8 * np.mean([losses[s] for s in range(1, 4)])


def test_merged_adapter_gives_the_unmerged_logits(tiny_model_cfg, data):
    cfg = TrainConfig(budgets=(6,), batch_size=8, lr=3e-2, warmup_steps=1, adapter=ADAPTER)
    (_, graphdef, params), = train(tiny_model_cfg, cfg, data)
    merged = lora.merged_params(params, ADAPTER)
    plain = init_model(tiny_model_cfg, 0)[0]
    want = nnx.merge(graphdef, params)(*_inputs(tiny_model_cfg))
    assert float(jnp.abs(want - nnx.merge(plain, init_model(tiny_model_cfg, 0)[1])(*_inputs(tiny_model_cfg))).max()) > 1e-3
    np.testing.assert_allclose(nnx.merge(plain, merged)(*_inputs(tiny_model_cfg)), want, atol=1e-5)


def test_dropout_is_reproducible_and_only_in_training(tiny_model_cfg, data):
    dropping = LoraConfig(rank=4, alpha=8, dropout=0.5, targets=("query", "value"))
    cfg = TrainConfig(budgets=(5,), batch_size=8, lr=1e-2, warmup_steps=1, adapter=dropping)
    runs = [[np.asarray(leaf) for leaf in jax.tree.leaves(list(train(tiny_model_cfg, cfg, data))[0][2])]
            for _ in range(2)]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    without = [np.asarray(leaf) for leaf in jax.tree.leaves(list(train(
        tiny_model_cfg, cfg.replace(adapter=LoraConfig(rank=4, alpha=8, targets=("query", "value"))), data))[0][2])]
    assert any(not np.array_equal(a, b) for a, b in zip(runs[0], without))


@pytest.mark.parametrize("schedule", ["wsd", "constant"])
def test_a_lora_run_stopped_anywhere_resumes_to_the_same_models(tiny_model_cfg, data, schedule):
    cfg = TrainConfig(budgets=(6, 12), batch_size=8, warmup_steps=2, decay_fraction=0.25, checkpoint_every=4,
                      schedule=schedule, adapter=LoraConfig(rank=4, alpha=8, dropout=0.1))
    want_models, want_curve = _stop_then_resume(tiny_model_cfg, cfg, data, None)
    for asked_after in (1, 5, 8, 13):
        models, curve = _stop_then_resume(tiny_model_cfg, cfg, data, asked_after)
        assert curve == want_curve, asked_after
        for budget in models:
            for a, b in zip(jax.tree.leaves(models[budget]), jax.tree.leaves(want_models[budget]), strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"stopped after {asked_after}, budget {budget}")


def test_labels_and_bad_configs():
    assert adapter_label(None) == "full"
    assert LoraConfig(rank=8, alpha=16).label == "lora-r8-a16"
    assert LoraConfig(rank=4, alpha=8, dropout=0.05, targets=("query", "key")).label == "lora-r4-a8-d0.05-tquery.key"
    for bad in ({"rank": 0}, {"alpha": 0}, {"dropout": 1.0}, {"targets": ("q_proj",)}, {"targets": ()}):
        with pytest.raises(ValueError, match="adapter"):
            LoraConfig(**bad)


def test_a_target_the_model_lacks_is_refused(tiny_model_cfg):
    import dataclasses
    gelu = dataclasses.replace(tiny_model_cfg, mlp="gelu")
    with pytest.raises(ValueError, match="'gate' is no projection"):
        lora.lora_graph(gelu, LoraConfig(targets=("gate",)))


def test_optimizer_state_of_the_full_run_is_unchanged(tiny_model_cfg):
    # full fine-tuning's state is still (params, opt_state) over every weight
    params = init_model(tiny_model_cfg, 0)[1]
    opt = optimizer_for(TrainConfig(budgets=(1,))).init(params)
    assert len([x for x in jax.tree.leaves(opt) if np.ndim(x) >= 1]) == 2 * len(jax.tree.leaves(params))
