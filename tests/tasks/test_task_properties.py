"""Property-based checks over every task, difficulty and seed (hypothesis)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling.tasks.families import completion_text
from scaling.tasks.grader import grade
from scaling.tasks.quality import corrupt
from scaling.tasks.registry import TASKS

tasks = st.sampled_from(sorted(TASKS))
seeds = st.integers(0, 2**32 - 1)


def _draw(name: str, seed: int, ood: bool):
    family = TASKS[name]
    rng = np.random.default_rng(seed)
    low, high = family.ood_range if ood else family.id_range
    return family, family.draw(rng, int(rng.integers(low, high + 1))), rng


@settings(max_examples=300, deadline=None)
@given(tasks, seeds, st.booleans())
def test_gold_completions_grade_perfectly_and_prompts_parse_back(name, seed, ood):
    family, problem, _ = _draw(name, seed, ood)
    assert family.solve(problem.prompt) == problem
    result = grade(name, problem.prompt, completion_text(problem.steps, problem.answer))
    assert result.answer_correct and result.process_acc == 1.0


@settings(max_examples=300, deadline=None)
@given(tasks, seeds)
def test_a_corruption_is_rejected_first_at_its_step(name, seed):
    family, problem, rng = _draw(name, seed, ood=False)
    error = corrupt(family, problem, rng)
    verdicts = [family.step_ok(problem.fields, error.steps[:i], s) for i, s in enumerate(error.steps)]
    assert all(verdicts[: error.step]) and not verdicts[error.step]
    assert grade(name, problem.prompt, completion_text(error.steps, error.answer)).process_acc < 1.0


@settings(max_examples=300, deadline=None)
@given(tasks, seeds, st.text(alphabet="0123456789+-*/=%:TF ab\n#", max_size=60))
def test_any_output_grades_without_error(name, seed, text):
    _, problem, _ = _draw(name, seed, ood=False)
    result = grade(name, problem.prompt, text)
    assert 0.0 <= result.process_acc <= 1.0
