"""Chance: how often a guess of the right type, made without reasoning, gets a problem's answer right.

An `answer_acc` means little without it: T/F and yes/no are right half the time by guessing, a
`lookup` answer is one of the few digits bound in the prompt, a `count` one of the list's lengths.
For each problem the guess is uniform over the answers its type allows, using what the prompt shows:

    bool, compare        T or F, yes or no                           1/2
    lookup               one of the digits the bindings hold          1/(distinct digits bound)
    count                0 .. the list's length                      1/(length + 1)
    mod, ..._then_mod    0 .. modulus − 1                            1/modulus
    reverse, sort        an ordering of the list's items             (multiplicities' factorials)/length!
    dedupe               an ordering of the list's distinct items    1/(distinct items)!
    add_base8            a base-8 number with the answer's digits    1/(base-8 numbers with that many digits)
    other numbers        a number with the answer's digit count      1/(numbers with that many digits)
    other digit lists    a list of digits of the answer's length     1/10^length

A rule variant's answer has its base family's type (sort_desc, reverse_pairs, lookup_arrow and count_not
as sort, reverse, lookup and count), but for add_base8, whose digits are 0-7.

`chance_of` gives this exactly per problem; `guess` draws such a guess, and the tests grade guesses
with the real grader to check that the two agree. `chance_floor` averages over a family's problems
at one difficulty (cached): what the figures draw under each split's accuracy.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter

import numpy as np

from scaling.tasks.families.base import Problem
from scaling.tasks.families.variants import ADD_BASE8, BASE
from scaling.tasks.registry import get_task

FLOOR_DRAWS = 400  # problems averaged per family and difficulty: each chance is exact, so this is plenty
OCTAL = ADD_BASE8.name  # the one task whose answer is a number in another base


def _answer_kind(family: str) -> str:
    """Which family's answer type a task gives: a composition's last part, a rule variant's base family."""
    last = family.split("_then_")[-1]
    return last if last == OCTAL else get_task(last).variant_of or last


def _bound_digits(problem: Problem) -> list[str]:
    return sorted(set(re.findall(r"\d", problem.fields["bindings"])))  # values are the only digits, in either syntax


def _numbers_with_digits(digits: int, base: int = 10) -> int:
    return base if digits == 1 else (base - 1) * base ** (digits - 1)


def chance_of(family: str, problem: Problem) -> float:
    """The probability that a uniform guess of the answer's type is right, for this problem."""
    kind, answer, whole = _answer_kind(family), problem.answer, "_then_" not in family
    if kind in ("bool", "compare"):
        return 0.5
    if kind == "lookup":
        return 1 / len(_bound_digits(problem))
    if kind == "count":
        return 1 / (len(problem.fields["items"].split()) + 1)
    if kind == "mod":
        return 1 / int(problem.fields.get("modulus", problem.fields.get("y_modulus")))
    if kind in ("reverse", "sort") and whole:
        items = problem.fields["items"].split()
        return math.prod(math.factorial(c) for c in Counter(items).values()) / math.factorial(len(items))
    if kind == "dedupe" and whole:
        return 1 / math.factorial(len(set(problem.fields["items"].split())))
    if kind == OCTAL:
        return 1 / _numbers_with_digits(len(answer), BASE)
    if re.fullmatch(r"\d+", answer):
        return 1 / _numbers_with_digits(len(answer))
    return 1 / 10 ** len(answer.split())  # a list of digits


def guess(family: str, problem: Problem, rng: np.random.Generator) -> str:
    """One uniform guess of the answer's type, as `chance_of` describes it."""
    kind, answer, whole = _answer_kind(family), problem.answer, "_then_" not in family
    if kind == "bool":
        return "T" if rng.random() < 0.5 else "F"
    if kind == "compare":
        return "yes" if rng.random() < 0.5 else "no"
    if kind == "lookup":
        digits = _bound_digits(problem)
        return digits[int(rng.integers(len(digits)))]
    if kind == "count":
        return str(int(rng.integers(len(problem.fields["items"].split()) + 1)))
    if kind == "mod":
        return str(int(rng.integers(int(problem.fields.get("modulus", problem.fields.get("y_modulus"))))))
    if kind in ("reverse", "sort") and whole:
        return " ".join(rng.permutation(problem.fields["items"].split()).tolist())
    if kind == "dedupe" and whole:
        return " ".join(rng.permutation(list(dict.fromkeys(problem.fields["items"].split()))).tolist())
    if kind == OCTAL:
        digits = len(answer)
        return format(int(rng.integers(0 if digits == 1 else BASE ** (digits - 1), BASE**digits)), "o")
    if re.fullmatch(r"\d+", answer):
        digits = len(answer)
        return str(int(rng.integers(0 if digits == 1 else 10 ** (digits - 1), 10 ** digits)))
    return " ".join(str(d) for d in rng.integers(0, 10, len(answer.split())))


@functools.lru_cache(maxsize=None)
def chance_floor(family: str, difficulty: int) -> float:
    """The mean chance of a family's problems at one difficulty (problems drawn with a fixed seed)."""
    task = get_task(family)
    rng = np.random.default_rng([difficulty, 17])
    return float(np.mean([chance_of(family, task.draw(rng, difficulty)) for _ in range(FLOOR_DRAWS)]))
