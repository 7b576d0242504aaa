"""The CoT step checker (`scaling.tasks.steps`) measured on real GSM-style solutions.

For each corpus, (1) the share of its solutions the checker verifies, and a few it flags, with why; (2) among
the solutions it verifies, one arithmetic error injected (`inject_error`, seeded) into half and none into the
other half: precision and recall of the flag (goal >= 0.95 each on annotated CoT), and how often the flag
points at the injected step. Because the clean half is drawn from verified solutions, its precision is 1 by
construction; the honest estimate of false flags is (1): every flag on an untouched reference solution is
either a checker mistake or a real error in the source, listed so a reader can tell which.

Corpora: the 1,319 GSM8K test solutions (`<<expr=value>>` annotations), and reasoning-gym's gsm_symbolic CoT
(plain `a op b = c` statements), SYMBOLIC_SEEDS solutions from each of its good templates.
Last line: a JSON object with the figures.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter

from scaling.tasks.real.benchmarks import gsm8k_rows
from scaling.tasks.steps import check_steps, inject_error

SEED = 0
SYMBOLIC_SEEDS = 10  # solutions per gsm_symbolic template
SHOWN = 5  # flagged solutions listed per corpus


def gsm_symbolic_rows() -> list[tuple[str, str]]:
    """(id "gsm_symbolic/<template>/<seed>", answer_cot) for SYMBOLIC_SEEDS seeds of every good template."""
    from reasoning_gym.arithmetic.gsm_symbolic import gsm_symbolic
    from reasoning_gym.arithmetic.gsm_symbolic.gsm_symbolic import GSMSymbolicDataset, GSMSymbolicDatasetConfig

    dataset = GSMSymbolicDataset(GSMSymbolicDatasetConfig(size=1, seed=SEED))
    return [(f"gsm_symbolic/{t}/{s}", dataset.generators[t](random.Random(s), 1.0)["metadata"]["answer_cot"])
            for t in gsm_symbolic.tasks_ok for s in range(SYMBOLIC_SEEDS)]


def measure(name: str, rows: list[tuple[str, str]]) -> dict:
    started = time.perf_counter()
    checks = {row_id: check_steps(text) for row_id, text in rows}
    seconds = time.perf_counter() - started
    verified = [(row_id, text) for row_id, text in rows if checks[row_id].verified]
    flagged = [(row_id, checks[row_id].why) for row_id, _ in rows if checks[row_id].first_wrong is not None]
    statements = sum(c.steps for c in checks.values())
    print(f"{name}: {len(rows)} solutions, {statements} statements checked ({len(rows) / seconds:,.0f} solutions/s); "
          f"verified {len(verified)} ({len(verified) / len(rows):.1%}), flagged {len(flagged)}, "
          f"no statement {sum(c.steps == 0 for c in checks.values())}")
    for row_id, why in flagged[:SHOWN]:
        print(f"  flagged {row_id}: {why}")

    rng = random.Random(SEED)
    order = verified[:]
    rng.shuffle(order)
    half = len(order) // 2
    true_positive = false_negative = false_positive = true_negative = at_step = 0
    for row_id, text in order[:half]:
        injected = inject_error(text, rng)
        if injected is None:  # every result written as a fraction: nothing to change; it joins the clean half
            order.append((row_id, text))
            continue
        new, index = injected
        check = check_steps(new)
        if check.first_wrong is None:
            false_negative += 1
            print(f"  missed {row_id} (step {index + 1})")
        else:
            true_positive += 1
            at_step += check.first_wrong == index
    for row_id, text in order[half:]:
        if check_steps(text).first_wrong is None:
            true_negative += 1
        else:
            false_positive += 1
    injected_n = true_positive + false_negative
    precision = true_positive / max(1, true_positive + false_positive)
    recall = true_positive / max(1, injected_n)
    print(f"  injected {injected_n}, clean {true_negative + false_positive}: precision {precision:.4f}, "
          f"recall {recall:.4f}, flag at the injected step {at_step / max(1, true_positive):.4f}")
    return {"solutions": len(rows), "statements": statements, "verified": len(verified),
            "verified_share": round(len(verified) / len(rows), 4), "flagged": len(flagged),
            "injected": injected_n, "clean": true_negative + false_positive, "precision": round(precision, 4),
            "recall": round(recall, 4), "at_injected_step": round(at_step / max(1, true_positive), 4),
            "solutions_per_second": round(len(rows) / seconds)}


def main() -> None:
    gsm8k = measure("GSM8K test (annotated)", [(row.id, row.solution) for row in gsm8k_rows()])
    symbolic_rows = gsm_symbolic_rows()
    symbolic = measure("gsm_symbolic (plain a op b = c)", symbolic_rows)
    flagged_templates = Counter(row_id.split("/")[1] for row_id, text in symbolic_rows
                                if check_steps(text).first_wrong is not None)
    print(f"  gsm_symbolic templates with flagged solutions (template: count): {dict(sorted(flagged_templates.items()))}")
    print(json.dumps({"benchmark": "step_checker", "seed": SEED, "gsm8k": gsm8k, "gsm_symbolic": symbolic,
                      "gsm_symbolic_flagged_templates": dict(sorted(flagged_templates.items()))}))


if __name__ == "__main__":
    main()
