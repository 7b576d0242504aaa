"""Arithmetic families: column addition with carries, column subtraction with borrows."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from scaling.tasks.families.base import NUMBER, Family, Fields, digit_lsb, draw_number


def _draw_two_numbers(rng: np.random.Generator, digits: int) -> Fields:
    a, b = sorted((draw_number(rng, digits), draw_number(rng, digits)), reverse=True)  # a >= b: no negatives
    return {"a": str(a), "b": str(b)}


def _columns(fields: Fields) -> int:
    return max(len(fields["a"]), len(fields["b"]))


# add: step i is `x+y+carry=total` for column i, the carry read from the previous step's total.
def _add_next(fields: Fields, previous: Sequence[str]) -> str:
    column = len(previous)
    carry = int(previous[-1].split("=")[1]) // 10 if previous else 0
    x, y = digit_lsb(int(fields["a"]), column), digit_lsb(int(fields["b"]), column)
    return f"{x}+{y}+{carry}={x + y + carry}"


def _add_answer(fields: Fields, steps: Sequence[str]) -> str:
    totals = [int(step.split("=")[1]) for step in steps]
    digits = "".join(str(total % 10) for total in reversed(totals))
    return str(int(str(totals[-1] // 10) + digits))


ADD = Family(
    name="add",
    kind="arithmetic",
    description="multi-digit addition with carries, column by column",
    id_range=(1, 3),
    ood_range=(4, 5),
    phrasings=("{a}+{b}=?", "add {a} and {b}", "what is {a} plus {b}?"),
    field_patterns=(("a", NUMBER), ("b", NUMBER)),
    draw_fields=_draw_two_numbers,
    n_steps=_columns,
    next_step=_add_next,
    final_answer=_add_answer,
)


# sub: step i is `x-y-borrow=digit b<next borrow>`, the borrow read from the previous step.
def _sub_next(fields: Fields, previous: Sequence[str]) -> str:
    column = len(previous)
    borrow = int(previous[-1].rsplit(" b", 1)[1]) if previous else 0
    x, y = digit_lsb(int(fields["a"]), column), digit_lsb(int(fields["b"]), column)
    value = x - y - borrow
    next_borrow = int(value < 0)
    return f"{x}-{y}-{borrow}={value + 10 * next_borrow} b{next_borrow}"


def _sub_answer(fields: Fields, steps: Sequence[str]) -> str:
    digits = [step.split("=")[1].split(" ")[0] for step in steps]
    return str(int("".join(reversed(digits))))


SUB = Family(
    name="sub",
    kind="arithmetic",
    description="multi-digit subtraction with borrows, column by column",
    id_range=(1, 3),
    ood_range=(4, 5),
    phrasings=("{a}-{b}=?", "subtract {b} from {a}", "what is {a} minus {b}?"),
    field_patterns=(("a", NUMBER), ("b", NUMBER)),
    draw_fields=_draw_two_numbers,
    n_steps=_columns,
    next_step=_sub_next,
    final_answer=_sub_answer,
)

FAMILIES = (ADD, SUB)
