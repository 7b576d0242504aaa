"""Row conditions for `--where` and `--holdout`: a small grammar of our own, parsed and evaluated here.

Fit specs travel (in `fit.toml`, papers, scripts), so their expressions must never run code: no
`eval`, no `DataFrame.eval`/`query`. The grammar holds what a row condition needs and nothing else:

    condition  := or
    or         := and (("or" | "|") and)*
    and        := not (("and" | "&") not)*
    not        := ("not" | "~") not | comparison
    comparison := sum (COMPARE sum)*            chained like Python: 32 <= step <= 512
                | sum ["not"] "in" list
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/" | "//" | "%") unary)*
    unary      := ("-" | "+") unary | power
    power      := atom ["**" unary]
    atom       := NUMBER | STRING | "true" | "false" | COLUMN | `any column name` | "(" condition ")"
    list       := "[" [literal ("," literal)* [","]] "]"   (or parentheses)
    COMPARE    := "==" | "!=" | "<" | "<=" | ">" | ">="

Names are columns of the table (True/False are the booleans); strings are quoted with ' or ". Anything
else (attribute access, calls, `@` names, subscripts, lambdas) is refused with the offending token named.
An empty list is a list: `x in []` holds nowhere, `x not in []` everywhere.

Evaluation is numpy over whole columns, arithmetic in 64-bit floats (an integer column too: int64 would wrap
around silently, and Python's ints would compute `2 ** 2 ** 2 ** 2 ** 2 ** 2` for ever). What a float cannot
hold is refused, naming it: a literal beyond the floats (`1e309`, or `1e-400`, which would read as 0), an
operation whose result overflows, a division by a zero that is written in the condition (`x / 0`, `0 ** -1`),
and a constant that is not a real number (`(-8) ** 0.5`). A column's own zeros and NaNs are data: 1/0 is inf
and 0/0 NaN in that row, compared like any other value (NaN compares false).
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
import pandas as pd

from scaling.errors import first_line

MAX_LENGTH = 2_000  # characters: a row condition is a line, not a program
MAX_DEPTH = 50  # nesting of parentheses and operators: deeper is refused, never a RecursionError

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?)
  | (?P<string>'[^'\\]*'|"[^"\\]*")
  | (?P<backtick>`[^`]+`)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|\*\*|//|[<>+\-*/%()\[\],&|~])
""", re.VERBOSE)

COMPARISONS: dict[str, Callable] = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
                                    ">": operator.gt, ">=": operator.ge}
ARITHMETIC: dict[str, Callable] = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
                                   "//": operator.floordiv, "%": operator.mod, "**": operator.pow}
KEYWORDS = {"and", "or", "not", "in", "true", "false", "True", "False"}


class ExpressionError(ValueError):
    """A row condition outside the grammar, or one that cannot be evaluated on the table; one line."""


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, name, op, end
    text: str
    at: int  # character offset in the expression
    end: int  # character offset just past it (a `quoted name`'s text lacks its backticks)


@dataclass(frozen=True)
class Literal:
    value: object  # float, str or bool


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class Unary:
    op: str  # "-", "+", "not"
    operand: Node


@dataclass(frozen=True)
class Chain:
    """Operands joined by operators of one precedence, grouped from the left: a - b + c is (a - b) + c. Held
    flat, not as a tree as deep as the chain is long: a 2,000-character sum is evaluated in a loop, never by
    a thousand nested calls (a RecursionError)."""

    first: Node
    ops: tuple[str, ...]  # the operator before each later operand: arithmetic, "and" or "or"
    rest: tuple[Node, ...]  # the later operands
    source: str  # the chain as written: an arithmetic error names the part of it up to the failing operand
    at: int  # its character offset in the expression
    ends: tuple[int, ...]  # where each later operand ends, as an offset into source


@dataclass(frozen=True)
class Compare:
    operands: tuple[Node, ...]  # a < b <= c: each neighbouring pair compared, all of them must hold
    ops: tuple[str, ...]


@dataclass(frozen=True)
class Membership:
    operand: Node
    values: tuple[object, ...]
    negated: bool


Node = Union[Literal, Column, Unary, Chain, Compare, Membership]


def tokenize(text: str) -> list[Token]:
    """The expression's tokens; a character outside the grammar (say `@` or `.` after a name) is refused."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"is {len(text)} characters long; at most {MAX_LENGTH}")
    tokens, at = [], 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise ExpressionError(f"cannot use {_shown(text[at:])} at character {at + 1}")
        kind = match.lastgroup
        if kind != "space":
            if kind == "backtick":
                tokens.append(Token("name", match.group()[1:-1], at, match.end()))
            else:
                tokens.append(Token(kind, match.group(), at, match.end()))
        at = match.end()
    tokens.append(Token("end", "", len(text), len(text)))
    return tokens


def _shown(rest: str) -> str:
    """The offending text, quoted: the rest of the line up to a space, at most 20 characters."""
    word = rest.split()[0] if rest.split() else rest
    return repr(word[:20] + ("..." if len(word) > 20 else ""))


class _Parser:
    """Recursive descent over the tokens; every method returns a Node and consumes what it read."""

    def __init__(self, text: str, tokens: list[Token]):
        self.text, self.tokens, self.position, self.depth = text, tokens, 0, 0

    @property
    def current(self) -> Token:
        return self.tokens[self.position]

    def take(self) -> Token:
        token = self.current
        self.position += 1
        return token

    def at(self, *texts: str) -> bool:
        return self.current.kind in ("op", "name") and self.current.text in texts

    def expect(self, text: str) -> None:
        if not self.at(text):
            raise self.unexpected(f"expected {text!r}")
        self.take()

    def unexpected(self, why: str = "") -> ExpressionError:
        token = self.current
        if token.kind == "end":
            return ExpressionError(f"ends too early{f' ({why})' if why else ''}")
        return ExpressionError(f"cannot use {token.text!r} at character {token.at + 1}{f' ({why})' if why else ''}")

    def nested(self, parse: Callable[[], Node]) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"nests deeper than {MAX_DEPTH} levels")
        try:
            return parse()
        finally:
            self.depth -= 1

    def chain(self, operand: Callable[[], Node], operators: dict[str, str]) -> Node:
        """Operands joined by operators, grouped from the left (a - b - c is (a - b) - c); `operators` maps each
        token that may join two operands to the operator it stands for."""
        start, ops, rest, ends = self.current.at, [], [], []
        first = operand()
        while self.at(*operators):
            ops.append(operators[self.take().text])
            rest.append(operand())
            ends.append(self.tokens[self.position - 1].end - start)
        return self.joined(first, ops, rest, start, ends) if ops else first

    def joined(self, first: Node, ops: list[str], rest: list[Node], start: int, ends: list[int]) -> Chain:
        """The chain read from character `start` to the last token read."""
        return Chain(first, tuple(ops), tuple(rest), self.text[start:start + ends[-1]], start, tuple(ends))

    def condition(self) -> Node:
        return self.chain(lambda: self.nested(self.conjunction), {"or": "or", "|": "or"})

    def conjunction(self) -> Node:
        return self.chain(lambda: self.nested(self.negation), {"and": "and", "&": "and"})

    def negation(self) -> Node:
        if self.at("not", "~"):
            self.take()
            return Unary("not", self.nested(self.negation))
        return self.comparison()

    def comparison(self) -> Node:
        first = self.sum()
        if self.at("in") or (self.at("not") and self._next_is("in")):
            negated = self.take().text == "not"
            if negated:
                self.take()
            return Membership(first, self.literal_list(), negated)
        operands, ops = [first], []
        while self.current.kind == "op" and self.current.text in COMPARISONS:
            ops.append(self.take().text)
            operands.append(self.sum())
        return Compare(tuple(operands), tuple(ops)) if ops else first

    def _next_is(self, text: str) -> bool:
        following = self.tokens[self.position + 1]
        return following.kind == "name" and following.text == text

    def sum(self) -> Node:
        return self.chain(self.product, {op: op for op in ("+", "-")})

    def product(self) -> Node:
        return self.chain(self.unary, {op: op for op in ("*", "/", "//", "%")})

    def unary(self) -> Node:
        if self.at("-", "+"):
            op = self.take().text
            return Unary(op, self.nested(self.unary))
        start = self.current.at
        node = self.atom()
        if self.at("**"):
            self.take()
            power = self.nested(self.unary)
            return self.joined(node, ["**"], [power], start, [self.tokens[self.position - 1].end - start])
        return node

    def atom(self) -> Node:
        token = self.current
        if token.kind == "number":
            self.take()
            return Literal(_number(token))
        if token.kind == "string":
            self.take()
            return Literal(token.text[1:-1])
        if token.kind == "name" and token.text in ("true", "True", "false", "False"):
            self.take()
            return Literal(token.text in ("true", "True"))
        if token.kind == "name" and token.text not in KEYWORDS and not token.text.startswith("__"):
            self.take()
            if self.at("(", "["):
                raise self.unexpected(f"{token.text} is a column: calls and subscripts are not part of a condition")
            return Column(token.text)
        if self.at("("):
            self.take()
            node = self.nested(self.condition)
            self.expect(")")
            return node
        raise self.unexpected()

    def literal_list(self) -> tuple[object, ...]:
        if not self.at("[", "("):
            raise self.unexpected("`in` takes a list: in [1, 2] or in ['a', 'b']")
        close = "]" if self.take().text == "[" else ")"
        values: list[object] = []
        while not self.at(close):
            negative = self.at("-")
            if negative:
                self.take()
            token = self.current
            if token.kind == "number":
                values.append(-_number(token) if negative else _number(token))
            elif token.kind == "string" and not negative:
                values.append(token.text[1:-1])
            elif token.kind == "name" and token.text in ("true", "True", "false", "False") and not negative:
                values.append(token.text in ("true", "True"))
            else:
                raise self.unexpected("a list holds numbers and quoted strings")
            self.take()
            if not self.at(close):
                self.expect(",")
        self.take()
        return tuple(values)


def _number(token: Token) -> float:
    """A number literal's value; one a float cannot hold (beyond about 1.8e308, or so small it reads as 0) is
    refused here, where it is written, rather than compared as inf or 0."""
    try:
        value = float(token.text)
    except ValueError:
        raise ExpressionError(f"cannot read the number {token.text!r} at character {token.at + 1}") from None
    if math.isinf(value):
        raise ExpressionError(f"has the number {_shown(token.text)} at character {token.at + 1}, "
                              "beyond the largest float (about 1.8e308)")
    if value == 0 and any(digit in "123456789" for digit in token.text.lower().partition("e")[0]):
        raise ExpressionError(f"has the number {_shown(token.text)} at character {token.at + 1}, "
                              "too small for a float (it would read as 0)")
    return value


def parse(text: str) -> Node:
    """The syntax tree of a row condition; ExpressionError (one line) for anything outside the grammar."""
    if not text.strip():
        raise ExpressionError("is empty")
    parser = _Parser(text, tokenize(text))
    node = parser.condition()
    if parser.current.kind != "end":
        raise parser.unexpected()
    return node


def columns_of(node: Node) -> set[str]:
    """The column names an expression reads."""
    if isinstance(node, Column):
        return {node.name}
    if isinstance(node, Unary):
        return columns_of(node.operand)
    if isinstance(node, Chain):
        return columns_of(node.first).union(*(columns_of(operand) for operand in node.rest))
    if isinstance(node, Compare):
        return set().union(*(columns_of(operand) for operand in node.operands))
    if isinstance(node, Membership):
        return columns_of(node.operand)
    return set()


def evaluate(node: Node, table: pd.DataFrame) -> np.ndarray:
    """The expression's value for every row of table (a scalar broadcast to all rows)."""
    missing = sorted(columns_of(node) - set(map(str, table.columns)))
    if missing:
        raise ExpressionError(f"names no column {missing[0]!r}; columns are {', '.join(map(str, table.columns))}")
    with np.errstate(all="ignore"):  # a column's 1/0 is inf, 0/0 NaN; what a float cannot hold: _arithmetic
        try:
            value = _value(node, {str(c): table[c].to_numpy() for c in table.columns})
        except ExpressionError:
            raise
        except (TypeError, ValueError, OverflowError, ZeroDivisionError) as error:
            raise ExpressionError(f"cannot be evaluated on the table ({first_line(error)})") from None
    return np.broadcast_to(np.asarray(value), (len(table),))


def _value(node: Node, columns: dict[str, np.ndarray]):
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Column):
        return columns[node.name]
    if isinstance(node, Unary):
        operand = _value(node.operand, columns)
        if node.op == "not":
            return np.logical_not(_truth(operand, "not"))
        return -_numeric(operand, node.op) if node.op == "-" else _numeric(operand, node.op)
    if isinstance(node, Chain):
        result = _value(node.first, columns)
        for op, operand, end in zip(node.ops, node.rest, node.ends):
            right = _value(operand, columns)
            if op in ("and", "or"):
                combine = np.logical_and if op == "and" else np.logical_or
                result = combine(_truth(result, op), _truth(right, op))
            else:
                result = _arithmetic(op, _numeric(result, op), _numeric(right, op), node, end)
        return result
    if isinstance(node, Compare):
        values = [_value(operand, columns) for operand in node.operands]
        result = True
        for op, left, right in zip(node.ops, values, values[1:]):
            result = np.logical_and(result, _compared(op, left, right))
        return result
    if isinstance(node, Membership):
        found = pd.Series(np.atleast_1d(_value(node.operand, columns))).isin(list(node.values)).to_numpy()
        return ~found if node.negated else found
    raise AssertionError(f"unknown node {node!r}")


def _arithmetic(op: str, left: np.ndarray, right: np.ndarray, chain: Chain, end: int) -> np.ndarray:
    """One arithmetic operation of a chain, ending at `end` in its source, in floats (numpy: never Python's
    unbounded ints or its errno-tuple OverflowError), refused naming it where a float cannot hold its result.
    Constants are 0-d arrays: a zero written in the condition is a mistake; a zero in a column is a row's value
    (1/0 is inf there, as IEEE says)."""
    result = ARITHMETIC[op](left, right)
    source = chain.source[:end] if end <= 60 else chain.source[:60] + "..."
    written = f"`{source}` at character {chain.at + 1}"
    if op == "**":
        by_zero, zero = (left == 0) & (right < 0), left  # 0 ** -1 is 1 / 0
    else:
        by_zero, zero = (right == 0) if op in ("/", "//", "%") else False, right
    if np.ndim(zero) == 0 and np.any(by_zero):
        raise ExpressionError(f"cannot be evaluated: {written} divides by zero")
    finite = np.isfinite(left) & np.isfinite(right) & ~by_zero
    if np.any(np.isinf(result) & finite):
        raise ExpressionError(f"cannot be evaluated: {written} overflows (beyond the largest float, about 1.8e308)")
    if np.ndim(result) == 0 and np.isnan(result) and finite:
        raise ExpressionError(f"cannot be evaluated: {written} is not a real number")
    return result


def _compared(op: str, left, right):
    if op in ("==", "!="):
        return COMPARISONS[op](np.asarray(left, dtype=object) if _is_text(left) else left, right)
    if _is_text(left) != _is_text(right):
        raise TypeError(f"{op} compares text with a number")
    return COMPARISONS[op](left, right)


def _is_text(value) -> bool:
    array = np.asarray(value)
    return array.dtype.kind in "OUS" and not array.dtype == bool


def _numeric(value, op: str) -> np.ndarray:
    """A number, a boolean or a column of them as floats (see the module's docstring on arithmetic)."""
    if isinstance(value, str) or _is_text(value):
        raise TypeError(f"{op} needs numbers, not text")
    return np.asarray(value, dtype=float)


def _truth(value, op: str):
    array = np.asarray(value)
    if array.dtype != bool:
        raise TypeError(f"{op} combines conditions (true or false), not values")
    return array


def row_mask(text: str, table: pd.DataFrame) -> np.ndarray:
    """The boolean mask of the rows where the condition holds; ExpressionError for anything else."""
    mask = evaluate(parse(text), table)
    if mask.dtype != bool:
        raise ExpressionError("must be a condition (true or false for each row), not a value")
    return np.array(mask)
