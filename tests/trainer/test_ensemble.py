"""The vmapped ensemble that benchmarks/bench_ensemble.py times (benchmarks/ensemble.py): each member trains as
it would alone."""

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from scaling.trainer.batches import sequence_length, token_arrays
from scaling.trainer.model import init_model
from scaling.tasks.mixture import training_pool
from scaling.trainer.train import batch_indices, build_optimizer, train_step

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import ensemble  # noqa: E402
from ensemble import ensemble_train_step, init_ensemble, init_ensemble_state, member, member_batches, stack  # noqa: E402

SEEDS = (0, 1, 2)
STEPS = 6
# Gradients and losses of a vmapped member are bit-identical to its own; the clip's global norm is a
# reduction XLA orders differently once vmapped, so states drift by a few float32 ulps.
TOLERANCE = dict(rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def data():
    pool = training_pool(("add",), 1, 64, seed=0)
    return token_arrays(pool, sequence_length(pool))


@pytest.fixture(scope="module")
def optimizer():
    return build_optimizer(0.1, 1.0)


def _alone(model_cfg, seed, batches, optimizer):
    graphdef, params = init_model(model_cfg, seed)
    state, losses = (params, optimizer.init(params)), []
    for batch in batches:
        state, metrics = train_step(state, batch, graphdef=graphdef, optimizer=optimizer, lr=3e-3)
        losses.append(float(metrics["loss"]))
    return state, np.asarray(losses)


def _together(model_cfg, batches_M, optimizer):
    graphdef, params_M = init_ensemble(model_cfg, SEEDS)
    states_M, losses = init_ensemble_state(params_M, optimizer), []
    for batch in batches_M:
        states_M, metrics = ensemble_train_step(states_M, batch, graphdef=graphdef, optimizer=optimizer, lr=3e-3)
        losses.append(np.asarray(metrics["loss"]))
    return states_M, np.stack(losses)


def _assert_trees_close(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), **TOLERANCE)


def test_each_member_trains_as_it_would_alone(tiny_model_cfg, data, optimizer):
    batches_M = [member_batches(data, 8, step, SEEDS) for step in range(STEPS)]
    states_M, losses_SxM = _together(tiny_model_cfg, batches_M, optimizer)
    for i, seed in enumerate(SEEDS):
        own = [data.take(batch_indices(len(data), 8, step, seed)) for step in range(STEPS)]
        state, losses = _alone(tiny_model_cfg, seed, own, optimizer)
        assert losses_SxM[0, i] == losses[0]  # before any update the two are bit-identical
        np.testing.assert_allclose(losses_SxM[:, i], losses, **TOLERANCE)
        _assert_trees_close(member(states_M, i), state)


def test_one_batch_can_be_shared_by_every_member(tiny_model_cfg, data, optimizer):
    batches = [data.take(batch_indices(len(data), 8, step, seed=0)) for step in range(STEPS)]
    states_M, losses_SxM = _together(tiny_model_cfg, batches, optimizer)
    for i, seed in enumerate(SEEDS):
        state, losses = _alone(tiny_model_cfg, seed, batches, optimizer)
        np.testing.assert_allclose(losses_SxM[:, i], losses, **TOLERANCE)
        _assert_trees_close(member(states_M, i), state)


def test_members_are_their_seeds_models_stacked(tiny_model_cfg):
    graphdef, params_M = init_ensemble(tiny_model_cfg, SEEDS)
    for i, seed in enumerate(SEEDS):
        own_graphdef, own = init_model(tiny_model_cfg, seed)
        assert own_graphdef == graphdef
        for stacked, alone in zip(jax.tree.leaves(params_M), jax.tree.leaves(own)):
            assert stacked.shape == (len(SEEDS), *alone.shape)
            np.testing.assert_array_equal(stacked[i], alone)
    first, second = (jax.tree.leaves(member(params_M, i))[0] for i in (0, 1))
    assert not np.array_equal(first, second)


def test_member_takes_back_what_stack_stacked(tiny_model_cfg):
    trees = [init_model(tiny_model_cfg, seed)[1] for seed in SEEDS]
    for back, tree in zip((member(stack(trees), i) for i in range(len(SEEDS))), trees, strict=True):
        jax.tree.map(np.testing.assert_array_equal, back, tree)


def test_steps_give_per_member_metrics_and_keep_shapes(tiny_model_cfg, data, optimizer):
    graphdef, params_M = init_ensemble(tiny_model_cfg, SEEDS)
    states_M = init_ensemble_state(params_M, optimizer)
    shapes = jax.tree.map(np.shape, states_M)
    batches_M = member_batches(data, 8, 0, SEEDS)
    states_M, metrics = ensemble_train_step(states_M, batches_M, graphdef=graphdef, optimizer=optimizer, lr=3e-3)
    assert {name: value.shape for name, value in metrics.items()} == {"loss": (3,), "token_acc": (3,)}
    assert jax.tree.map(np.shape, states_M) == shapes
    assert len(set(np.asarray(metrics["loss"]).tolist())) == len(SEEDS)


def test_repeated_steps_trace_once(tiny_model_cfg, data, monkeypatch):
    traces = []

    def counting_step(*args, **kwargs):
        traces.append(1)  # runs only while jax traces, never when a compiled step is replayed
        return train_step(*args, **kwargs)

    monkeypatch.setattr(ensemble, "train_step", counting_step)
    optimizer = build_optimizer(0.125, 0.75)  # a setting no other test compiles with
    graphdef, params_M = init_ensemble(tiny_model_cfg, SEEDS)
    states_M = init_ensemble_state(params_M, optimizer)
    for step in range(3):
        batches_M = member_batches(data, 5, step, SEEDS)
        states_M, _ = ensemble_train_step(states_M, batches_M, graphdef=graphdef, optimizer=optimizer, lr=3e-3)
    assert len(traces) == 1


def test_no_seeds_is_an_error(tiny_model_cfg):
    with pytest.raises(ValueError, match="at least one seed"):
        init_ensemble(tiny_model_cfg, [])
