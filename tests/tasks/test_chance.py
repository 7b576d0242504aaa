"""Chance floors: the exact probability of a right guess agrees with guesses graded by the real grader."""

import numpy as np
import pytest

from scaling.tasks.chance import chance_floor, chance_of, guess
from scaling.tasks.families import RULE_VARIANTS, completion_text
from scaling.tasks.grader import grade
from scaling.tasks.registry import TASKS

DRAWS = 3000


@pytest.mark.parametrize("family", sorted(TASKS))
def test_the_exact_chance_is_what_guessing_scores(family):
    task, rng = TASKS[family], np.random.default_rng(0)
    exact, hits = [], []
    for _ in range(DRAWS):
        problem = task.draw(rng, int(rng.integers(task.id_range[0], task.id_range[1] + 1)))
        exact.append(chance_of(family, problem))
        hits.append(grade(family, problem.prompt, completion_text(problem.steps, guess(family, problem, rng))).answer_correct)
    expected = float(np.mean(exact))
    spread = np.sqrt(expected * (1 - expected) / DRAWS)
    assert abs(np.mean(hits) - expected) <= 4 * spread + 1e-3, (family, np.mean(hits), expected)


def test_guessable_families_have_the_floors_their_answers_allow():
    assert chance_floor("bool", 2) == 0.5 and chance_floor("compare", 1) == 0.5
    assert 0.5 < chance_floor("lookup", 2) < 0.8  # one of the few digits the bindings hold
    assert chance_floor("count", 3) == pytest.approx(1 / 4, abs=0.02)  # 0 .. 3 for a list of 3
    assert chance_floor("add", 3) < 0.01 and chance_floor("sum3", 3) < 0.01


def test_a_rule_variant_guesses_like_its_base_family_but_add_base8_in_base_8_digits():
    for base, variant in RULE_VARIANTS.items():
        if variant.name != "add_base8":  # the same draws (the same problems' items), the same answer type
            assert chance_floor(variant.name, variant.id_range[1]) == chance_floor(base, variant.id_range[1])
    # One-digit base-8 problems all carry, so every answer is a two-digit base-8 number: 56 of them.
    assert chance_floor("add_base8", 1) == pytest.approx(1 / 56)
