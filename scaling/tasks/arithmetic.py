"""Exact arithmetic on the expressions a CoT writes, by a parser of our own (never `eval`).

An expression holds numbers (`12`, `3.5`, `.5`, `1,200`), the operators + - * / and the forms a writer
uses for them (x X × · for times, ÷ for divide, − – for minus), parentheses, a number or bracket followed
by a bracket as a product (`2(44+12)`), postfix percent (`20%` is 20/100) and unary minus. Values are
`fractions.Fraction`, so `10/3*3` is exactly 10. Operators bind as in school: * and / before + and -, left
to right; one writer's convention is kept: after ÷ a fraction written tight (`10÷2/5`) is one number, 2/5,
as the writer of "10 ÷ 2/5 = 25" means.

Size is bounded (MAX_CHARACTERS, MAX_DIGITS, MAX_DEPTH): with no power operator a value's digits grow at
most with the input's, so evaluating is fast on anything accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

MAX_CHARACTERS = 1_000  # longer than any calculator annotation or CoT statement
MAX_DIGITS = 40  # per number; a float printed in full has 17
MAX_DEPTH = 50  # nested brackets

TIMES, DIVIDE, MINUS = "x×X·*", "÷/", "-−–"  # the forms of each operator a writer may use
# A number: thousands commas only in groups of three ("1,2345" is no number), a decimal part, or a leading point.
NUMBER = r"(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.\d+)?|\.\d+"
_NUMBER = re.compile(NUMBER)
_TIGHT_FRACTION = re.compile(r"(\d+)/(\d+)(?![\d.,])")
FLOAT_DIGITS = 12  # a number with this many decimals is a float printed in full, not a writer's exact value
_FLOAT = re.compile(rf"\.\d{{{FLOAT_DIGITS},}}")
_WRITTEN = re.compile(rf"([-−–]?)({NUMBER})(%?)")


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "op" (one of + - * /), "(", ")" or "%"
    value: Fraction | str


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic expression; ValueError when it is not one (or is too large),
    ZeroDivisionError when it divides by zero."""
    if len(expression) > MAX_CHARACTERS:
        raise ValueError(f"expression of {len(expression):,} characters is longer than {MAX_CHARACTERS:,}")
    tokens = _tokens(expression)
    if not tokens:
        raise ValueError("empty expression")
    parser = _Parser(tokens)
    value = parser.expression(0)
    if parser.at < len(tokens):
        raise ValueError(f"unexpected {_shown(tokens[parser.at])} in {expression!r}")
    return value


def number(text: str) -> Fraction:
    """The value of one written number (`1,200`, `3.50`, `.5`); ValueError for anything else."""
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"{text!r} is not a number")
    digits = text.replace(",", "")
    if sum(c.isdigit() for c in digits) > MAX_DIGITS:
        raise ValueError(f"number {text[:20]}... has more than {MAX_DIGITS} digits")
    return Fraction(digits)


def decimals(text: str) -> int:
    """How many decimals a written number has ("3.50" has 2, "1,200" none)."""
    return len(text.partition(".")[2])


def written_equals(value: Fraction, written: str, float_operands: bool = False) -> bool:
    """Whether `written` (a number, maybe signed, maybe ending in %) is a right way to write `value`.

    A written integer must be exact. A decimal with d places may be rounded: it is right within half a
    unit of its last place (`10/3` may be written 3.33, not 3.5), plus a relative 1e-12 that a float's
    printed digits need (`9.333333333333334`). With % the writer may mean the fraction (`1/2` as 50%) or
    label a value already multiplied by 100 (`320/1600*100` as 20%). With `float_operands` (the expression
    holds a float printed in full, 0.3333333333333333 for 1/3) even an integer may be off by that rounding,
    1e-12 relative: `48 * 0.3333333333333333` is 16 as its writer meant. ValueError when it is no number.
    """
    match = _WRITTEN.fullmatch(written.strip())
    if not match:
        raise ValueError(f"{written!r} is not a written number")
    sign, digits, percent = match.groups()
    shown = -number(digits) if sign else number(digits)
    places = decimals(digits)
    float_slack = abs(shown) * Fraction(1, 10 ** 12)
    tolerance = (float_slack if float_operands else Fraction(0)) if places == 0 else Fraction(1, 2 * 10 ** places) + float_slack
    readings = [(shown, tolerance)] + ([(shown / 100, tolerance / 100)] if percent else [])
    return any(abs(value - meant) <= slack for meant, slack in readings)


def has_float_operand(expression: str) -> bool:
    """Whether an expression holds a float printed in full (FLOAT_DIGITS or more decimals)."""
    return _FLOAT.search(expression) is not None


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    at = 0
    while at < len(text):
        c = text[at]
        if c.isspace():
            at += 1
            continue
        match = _NUMBER.match(text, at)
        if match:
            tokens.append(_Token("number", number(match.group())))
            at = match.end()
        elif c in "+":
            tokens.append(_Token("op", "+"))
            at += 1
        elif c in MINUS:
            tokens.append(_Token("op", "-"))
            at += 1
        elif c in TIMES:
            tokens.append(_Token("op", "*"))
            at += 1
        elif c in DIVIDE:
            tokens.append(_Token("op", "/"))
            at += 1
            fraction = _TIGHT_FRACTION.match(text, at + (text[at:at + 1] == " ")) if c == "÷" else None
            if fraction:  # the obelus writer's fraction: 10÷2/5 is 10 ÷ (2/5)
                tokens.append(_Token("number", number(fraction.group(1)) / number(fraction.group(2))))
                at = fraction.end()
        elif c in "()%":
            tokens.append(_Token(c, c))
            at += 1
        else:
            raise ValueError(f"unexpected {c!r} in {text[:60]!r}")
    return tokens


def _shown(token: _Token) -> str:
    return str(token.value) if token.kind == "number" else repr(token.value)


class _Parser:
    """Recursive descent over the tokens: expression = term (± term)*, term = unary ((*|/) unary | bracket)*,
    unary = - unary | + unary | primary %?, primary = number | ( expression )."""

    def __init__(self, tokens: list[_Token]):
        self.tokens, self.at = tokens, 0

    def _peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _is(self, kind: str, *values: str) -> bool:
        token = self._peek()
        return token is not None and token.kind == kind and (not values or token.value in values)

    def expression(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self._is("op", "+", "-"):
            op = self.tokens[self.at].value
            self.at += 1
            right = self.term(depth)
            value = value + right if op == "+" else value - right
        return value

    def term(self, depth: int) -> Fraction:
        value = self.unary(depth)
        while self._is("op", "*", "/") or self._is("("):
            if self._is("("):  # 2(44+12): a product written without its sign
                value *= self.unary(depth)
                continue
            op = self.tokens[self.at].value
            self.at += 1
            right = self.unary(depth)
            value = value * right if op == "*" else value / right  # Fraction raises ZeroDivisionError
        return value

    def unary(self, depth: int) -> Fraction:
        if self._is("op", "-", "+"):
            sign = self.tokens[self.at].value
            self.at += 1
            if depth >= MAX_DEPTH:
                raise ValueError(f"more than {MAX_DEPTH} signs or brackets nested")
            value = self.unary(depth + 1)
            return -value if sign == "-" else value
        value = self.primary(depth)
        if self._is("%"):
            self.at += 1
            value /= 100
        return value

    def primary(self, depth: int) -> Fraction:
        token = self._peek()
        if token is None:
            raise ValueError("expression ends where a number should be")
        if token.kind == "number":
            self.at += 1
            return token.value
        if token.kind == "(":
            if depth >= MAX_DEPTH:
                raise ValueError(f"more than {MAX_DEPTH} signs or brackets nested")
            self.at += 1
            value = self.expression(depth + 1)
            if not self._is(")"):
                raise ValueError("a bracket is not closed")
            self.at += 1
            return value
        raise ValueError(f"unexpected {_shown(token)} where a number should be")
