import jax
import numpy as np
import pytest

from scaling.trainer.batches import sequence_length, token_arrays
from scaling.trainer.config import TrainConfig
from scaling.trainer.model import init_model
from scaling.tasks.mixture import training_pool
from scaling.trainer import train as train_module
from scaling.trainer.train import TrainingDiverged, batch_indices, masked_loss, train


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
    assert sorted(losses) == list(range(1, cfg.total_steps + 1))  # trunk to 48, branches of 1 and 12 steps
    assert cfg.total_steps == 48 + 1 + 12
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


def test_wsd_branches_equal_separate_runs_of_each_budget(tiny_model_cfg, data):
    # A branch forks the trunk at b - decay(b) and decays to b; a separate run of b steps with the same
    # schedule passes through the same states, so the two must agree exactly.
    cfg = TrainConfig(budgets=(10, 20, 40), batch_size=8, warmup_steps=4, decay_fraction=0.25)
    branches = {b: jax.tree.leaves(p) for b, _, p in train(tiny_model_cfg, cfg, data)}
    separate = {b: jax.tree.leaves(p) for b, _, p in train(tiny_model_cfg, cfg.replace(steps_axis="separate"), data)}
    for budget in cfg.budgets:
        for a, b in zip(branches[budget], separate[budget]):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert cfg.total_steps == 30 + 3 + 5 + 10 < cfg.replace(steps_axis="separate").total_steps == 70


def test_the_decay_anneals_the_branch(tiny_model_cfg, data, monkeypatch):
    # The rate each step is trained with, as the train step receives it.
    rates = []
    bound = train_module.bound_step

    def recording(*static):
        step = bound(*static)

        def recorded(state, batch, lr):
            rates.append(float(lr))
            return step(state, batch, lr)

        return recorded

    monkeypatch.setattr(train_module, "bound_step", recording)
    cfg = TrainConfig(budgets=(40,), batch_size=16, lr=1e-2, warmup_steps=5, decay_fraction=0.5)
    annealed = next(iter(train(tiny_model_cfg, cfg, data)))[2]
    # Warmup over 5 steps, the trunk flat at the peak until the fork at 40 − 0.5·40 = 20, then a linear decay
    # over 20 steps: the peak at the fork, 1/20 of it at the last step.
    np.testing.assert_allclose(rates[:5], [2e-3, 4e-3, 6e-3, 8e-3, 1e-2], rtol=1e-6)
    np.testing.assert_allclose(rates[5:20], 1e-2, rtol=1e-6)
    np.testing.assert_allclose(rates[20:], [1e-2 * (1 - i / 20) for i in range(20)], rtol=1e-6)
    assert len(rates) == 40
    constant = next(iter(train(tiny_model_cfg, cfg.replace(schedule="constant"), data)))[2]
    np.testing.assert_allclose(rates[40:45], rates[:5], rtol=1e-6)
    np.testing.assert_allclose(rates[45:], 1e-2, rtol=1e-6)  # no decay: the model differs only by the anneal
    graphdef = init_model(tiny_model_cfg, 0)[0]
    batch = data.take(np.arange(64))
    annealed_loss, constant_loss = (float(masked_loss(p, batch, graphdef)[0]) for p in (annealed, constant))
    assert annealed_loss != constant_loss and np.isfinite(annealed_loss)


@pytest.mark.parametrize("changes, field", [({"schedule": "linear"}, "schedule"), ({"decay_fraction": 0.0}, "decay_fraction"),
                                            ({"steps_axis": "both"}, "steps_axis")])
def test_bad_schedule_settings_are_named(changes, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(budgets=(10,), **changes)


def _stop_then_resume(model_cfg, cfg, data, asked_after: int | None):
    """The models yielded at each budget, and the curve, of a run asked to stop after `asked_after` questions
    (None: never) and resumed from the newest trunk it offered to on_checkpoint, as a preempted cell is."""
    from scaling.trainer.curve import LossCurve, curve_every
    from scaling.trainer.train import Resume, Stopped

    yielded, saved, asked = {}, [], [0]
    curve = LossCurve(curve_every(cfg.budgets[-1]))

    def should_stop() -> bool:
        asked[0] += 1
        return asked_after is not None and asked[0] >= asked_after

    def keep(trunk_step, state, budgets_done):  # the state trains on (donated): keep host copies, as a checkpoint does
        saved.append((trunk_step, jax.tree.map(np.asarray, state), budgets_done, curve.state()))

    try:
        for budget, _, params in train(model_cfg, cfg, data, on_checkpoint=keep, curve=curve, should_stop=should_stop):
            yielded[budget] = jax.tree.map(np.asarray, params)
    except Stopped as stopped:
        trunk_step, state, done, curve_state = saved[-1]
        assert stopped.saved_step == trunk_step
        curve = LossCurve.from_state(curve_state)
        resume = Resume(trunk_step, jax.tree.map(jax.numpy.asarray, state), done)
        for budget, _, params in train(model_cfg, cfg, data, resume=resume, on_checkpoint=keep, curve=curve):
            yielded[budget] = jax.tree.map(np.asarray, params)
    curve.settle()
    return yielded, (curve.steps, curve.losses, curve.rates)


@pytest.mark.parametrize("schedule", ["wsd", "constant"])
def test_a_run_stopped_after_any_step_resumes_to_the_same_models(tiny_model_cfg, data, schedule):
    # budgets 6 and 12 under wsd: trunk 0..9, branches 4..6 and 9..12; stops land on the trunk between and at
    # checkpoints, in each branch, and between budgets
    cfg = TrainConfig(budgets=(6, 12), batch_size=8, warmup_steps=2, decay_fraction=0.25, checkpoint_every=4,
                      schedule=schedule)
    want_models, want_curve = _stop_then_resume(tiny_model_cfg, cfg, data, None)
    for asked_after in (1, 3, 4, 5, 7, 8, 10, 13):
        models, curve = _stop_then_resume(tiny_model_cfg, cfg, data, asked_after)
        assert curve == want_curve, asked_after
        assert models.keys() == want_models.keys()
        for budget in models:
            for a, b in zip(jax.tree.leaves(models[budget]), jax.tree.leaves(want_models[budget])):
                np.testing.assert_array_equal(a, b, err_msg=f"stopped after {asked_after}, budget {budget}")
