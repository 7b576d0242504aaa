"""Rejection-sampling fine-tuning (RFT, expert iteration; Yuan et al. 2023) after SFT: sample k completions of
each training prompt from the SFT model, keep the distinct ones the task's verifier marks correct, and fine-tune
the SFT model on them with the SFT loop (`scaling.trainer.train.train`), evaluated at each of its own budgets.

The samples are drawn once, before any fine-tuning, from (seed, batch of rows) alone, so a resumed run draws the
same kept set again and continues its fine-tuning bit for bit from a checkpoint of `train`'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling.tasks.grader import Grader, parse_completion, reads_first_answer_line_only
from scaling.tasks.mixture import Example
from scaling.tasks.tokenizer import Tokenizer
from scaling.trainer.batches import prompt_arrays, sequence_length, token_arrays
from scaling.trainer.config import ModelConfig, TrainConfig
from scaling.trainer.evaluate import answer_line_automaton, decode_budget
from scaling.trainer.flops import sampling_flops, training_flops
from scaling.trainer.model import abstract_model
from scaling.trainer.sample import sample_cached
from scaling.trainer.schedules import SCHEDULES
from scaling.trainer.train import CheckpointHook, Resume, train

_PROMPT_DRAW = 0  # stream of the seed that draws the prompts (fold 1 onwards: the sampler's batches)


@dataclass(frozen=True)
class RFTConfig:
    """How the RFT arm samples, filters and fine-tunes."""

    budgets: tuple[int, ...]  # fine-tuning steps at which the model is evaluated, ascending; 0: the SFT model itself
    samples: int = 8  # completions sampled per prompt (k)
    prompts: int = 0  # training prompts sampled, drawn by the seed from the cell's training examples; 0: all
    temperature: float = 1.0  # sampling temperature (> 0: a temperature of 0 draws one completion k times)
    top_p: float = 1.0  # nucleus: the smallest set of tokens whose probability reaches top_p
    max_new: int = 0  # new tokens per completion; 0: decode_budget of the prompts' longest gold completion
    lr: float = 1e-4  # fine-tuning learning rate (AdamW, as SFT)
    batch_size: int = 16  # sequences per fine-tuning step
    warmup_steps: int = 0  # linear warmup of the fine-tuning rate
    schedule: str = "constant"  # fine-tuning schedule (trainer.schedules): wsd branches a decay per budget
    seed: int = 0  # draws the prompts, the samples and the fine-tuning data order
    checkpoint_every: int = 0  # also offer a checkpoint every this many fine-tuning steps (0: after each budget)
    sample_rows: int = 64  # rows per sampler call: one compiled program, whatever the number of prompts

    def __post_init__(self) -> None:
        if not self.budgets or any(b < 0 for b in self.budgets) or list(self.budgets) != sorted(set(self.budgets)):
            raise ValueError(f"RFTConfig.budgets must be strictly increasing step counts >= 0, got {self.budgets}")
        for name, least in (("samples", 1), ("prompts", 0), ("max_new", 0), ("batch_size", 1), ("warmup_steps", 0),
                            ("checkpoint_every", 0), ("sample_rows", 1)):
            if getattr(self, name) < least:
                raise ValueError(f"RFTConfig.{name} must be >= {least}, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ValueError(f"RFTConfig.temperature must be > 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"RFTConfig.top_p must lie in (0, 1], got {self.top_p}")
        if not self.lr > 0:
            raise ValueError(f"RFTConfig.lr must be > 0, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"RFTConfig.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    @property
    def steps(self) -> tuple[int, ...]:
        """The budgets that fine-tune (all but 0)."""
        return tuple(b for b in self.budgets if b > 0)

    def train_config(self) -> TrainConfig:
        """The fine-tuning, as `train` runs it (needs a budget above 0)."""
        return TrainConfig(budgets=self.steps, batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
                           schedule=self.schedule, seed=self.seed, checkpoint_every=self.checkpoint_every)


@dataclass(frozen=True)
class RFTTally:
    """What the model at a budget cost and was trained on (FLOPs: flops.py's convention)."""

    sampling_flops: float  # drawing every sample (once, before fine-tuning)
    update_flops: float  # the fine-tuning steps to this budget
    kept: int  # distinct verified-correct completions fine-tuned on
    sampled: int  # completions drawn

    @property
    def fine_tuned(self) -> bool:
        """False where no sample was kept: the model at every budget is the SFT model."""
        return self.kept > 0


@dataclass(frozen=True)
class RejectionSamples:
    """The kept samples of one draw, and what drawing them cost."""

    examples: tuple[Example, ...]  # each kept completion as a training example of its prompt, prompt by prompt
    completions: tuple[tuple[str, ...], ...]  # every completion drawn, as graded: each prompt's k, in order drawn
    flops: float  # sampling FLOPs, every row of every sampler call counted

    @property
    def sampled(self) -> int:
        return sum(map(len, self.completions))


def training_prompts(prompts: list[Example], cfg: RFTConfig) -> list[Example]:
    """The prompts sampled: all, or `cfg.prompts` of them drawn by the seed (in their order)."""
    if not cfg.prompts:
        return list(prompts)
    if cfg.prompts > len(prompts):
        raise ValueError(f"RFTConfig.prompts={cfg.prompts} is more than the {len(prompts)} training prompts")
    chosen = np.random.default_rng([cfg.seed, _PROMPT_DRAW]).choice(len(prompts), cfg.prompts, replace=False)
    return [prompts[i] for i in sorted(chosen)]


def rejection_samples(
    model_cfg: ModelConfig, cfg: RFTConfig, graphdef: nnx.GraphDef, params: nnx.State, prompts: list[Example],
    tokenizer: Tokenizer, grader: Grader,
) -> RejectionSamples:
    """`cfg.samples` completions of each prompt sampled from the model, and the distinct ones whose answer `grader`
    verifies, each as an example of its prompt with that completion. A completion is what the grader reads: the
    tokens before end of sequence, cut after the answer line where the grader reads nothing after it (the sampler
    stops the row there). Rows go `cfg.sample_rows` at a time, prompt by prompt, the last call padded with copies
    of its last row; call c samples with the key folded from (seed, c + 1)."""
    rows = [prompt for prompt in range(len(prompts)) for _ in range(cfg.samples)]  # each row's prompt
    prompt_ids = [tokenizer.prompt_ids(example) for example in prompts]
    span = max(map(len, prompt_ids))
    max_new = cfg.max_new or decode_budget(max(len(tokenizer.completion_ids(example)) for example in prompts))
    length = min(span + max_new, model_cfg.max_len)
    stop = jnp.asarray(answer_line_automaton(tokenizer)) if reads_first_answer_line_only(grader) else None
    key = jax.random.key(cfg.seed)
    kept: list[dict[str, Example]] = [{} for _ in prompts]  # each prompt's distinct kept texts, first drawn first
    completions: list[list[str]] = [[] for _ in prompts]
    flops = 0.0
    for call, start in enumerate(range(0, len(rows), cfg.sample_rows)):
        batch = rows[start:start + cfg.sample_rows]
        padded = batch + [batch[-1]] * (cfg.sample_rows - len(batch))
        tokens, lengths = prompt_arrays([prompts[prompt] for prompt in padded], length, tokenizer)
        drawn = sample_cached(params, tokens, lengths, graphdef, max_new, jax.random.fold_in(key, call + 1),
                              cfg.temperature, cfg.top_p, eos_id=tokenizer.eos_id, stop_VxS=stop, prompt_span=span)
        flops += sampling_flops(model_cfg, cfg.sample_rows, span, int(drawn.decode_steps), length)
        written, ends = np.asarray(drawn.tokens_BxT), np.asarray(drawn.lengths_B)
        for row, prompt in enumerate(batch):
            example, text = prompts[prompt], _completion(written[row, lengths[row]:ends[row]], tokenizer)
            completions[prompt].append(text)
            if text not in kept[prompt] and grader(example, text).answer_correct:
                kept[prompt][text] = dataclasses.replace(
                    example, completion=text, steps=tuple(parse_completion(text)[0]), corrupted=False,
                    corrupted_step=None)
    return RejectionSamples(tuple(e for texts in kept for e in texts.values()), tuple(map(tuple, completions)), flops)


def _completion(generated: np.ndarray, tokenizer: Tokenizer) -> str:
    """The text of a row's generated tokens before its end of sequence."""
    ends = np.flatnonzero(generated == tokenizer.eos_id)
    return tokenizer.decode(generated[:ends[0]] if ends.size else generated)


def rft_train(
    model_cfg: ModelConfig,
    cfg: RFTConfig,
    sft_params: nnx.State,
    prompts: list[Example],
    tokenizer: Tokenizer,
    grader: Grader,
    resume: Resume | None = None,
    on_checkpoint: CheckpointHook | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[int, float], None] | None = None,
) -> Iterator[tuple[int, nnx.GraphDef, nnx.State, RFTTally]]:
    """The RFT arm from an SFT model: (budget, graphdef, params, tally) at each of cfg.budgets, 0 first where
    listed (the SFT params themselves). `prompts` are the cell's training examples, never its evaluation set.

    The fine-tuning is `train` from `sft_params` on the kept samples (fresh optimizer, cfg.train_config()):
    `resume`, `on_checkpoint(step, state, budgets_done)` (budgets_done counts the budgets above 0), `should_stop`
    (checkpoint, then `Stopped`) and `on_step` are its own, so a resume continues bit for bit; the samples are
    drawn again first, the same ones. With no sample kept nothing is fine-tuned: every budget yields the SFT
    params, and the tally says so (`fine_tuned`)."""
    graphdef = abstract_model(model_cfg)[0]
    drawn = rejection_samples(model_cfg, cfg, graphdef, sft_params, training_prompts(prompts, cfg), tokenizer, grader)
    tally = RFTTally(drawn.flops, 0.0, len(drawn.examples), drawn.sampled)
    if 0 in cfg.budgets and resume is None:
        yield 0, graphdef, sft_params, tally
    if not drawn.examples:
        yield from ((budget, graphdef, sft_params, tally) for budget in cfg.steps)
        return
    if not cfg.steps:
        return
    length = min(sequence_length(list(drawn.examples), tokenizer), model_cfg.max_len)
    data = token_arrays(list(drawn.examples), length, tokenizer)
    per_step = training_flops(model_cfg, cfg.batch_size, length)
    for budget, tuned_graphdef, params in train(model_cfg, cfg.train_config(), data, on_step=on_step,
                                                init_params=sft_params, resume=resume, on_checkpoint=on_checkpoint,
                                                should_stop=should_stop):
        yield budget, tuned_graphdef, params, dataclasses.replace(tally, update_flops=per_step * budget)
