"""RL with verifiable rewards after SFT: GRPO (Shao et al. 2024) and its unnormalized variant Dr. GRPO (Liu et al.
2025), in the trainer's own terms: a pure, jitted update with a traced learning rate (like `train_step`) and a
loop that yields the policy at each of its RL budgets, checkpoints and resumes bit-exactly.

Each step draws `prompts_per_step` of the cell's training prompts, samples `group_size` completions of each from
the current policy, rewards each by the task's grader (answer correct, plus `process_credit` times the verified
share of its chain), and scores each completion against its own group: the group-normalized advantage. The update
maximizes the clipped token-level ratio objective over the completion's tokens only (prompt tokens and padding
weigh nothing), minus an optional KL penalty to the SFT model (TRL's k3 estimator). The loss is aggregated as
TRL's `loss_type` of the same name: "grpo" averages each completion's tokens, then the completions; "dr_grpo"
sums every token and divides by a constant (rows x the decode budget), so a long completion is not worth less
per token than a short one.

Letters: P prompts of a step, G completions per prompt, B = P·G rollout rows, T the rollout buffer.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from scaling.tasks.grader import Grade, Grader, reads_first_answer_line_only
from scaling.tasks.mixture import Example
from scaling.tasks.tokenizer import Tokenizer
from scaling.trainer.batches import prompt_arrays
from scaling.trainer.config import ModelConfig
from scaling.trainer.evaluate import answer_line_automaton, decode_budget, shape_bucket
from scaling.trainer.flops import forward_flops_per_token, sampling_flops, training_flops
from scaling.trainer.model import abstract_model
from scaling.trainer.sample import sample_cached, sequence_logprobs
from scaling.trainer.train import Stopped, TrainingDiverged, apply_gradients, build_optimizer, warmup

ADVANTAGES = ("grpo", "dr_grpo")
# Added to a group's reward spread before dividing by it (TRL's): a group whose rewards are all equal gets zero
# advantage (its numerator is zero), never a division by zero.
STD_EPSILON = 1e-4


@dataclass(frozen=True)
class RLConfig:
    """How the RL arm optimizes a cell's SFT model, evaluated at each of its RL budgets."""

    budgets: tuple[int, ...]  # RL steps at which the policy is evaluated, ascending; 0: the SFT model itself
    group_size: int = 8  # completions sampled per prompt (G): each is scored against its own group
    prompts_per_step: int = 8  # training prompts drawn per RL step (P)
    temperature: float = 1.0  # sampling temperature, also the one the ratio's and the KL's log-probabilities use
    top_p: float = 1.0  # nucleus sampling: the smallest set of tokens holding this much probability
    kl_coef: float = 0.0  # weight of the KL penalty to the SFT model (0: none, and no reference pass is run)
    clip_eps: float = 0.2  # the ratio is clipped to [1 - clip_eps, 1 + clip_eps] where clipping lowers the objective
    advantage: str = "grpo"  # "grpo": (reward - group mean) / group std, each completion's tokens averaged;
    # "dr_grpo": reward - group mean, token sum over the constant rows x max_new (Dr. GRPO)
    lr: float = 1e-4  # learning rate of every update (after warmup)
    warmup_steps: int = 0  # linear warmup of the rate over the first RL steps
    process_credit: float = 0.0  # reward = answer correct + process_credit x process score (the verified share
    # of the chain; none where no procedure verifies steps)
    max_new: int = 0  # tokens a completion may sample; 0: the decode budget of the prompts' longest gold completion
    # (`evaluate.decode_budget`)
    updates_per_step: int = 1  # optimizer updates on each step's rollouts; the ratio differs from 1 only past the first
    seed: int = 0  # prompt draws and sampling keys, both by (seed, step)
    checkpoint_every: int = 0  # also offer a checkpoint every this many RL steps (0: after each budget only)
    grad_clip: float = 1.0  # global gradient-norm clip (TRL's max_grad_norm)

    def __post_init__(self) -> None:
        if not self.budgets or any(b < 0 for b in self.budgets):
            raise ValueError(f"RLConfig.budgets must be RL step counts >= 0, got {self.budgets}")
        if list(self.budgets) != sorted(set(self.budgets)):
            raise ValueError(f"RLConfig.budgets must be strictly increasing, got {self.budgets}")
        if self.group_size < 2:
            raise ValueError(f"RLConfig.group_size must be >= 2 (an advantage compares completions of one prompt), "
                             f"got {self.group_size}")
        if self.prompts_per_step < 1:
            raise ValueError(f"RLConfig.prompts_per_step must be >= 1, got {self.prompts_per_step}")
        if not self.temperature > 0:
            raise ValueError(f"RLConfig.temperature must be > 0 (RL samples), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"RLConfig.top_p must lie in (0, 1], got {self.top_p}")
        if not self.kl_coef >= 0:
            raise ValueError(f"RLConfig.kl_coef must be >= 0, got {self.kl_coef}")
        if not self.clip_eps > 0:
            raise ValueError(f"RLConfig.clip_eps must be > 0, got {self.clip_eps}")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"RLConfig.advantage must be one of {', '.join(ADVANTAGES)}, got {self.advantage!r}")
        if not self.lr > 0:
            raise ValueError(f"RLConfig.lr must be > 0, got {self.lr}")
        if not self.process_credit >= 0:
            raise ValueError(f"RLConfig.process_credit must be >= 0, got {self.process_credit}")
        for name in ("warmup_steps", "max_new", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"RLConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.updates_per_step < 1:
            raise ValueError(f"RLConfig.updates_per_step must be >= 1, got {self.updates_per_step}")
        if not self.grad_clip > 0:
            raise ValueError(f"RLConfig.grad_clip must be > 0, got {self.grad_clip}")

    @property
    def steps(self) -> int:
        """RL steps run for all budgets."""
        return self.budgets[-1]

    def replace(self, **changes) -> RLConfig:
        return dataclasses.replace(self, **changes)


# ---- the objective: pure functions of arrays ----

def group_advantages(rewards_PxG: jax.Array, kind: str = "grpo") -> jax.Array:
    """Each completion's advantage against its own group (a row of P prompts x G completions): reward minus the
    group's mean, divided by the group's (unbiased) standard deviation for "grpo" (TRL's), not for "dr_grpo"."""
    rewards_PxG = jnp.asarray(rewards_PxG, jnp.float32)
    centered_PxG = rewards_PxG - rewards_PxG.mean(-1, keepdims=True)
    if kind == "dr_grpo":
        return centered_PxG
    assert kind == "grpo", kind
    return centered_PxG / (rewards_PxG.std(-1, ddof=1, keepdims=True) + STD_EPSILON)


def token_weights(mask_BxT: jax.Array, kind: str, max_new: int) -> jax.Array:
    """Each token's weight in the loss (zero off the completions): "grpo" averages a completion's tokens and then
    the completions; "dr_grpo" sums all tokens over the constant B x max_new."""
    mask_BxT = jnp.asarray(mask_BxT, jnp.float32)
    rows = mask_BxT.shape[0]
    if kind == "dr_grpo":
        return mask_BxT / (rows * max_new)
    assert kind == "grpo", kind
    return mask_BxT / jnp.maximum(mask_BxT.sum(-1, keepdims=True), 1.0) / rows


def kl_k3(logprobs_BxT: jax.Array, ref_logprobs_BxT: jax.Array) -> jax.Array:
    """Per-token estimate of KL(policy || reference) from the sampled token (Schulman's k3, TRL's): r - log r - 1
    with r = p_ref / p_policy; zero where the two agree, positive elsewhere."""
    log_ratio_BxT = ref_logprobs_BxT - logprobs_BxT
    return jnp.exp(log_ratio_BxT) - log_ratio_BxT - 1.0


def clipped_objective(
    logprobs_BxT: jax.Array, old_logprobs_BxT: jax.Array, advantages_B: jax.Array, weights_BxT: jax.Array,
    clip_eps, ref_logprobs_BxT: jax.Array | None = None, kl_coef=0.0,
) -> tuple[jax.Array, dict]:
    """GRPO's loss (to minimize) and its parts: per token, -min(ratio x A, clip(ratio, 1 - eps, 1 + eps) x A) with
    ratio = p / p_old, plus kl_coef x k3 to the reference where one is given, weighted by `weights_BxT`.

    Where the clipped term is the smaller one (ratio above 1 + eps with A > 0, below 1 - eps with A < 0), it is
    constant in the policy: that token pushes no further."""
    ratio_BxT = jnp.exp(logprobs_BxT - old_logprobs_BxT)
    advantages_Bx1 = advantages_B[:, None]
    unclipped_BxT = ratio_BxT * advantages_Bx1
    clipped_BxT = jnp.clip(ratio_BxT, 1.0 - clip_eps, 1.0 + clip_eps) * advantages_Bx1
    per_token_BxT = -jnp.minimum(unclipped_BxT, clipped_BxT)
    on_BxT = weights_BxT > 0
    count = jnp.maximum(on_BxT.sum(), 1)
    metrics = {"clipped": ((clipped_BxT < unclipped_BxT) & on_BxT).sum() / count}
    if ref_logprobs_BxT is not None:
        kl_BxT = kl_k3(logprobs_BxT, ref_logprobs_BxT)
        per_token_BxT = per_token_BxT + kl_coef * kl_BxT
        metrics["kl"] = (kl_BxT * on_BxT).sum() / count
    loss = (per_token_BxT * weights_BxT).sum()
    return loss, metrics | {"loss": loss}


def rl_loss(params: nnx.State, batch: dict, graphdef: nnx.GraphDef, clip_eps, kl_coef, temperature):
    """`clipped_objective` of the policy `params` on a rollout batch: "tokens" BxT, "weights" BxT, "advantages" B,
    and optionally "old_logprobs" (absent: the policy's own, so the ratio is 1 and only its gradient counts) and
    "ref_logprobs" (absent: no KL term)."""
    logprobs_BxT = sequence_logprobs(params, batch["tokens"], graphdef, temperature)
    old_BxT = batch["old_logprobs"] if "old_logprobs" in batch else jax.lax.stop_gradient(logprobs_BxT)
    return clipped_objective(logprobs_BxT, old_BxT, batch["advantages"], batch["weights"], clip_eps,
                             batch.get("ref_logprobs"), kl_coef)


@functools.lru_cache(maxsize=None)
def rl_optimizer(grad_clip: float = 1.0) -> optax.GradientTransformation:
    """AdamW at unit rate after a global-norm clip (`train.build_optimizer`), without weight decay: decoupled decay
    would pull every weight toward zero at each update whatever the rewards say, moving the policy away from the
    SFT model for no reason of reward (and an update of zero advantage would still change it). TRL's default too."""
    return build_optimizer(0.0, grad_clip)


@functools.partial(jax.jit, static_argnames=("graphdef", "optimizer"), donate_argnums=0)
def rl_update(state, batch: dict, graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, lr, clip_eps,
              kl_coef, temperature):
    """One optimizer step of `rl_loss` on a rollout batch at learning rate `lr`: (params, opt_state) -> new state,
    {loss, clipped, kl}. Rate, clip range, KL weight and temperature are traced: every setting shares one
    compilation per model, optimizer and batch layout."""
    (_, metrics), grads = jax.value_and_grad(rl_loss, has_aux=True)(state[0], batch, graphdef, clip_eps, kl_coef,
                                                                    temperature)
    return apply_gradients(state, grads, optimizer, lr), metrics


# ---- rollouts ----

def reward(grade: Grade, process_credit: float) -> float:
    """A completion's reward: 1 where its answer is correct, plus process credit x its verified share of the chain
    (none where steps cannot be verified: a dataset's extractor grades answers only)."""
    credit = process_credit * grade.process_acc if process_credit and np.isfinite(grade.process_acc) else 0.0
    return float(grade.answer_correct) + credit


@dataclass(frozen=True)
class RolloutShape:
    """The fixed layout of every step's rollouts, from the whole prompt pool: one compiled sampler and update."""

    length: int  # T: the buffer, prompt and completion
    prompt_span: int  # positions the sampler's prefill covers (the longest prompt's bucket)
    max_new: int  # tokens a completion may sample

    @classmethod
    def of(cls, prompts: list[Example], tokenizer: Tokenizer, max_new: int, max_len: int) -> RolloutShape:
        longest_prompt = max(len(tokenizer.prompt_ids(example)) for example in prompts)
        if max_new == 0:
            max_new = decode_budget(max(len(tokenizer.completion_ids(example)) for example in prompts))
        if longest_prompt >= max_len:
            raise ValueError(f"a training prompt takes {longest_prompt} tokens, leaving no room to sample within the "
                             f"model's {max_len}")
        length = min(shape_bucket(longest_prompt + max_new), max_len)
        return cls(length, min(shape_bucket(longest_prompt), length), max_new)


@dataclass(frozen=True)
class Rollouts:
    """One step's sampled completions, G per prompt in prompt order, rewarded and scored against their group."""

    tokens_BxT: np.ndarray  # prompts and sampled completions
    mask_BxT: np.ndarray  # 1 at the sampled tokens (end of sequence included), 0 on prompts and padding
    rewards_B: np.ndarray
    advantages_B: np.ndarray
    decode_steps: int  # the sampler's decode iterations, for FLOPs


def rollouts(params: nnx.State, graphdef: nnx.GraphDef, examples: list[Example], cfg: RLConfig, shape: RolloutShape,
             tokenizer: Tokenizer, grader: Grader, key: jax.Array) -> Rollouts:
    """`cfg.group_size` completions of each example sampled from the policy `params` (prompts built as evaluation
    builds them, in the model's own tokenizer and chat template), each graded and rewarded (`reward`), and their
    group advantages. Sampling stops a row at its answer line where the grader reads nothing after it, as
    evaluation does: later tokens could not change its reward."""
    prompt_tokens_PxT, prompt_lengths_P = prompt_arrays(examples, shape.length, tokenizer)
    tokens_BxT = np.repeat(prompt_tokens_PxT, cfg.group_size, axis=0)
    prompt_lengths_B = np.repeat(prompt_lengths_P, cfg.group_size)
    stop_VxS = answer_line_automaton(tokenizer) if reads_first_answer_line_only(grader) else None
    stop = None if stop_VxS is None else jnp.asarray(stop_VxS)
    sampled = sample_cached(params, tokens_BxT, prompt_lengths_B, graphdef, shape.max_new, key, cfg.temperature,
                            cfg.top_p, eos_id=tokenizer.eos_id, stop_VxS=stop, prompt_span=shape.prompt_span)
    tokens_BxT, lengths_B = np.asarray(sampled.tokens_BxT), np.asarray(sampled.lengths_B)
    positions_T = np.arange(shape.length)
    mask_BxT = ((positions_T >= prompt_lengths_B[:, None]) & (positions_T < lengths_B[:, None])).astype(np.float32)
    texts = [tokenizer.decode(row_T[start:end]) for row_T, start, end in zip(tokens_BxT, prompt_lengths_B, lengths_B)]
    rewards_B = np.array([reward(grader(examples[row // cfg.group_size], text), cfg.process_credit)
                          for row, text in enumerate(texts)], np.float32)
    advantages_B = np.asarray(group_advantages(rewards_B.reshape(-1, cfg.group_size), cfg.advantage)).reshape(-1)
    return Rollouts(tokens_BxT, mask_BxT, rewards_B, advantages_B, int(sampled.decode_steps))


def step_prompts(n_prompts: int, cfg: RLConfig, step: int) -> np.ndarray:
    """The pool indices of RL step `step`'s prompts: distinct, reproducible from (seed, step) alone."""
    return np.random.default_rng([cfg.seed, step]).choice(n_prompts, cfg.prompts_per_step, replace=False)


# ---- the loop ----

@dataclass(frozen=True)
class RLTally:
    """What the RL arm has spent and earned so far, cumulative over its steps."""

    sampling_flops: float = 0.0  # FLOPs of sampling the rollouts (flops.sampling_flops)
    update_flops: float = 0.0  # FLOPs of the updates and of the forward passes for old and reference log-probs
    completions: int = 0  # completions sampled and rewarded
    reward_sum: float = 0.0  # their rewards, summed

    @property
    def mean_reward(self) -> float:
        """The mean training reward so far (NaN before any completion)."""
        return self.reward_sum / self.completions if self.completions else float("nan")


@dataclass(frozen=True)
class RLResume:
    """Where an interrupted RL arm continues: the policy's (params, opt_state) after `rl_step` steps and the tally
    then; every budget up to `rl_step` has been yielded."""

    rl_step: int
    state: tuple
    tally: RLTally


def _copy(tree):
    """A copy whose buffers are not donated when the original trains on."""
    return jax.tree.map(jnp.copy, tree)


def rl_train(
    model_cfg: ModelConfig, cfg: RLConfig, sft_params: nnx.State, prompts: list[Example], tokenizer: Tokenizer,
    grader: Grader, resume: RLResume | None = None,
    on_checkpoint: Callable[[int, tuple, RLTally], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False, on_step: Callable[[int, float], None] | None = None,
) -> Iterator[tuple[int, nnx.GraphDef, nnx.State, RLTally]]:
    """Optimize the SFT model with GRPO, yielding (rl_step, graphdef, params, tally) at each of cfg.budgets (0 first
    where listed: the SFT model itself).

    Step s draws its prompts from `prompts` (the cell's training examples, never an evaluation split) and its
    sampling key from (cfg.seed, s) alone, so `on_checkpoint(rl_step, state, tally)`, offered after each budget is
    evaluated (when the generator resumes) and every cfg.checkpoint_every steps, passed back as `resume`, continues
    bit for bit (the state's buffers are donated to the next update, as `train`'s are: save or copy them there).
    `should_stop` is asked after each step and each budget: the state is offered to `on_checkpoint` and `Stopped`
    raised. `on_step(rl_step, mean_reward)` reports each step's mean reward. The KL reference is
    `sft_params`, never changed.
    """
    if cfg.prompts_per_step > len(prompts):
        raise ValueError(f"RLConfig.prompts_per_step {cfg.prompts_per_step} is more than the {len(prompts)} "
                         "training prompts")
    graphdef = abstract_model(model_cfg)[0]
    optimizer = rl_optimizer(cfg.grad_clip)
    shape = RolloutShape.of(prompts, tokenizer, cfg.max_new, model_cfg.max_len)
    rows = cfg.prompts_per_step * cfg.group_size
    forward_flops = forward_flops_per_token(model_cfg, shape.length) * rows * shape.length
    update_flops = (cfg.updates_per_step * training_flops(model_cfg, rows, shape.length)
                    + forward_flops * ((cfg.updates_per_step > 1) + (cfg.kl_coef > 0)))
    key = jax.random.key(cfg.seed)
    if resume is None:
        step, state, tally = 0, (_copy(sft_params), optimizer.init(sft_params)), RLTally()
    else:
        step, state, tally = resume.rl_step, _copy(resume.state), resume.tally  # the caller's stays its own
    saved = step if resume is not None else None

    def checkpoint(at: int) -> None:
        nonlocal saved
        if on_checkpoint is not None and saved != at:
            on_checkpoint(at, state, tally)
            saved = at

    def stop_if_asked() -> None:
        if should_stop():
            checkpoint(step)
            raise Stopped(saved)

    for budget in (b for b in cfg.budgets if b > step or (b == 0 and resume is None)):
        while step < budget:
            examples = [prompts[i] for i in step_prompts(len(prompts), cfg, step)]
            batch = rollouts(state[0], graphdef, examples, cfg, shape, tokenizer, grader, jax.random.fold_in(key, step))
            update_batch = {"tokens": batch.tokens_BxT, "advantages": batch.advantages_B,
                            "weights": token_weights(batch.mask_BxT, cfg.advantage, shape.max_new)}
            if cfg.updates_per_step > 1:
                update_batch["old_logprobs"] = sequence_logprobs(state[0], batch.tokens_BxT, graphdef, cfg.temperature)
            if cfg.kl_coef > 0:
                update_batch["ref_logprobs"] = sequence_logprobs(sft_params, batch.tokens_BxT, graphdef,
                                                                 cfg.temperature)
            rate = cfg.lr * warmup(step, cfg.warmup_steps)
            for _ in range(cfg.updates_per_step):
                state, metrics = rl_update(state, update_batch, graphdef, optimizer, rate, cfg.clip_eps, cfg.kl_coef,
                                           cfg.temperature)
            loss = float(metrics["loss"])
            if not np.isfinite(loss):
                raise TrainingDiverged(f"the RL loss became {loss} at RL step {step + 1}")
            step += 1
            tally = RLTally(tally.sampling_flops + sampling_flops(model_cfg, rows, shape.prompt_span,
                                                                  batch.decode_steps, shape.length),
                            tally.update_flops + update_flops, tally.completions + rows,
                            tally.reward_sum + float(batch.rewards_B.sum()))
            if on_step is not None:
                on_step(step, float(batch.rewards_B.mean()))
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                checkpoint(step)
            stop_if_asked()
        yield budget, graphdef, _copy(state[0]), tally
        checkpoint(step)
        if budget != cfg.budgets[-1]:
            stop_if_asked()
