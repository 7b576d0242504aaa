"""Task families whose chain-of-thought steps are each checkable.

A family draws a prompt at a difficulty (number of digits, list length) in one of several
phrasings, and solves any of its prompts into reference steps and a final answer. Because the
solution is recomputed from the prompt alone, a generated completion can be graded with nothing but
its prompt. A completion is the steps, one per line, then `#### ANSWER`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

ANSWER_MARK = "#### "


@dataclass(frozen=True)
class Problem:
    """One instance: the prompt, the reference CoT steps and the final answer."""

    prompt: str
    steps: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class Family:
    """A task family: its phrasings, how to draw and solve a problem, and its difficulty ranges."""

    name: str
    description: str
    id_range: tuple[int, int]  # inclusive difficulty range of the train and id splits
    ood_range: tuple[int, int]  # inclusive and strictly harder than id_range: the ood_length split
    phrasings: tuple[str, ...]  # prompt templates with named fields
    draw_fields: Callable[[np.random.Generator, int], dict[str, str]]  # (rng, difficulty) -> fields
    solve_fields: Callable[[dict[str, str]], tuple[tuple[str, ...], str]]  # fields -> (steps, answer)

    def draw(self, rng: np.random.Generator, difficulty: int) -> Problem:
        fields = self.draw_fields(rng, difficulty)
        template = self.phrasings[int(rng.integers(len(self.phrasings)))]
        return self.solve(template.format(**fields))

    def phrasing_of(self, prompt: str) -> int:
        """The index of the phrasing the prompt is written in; ValueError if none fits."""
        for index, pattern in enumerate(_patterns(self.phrasings)):
            if pattern.fullmatch(prompt):
                return index
        raise ValueError(f"prompt {prompt!r} is not a {self.name} problem")

    def solve(self, prompt: str) -> Problem:
        """The reference solution of any prompt this family can phrase; ValueError otherwise."""
        fields = _patterns(self.phrasings)[self.phrasing_of(prompt)].fullmatch(prompt).groupdict()
        steps, answer = self.solve_fields(fields)
        return Problem(prompt, steps, answer)


@functools.cache
def _patterns(phrasings: tuple[str, ...]) -> tuple[re.Pattern, ...]:
    """One regex per phrasing, its fields captured by name (cached: solved for every graded output)."""
    fields = {"a": r"(?P<a>\d+)", "b": r"(?P<b>\d+)", "items": r"(?P<items>\d(?: \d)*)"}
    return tuple(re.compile(re.escape(p).replace(r"\{", "{").replace(r"\}", "}").format(**fields)) for p in phrasings)


def completion_text(steps: tuple[str, ...], answer: str) -> str:
    """The text a model is trained to emit after the prompt."""
    return "".join(f"{step}\n" for step in steps) + ANSWER_MARK + answer


def _number(rng: np.random.Generator, digits: int) -> int:
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return int(rng.integers(low, 10**digits))


def _digits_lsb_first(n: int, width: int) -> list[int]:
    return [(n // 10**i) % 10 for i in range(width)]


def _draw_two_numbers(rng: np.random.Generator, digits: int) -> dict[str, str]:
    a, b = sorted((_number(rng, digits), _number(rng, digits)), reverse=True)  # a >= b keeps sub positive
    return {"a": str(a), "b": str(b)}


def _solve_add(fields: dict[str, str]) -> tuple[tuple[str, ...], str]:
    """Column addition, least significant digit first; each step is `x+y+carry=sum`."""
    a, b = int(fields["a"]), int(fields["b"])
    width = max(len(fields["a"]), len(fields["b"]))
    steps, carry = [], 0
    for x, y in zip(_digits_lsb_first(a, width), _digits_lsb_first(b, width)):
        total = x + y + carry
        steps.append(f"{x}+{y}+{carry}={total}")
        carry = total // 10
    return tuple(steps), str(a + b)


def _solve_sub(fields: dict[str, str]) -> tuple[tuple[str, ...], str]:
    """Column subtraction with borrows; each step is `x-y-borrow=digit b<next borrow>`."""
    a, b = int(fields["a"]), int(fields["b"])
    if a < b:
        raise ValueError(f"subtraction prompt {a}-{b} would go negative")
    width = max(len(fields["a"]), len(fields["b"]))
    steps, borrow = [], 0
    for x, y in zip(_digits_lsb_first(a, width), _digits_lsb_first(b, width)):
        value = x - y - borrow
        next_borrow = int(value < 0)
        steps.append(f"{x}-{y}-{borrow}={value + 10 * next_borrow} b{next_borrow}")
        borrow = next_borrow
    return tuple(steps), str(a - b)


def _draw_items(rng: np.random.Generator, length: int) -> dict[str, str]:
    return {"items": " ".join(str(v) for v in rng.integers(0, 10, size=length))}


def _solve_reverse(fields: dict[str, str]) -> tuple[tuple[str, ...], str]:
    """List reversal; each step is the reversed prefix built so far, one more item each time."""
    backwards = fields["items"].split()[::-1]
    steps = tuple(" ".join(backwards[: i + 1]) for i in range(len(backwards)))
    return steps, steps[-1]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "add", "multi-digit addition with carries, column by column", (1, 3), (4, 5),
            ("{a}+{b}=?", "add {a} and {b}", "what is {a} plus {b}?"), _draw_two_numbers, _solve_add,
        ),
        Family(
            "reverse", "reverse a list of digits, one item per step", (2, 5), (6, 8),
            ("reverse {items}", "reverse the list {items}", "write {items} backwards"), _draw_items, _solve_reverse,
        ),
        Family(
            "sub", "multi-digit subtraction with borrows, column by column", (1, 3), (4, 5),
            ("{a}-{b}=?", "subtract {b} from {a}", "what is {a} minus {b}?"), _draw_two_numbers, _solve_sub,
        ),
    )
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; families are {', '.join(FAMILIES)}")
    return FAMILIES[name]
