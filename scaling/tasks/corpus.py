"""A generic pretraining corpus: text in the tasks' alphabet with no task-formatted SFT pairs.

Base models of different capability are pretrained from scratch on it for different token budgets.
Documents teach the raw skills the tasks build on (counting, digit facts, comparisons, bindings,
simple sentences) without ever writing a task prompt followed by its CoT completion, so SFT remains
the only place a model sees the task format.
"""

from __future__ import annotations

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
    name = chr(ord("a") + int(rng.integers(26)))
    return f"let {name} be {int(rng.integers(0, 100))}."


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
