"""CoT quality and style: one consistent error in an example's CoT, and how much of the CoT is shown.

A corruption changes one step and lets the family's procedure continue from there, so the later
steps and the final answer follow from the error, as a careless but consistent solver would write
them. The family's verifier therefore rejects exactly the corrupted step first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaling.tasks.families.base import UNREADABLE, Family, Problem

COT_STYLES = ("full", "short", "none")
CORRUPTIONS = ("wrong_value", "skipped_step")


@dataclass(frozen=True)
class Corrupted:
    """A problem's CoT with one error: the steps, the answer that follows, and where the error is."""

    steps: tuple[str, ...]
    answer: str
    step: int  # index of the first wrong step
    kind: str  # one of CORRUPTIONS


def _is_truth_value(step: str, i: int) -> bool:
    """A standalone T or F (a boolean value, not part of a word)."""
    return step[i] in "TF" and not (i > 0 and step[i - 1].isalpha()) and not (i + 1 < len(step) and step[i + 1].isalpha())


def _perturb(step: str, rng: np.random.Generator) -> str:
    """The step with one value changed: a digit to another digit, or a truth value flipped."""
    positions = [i for i, c in enumerate(step) if c.isdigit() or _is_truth_value(step, i)]
    assert positions, f"a CoT step must hold a digit or truth value to be corruptible: {step!r}"
    at = positions[int(rng.integers(len(positions)))]
    if step[at] in "TF":
        replacement = "F" if step[at] == "T" else "T"
    else:
        replacement = str((int(step[at]) + int(rng.integers(1, 10))) % 10)
    return step[:at] + replacement + step[at + 1 :]


def corrupt(family: Family, problem: Problem, rng: np.random.Generator) -> Corrupted:
    """One error in the problem's CoT: a wrong value that later steps follow, or a skipped step."""
    gold = problem.steps
    skippable = [i for i in range(len(gold) - 1) if gold[i] != gold[i + 1]]
    if skippable and rng.random() < 1 / 3:
        at = skippable[int(rng.integers(len(skippable)))]
        return Corrupted(gold[:at] + gold[at + 1 :], problem.answer, at, "skipped_step")
    at = int(rng.integers(len(gold)))
    steps = list(gold[:at]) + [_perturb(gold[at], rng)]
    for j in range(at + 1, len(gold)):
        try:
            steps.append(family.next_step(problem.fields, steps))
        except UNREADABLE:  # the error broke the procedure: copy the rest, the error stays first
            steps.append(gold[j])
    try:
        answer = family.final_answer(problem.fields, steps)
    except UNREADABLE:
        answer = problem.answer
    return Corrupted(tuple(steps), answer, at, "wrong_value")


def shown_steps(steps: tuple[str, ...], cot: str) -> tuple[str, ...]:
    """The steps a CoT style writes: all (`full`), the last only (`short`), or none (`none`)."""
    if cot == "full":
        return steps
    if cot == "short":
        return steps[-1:]
    if cot == "none":
        return ()
    raise ValueError(f"unknown CoT style {cot!r}; styles are {', '.join(COT_STYLES)}")


def corrupted_rows(n: int, quality: float, seed: int) -> set[int]:
    """Exactly round((1 - quality) * n) rows, drawn without replacement: the quality knob is precise."""
    if not 0.0 <= quality <= 1.0:
        raise ValueError(f"quality {quality} must lie between 0 and 1 (the fraction of correct CoT)")
    count = int(round((1.0 - quality) * n))
    return set(np.random.default_rng([seed, 7]).permutation(n)[:count].tolist())
