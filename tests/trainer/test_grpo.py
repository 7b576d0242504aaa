import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scaling.tasks.grader import verify_example
from scaling.tasks.mixture import training_pool
from scaling.tasks.tokenizer import CHARACTERS, VOCAB_SIZE
from scaling.trainer.batches import sequence_length, token_arrays
from scaling.trainer.config import TrainConfig, preset
from scaling.trainer.flops import sampling_flops, training_flops
from scaling.trainer.grpo import (
    RLConfig, RLResume, RLTally, RolloutShape, clipped_objective, group_advantages, kl_k3, rl_loss, rl_optimizer,
    rl_train, rl_update, rollouts, token_weights,
)
from scaling.trainer.model import init_model
from scaling.trainer.train import Stopped, train

EPS = 1e-4  # grpo.STD_EPSILON, written out: the hand-worked values below use it


# ---- advantages ----

@pytest.mark.parametrize("kind", ["grpo", "dr_grpo"])
def test_equal_rewards_give_zero_advantage(kind):
    rewards_PxG = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.3, 0.3, 0.3, 0.3]])
    assert np.array_equal(np.asarray(group_advantages(rewards_PxG, kind)), np.zeros((3, 4)))


def test_group_advantages_by_hand():
    rewards_PxG = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]])
    # Group 1: mean 1/4, unbiased variance (9/16 + 3/16) / 3 = 1/4, std 1/2. Group 2: mean 1/2, std sqrt(1/3).
    expected = np.array([[0.75, -0.25, -0.25, -0.25], [0.5, -0.5, 0.5, -0.5]])
    expected[0] /= 0.5 + EPS
    expected[1] /= math.sqrt(1 / 3) + EPS
    np.testing.assert_allclose(np.asarray(group_advantages(rewards_PxG, "grpo")), expected, rtol=1e-6)


def test_dr_grpo_advantages_are_not_divided_by_the_spread():
    rewards_PxG = np.array([[1.0, 0.0, 0.0, 0.0], [2.0, 0.0, 2.0, 0.0]])
    np.testing.assert_allclose(np.asarray(group_advantages(rewards_PxG, "dr_grpo")),
                               [[0.75, -0.25, -0.25, -0.25], [1.0, -1.0, 1.0, -1.0]])


def test_token_weights_by_hand():
    mask_BxT = np.array([[0, 1, 1, 1, 1, 0], [0, 0, 1, 0, 0, 0]], np.float32)
    # grpo: each completion's tokens averaged (1/4 and 1/1), then the 2 completions.
    np.testing.assert_allclose(np.asarray(token_weights(mask_BxT, "grpo", max_new=5)),
                               [[0, 1 / 8, 1 / 8, 1 / 8, 1 / 8, 0], [0, 0, 1 / 2, 0, 0, 0]])
    # dr_grpo: every token over rows x max_new = 10, however long its completion.
    np.testing.assert_allclose(np.asarray(token_weights(mask_BxT, "dr_grpo", max_new=5)), mask_BxT / 10)


# ---- the objective ----

def _gradient(logprobs_BxT, advantages_B, clip_eps=0.2):
    old_BxT = jnp.zeros_like(logprobs_BxT)
    weights_BxT = jnp.ones_like(logprobs_BxT)
    return np.asarray(jax.grad(lambda lp: clipped_objective(lp, old_BxT, advantages_B, weights_BxT, clip_eps)[0])(
        logprobs_BxT))


def test_clipping_stops_the_gradient_exactly_where_the_ratio_leaves_its_range():
    ratios = np.array([0.5, 0.79, 0.81, 1.0, 1.19, 1.21, 2.0], np.float32)
    logprobs_BxT = jnp.log(jnp.asarray(np.stack([ratios, ratios])))
    gradient_BxT = _gradient(logprobs_BxT, jnp.array([1.0, -1.0]))
    ratio_T = np.exp(np.asarray(logprobs_BxT[0]))
    # d/dlogp of -ratio x A is -A x ratio, unless the clip binds: above 1 + eps for A > 0, below 1 - eps for A < 0.
    np.testing.assert_allclose(gradient_BxT[0], np.where(ratio_T > 1.2, 0.0, -ratio_T), rtol=1e-6)
    np.testing.assert_allclose(gradient_BxT[1], np.where(ratio_T < 0.8, 0.0, ratio_T), rtol=1e-6)
    assert (gradient_BxT[0] == 0).tolist() == [False, False, False, False, False, True, True]
    assert (gradient_BxT[1] == 0).tolist() == [True, True, False, False, False, False, False]


def test_zero_advantage_gives_zero_gradient():
    logprobs_BxT = jnp.log(jnp.array([[0.5, 1.0, 1.5]]))
    assert not _gradient(logprobs_BxT, jnp.array([0.0])).any()


def test_loss_by_hand():
    logprobs_BxT = jnp.log(jnp.array([[1.5, 0.9]]))
    weights_BxT = jnp.array([[0.5, 0.5]])
    loss, metrics = clipped_objective(logprobs_BxT, jnp.zeros((1, 2)), jnp.array([2.0]), weights_BxT, 0.2)
    # -min(1.5 x 2, 1.2 x 2) = -2.4 (clipped) and -min(0.9 x 2, 0.9 x 2) = -1.8, averaged.
    assert float(loss) == pytest.approx(-2.1)
    assert float(metrics["clipped"]) == 0.5


def test_kl_is_zero_at_the_reference_and_positive_elsewhere():
    logprobs_BxT = jnp.log(jnp.array([[0.5, 0.1, 0.9]]))
    assert not np.asarray(kl_k3(logprobs_BxT, logprobs_BxT)).any()
    # r = p_ref / p = 1/2: 1/2 - log(1/2) - 1.
    assert float(kl_k3(jnp.log(jnp.array([0.5])), jnp.log(jnp.array([0.25])))[0]) == pytest.approx(
        0.5 + math.log(2) - 1)
    shifted = kl_k3(logprobs_BxT, logprobs_BxT + jnp.array([[0.3, -0.2, 0.05]]))
    assert (np.asarray(shifted) > 0).all()
    _, metrics = clipped_objective(logprobs_BxT, logprobs_BxT, jnp.array([0.0]), jnp.ones((1, 3)), 0.2,
                                   logprobs_BxT + 0.3, kl_coef=0.1)
    assert float(metrics["kl"]) > 0 and float(metrics["loss"]) > 0


# ---- the jitted update on a real model ----

@pytest.fixture(scope="module")
def add_pool():
    return training_pool(("add",), 1, 64, seed=0)


@pytest.fixture(scope="module")
def tiny_cfg():
    return preset("tiny", VOCAB_SIZE, 64)


def _rollout_batch(params, graphdef, pool, cfg, model_cfg, advantages_B=None):
    shape = RolloutShape.of(pool, CHARACTERS, 0, model_cfg.max_len)
    batch = rollouts(params, graphdef, pool[:4], cfg.replace(prompts_per_step=4), shape, CHARACTERS, verify_example,
                     jax.random.key(0))
    advantages_B = np.linspace(-1.0, 1.0, len(batch.rewards_B), dtype=np.float32) if advantages_B is None else advantages_B
    return {"tokens": batch.tokens_BxT, "advantages": advantages_B,
            "weights": token_weights(batch.mask_BxT, cfg.advantage, shape.max_new)}


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_zero_advantage_and_no_kl_leave_the_weights_unchanged(tiny_cfg, add_pool):
    # Weight decay is 0 in RL (rl_optimizer): with it, even a zero gradient would shrink the weights.
    graphdef, params = init_model(tiny_cfg, seed=0)
    cfg = RLConfig(budgets=(1,), group_size=4)
    optimizer = rl_optimizer()
    for advantages_B, unchanged in ((np.zeros(16, np.float32), True), (None, False)):
        batch = _rollout_batch(params, graphdef, add_pool, cfg, tiny_cfg, advantages_B)
        state = (jax.tree.map(jnp.copy, params), optimizer.init(params))
        state, metrics = rl_update(state, batch, graphdef, optimizer, 1e-2, 0.2, 0.0, 1.0)
        assert _leaves_equal(state[0], params) == unchanged
        assert (float(metrics["loss"]) == 0.0) == unchanged


def test_kl_pulls_a_zero_advantage_policy_only_once_it_leaves_the_reference(tiny_cfg, add_pool):
    from scaling.trainer.sample import sequence_logprobs

    graphdef, params = init_model(tiny_cfg, seed=0)
    _, other = init_model(tiny_cfg, seed=1)
    batch = _rollout_batch(params, graphdef, add_pool, RLConfig(budgets=(1,), group_size=4), tiny_cfg,
                           np.zeros(16, np.float32))
    gradient_norms = []
    for reference in (params, other):
        with_ref = batch | {"ref_logprobs": sequence_logprobs(reference, batch["tokens"], graphdef)}
        (_, metrics), grads = jax.value_and_grad(rl_loss, has_aux=True)(params, with_ref, graphdef, 0.2, 0.1, 1.0)
        gradient_norms.append(float(optax.tree.norm(grads)))
        assert (float(metrics["kl"]) > 0) == (reference is other)
    # At the reference the KL's gradient vanishes (up to the rounding of two compilations of one forward pass).
    assert gradient_norms[0] < 1e-6 < 1e-2 < gradient_norms[1]


def test_kl_gradient_is_zero_at_the_reference():
    logprobs_BxT = jnp.log(jnp.array([[0.5, 0.1, 0.9]]))
    gradient = jax.grad(lambda lp: clipped_objective(lp, lp, jnp.array([0.0]), jnp.ones((1, 3)), 0.2,
                                                     logprobs_BxT, kl_coef=0.5)[0])(logprobs_BxT)
    assert not np.asarray(gradient).any()
