"""Task-suite throughput on one core: examples generated per second, and completions graded per second.

Goal (issue: task suite): 100,000 unique training examples in under 10 seconds on one core.
Last line: a JSON object whose "ratio" is 10 s / the measured time for 100,000 examples (>= 1 meets it).
"""

from __future__ import annotations

import json
import os
import time

from scaling.tasks.families import FAMILIES
from scaling.tasks.grader import grade
from scaling.tasks.mixture import training_pool

N_EXAMPLES = 100_000
N_GRADED = 20_000
GOAL_SECONDS = 10.0


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the goal states
    families = tuple(FAMILIES)
    started = time.perf_counter()
    pool = training_pool(families, len(families), N_EXAMPLES, seed=0, quality=0.9)
    generate_seconds = time.perf_counter() - started

    started = time.perf_counter()
    graded = [grade(e.family, e.prompt, e.completion) for e in pool[:N_GRADED]]
    grade_seconds = time.perf_counter() - started
    assert sum(g.answer_correct for g in graded) >= 0.85 * N_GRADED  # a sanity check, not a benchmark

    per_second = N_EXAMPLES / generate_seconds
    print(f"{len(families)} families, quality 0.9: {N_EXAMPLES} examples in {generate_seconds:.2f} s "
          f"({per_second:,.0f}/s on one core); goal {GOAL_SECONDS:.0f} s")
    print(f"grader: {N_GRADED} completions in {grade_seconds:.2f} s ({N_GRADED / grade_seconds:,.0f}/s)")
    print(json.dumps({"benchmark": "tasks", "ratio": round(GOAL_SECONDS / generate_seconds, 3),
                      "examples_per_second": round(per_second), "graded_per_second": round(N_GRADED / grade_seconds)}))


if __name__ == "__main__":
    main()
