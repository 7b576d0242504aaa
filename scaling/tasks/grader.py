"""Grading generated completions: final-answer exact match, the verified share of the CoT, and whether
the whole chain is right.

Steps are verified in order and credit stops at the first wrong one: a later step that follows
correctly from an earlier mistake is not counted as correct reasoning. Unparseable output counts as
wrong, never as an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaling.tasks.families import ANSWER_MARK
from scaling.tasks.registry import get_task


@dataclass(frozen=True)
class Grade:
    answer_correct: bool  # the text after `####` equals the reference answer
    process_acc: float  # the correct steps before the first wrong one, over the longer of generated and gold CoT
    chain_correct: bool  # every step right and none missing or extra: the gold chain itself
    steps: int  # steps generated


def parse_completion(text: str) -> tuple[list[str], str | None]:
    """The CoT step lines and the final answer of a completion; answer None when there is none."""
    head, mark, tail = text.partition(ANSWER_MARK.strip())
    steps = [line.strip() for line in head.split("\n") if line.strip()]
    answer = tail.strip().split("\n")[0].strip() if mark else None
    return steps, answer


def grade(family: str, prompt: str, completion: str) -> Grade:
    """Grade one generated completion against the family's own solution of the prompt."""
    task = get_task(family)
    reference = task.solve(prompt)
    steps, answer = parse_completion(completion)
    verified = 0
    while verified < len(steps) and task.step_ok(reference.fields, steps[:verified], steps[verified]):
        verified += 1
    return Grade(answer_correct=answer == reference.answer,
                 process_acc=verified / max(len(steps), len(reference.steps), 1),
                 chain_correct=verified == len(steps) == len(reference.steps), steps=len(steps))
