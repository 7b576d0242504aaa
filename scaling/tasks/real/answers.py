"""The benchmarks' own answer rules, and graders made of them.

- **GSM8K**: the number after `####` (thousands commas, `$` and a trailing period dropped), compared as a number
  ("#### $1,080." says 1080; "#### 2.50" equals 2.5). Leniently, for a base before SFT: else the completion's last
  number (decimals and a leading minus kept, see `last_number`).
- **MATH**: `math-verify` decides whether the completion's answer (after `####` if it writes one, else its last
  `\\boxed{}`) equals the reference (the solution's last box); both are read as `$\\boxed{...}$`. Leniently: else
  the completion's last number. math-verify may raise or run long on odd input: it runs under its own timeouts
  (an alarm signal, so only in a process's main thread; elsewhere without), everything it raises is caught, and an
  answer it cannot read is graded wrong and counted in `UNVERIFIABLE`, never raised.

Steps are not graded (no procedure verifies a benchmark's CoT here): process accuracy is NaN, chain correctness None.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Callable

from scaling.tasks.grader import Grade, parse_completion
from scaling.tasks.real.benchmarks import last_boxed

if TYPE_CHECKING:
    from scaling.tasks.mixture import Example

MARK = "####"
# A number as written: thousands groups ("1,707.5") or plain digits, with decimals; the sign is read apart.
NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|\d+(?:\.\d+)?|\.\d+")
MATH_VERIFY_TIMEOUT_S = 5  # math-verify's own parsing and verifying timeouts, where it can set them
UNVERIFIABLE: Counter = Counter()  # MATH answers this process could not verify, by why ("unparseable", "timeout", ...)
log = logging.getLogger(__name__)


def _marked(completion: str) -> str | None:
    """The first line after the completion's first `####` (the line SFT teaches), None if it writes no marker."""
    head, mark, tail = completion.partition(MARK)
    return tail.strip().split("\n")[0].strip() if mark else None


def _numbers(text: str) -> list[tuple[str, bool]]:
    """Each number written in text with whether a minus sign is its own (not a subtraction: no digit or `)`
    right before the sign)."""
    found = []
    for match in NUMBER.finditer(text):
        before = text[:match.start()].rstrip("$ ")
        preceding = before[:-1].rstrip()[-1:]
        found.append((match.group(), before.endswith("-") and not (preceding.isdigit() or preceding == ")")))
    return found


def _canonical(written: str, negative: bool = False) -> str | None:
    """A number as a canonical string ("1,080.50" -> "1080.5"); None if it is none."""
    try:
        value = Decimal(written.replace(",", ""))
    except InvalidOperation:
        return None
    value = -value if negative else value
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def last_number(text: str) -> str | None:
    """The last number written in text, canonical (decimals kept, see `_numbers` for its sign); None if none."""
    found = _numbers(text)
    return _canonical(*found[-1]) if found else None


def gsm8k_answer(completion: str) -> str | None:
    """GSM8K's rule: the number after `####`, canonical ("#### $1,080." -> "1080"); None without the marker or a
    number after it."""
    line = _marked(completion)
    if line is None:
        return None
    found = _numbers(line.replace("$", ""))
    return _canonical(*found[0]) if found else None


def gsm8k_lenient(completion: str) -> str | None:
    """GSM8K's rule read leniently: after `####` if the completion writes it, else its last number."""
    return gsm8k_answer(completion) if MARK in completion else last_number(completion)


def same_number(a: str | None, b: str | None) -> bool:
    """Whether two written numbers are equal as numbers (None equals nothing)."""
    if a is None or b is None:
        return False
    x, y = _canonical(a.replace("$", "").strip()), _canonical(b.replace("$", "").strip())
    return x is not None and x == y


def math_answer(completion: str) -> str | None:
    """MATH's rule: the answer after `####` if the completion writes one, else its last `\\boxed{}`; None if neither."""
    line = _marked(completion)
    return line if line else last_boxed(completion)


def _timeouts() -> int | None:
    """math-verify's timeouts set an alarm signal, which only a process's main thread may."""
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _parsed(answer: str) -> list:
    from math_verify import parse

    return parse(f"$\\boxed{{{answer}}}$", parsing_timeout=_timeouts())


@functools.lru_cache(maxsize=4096)  # references repeat at every budget of every cell
def _parsed_reference(reference: str) -> list:
    return _parsed(reference)


def math_verdict(reference: str, answer: str | None) -> tuple[bool, str]:
    """(equal, why not): whether math-verify finds `answer` equal to `reference`; `why` is "" when it could judge,
    else "no answer", "unparseable", "timeout" or the error's type. Never raises."""
    if not answer:
        return False, "no answer"
    from math_verify import verify
    from math_verify.errors import TimeoutException

    try:
        gold, target = _parsed_reference(reference), _parsed(answer)
        if not gold or not target:
            return False, "unparseable"
        return bool(verify(gold, target, timeout_seconds=_timeouts())), ""
    except TimeoutException:  # a BaseException in math-verify: caught by name
        return False, "timeout"
    except Exception as error:  # noqa: BLE001 — any failure of a third-party parser on odd input is a wrong answer
        return False, type(error).__name__


def math_equal(reference: str, completion: str, answer: Callable[[str], str | None] | None = None) -> bool:
    """Whether the completion's MATH answer (`math_answer`, or `answer`'s reading) equals the reference; an answer
    math-verify cannot judge is wrong and counted in UNVERIFIABLE."""
    equal, why = math_verdict(reference, (answer or math_answer)(completion))
    if why and why != "no answer":
        if not UNVERIFIABLE:
            log.warning("math-verify could not judge a MATH answer (%s): graded wrong, counted", why)
        UNVERIFIABLE[why] += 1
    return equal


def math_lenient(completion: str) -> str | None:
    """MATH's rule read leniently: after `####` or the last box, else the completion's last number."""
    return math_answer(completion) or last_number(completion)


def gsm8k_correct(reference: str, completion: str, lenient: bool = False) -> bool:
    return same_number(reference, (gsm8k_lenient if lenient else gsm8k_answer)(completion))


def math_correct(reference: str, completion: str, lenient: bool = False) -> bool:
    return math_equal(reference, completion, math_lenient if lenient else math_answer)


# Each answer rule by name: a benchmark names its rule here (scaling.tasks.real.evaluation.BENCHMARKS).
RULES: dict[str, Callable[[str, str, bool], bool]] = {"gsm8k": gsm8k_correct, "math": math_correct}


@dataclass(frozen=True)
class RuleGrader:
    """A `Grader` of one answer rule (RULES), strict (after SFT) or lenient (zero-shot); picklable."""

    rule: str  # a key of RULES
    lenient: bool = False

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown answer rule {self.rule!r}; rules are {', '.join(RULES)}")

    def __call__(self, example: Example, completion: str) -> Grade:
        correct = RULES[self.rule](example.answer, completion, self.lenient)
        return Grade(answer_correct=correct, process_acc=float("nan"), chain_correct=None,
                     steps=len(parse_completion(completion)[0]))
