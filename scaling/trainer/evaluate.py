"""Evaluation of a model on a split: teacher-forced loss and token accuracy, and greedy generation
graded by the task's own verifier (answer exact match, fraction of verified CoT steps)."""

from __future__ import annotations

import functools

import jax
import numpy as np
from flax import nnx

from scaling.trainer.batches import prompt_arrays, token_arrays
from scaling.trainer.decode import generate_greedy_cached
from scaling.tasks.grader import Grader, verify_example
from scaling.tasks.mixture import Example
from scaling.tasks.tokenizer import CHARACTERS, Tokenizer
from scaling.trainer.train import token_losses


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _teacher_forced_sums(params, batch: dict, graphdef: nnx.GraphDef):
    """Summed completion-token loss, correct tokens and completion tokens of a batch."""
    model = nnx.merge(graphdef, params)
    logits_BxTxV = model(batch["inputs"], batch["positions"], batch["segments"])
    weights_BxT = batch["loss_mask"]
    loss_sum = (token_losses(logits_BxTxV, batch["targets"]) * weights_BxT).sum()
    correct_sum = ((logits_BxTxV.argmax(-1) == batch["targets"]) * weights_BxT).sum()
    return loss_sum, correct_sum, weights_BxT.sum()


def _padded(array: np.ndarray, rows: int) -> np.ndarray:
    """array with zero rows appended up to `rows`, so every batch of a split has one shape."""
    return np.concatenate([array, np.zeros((rows - len(array), *array.shape[1:]), array.dtype)])


def evaluate_split(
    graphdef: nnx.GraphDef, params, examples: list[Example], length: int, batch_size: int,
    tokenizer: Tokenizer = CHARACTERS, grader: Grader = verify_example,
) -> dict[str, float]:
    """All metrics of one split (see `grade_split`)."""
    return grade_split(graphdef, params, examples, length, batch_size, tokenizer, grader)[0]


def grade_split(
    graphdef: nnx.GraphDef, params, examples: list[Example], length: int, batch_size: int,
    tokenizer: Tokenizer = CHARACTERS, grader: Grader = verify_example, keep_text: bool = False,
) -> tuple[dict[str, float], list[dict]]:
    """All metrics of one split, its examples tokenized by `tokenizer` (the one the model was trained with)
    and graded by `grader` (the synthetic families' verifiers, or a dataset's answer extractor), and each
    example's grade (`scaling.schema.GRADE_COLUMNS`; with `keep_text`, also the decoded completion it graded,
    as "completion"). `length` is a row's tokens, prompt and generation together. Padding rows carry zero
    loss weight and are not graded. Where steps cannot be verified, process and chain accuracy are NaN:
    undefined, not zero."""
    arrays = token_arrays(examples, length, tokenizer)
    prompts, prompt_lengths = prompt_arrays(examples, length, tokenizer)
    loss_sum = correct_sum = weight_sum = 0.0
    grades: list[dict] = []
    for start in range(0, len(examples), batch_size):
        index = np.arange(start, min(start + batch_size, len(examples)))
        batch = {name: _padded(value, batch_size) for name, value in arrays.take(index).items()}
        sums = _teacher_forced_sums(params, batch, graphdef=graphdef)
        loss_sum, correct_sum, weight_sum = (a + float(b) for a, b in zip((loss_sum, correct_sum, weight_sum), sums))
        # Padding rows get a one-token prompt so that they finish at once and cost nothing.
        lengths = _padded(prompt_lengths[index], batch_size)
        lengths[len(index):] = length
        generated = np.asarray(
            generate_greedy_cached(params, _padded(prompts[index], batch_size), lengths, graphdef=graphdef, max_new=length,
                                   eos_id=tokenizer.eos_id)
        )
        for row, i in zip(generated, index):
            example, written = examples[i], row[prompt_lengths[i]:]
            text = tokenizer.decode(written)
            result = grader(example, text)
            ends = np.flatnonzero(written == tokenizer.eos_id)
            grades.append({
                "family": example.family, "phrasing": example.phrasing, "difficulty": example.difficulty,
                "distance": example.distance, "key": example.key, "chance": example.chance, "answer_correct": result.answer_correct,
                "process_score": result.process_acc,
                "chain_correct": np.nan if result.chain_correct is None else result.chain_correct, "steps": result.steps,
                "generated_tokens": int(ends[0] + 1) if len(ends) else len(written),
            } | ({"completion": text} if keep_text else {}))
    return {
        "loss": loss_sum / max(weight_sum, 1.0),
        "token_acc": correct_sum / max(weight_sum, 1.0),
        "answer_acc": float(np.mean([g["answer_correct"] for g in grades])),
        "process_acc": float(np.mean([g["process_score"] for g in grades])),
        "chain_acc": float(np.mean([g["chain_correct"] for g in grades])),
        "n": float(len(examples)),
    }, grades


def evaluate_splits(
    graphdef: nnx.GraphDef, params, splits: dict[str, list[Example]], lengths: dict[str, int], batch_size: int,
    tokenizer: Tokenizer = CHARACTERS, grader: Grader = verify_example,
) -> tuple[dict[str, dict[str, float]], dict[str, list[dict]]]:
    """All metrics of every split, and every example's grade, each split in rows of its own length: its
    longest sequence, which is also how far greedy generation may run. (A split's decoding cost grows
    with its row length, per step and in steps: a split of short problems is not decoded at the length
    of another split's long ones.)"""
    graded = {split: grade_split(graphdef, params, examples, lengths[split], batch_size, tokenizer, grader)
              for split, examples in splits.items()}
    return {split: metrics for split, (metrics, _) in graded.items()}, {split: grades for split, (_, grades) in graded.items()}
