"""A generic pretraining corpus: text in the tasks' alphabet with no task-formatted SFT pairs.

Base models of different capability are pretrained from scratch on it for different token budgets.
Documents teach the raw skills the tasks build on without ever writing a task prompt followed by its
CoT completion, so SFT remains the only place a model sees the task format:

    counting      `12 15 18 21 24`: sequences with a stride (the next number; digit order)
    digit facts   `47+38=85.`, `52-17=35.`, `6*7=42.` with operands below 100 (sums with carries)
    comparisons   `412 > 97.`: which of two numbers is larger
    bindings      `let q be 7. so q is 7.`: a name bound to a value, then read back
    sentences     `Ann finds 12 coins.`: the words of the word problems

What a base pretrained on it can do is measured before SFT (`scaling.trainer.probe`): its loss on
held-out documents, and a zero-shot probe of exactly these skills in exactly these formats. It
cannot do any task: it has never seen a task prompt, a step, or `####`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

_NAMES = ("Ann", "Bob", "Cid", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Joe")
_THINGS = ("apples", "books", "coins", "pens", "cards", "shells", "stamps", "eggs")
_VERBS = ("has", "finds", "keeps", "sees", "wants", "counts")


def _counting(rng: np.random.Generator) -> str:
    start, stride = int(rng.integers(0, 200)), int(rng.integers(1, 6))
    return " ".join(str(start + stride * i) for i in range(int(rng.integers(5, 15))))


def _digit_fact(rng: np.random.Generator) -> str:
    a, b = (int(v) for v in rng.integers(0, 100, size=2))
    op = ("+", "-", "*")[int(rng.integers(3))]
    a, b = (max(a, b), min(a, b)) if op == "-" else (a, b)
    return f"{a}{op}{b}={a + b if op == '+' else a - b if op == '-' else a * b}."


def _comparison(rng: np.random.Generator) -> str:
    a, b = (int(v) for v in rng.integers(0, 1000, size=2))
    return f"{a} {'>' if a > b else '<' if a < b else '='} {b}."


def _binding(rng: np.random.Generator) -> str:
    name, value = chr(ord("a") + int(rng.integers(26))), int(rng.integers(0, 100))
    return f"let {name} be {value}. so {name} is {value}."


def _sentence(rng: np.random.Generator) -> str:
    name, verb, thing = (options[int(rng.integers(len(options)))] for options in (_NAMES, _VERBS, _THINGS))
    return f"{name} {verb} {int(rng.integers(1, 30))} {thing}."


_GENERATORS: tuple[Callable[[np.random.Generator], str], ...] = (_counting, _digit_fact, _comparison, _binding, _sentence)


def documents(seed: int) -> Iterator[str]:
    """An endless, reproducible stream of documents of 3 to 12 mixed sentences."""
    rng = np.random.default_rng([seed, 11])
    while True:
        parts = [_GENERATORS[int(rng.integers(len(_GENERATORS)))](rng) for _ in range(int(rng.integers(3, 13)))]
        yield " ".join(parts)


CORPUS_VERSION = 2  # what the documents hold; bases pretrained on an older corpus are not reused
HELD_OUT_SEED = 2**31 - 1  # documents of this seed are never pretrained on: grid seeds lie below it


def held_out(n_chars: int) -> list[str]:
    """Documents no base is pretrained on, for measuring a base's corpus loss."""
    return corpus(n_chars, HELD_OUT_SEED)


@dataclass(frozen=True)
class ProbeItem:
    """One zero-shot question in the corpus's own format: which continuation of `prefix` is right."""

    skill: str
    prefix: str
    choices: tuple[str, ...]
    answer: int  # index of the right choice


def probe_items(n: int, seed: int = HELD_OUT_SEED) -> list[ProbeItem]:
    """n probe questions, cycling through the corpus's skills (counting, digit facts, comparisons, bindings)."""
    rng = np.random.default_rng([seed, 13])
    makers = (_probe_counting, _probe_fact, _probe_comparison, _probe_binding)
    return [makers[i % len(makers)](rng) for i in range(n)]


def _choices(rng: np.random.Generator, right: int, wrong: list[int]) -> tuple[tuple[str, ...], int]:
    options = [right] + [w for w in dict.fromkeys(wrong) if w != right and w >= 0][:3]
    order = rng.permutation(len(options))
    return tuple(str(options[i]) for i in order), int(np.flatnonzero(order == 0)[0])


def _probe_counting(rng: np.random.Generator) -> ProbeItem:
    start, stride = int(rng.integers(0, 200)), int(rng.integers(1, 6))
    shown = " ".join(str(start + stride * i) for i in range(5))
    right = start + 5 * stride
    choices, answer = _choices(rng, right, [right + 1, right - 1, right + stride])
    return ProbeItem("counting", shown + " ", tuple(c + " " for c in choices), answer)


def _probe_fact(rng: np.random.Generator) -> ProbeItem:
    a, b = (int(v) for v in rng.integers(10, 100, size=2))
    choices, answer = _choices(rng, a + b, [a + b + 1, a + b - 1, a + b + 10])
    return ProbeItem("digit facts", f"{a}+{b}=", tuple(c + "." for c in choices), answer)


def _probe_comparison(rng: np.random.Generator) -> ProbeItem:
    a, b = (int(v) for v in rng.integers(0, 1000, size=2))
    while a == b:
        b = int(rng.integers(0, 1000))
    signs = (">", "<")
    return ProbeItem("comparisons", f"{a} ", tuple(f"{sign} {b}." for sign in signs), 0 if a > b else 1)


def _probe_binding(rng: np.random.Generator) -> ProbeItem:
    name, value = chr(ord("a") + int(rng.integers(26))), int(rng.integers(0, 100))
    choices, answer = _choices(rng, value, [int(v) for v in rng.integers(0, 100, size=3)])
    return ProbeItem("bindings", f"let {name} be {value}. so {name} is ", tuple(c + "." for c in choices), answer)


def corpus(n_chars: int, seed: int) -> list[str]:
    """Documents totalling at least n_chars characters (one character is one token of the task tokenizer)."""
    if n_chars < 0:
        raise ValueError(f"a corpus size must be non-negative, got {n_chars}")
    out, total = [], 0
    for document in documents(seed):
        if total >= n_chars:
            return out
        out.append(document)
        total += len(document)
    raise AssertionError("unreachable: the document stream is endless")
