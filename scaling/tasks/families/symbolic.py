"""Symbolic families: boolean expression evaluation, linear equations solved for x."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from scaling.tasks.families.base import Family, Fields


def _uniforms(rng: np.random.Generator, n: int) -> Iterator[float]:
    # One generator call per problem: a call costs about as much as building the whole prompt.
    return iter(rng.random(n).tolist())


def _pick(options: Sequence, u: float):
    return options[int(u * len(options))]  # u < 1 keeps u * n below n in floating point too


# bool: step i is `k: EXPR`, EXPR the previous expression with its leftmost innermost operation
# evaluated and k the previous counter minus one (the operators left), so both errors propagate.
# Truth values are letters, so the counter is what gives every step the digit that corruption changes.
_OPERATORS = ("and", "or", "not")
_VALUE_OF = {  # an innermost operation, split on spaces, to its value
    ("not", "T"): "F",
    ("not", "F"): "T",
    **{(x, "and", y): "T" if x == y == "T" else "F" for x in "TF" for y in "TF"},
    **{(x, "or", y): "T" if "T" in (x, y) else "F" for x in "TF" for y in "TF"},
}


def _draw_expression(n_operators: int, uniforms: Iterator[float]) -> str:
    """A fully parenthesized random expression; at most 3 * n_operators + 1 uniforms."""
    if n_operators == 0:
        return _pick("TF", next(uniforms))
    operator = _pick(_OPERATORS, next(uniforms))
    if operator == "not":
        return f"(not {_draw_expression(n_operators - 1, uniforms)})"
    n_left = _pick(range(n_operators), next(uniforms))
    left = _draw_expression(n_left, uniforms)
    return f"({left} {operator} {_draw_expression(n_operators - 1 - n_left, uniforms)})"


def _draw_bool(rng: np.random.Generator, n_operators: int) -> Fields:
    return {"expr": _draw_expression(n_operators, _uniforms(rng, 3 * n_operators + 1))}


def _evaluate_innermost(expression: str) -> str:
    # The first `)` closes the leftmost innermost operation: nothing opens between its `(` and it.
    close = expression.index(")")
    open_ = expression.rindex("(", 0, close)
    value = _VALUE_OF[tuple(expression[open_ + 1 : close].split(" "))]
    return expression[:open_] + value + expression[close + 1 :]


def _bool_steps(fields: Fields) -> int:
    return fields["expr"].count("(")  # one pair of parentheses per operator


def _bool_next(fields: Fields, previous: Sequence[str]) -> str:
    if previous:
        counter, expression = previous[-1].split(": ")
        remaining = int(counter)
    else:
        expression, remaining = fields["expr"], _bool_steps(fields)
    return f"{remaining - 1}: {_evaluate_innermost(expression)}"


def _bool_answer(fields: Fields, steps: Sequence[str]) -> str:
    value = steps[-1].split(": ")[1]
    if value not in ("T", "F"):
        raise ValueError(f"the last step {steps[-1]!r} is not a truth value")
    return value


BOOL = Family(
    name="bool",
    kind="symbolic",
    description="evaluate a boolean expression over T and F, one innermost operation per step",
    id_range=(1, 4),  # 1-3 operators alone hold only ~1,100 expressions: too few for large pools
    ood_range=(5, 7),
    # Five phrasings, not three: few operators make few distinct expressions (1,110 with 1 to 3).
    phrasings=(
        "evaluate {expr}",
        "what is {expr}?",
        "is {expr} true or false?",
        "simplify {expr} to T or F",
        "{expr} = ?",
    ),
    field_patterns=(("expr", r"\([()TF adnort]*\)"),),
    draw_fields=_draw_bool,
    n_steps=_bool_steps,
    next_step=_bool_next,
    final_answer=_bool_answer,
    skills=("bool",),
)


# lineq: `ax+b=c` takes `ax=c-b=v` then `x=v/a=q`; with x on both sides, `ax+b=cx+e` takes
# `ax-cx=e-b`, `kx=v` (read from the step before), then the same division. A division that a
# corrupted step leaves inexact stops at the fraction (`x=v/k`), the exact consequence of the error.
_COEFFICIENT_PAIRS = tuple((a, c) for a in range(4, 10) for c in range(2, a - 1))  # a - c >= 2: no `1x`


def _draw_positive(digits: int, u: float) -> int:
    low = 10 ** (digits - 1) if digits > 1 else 1
    return low + _pick(range(10**digits - low), u)


def _draw_lineq(rng: np.random.Generator, difficulty: int) -> Fields:
    """Difficulty 1: `ax+b=c` with one-digit numbers; d >= 2: x on both sides, x and b of d - 1 digits."""
    u = _uniforms(rng, 4)
    if difficulty == 1:
        a, x, b = _pick(range(2, 10), next(u)), _draw_positive(1, next(u)), _draw_positive(1, next(u))
        return {"equation": f"{a}x+{b}={a * x + b}"}
    a, c = _pick(_COEFFICIENT_PAIRS, next(u))
    x, b = _draw_positive(difficulty - 1, next(u)), _draw_positive(difficulty - 1, next(u))
    return {"equation": f"{a}x+{b}={c}x+{(a - c) * x + b}"}


def _coefficient(term: str) -> int:
    if not term.endswith("x"):
        raise ValueError(f"{term!r} is not a multiple of x")
    return int(term[:-1])


def _sides(equation: str) -> tuple[str, str, str, str]:
    """The x-term and constant of each side of `ax+b=c` or `ax+b=cx+e` (right x-term '' when absent)."""
    left, right = equation.split("=")
    a, b = left.split("x+")
    c, e = right.split("x+") if "x+" in right else ("", right)
    return a, b, c, e


def _lineq_steps(fields: Fields) -> int:
    return 3 if _sides(fields["equation"])[2] else 2


def _lineq_next(fields: Fields, previous: Sequence[str]) -> str:
    a, b, c, e = _sides(fields["equation"])
    if not previous:
        return f"{a}x-{c}x={e}-{b}" if c else f"{a}x={e}-{b}={int(e) - int(b)}"
    if len(previous) == 1 and c:  # combine the collected terms of `ax-cx=e-b`
        left, right = previous[-1].split("=")
        x_left, x_right = left.split("-")
        constant, moved = right.split("-")
        return f"{_coefficient(x_left) - _coefficient(x_right)}x={int(constant) - int(moved)}"
    parts = previous[-1].split("=")  # `kx=...=v`: divide v by k
    k, v = _coefficient(parts[0]), int(parts[-1])
    return f"x={v}/{k}={v // k}" if v % k == 0 else f"x={v}/{k}"


LINEQ = Family(
    name="lineq",
    kind="symbolic",
    description="solve a linear equation for its integer x: move terms, combine, divide",
    id_range=(1, 3),
    ood_range=(4, 6),
    phrasings=("solve {equation}", "{equation}, x=?", "find x if {equation}"),
    field_patterns=(("equation", r"\d+x\+\d+=(?:\d+x\+)?\d+"),),
    draw_fields=_draw_lineq,
    n_steps=_lineq_steps,
    next_step=_lineq_next,
    final_answer=lambda fields, steps: steps[-1].rsplit("=", 1)[1],
    skills=("lineq",),
)

FAMILIES = (BOOL, LINEQ)
