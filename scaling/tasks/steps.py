"""The automated CoT step checker: find the arithmetic a chain of thought writes down and check every step.

Two forms of statement are found:

- **Calculator annotations** `<<48/2=24>>`, GSM8K's format. When a text has any, they are its statements
  (the prose around them restates them). The number written right after `>>` is the result carried into
  the text; one that differs from the annotation is a copy error, a wrong step.
- **Plain statements** `a op b = c` in the text, as reasoning-gym's gsm_symbolic CoT writes them:
  "120 clam / 5 clam/minute = 24 minutes", "$5 x 3 = $15", "50% * 50% = 25%". Unit words after a number
  ("clam", "per pair of gloves", "/minute") and currency signs are dropped; a chain "a = b = c" is checked
  pair by pair; the left side must hold an operator (a bare "x = 5" restates a number, it computes nothing).
  Left of the statement, prose ends it: the expression is the longest run of numbers, operators, brackets
  and unit words before the `=` (never across `,` `:` `;` `.` or another `=`).

A side that names an unknown ("70 + 43 + T = 136 + T", "2x+100=152") cannot be checked: it is counted as
skipped, never as wrong. Results are compared as `arithmetic.written_equals` does (a written decimal may be
rounded to its places); a result written as an expression ("10/50 = 1/5") must be exactly equal.

The first wrong statement is reported even when later ones follow correctly from its wrong value: a chain
that goes wrong at step 2 is wrong there, whatever it does after.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fractions import Fraction

from scaling.tasks.arithmetic import (
    DIVIDE,
    MINUS,
    NUMBER,
    TIMES,
    decimals,
    evaluate,
    has_float_operand,
    number,
    written_equals,
)

MAX_UNIT_WORDS = 6  # "3 skeins per pair of leg warmers + ...": words a number's unit may take before an operator
MAX_LOOKBACK = 64  # tokens searched left of an `=` for the start of its expression
CURRENCY = "$€£¥₹"

_ANNOTATION = re.compile(r"<<([^<>\n]*)>>")
_CARRIED = re.compile(rf"[{re.escape(CURRENCY)}]?({NUMBER})(%?)(?!/\d)")  # not the 3 of a carried fraction 3/4
# Text tokens: a number (currency sign and percent kept apart), a unit ratio glued to a word ("/minute"), a word
# (hyphens and apostrophes inside it: "Hale-Bopp", "Sophia's"), an operator, a bracket, `=`, or other punctuation.
_TEXT_TOKEN = re.compile(rf"""
    (?P<number>{NUMBER})
  | (?P<unit>/[^\W\d_]+)
  | (?P<word>[^\W\d_]+(?:['’-][^\W\d_]+)*)
  | (?P<currency>[{re.escape(CURRENCY)}])
  | (?P<percent>%)
  | (?P<op>[+{re.escape(MINUS + TIMES + DIVIDE)}])
  | (?P<open>\()
  | (?P<close>\))
  | (?P<equals>=)
  | (?P<space>\s+)
  | (?P<other>.)
""", re.VERBOSE)
_STOPS = {",", ":", ";", ".", "?", "!", "=", "\n"}  # where a statement's left side cannot reach past


@dataclass(frozen=True)
class Statement:
    """One arithmetic step a CoT writes: `expression` = `written`, checked."""

    expression: str  # the left side as evaluated: units and currency dropped ("48 * 16")
    written: str  # the result as written, currency dropped ("770", "3.33", "25%", "1/5")
    start: int  # where the statement begins in the text (its first number, or the annotation's `<<`)
    end: int  # where it ends (after the written result, or the annotation's `>>`)
    line: int  # 0-based index of its line in the text
    ok: bool  # the written result is right (and, for an annotation, carried into the text unchanged)
    value: Fraction | None  # what the expression computes; None where it divides by zero
    carried: str | None = None  # annotation: the number written right after `>>`, when there is one
    result_span: tuple[int, int] = (0, 0)  # where `written` is in the text (what inject_error rewrites)
    carried_span: tuple[int, int] | None = None  # where `carried` is in the text


@dataclass(frozen=True)
class StepCheck:
    """A CoT's arithmetic, checked: verified when at least one step was checked and none is wrong."""

    verified: bool  # some statement was checked and every one is right
    steps: int  # arithmetic statements found and checked
    first_wrong: int | None  # 0-based index among `statements` of the first wrong one; None when none is wrong
    why: str  # "" when none is wrong; else "step 2 (line 3): 48 * 16 = 768, written 770" (1-based, for people)
    statements: tuple[Statement, ...]
    skipped: int = 0  # statement-like sides naming an unknown ("+ T"), neither right nor wrong

    def __post_init__(self) -> None:
        assert self.steps == len(self.statements)
        assert self.verified == (self.steps > 0 and self.first_wrong is None)


def check_steps(cot: str) -> StepCheck:
    """Every arithmetic statement of a CoT checked, with the first wrong one and why it is wrong."""
    statements, skipped = _annotated(cot) if _ANNOTATION.search(cot) else _plain(cot)
    first_wrong = next((i for i, s in enumerate(statements) if not s.ok), None)
    why = "" if first_wrong is None else _why(first_wrong, statements[first_wrong])
    return StepCheck(bool(statements) and first_wrong is None, len(statements), first_wrong, why,
                     tuple(statements), skipped)


def inject_error(cot: str, rng: random.Random) -> tuple[str, int] | None:
    """The CoT with one statement's written result made wrong (and the same number carried after `>>`), and
    that statement's index; None when it has no statement with a plain number for a result.

    The new result keeps the old one's format (decimals, thousands commas, %, its currency sign stays) and is
    wrong by `written_equals`: off by a small amount or one digit changed."""
    statements = check_steps(cot).statements
    candidates = [i for i, s in enumerate(statements)
                  if s.value is not None and _is_plain_number(s.written) and s.written[0] not in MINUS]
    if not candidates:
        return None
    index = rng.choice(candidates)
    target = statements[index]
    wrong = _wrong_number(target.written, target.value, rng)
    edits = [(target.result_span, wrong)]
    if target.carried_span is not None and _same_text_number(target.carried, target.written):
        percent = "%" if target.carried.endswith("%") else ""
        edits.append((target.carried_span, _reformat(number(wrong.rstrip("%")), target.carried) + percent))
    text = cot
    for (start, end), replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text, index


def _why(index: int, statement: Statement) -> str:
    where = f"step {index + 1} (line {statement.line + 1})"
    if statement.value is None:
        return f"{where}: {statement.expression} divides by zero, written {statement.written}"
    computed = f"{statement.expression} = {_shown(statement.value)}"
    if statement.carried is not None and _right(statement.value, statement.written,
                                                has_float_operand(statement.expression)):
        return f"{where}: {computed}, annotated {statement.written} but carried as {statement.carried}"
    return f"{where}: {computed}, written {statement.written}"


def _shown(value: Fraction) -> str:
    """A value as people read it: an integer, else a decimal to 6 places (exact values stay in `value`)."""
    if value.denominator == 1:
        return str(value.numerator)
    scaled = round(abs(value) * 10 ** 6)
    text = f"{scaled // 10 ** 6}.{scaled % 10 ** 6:06d}".rstrip("0").rstrip(".")
    return ("-" if value < 0 else "") + ("≈" if Fraction(scaled, 10 ** 6) != abs(value) else "") + text


def _right(value: Fraction, written: str, float_operands: bool = False) -> bool:
    """Whether a written result (a number, or an expression such as 1/5) is right for value."""
    if _is_plain_number(written):
        return written_equals(value, written, float_operands)
    try:
        return evaluate(written) == value
    except (ValueError, ArithmeticError):
        return False


def _is_plain_number(written: str) -> bool:
    return re.fullmatch(rf"[-−–]?(?:{NUMBER})%?", written) is not None


# --- calculator annotations ---------------------------------------------------------------------------------------

def _annotated(cot: str) -> tuple[list[Statement], int]:
    statements: list[Statement] = []
    skipped = 0
    for match in _ANNOTATION.finditer(cot):
        body, body_start = match.group(1), match.start(1)
        tokens = _tokenize(body, body_start)
        equals = [i for i, t in enumerate(tokens) if t.kind == "equals"]
        if not equals:
            continue
        bounds = [-1, *equals, len(tokens)]
        pairs = []
        for k in range(1, len(bounds) - 1):  # "a = b = c": a = b, then b = c
            left = _parse(tokens, bounds[k - 1] + 1, bounds[k])
            right = _parse(tokens, bounds[k] + 1, bounds[k + 1])
            if left is None or right is None or (left.unknown or right.unknown):
                skipped += left is not None or right is not None
                continue
            if left.operators:
                pairs.append((left, right))
        carried = _CARRIED.match(cot, match.end())
        for k, (left, right) in enumerate(pairs):
            last = k == len(pairs) - 1
            statement = _statement(cot, left, right, match.start(), match.end(), carried if last else None)
            skipped += statement is None
            statements += [statement] if statement is not None else []
    return statements, skipped


# --- plain statements -----------------------------------------------------------------------------------------------

def _plain(cot: str) -> tuple[list[Statement], int]:
    statements: list[Statement] = []
    skipped = 0
    tokens = _tokenize(cot, 0)
    for e, token in enumerate(tokens):
        if token.kind != "equals" or _in_comparison(cot, token.start):
            continue
        right = _longest_right(tokens, e + 1)
        left = _longest_left(tokens, e)
        if left is None or right is None or not left.operators:
            continue  # no statement: prose, or a bare name or number restated ("x = 5")
        if left.unknown or right.unknown or _grouped(tokens, left.first, -1) or _grouped(tokens, right.last, 1):
            skipped += 1  # a name, or a number grouped by spaces ("$400 000"): not checkable
            continue
        statement = _statement(cot, left, right, tokens[left.first].start, tokens[right.last].end, None)
        skipped += statement is None
        statements += [statement] if statement is not None else []
    return statements, skipped


def _grouped(tokens: list[_Token], i: int, direction: int) -> bool:
    """Whether the number at the edge `i` of a side goes on past it in space-grouped digits ("$400 000")."""
    j = i + direction
    return tokens[i].kind == "number" and 0 <= j < len(tokens) and tokens[j].kind == "number"


def _in_comparison(text: str, at: int) -> bool:
    """`==`, `<=`, `>=`, `!=`, `=>`: not a statement of a result."""
    return text[at - 1:at] in ("=", "<", ">", "!") or text[at + 1:at + 2] in ("=", ">")


def _longest_left(tokens: list[_Token], equals: int) -> _Side | None:
    """The expression that ends right before the `=` at index `equals`: the earliest start that parses."""
    best = None
    lowest = max(0, equals - MAX_LOOKBACK)
    for start in range(equals - 1, lowest - 1, -1):
        if tokens[start].kind in ("equals", "newline") or tokens[start].text in _STOPS:
            break
        side = _parse(tokens, start, equals)
        if side is not None:
            best = side
    return best


def _longest_right(tokens: list[_Token], start: int) -> _Side | None:
    """The result written right after an `=`: the longest stretch from `start` that parses."""
    best = None
    for end in range(start + 1, min(len(tokens), start + MAX_LOOKBACK) + 1):
        if tokens[end - 1].kind in ("equals", "newline") or tokens[end - 1].text in _STOPS:
            break
        side = _parse(tokens, start, end)
        if side is not None:
            best = side
    return best


# --- tokens and the grammar of a written side ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Token:
    kind: str  # number, unit, word, currency, percent, op, open, close, equals, newline, other
    text: str
    start: int  # offsets in the whole text
    end: int


def _tokenize(text: str, offset: int) -> list[_Token]:
    tokens = []
    for match in _TEXT_TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "space":
            if "\n" in match.group():
                tokens.append(_Token("newline", "\n", offset + match.start(), offset + match.end()))
            continue
        tokens.append(_Token(kind, match.group(), offset + match.start(), offset + match.end()))
    return [_times_sign(tokens, i) for i in range(len(tokens))]


def _times_sign(tokens: list[_Token], i: int) -> _Token:
    """A word `x` or `X` between an operand and a number ("9 girls x 4 boys", "$5 x 3") is a times sign."""
    token = tokens[i]
    if token.kind != "word" or token.text not in ("x", "X") or i == 0 or i + 1 == len(tokens):
        return token
    before, after = tokens[i - 1], tokens[i + 1]
    if before.kind in ("number", "percent", "close", "word", "unit") and after.kind in ("number", "currency", "open"):
        if not (before.kind == "number" and before.end == token.start):  # "2x" is two times x
            return _Token("op", token.text, token.start, token.end)
    return token


@dataclass(frozen=True)
class _Side:
    expression: str  # as `evaluate` reads it
    operators: int  # how many (a product written as 2(3) counts)
    unknown: bool  # an unknown name stands where a number should
    first: int  # token indices of its first and last token
    last: int
    result: tuple[int, int]  # where its one number is in the text (a plain-number side)


def _parse(tokens: list[_Token], start: int, end: int) -> _Side | None:
    """tokens[start:end] read as one side of a statement, or None when they are not exactly one."""
    while start < end and tokens[start].kind == "newline":
        start += 1
    if start >= end:
        return None
    parser = _SideParser(tokens, end)
    parser.at = start
    try:
        parser.expression(0)
    except _NotASide:
        return None
    if parser.at != end or not parser.pieces:
        return None
    result = (parser.used[0].start, parser.used[-1].end) if parser.used else (0, 0)  # a plain-number result
    return _Side(_joined(parser.used), parser.operators, parser.unknown, start, end - 1, result)


def _joined(used: list[_Token]) -> str:
    """The kept tokens as an expression, spaced as written (`evaluate` reads 10÷2/5 by its spacing)."""
    out = ""
    for previous, token in zip([None, *used], used):
        if previous is not None and token.start > previous.end:
            out += " "
        out += "*" if token.kind == "op" and token.text in ("x", "X", "of") else token.text
    return out


class _NotASide(Exception):
    pass


class _SideParser:
    """side = term (op term)*; term = [-] [currency] (number [%] | ( side ) | unknown) (( side ))* unit*, where an
    unknown is a one-letter name; "20% of 50" reads as 20% * 50."""

    def __init__(self, tokens: list[_Token], end: int):
        self.tokens, self.end, self.at = tokens, end, 0
        self.used: list[_Token] = []  # the tokens evaluate reads
        self.pieces = 0
        self.operators = 0
        self.unknown = False

    def _peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < self.end else None

    def _take(self, keep: bool = True) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        if keep:
            self.used.append(token)
        return token

    def expression(self, depth: int) -> None:
        percent = self.term(depth)
        while True:
            token = self._peek()
            if token is not None and token.kind == "op":
                self._take()
            elif (token is not None and percent and token.kind == "word" and token.text == "of"
                  and self.at + 1 < self.end and self.tokens[self.at + 1].kind in ("number", "currency")):
                self.used.append(_Token("op", "of", token.start, token.end))
                self.at += 1
            else:
                return
            self.operators += 1
            percent = self.term(depth)

    def term(self, depth: int) -> bool:
        """Reads one operand and its units; whether it ended in %."""
        if depth > 20:
            raise _NotASide
        token = self._peek()
        if (token is not None and token.kind == "op" and token.text in MINUS and self.at + 1 < self.end
                and self.tokens[self.at + 1].start == token.end):  # "-5" is a sign; "- 87 plants" is a bullet
            self._take()
            token = self._peek()
        if token is not None and token.kind == "currency":
            self._take(keep=False)
            token = self._peek()
        percent = False
        if token is None:
            raise _NotASide
        if token.kind == "number":
            self._take()
            self.pieces += 1
            nxt = self._peek()
            if nxt is not None and nxt.kind == "percent":
                self._take()
                percent = True
        elif token.kind == "open":
            self._bracket(depth)
        elif token.kind == "word" and len(token.text) == 1:
            self.at += 1
            self.unknown = True
            self.pieces += 1
        else:
            raise _NotASide
        while (nxt := self._peek()) is not None and nxt.kind == "open":
            self.operators += 1
            self._bracket(depth)
        nxt = self._peek()
        if nxt is not None and nxt.kind == "word" and len(nxt.text) == 1 and nxt.start == self.tokens[self.at - 1].end:
            self.unknown = True  # "2x", "(7/2)x": a product with a name
            self.at += 1
        units = 0
        while (nxt := self._peek()) is not None and nxt.kind in ("word", "unit") and not self._starts_of(nxt, percent):
            self.at += 1
            units += 1
            if units > MAX_UNIT_WORDS:
                raise _NotASide
        return percent

    def _starts_of(self, token: _Token, percent: bool) -> bool:
        return (percent and token.text == "of" and self.at + 1 < self.end
                and self.tokens[self.at + 1].kind in ("number", "currency"))

    def _bracket(self, depth: int) -> None:
        self._take()
        self.expression(depth + 1)
        token = self._peek()
        if token is None or token.kind != "close":
            raise _NotASide
        self._take()


def _statement(cot: str, left: _Side, right: _Side, start: int, end: int,
               carried: re.Match | None) -> Statement | None:
    """The checked statement; None when its expression is too large to check (a division by zero is wrong)."""
    try:
        value = evaluate(left.expression)
    except ArithmeticError:
        value = None
    except ValueError:
        return None
    written = right.expression
    ok = value is not None and _right(value, written, has_float_operand(left.expression))
    carried_text = carried_span = None
    if carried is not None:
        carried_text, carried_span = carried.group(1) + carried.group(2), (carried.start(1), carried.end(2))
        if ok and not _same_number(carried_text, written):
            ok = False
    line = cot.count("\n", 0, start)
    return Statement(left.expression, written, start, end, line, ok, value, carried_text, right.result, carried_span)


def _same_text_number(carried: str, written: str) -> bool:
    """Whether two written numbers are one number in one format but for thousands commas ("130,000", "130000")."""
    return carried.replace(",", "") == written.replace(",", "")


def _same_number(carried: str, written: str) -> bool:
    """Whether the number carried after `>>` is the annotated one (rounded as written, or the same % read)."""
    if not _is_plain_number(written) or not _is_plain_number(carried):
        return False
    shown = number(written.lstrip("-−–").rstrip("%")) * (-1 if written[0] in MINUS else 1)
    if written.endswith("%"):
        shown /= 100
    return written_equals(shown, carried)


# --- wrong numbers for inject_error ---------------------------------------------------------------------------------

def _wrong_number(written: str, value: Fraction, rng: random.Random) -> str:
    """A number in the format of `written` that `written_equals` says is not `value`."""
    percent = written.endswith("%")
    sign = written[0] if written[0] in MINUS else ""
    digits = written.lstrip("-−–").rstrip("%")
    shown = number(digits)
    unit = Fraction(1, 10 ** decimals(digits))
    for _ in range(100):
        if rng.random() < 0.5:  # off by a small amount, in units of the last place (2 or more: past any rounding)
            step = rng.randint(1, 9) * (unit if unit == 1 else 2 * unit) * rng.choice((-1, 1))
            candidate = shown + step
            if candidate < 0:
                continue
            text = _reformat(candidate, digits)
        else:  # one digit changed
            spots = [i for i, c in enumerate(digits) if c.isdigit()]
            i = rng.choice(spots)
            new = rng.choice([d for d in "0123456789" if d != digits[i]])
            if new == "0" and i == 0 and len(spots) > 1 and digits[1:2] != ".":
                continue  # a leading zero would change the format
            text = digits[:i] + new + digits[i + 1:]
        full = sign + text + ("%" if percent else "")
        if not written_equals(value, full, float_operands=True):  # wrong even at a float's slack
            return full
    raise AssertionError(f"no wrong number found for {written!r}")


def _reformat(value: Fraction, like: str) -> str:
    """value written with the decimals and thousands commas of `like`."""
    like = like.rstrip("%")
    places = decimals(like)
    scaled = round(abs(value) * 10 ** places)
    whole, part = divmod(scaled, 10 ** places)
    text = f"{whole:,}" if "," in like else str(whole)
    if places:
        text += "." + f"{part:0{places}d}"
    return ("-" if value < 0 else "") + text
