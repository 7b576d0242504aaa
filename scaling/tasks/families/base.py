"""The task-family interface: problems whose chain-of-thought steps are each checkable alone.

A family is a small deterministic procedure. `next_step(fields, previous)` says what the next CoT
step must be given the problem's fields and the steps written so far, so one function gives the
gold CoT (run it from no steps), a local verifier (a step is accepted when it is what the procedure
would write after the steps before it), and consistent corruptions (change one step, continue from
there: later steps and the final answer follow from the error). Prompts render the fields in one
of several phrasings and parse back to them, so a completion can be graded from its prompt alone.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

ANSWER_MARK = "#### "
Fields = dict[str, str]
# What a procedure raises when previous steps (say, a model's output) cannot be read.
UNREADABLE = (ValueError, IndexError, KeyError, ZeroDivisionError)
LADDER_RUNGS = 3  # OOD difficulty levels above the trained range, at least: distances +1, +2, +3


@dataclass(frozen=True)
class Problem:
    """One instance: its prompt, the gold CoT steps and final answer, and the fields behind them."""

    prompt: str
    steps: tuple[str, ...]
    answer: str
    fields: Fields
    phrasing: int  # index of the prompt's phrasing
    key: str  # the problem itself, whatever its phrasing or CoT style: `family:canonical operands`


@dataclass(frozen=True, eq=False)
class Family:
    """A task family: phrasings, a difficulty knob with ID and harder OOD ranges, and its procedure."""

    name: str
    kind: str  # arithmetic, algorithmic, symbolic or language
    description: str
    id_range: tuple[int, int]  # inclusive difficulty range of the train and id splits
    # Inclusive, starting just above id_range and at least LADDER_RUNGS levels long: the ood_length split,
    # read level by level as a ladder of distances beyond the trained range (see `distance`).
    ood_range: tuple[int, int]
    phrasings: tuple[str, ...]  # prompt templates whose {placeholders} are the fields
    field_patterns: tuple[tuple[str, str], ...]  # (field, regex) to read each field back from a prompt
    draw_fields: Callable[[np.random.Generator, int], Fields]  # (rng, difficulty) -> fields
    n_steps: Callable[[Fields], int]  # length of the gold CoT
    next_step: Callable[[Fields, Sequence[str]], str]  # the step that must follow `previous`
    final_answer: Callable[[Fields, Sequence[str]], str]  # the answer that follows from the steps
    # The problem's operands written one canonical way, so that two presentations of one problem (its
    # bindings or facts in another order, say) share a key; None: the fields themselves, sorted by name.
    canonical: Callable[[Fields], str] | None = None
    skills: tuple[str, ...] = ()  # the sub-skills its steps use, named by the families that teach them
    # The base family whose rule this one changes, the change stated in every prompt (a rule variant, for the
    # ood_rule split; never trained by default); "" for a family that changes none.
    variant_of: str = ""

    def __post_init__(self) -> None:
        assert self.ood_range[0] == self.id_range[1] + 1, f"{self.name}: OOD difficulties start just above ID"
        assert self.ood_range[1] - self.ood_range[0] + 1 >= LADDER_RUNGS, f"{self.name}: {LADDER_RUNGS} OOD levels"
        assert len(self.phrasings) >= 3, f"{self.name}: at least 3 phrasings"

    def distance(self, difficulty: int) -> int:
        """How many difficulty levels a problem lies beyond the trained range: 0 inside id_range."""
        return max(0, difficulty - self.id_range[1])

    @property
    def trained_phrasings(self) -> tuple[int, ...]:
        """The phrasings training may use: all but the last, which the `ood_phrasing` split alone asks in."""
        return tuple(range(len(self.phrasings) - 1))

    @property
    def held_out_phrasing(self) -> int:
        return len(self.phrasings) - 1

    def key(self, fields: Fields) -> str:
        """The problem's key: family and canonical operands, independent of phrasing and CoT style."""
        operands = self.canonical(fields) if self.canonical else "|".join(f"{k}={fields[k]}" for k in sorted(fields))
        return f"{self.name}:{operands}"

    def gold_steps(self, fields: Fields) -> tuple[str, ...]:
        steps: list[str] = []
        for _ in range(self.n_steps(fields)):
            steps.append(self.next_step(fields, steps))
        return tuple(steps)

    def problem(self, fields: Fields, phrasing: int) -> Problem:
        steps = self.gold_steps(fields)
        prompt = self.phrasings[phrasing].format(**fields)
        return Problem(prompt, steps, self.final_answer(fields, steps), fields, phrasing, self.key(fields))

    def draw(self, rng: np.random.Generator, difficulty: int, phrasings: Sequence[int] | None = None) -> Problem:
        """A random problem of this difficulty, in one of `phrasings` (None: any)."""
        fields = self.draw_fields(rng, difficulty)
        allowed = range(len(self.phrasings)) if phrasings is None else phrasings
        return self.problem(fields, allowed[int(rng.integers(len(allowed)))])

    def parse(self, prompt: str) -> tuple[Fields, int]:
        """The fields and phrasing index of a prompt of this family; ValueError if it is not one."""
        for index, pattern in enumerate(_patterns(self.phrasings, self.field_patterns)):
            match = pattern.fullmatch(prompt)
            if match:
                return match.groupdict(), index
        raise ValueError(f"prompt {prompt!r} is not a {self.name} problem")

    def solve(self, prompt: str) -> Problem:
        """The gold solution of any prompt this family can phrase."""
        return self.problem(*self.parse(prompt))

    def step_ok(self, fields: Fields, previous: Sequence[str], step: str) -> bool:
        """Whether `step` is what the procedure writes after `previous` (steps are judged locally)."""
        try:
            return len(previous) < self.n_steps(fields) and step == self.next_step(fields, previous)
        except UNREADABLE:
            return False


@functools.cache
def _patterns(phrasings: tuple[str, ...], field_patterns: tuple[tuple[str, str], ...]) -> tuple[re.Pattern, ...]:
    """One regex per phrasing with each field captured by name (cached: every graded output uses it)."""
    groups = {name: f"(?P<{name}>{regex})" for name, regex in field_patterns}
    compiled = []
    for phrasing in phrasings:
        parts = re.split(r"\{(\w+)\}", phrasing)  # literal, field, literal, field, ...
        compiled.append(re.compile("".join(groups[p] if i % 2 else re.escape(p) for i, p in enumerate(parts))))
    return tuple(compiled)


def completion_text(steps: Sequence[str], answer: str) -> str:
    """The text a model is trained to emit after the prompt: steps one per line, then the answer."""
    return "".join(f"{step}\n" for step in steps) + ANSWER_MARK + answer


# Shared field patterns and drawing helpers.
NUMBER = r"\d+"
DIGIT_LIST = r"\d(?: \d)*"


def draw_number(rng: np.random.Generator, digits: int) -> int:
    """A number with exactly `digits` digits (0-9 for one digit)."""
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return int(rng.integers(low, 10**digits))


def digit_lsb(n: int, index: int) -> int:
    """The index-th decimal digit of n, least significant first."""
    return (n // 10**index) % 10


def draw_digit_list(rng: np.random.Generator, length: int) -> str:
    return " ".join(str(v) for v in rng.integers(0, 10, size=length))
