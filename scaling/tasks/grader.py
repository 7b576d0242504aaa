"""Grading generated completions: final-answer exact match, the verified share of the CoT, and whether
the whole chain is right.

Steps are verified in order and credit stops at the first wrong one: a later step that follows
correctly from an earlier mistake is not counted as correct reasoning. Unparseable output counts as
wrong, never as an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from scaling.tasks.families import ANSWER_MARK
from scaling.tasks.jsonl import AnswerExtractor
from scaling.tasks.registry import get_task

if TYPE_CHECKING:
    from scaling.tasks.mixture import Example


@dataclass(frozen=True)
class Grade:
    answer_correct: bool  # the text after `####` equals the reference answer
    process_acc: float  # the correct steps before the first wrong one, over the longer of generated and gold CoT
    # (NaN where no procedure verifies steps: a user's dataset)
    chain_correct: bool | None  # every step right and none missing or extra: the gold chain itself (None: unverifiable)
    steps: int  # steps generated


class Grader(Protocol):
    """How an evaluation example's generated completion is graded; picklable (plans travel to workers)."""

    def __call__(self, example: Example, completion: str) -> Grade:
        ...


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


def verify_example(example: Example, completion: str) -> Grade:
    """A `Grader` for the synthetic tasks: the example's family verifies answer and steps."""
    return grade(example.family, example.prompt, completion)


@dataclass(frozen=True)
class AnswerGrader:
    """A `Grader` where no procedure verifies steps (a user's data): the answer the extractor reads must equal the
    reference. Steps are counted, never verified, so process and chain accuracy are undefined."""

    extractor: AnswerExtractor

    def __call__(self, example: Example, completion: str) -> Grade:
        return self.against(example.answer, completion)

    def against(self, reference: str, completion: str) -> Grade:
        """Grade a completion against a reference answer, normalized as the extractor reads answers."""
        steps, answer = self.extractor.parse(completion)
        return Grade(answer_correct=answer == reference, process_acc=float("nan"), chain_correct=None, steps=len(steps))


def reads_first_answer_line_only(grader: Grader) -> bool:
    """Whether nothing after a completion's first answer line (as `parse_completion` reads it) can change the
    grader's grade, so that generation may stop there: true of the families' verifiers; not of a dataset's
    extractor, which may read the marker's last occurrence, a regex or the last number."""
    return grader is verify_example
