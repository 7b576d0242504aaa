"""Lenient answer grading, for a base model before any SFT: the answer is read wherever a plain writer puts it.

The grid's grader (`scaling.tasks.grader`) reads the answer after `####`, the format SFT teaches; an
untrained base never writes it, so strict grading scores every base 0 and measures nothing. Here a
completion with the marker is read after it, as there; one without is read as people read a free answer:
its last number when the reference is a number ("921 + 786 = 1707." and "The answer is 1,707" both say
1707), else its last non-empty line less trailing punctuation. Steps are not graded: a base writes none
in the grid's step format, so process and chain accuracy are undefined (NaN, None), not zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scaling.tasks.families import ANSWER_MARK
from scaling.tasks.grader import Grade, parse_completion
from scaling.tasks.registry import get_task

if TYPE_CHECKING:
    from scaling.tasks.mixture import Example

INTEGER = re.compile(r"[-+]?\d+")  # a reference answer that is a number
# A number as written: digits in thousands groups ("1,707") or plain; its sign is read apart (see `last_number`).
WRITTEN_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?!\d)|\d+")
TRAILING_PUNCTUATION = ".,;:!?"


def last_number(text: str) -> int | None:
    """The last integer written in text, thousands separators dropped; None if it holds no digit.

    A minus sign right before the digits counts unless a number or a bracket precedes it (subtraction):
    "68-30" ends in 30, "x = -3" and "it is -3" in -3.
    """
    found = list(WRITTEN_NUMBER.finditer(text))
    if not found:
        return None
    number = found[-1]
    before = text[:number.start()]
    preceding = before[:-1].rstrip()[-1:]
    negative = before.endswith("-") and not (preceding.isdigit() or preceding == ")")
    value = int(number.group().replace(",", ""))
    return -value if negative else value


def last_line(text: str) -> str:
    """The last non-empty line of text, stripped of surrounding space and trailing punctuation."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1].rstrip(TRAILING_PUNCTUATION).rstrip() if lines else ""


def lenient_answer_correct(reference: str, completion: str) -> bool:
    """Whether the completion states the reference answer: after `####` if it writes the marker, else anywhere
    as its last number (a numeric reference) or as its last line (any other)."""
    head, mark, tail = completion.partition(ANSWER_MARK.strip())
    stated = tail.strip().split("\n")[0] if mark else head
    if INTEGER.fullmatch(reference.strip()):
        return last_number(stated) == int(reference)
    return last_line(stated) == last_line(reference)


@dataclass(frozen=True)
class LenientGrader:
    """A `Grader` of final answers only, read leniently (`lenient_answer_correct`); picklable."""

    solved: bool = True  # the reference is the task family's own solution of the prompt (as `grader.grade` takes
    # it); False: the example's own answer (a user's dataset, whose groups no family solves)

    def __call__(self, example: Example, completion: str) -> Grade:
        reference = get_task(example.family).solve(example.prompt).answer if self.solved else example.answer
        return Grade(answer_correct=lenient_answer_correct(reference, completion), process_acc=float("nan"),
                     chain_correct=None, steps=len(parse_completion(completion)[0]))
