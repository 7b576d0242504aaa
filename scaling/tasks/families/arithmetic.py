"""Arithmetic families: column addition and subtraction, long multiplication, remainders digit by digit."""

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
    ood_range=(4, 6),
    phrasings=("{a}+{b}=?", "add {a} and {b}", "what is {a} plus {b}?"),
    field_patterns=(("a", NUMBER), ("b", NUMBER)),
    draw_fields=_draw_two_numbers,
    n_steps=_columns,
    next_step=_add_next,
    final_answer=_add_answer,
    skills=("add",),
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
    ood_range=(4, 6),
    phrasings=("{a}-{b}=?", "subtract {b} from {a}", "what is {a} minus {b}?"),
    field_patterns=(("a", NUMBER), ("b", NUMBER)),
    draw_fields=_draw_two_numbers,
    n_steps=_columns,
    next_step=_sub_next,
    final_answer=_sub_answer,
    skills=("sub",),
)


# mul: long multiplication of a 2-digit a by b. Step 0 is a times b's last digit; then, for each further
# digit of b, its partial product with the digit in place (`47*20=940`) and the running sum so far. A
# sum reads both terms from the steps before it, so a wrong partial product or sum carries into the
# answer. Interleaving keeps neighbours distinct: a `*` step never equals the `+` step beside it.
def _draw_mul(rng: np.random.Generator, multiplier_digits: int) -> Fields:
    return {"a": str(draw_number(rng, 2)), "b": str(draw_number(rng, multiplier_digits))}


def _mul_next(fields: Fields, previous: Sequence[str]) -> str:
    index = len(previous)
    if index and index % 2 == 0:  # the running total (two steps back) plus the partial product just written
        total, partial = (int(step.split("=")[1]) for step in previous[-2:])
        return f"{total}+{partial}={total + partial}"
    place = (index + 1) // 2
    a, digit = int(fields["a"]), digit_lsb(int(fields["b"]), place)
    # A zero digit keeps its place (`47*00=0`), so the first two partial products always differ.
    return f"{a}*{digit}{'0' * place}={a * digit * 10**place}"


MUL = Family(
    name="mul",
    kind="arithmetic",
    description="multiplication of a 2-digit number by partial products, one per digit of the multiplier",
    id_range=(1, 2),
    ood_range=(3, 5),
    phrasings=("{a}*{b}=?", "multiply {a} by {b}", "what is {a} times {b}?"),
    field_patterns=(("a", NUMBER), ("b", NUMBER)),
    draw_fields=_draw_mul,
    n_steps=lambda fields: 2 * len(fields["b"]) - 1,
    next_step=_mul_next,
    final_answer=lambda fields, steps: str(int(steps[-1].split("=")[1])),
    skills=("mul",),
)


# mod: the remainder of a long number, most significant digit first: step i brings digit i down onto
# the remainder so far (read from the previous step) and reduces it, `2:12%7=5`. The position keeps
# neighbours distinct when a remainder and digit repeat (77 mod 7 would write `7%7=0` twice).
def _mod_next(fields: Fields, previous: Sequence[str]) -> str:
    remainder = int(previous[-1].split("=")[-1]) if previous else 0
    brought_down = 10 * remainder + int(fields["number"][len(previous)])
    modulus = int(fields["modulus"])
    return f"{len(previous) + 1}:{brought_down}%{modulus}={brought_down % modulus}"


MOD = Family(
    name="mod",
    kind="arithmetic",
    description="the remainder of a long number by a small modulus, one digit brought down per step",
    id_range=(2, 5),
    ood_range=(6, 8),
    phrasings=("{number}%{modulus}=?", "what is {number} mod {modulus}?", "remainder of {number} divided by {modulus}"),
    field_patterns=(("number", NUMBER), ("modulus", r"1[0-3]|[2-9]")),
    draw_fields=lambda rng, digits: {"number": str(draw_number(rng, digits)), "modulus": str(int(rng.integers(2, 14)))},
    n_steps=lambda fields: len(fields["number"]),
    next_step=_mod_next,
    final_answer=lambda fields, steps: str(int(steps[-1].split("=")[-1])),
    skills=("mod",),
)

# sum3: a + b + c as two additions in add's own column steps, `x+y+carry=total`: first a + b, then its
# sum (read from the first addition's steps, so an error there carries on) plus c. a and b have one
# digit and c has `difficulty` digits, so in the ID range (c of one or two digits) the first addition
# is one column and the second at most two (a + b <= 18, c <= 99): at most 3 steps, add's longest
# trained chain. Above it every level adds one column to the second addition: chains of 4, 5 and 6
# steps at distances +1, +2, +3 (from +2 on, the second addition has one of add's own OOD lengths).
def _sum3_draw(rng: np.random.Generator, digits: int) -> Fields:
    a, b = sorted((draw_number(rng, 1), draw_number(rng, 1)), reverse=True)  # a >= b, as add is asked
    return {"a": str(a), "b": str(b), "c": str(draw_number(rng, digits))}


def _sum3_first_columns(fields: Fields) -> int:
    return max(len(fields["a"]), len(fields["b"]))


def _sum3_next(fields: Fields, previous: Sequence[str]) -> str:
    first = _sum3_first_columns(fields)
    if len(previous) < first:
        return _add_next({"a": fields["a"], "b": fields["b"]}, previous)
    partial = _add_answer(fields, previous[:first])
    return _add_next({"a": partial, "b": fields["c"]}, previous[first:])


def _sum3_steps(fields: Fields) -> int:
    partial = int(fields["a"]) + int(fields["b"])
    return _sum3_first_columns(fields) + max(len(str(partial)), len(fields["c"]))


SUM3 = Family(
    name="sum3",
    kind="arithmetic",
    description="the sum of three numbers as two additions, in add's column steps (transfers from add)",
    id_range=(1, 2),
    ood_range=(3, 5),
    phrasings=("{a}+{b}+{c}=?", "add {a}, {b} and {c}", "what is {a} plus {b} plus {c}?"),
    field_patterns=(("a", NUMBER), ("b", NUMBER), ("c", NUMBER)),
    draw_fields=_sum3_draw,
    n_steps=_sum3_steps,
    next_step=_sum3_next,
    final_answer=lambda fields, steps: _add_answer(fields, steps[_sum3_first_columns(fields):]),
    # One sum whatever the operands' order: 5+3+12 and 12+3+5 are one problem.
    canonical=lambda fields: "+".join(sorted((fields["a"], fields["b"], fields["c"]), key=int)),
    skills=("add",),
)

FAMILIES = (ADD, SUB, MUL, MOD, SUM3)
