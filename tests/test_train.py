import jax
import numpy as np
import pytest

from scaling.batches import sequence_length, token_arrays
from scaling.config import TrainConfig
from scaling.model import init_model
from scaling.tasks.mixture import training_pool
from scaling.train import TrainingDiverged, batch_indices, masked_loss, train


@pytest.fixture(scope="module")
def data():
    pool = training_pool(("add",), 1, 64, seed=0)
    return token_arrays(pool, sequence_length(pool))


def _losses(model_cfg, train_cfg, data):
    losses = {}
    list(train(model_cfg, train_cfg, data, on_step=lambda step, loss: losses.__setitem__(step, loss)))
    return losses


def test_training_lowers_the_loss_and_yields_at_each_budget(tiny_model_cfg, data):
    cfg = TrainConfig(budgets=(5, 60), batch_size=16, lr=1e-2, warmup_steps=5)
    yielded = [step for step, _, _ in train(tiny_model_cfg, cfg, data)]
    assert yielded == [5, 60]
    losses = _losses(tiny_model_cfg, cfg, data)
    assert sorted(losses) == list(range(1, 61))
    assert np.mean([losses[s] for s in range(51, 61)]) < 0.6 * np.mean([losses[s] for s in range(1, 6)])


def test_same_config_same_losses(tiny_model_cfg, data):
    cfg = TrainConfig(budgets=(8,), batch_size=8)
    assert _losses(tiny_model_cfg, cfg, data) == _losses(tiny_model_cfg, cfg, data)
    assert _losses(tiny_model_cfg, cfg, data) != _losses(tiny_model_cfg, cfg.replace(seed=1), data)


def test_prompt_tokens_do_not_enter_the_loss(tiny_model_cfg, data):
    graphdef, params = init_model(tiny_model_cfg, seed=0)
    batch = data.take(np.arange(8))
    loss, _ = masked_loss(params, batch, graphdef)
    scrambled = dict(batch)
    prompt_targets = (batch["loss_mask"] == 0) & (batch["segments"] == 1)
    scrambled["targets"] = np.where(prompt_targets, (batch["targets"] + 7) % tiny_model_cfg.vocab_size, batch["targets"])
    assert prompt_targets.any()
    assert float(masked_loss(params, scrambled, graphdef)[0]) == pytest.approx(float(loss))


def test_batches_cover_every_example_once_per_epoch():
    seen = np.concatenate([batch_indices(40, 8, step, seed=0) for step in range(5)])
    assert sorted(seen) == list(range(40))
    assert not np.array_equal(batch_indices(40, 8, 5, seed=0), batch_indices(40, 8, 0, seed=0))


def test_divergence_stops_the_cell_with_a_reason(tiny_model_cfg, data):
    cfg = TrainConfig(budgets=(3,), batch_size=8, lr=float("inf"), warmup_steps=0)
    with pytest.raises(TrainingDiverged, match="at step 3"):
        list(train(tiny_model_cfg, cfg, data))


def test_yielded_params_survive_further_training(tiny_model_cfg, data):
    cfg = TrainConfig(budgets=(2, 4), batch_size=8)
    kept = [params for _, _, params in train(tiny_model_cfg, cfg, data)]
    first, second = (jax.tree.leaves(p)[0] for p in kept)
    assert np.isfinite(np.asarray(first)).all() and not np.array_equal(first, second)
