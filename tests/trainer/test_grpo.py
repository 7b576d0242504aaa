import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scaling.tasks.grader import Grade, verify_example
from scaling.tasks.mixture import training_pool
from scaling.tasks.tokenizer import CHARACTERS, VOCAB_SIZE
from scaling.trainer.batches import sequence_length, token_arrays
from scaling.trainer.config import TrainConfig, preset
from scaling.trainer.flops import sampling_flops, training_flops
from scaling.trainer.grpo import (
    RLConfig, RLResume, RolloutShape, clipped_objective, group_advantages, kl_k3, rl_loss, rl_optimizer,
    reward, rl_train, rl_update, rollouts, token_weights,
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
    if advantages_B is None:
        advantages_B = np.linspace(-1.0, 1.0, len(batch.rewards_B), dtype=np.float32)
    return {"tokens": batch.tokens_BxT, "advantages": advantages_B,
            "weights": token_weights(batch.mask_BxT, cfg.advantage, shape.max_new)}


def test_rollouts_weigh_only_the_sampled_tokens_and_reward_them_by_the_grader(tiny_cfg, add_pool):
    graphdef, params = init_model(tiny_cfg, seed=0)
    cfg = RLConfig(budgets=(1,), group_size=3, prompts_per_step=2, process_credit=0.5)
    shape = RolloutShape.of(add_pool, CHARACTERS, 0, tiny_cfg.max_len)
    batch = rollouts(params, graphdef, add_pool[:2], cfg, shape, CHARACTERS, verify_example, jax.random.key(0))
    for row in range(6):
        example = add_pool[row // 3]
        prompt = CHARACTERS.prompt_ids(example)
        assert batch.tokens_BxT[row, :len(prompt)].tolist() == prompt
        sampled_T = np.flatnonzero(batch.mask_BxT[row])
        assert sampled_T[0] == len(prompt) and np.array_equal(sampled_T, np.arange(len(prompt), sampled_T[-1] + 1))
        assert not batch.tokens_BxT[row, sampled_T[-1] + 1:].any()  # nothing after the sampled tokens
        grade = verify_example(example, CHARACTERS.decode(batch.tokens_BxT[row, sampled_T]))
        assert batch.rewards_B[row] == np.float32(reward(grade, 0.5))
    assert len({tuple(batch.tokens_BxT[row]) for row in range(3)}) > 1  # a group's completions differ


def test_reward_adds_process_credit_where_steps_are_verified():
    assert reward(Grade(True, 0.5, False, 2), 0.4) == pytest.approx(1.2)
    assert reward(Grade(False, 0.5, False, 2), 0.0) == 0.0
    assert reward(Grade(True, float("nan"), None, 2), 0.4) == 1.0  # a dataset's grader verifies no steps


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


# ---- the RL loop: real sampling and training of the `tiny` preset after a short SFT ----

@pytest.fixture(scope="module")
def sft_model(tiny_cfg, add_pool):
    """`tiny` after 200 SFT steps on 64 one-to-three-digit additions: about half its sampled answers are right."""
    sft = TrainConfig(budgets=(200,), batch_size=16, lr=1e-2, warmup_steps=5, schedule="constant")
    [(_, graphdef, params)] = train(tiny_cfg, sft, token_arrays(add_pool, sequence_length(add_pool)))
    return graphdef, params


def test_rl_raises_the_verifiers_reward(tiny_cfg, add_pool, sft_model):
    # 30 steps of 8 prompts x 8 completions at 5e-4 lift the probe's reward from 0.50 to 0.70 (RL seeds 0, 1, 2:
    # 0.70, 0.75, 0.70); at 2e-3 it collapses instead. About 3 s of RL after compilation on one CPU core.
    graphdef, sft_params = sft_model
    cfg = RLConfig(budgets=(0, 30), group_size=8, prompts_per_step=8, lr=5e-4)
    shape = RolloutShape.of(add_pool, CHARACTERS, 0, tiny_cfg.max_len)
    # Every prompt 4 times, from fixed keys, in rollouts of the training's shape (64 rows): no new compilation.
    probe = cfg.replace(prompts_per_step=32, group_size=2)

    def reward(params):
        return np.mean([rollouts(params, graphdef, add_pool[half:half + 32], probe, shape, CHARACTERS, verify_example,
                                 jax.random.key(key)).rewards_B for half in (0, 32) for key in (1, 2)])

    (start, _, at_start, _), (end, _, trained, tally) = rl_train(tiny_cfg, cfg, sft_params, add_pool, CHARACTERS,
                                                                 verify_example)
    assert (start, end) == (0, 30) and _leaves_equal(at_start, sft_params)
    before, after = reward(sft_params), reward(trained)
    assert 0.3 < before < 0.6 and after > before + 0.15
    assert tally.completions == 30 * 64 and 0 < tally.mean_reward < 1


def test_a_stopped_run_resumes_bit_exactly(tiny_cfg, add_pool, sft_model):
    # Every path of the update at once: a KL reference pass, and two updates a step (old log-probs, ratio != 1).
    graphdef, sft_params = sft_model
    cfg = RLConfig(budgets=(0, 2, 4), group_size=4, prompts_per_step=4, lr=1e-3, kl_coef=0.05, updates_per_step=2,
                   checkpoint_every=1)
    whole = {step: (params, tally) for step, _, params, tally in rl_train(tiny_cfg, cfg, sft_params, add_pool,
                                                                           CHARACTERS, verify_example)}
    assert sorted(whole) == [0, 2, 4] and not _leaves_equal(whole[4][0], sft_params)

    saved, steps_run = {}, []
    with pytest.raises(Stopped) as stopped:
        for _ in rl_train(tiny_cfg, cfg, sft_params, add_pool, CHARACTERS, verify_example,
                          on_checkpoint=lambda step, state, tally: saved.__setitem__(step, (state, tally)),
                          should_stop=lambda: len(steps_run) == 3, on_step=lambda step, r: steps_run.append(step)):
            pass
    assert stopped.value.saved_step == 3 and sorted(saved) == [0, 1, 2, 3]
    state, tally = saved[3]
    resumed = list(rl_train(tiny_cfg, cfg, sft_params, add_pool, CHARACTERS, verify_example,
                            resume=RLResume(3, state, tally)))
    assert [step for step, *_ in resumed] == [4]
    assert _leaves_equal(resumed[0][2], whole[4][0]) and resumed[0][3] == whole[4][1]


def test_tally_counts_sampling_and_update_flops(tiny_cfg, add_pool, sft_model):
    graphdef, sft_params = sft_model
    cfg = RLConfig(budgets=(2,), group_size=4, prompts_per_step=4, kl_coef=0.05, updates_per_step=2)
    [(_, _, _, tally)] = rl_train(tiny_cfg, cfg, sft_params, add_pool, CHARACTERS, verify_example)
    shape = RolloutShape.of(add_pool, CHARACTERS, 0, tiny_cfg.max_len)
    # Each step: 2 training steps over the 16 rows, and two forward passes (old and reference log-probs) at a
    # third of a training step each.
    step = training_flops(tiny_cfg, 16, shape.length)
    assert tally.update_flops == pytest.approx(2 * (2 * step + 2 * step / 3))
    # Sampling: the prefill of the prompts' span and at least one, at most max_new, decode steps.
    assert (sampling_flops(tiny_cfg, 16, shape.prompt_span, 2 * 1, shape.length) <= tally.sampling_flops
            <= sampling_flops(tiny_cfg, 16, shape.prompt_span, 2 * shape.max_new, shape.length))
    assert tally.completions == 2 * 16 and tally.mean_reward == tally.reward_sum / 32


def test_more_prompts_per_step_than_the_pool_is_refused(tiny_cfg, add_pool, sft_model):
    with pytest.raises(ValueError, match="prompts_per_step 65 is more than the 64 training prompts"):
        next(rl_train(tiny_cfg, RLConfig(budgets=(1,), prompts_per_step=65), sft_model[1], add_pool, CHARACTERS,
                      verify_example))


@pytest.mark.parametrize("change, message", [
    ({"group_size": 1}, "group_size must be >= 2"),
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"temperature": -1.0}, "temperature must be > 0"),
    ({"top_p": 0.0}, r"top_p must lie in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p must lie in \(0, 1\]"),
    ({"kl_coef": -0.1}, "kl_coef must be >= 0"),
    ({"clip_eps": 0.0}, "clip_eps must be > 0"),
    ({"advantage": "ppo"}, "advantage must be one of grpo, dr_grpo"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"prompts_per_step": 0}, "prompts_per_step must be >= 1"),
    ({"updates_per_step": 0}, "updates_per_step must be >= 1"),
    ({"process_credit": -1.0}, "process_credit must be >= 0"),
    ({"max_new": -1}, "max_new must be >= 0"),
    ({"budgets": ()}, "budgets must be RL step counts >= 0"),
    ({"budgets": (5, 2)}, "budgets must be strictly increasing"),
])
def test_config_refuses_bad_values_plainly(change, message):
    with pytest.raises(ValueError, match=f"^RLConfig.{message}"):
        RLConfig(**{"budgets": (1,)} | change)
