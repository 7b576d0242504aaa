import numpy as np
import pytest

from scaling.tasks.mixture import training_pool
from scaling.tasks.quality import corrupt, corrupted_rows, shown_steps
from scaling.tasks.registry import TASKS


def _first_rejected(family, fields, steps):
    return next((i for i, step in enumerate(steps) if not family.step_ok(fields, steps[:i], step)), None)


@pytest.mark.parametrize("name", list(TASKS))
def test_every_corruption_fails_the_verifier_exactly_at_the_corrupted_step(name):
    family = TASKS[name]
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(300):
        problem = family.draw(rng, int(rng.integers(family.id_range[0], family.ood_range[1] + 1)))
        error = corrupt(family, problem, rng)
        kinds.add(error.kind)
        assert _first_rejected(family, problem.fields, error.steps) == error.step
        assert error.steps != problem.steps
    assert "wrong_value" in kinds


def test_a_wrong_value_carries_into_the_answer():
    family = TASKS["add"]
    problem = family.solve("add 55 and 55")  # 5+5+0=10, 5+5+1=11 -> 110
    for seed in range(50):
        error = corrupt(family, problem, np.random.default_rng(seed))
        if error.kind == "wrong_value" and error.step == 0:
            assert error.answer == family.final_answer(problem.fields, error.steps)
            assert error.answer != problem.answer or error.steps[0].endswith("=10")
            break
    else:
        pytest.fail("no wrong value at step 0 in 50 seeds")


def test_quality_sets_the_exact_number_of_corrupted_examples():
    for quality, expected in ((1.0, 0), (0.7, 60), (0.0, 200)):
        pool = training_pool(("add", "reverse"), 2, 200, seed=0, quality=quality)
        assert sum(e.corrupted for e in pool) == expected
        assert all((e.corrupted_step is not None) == e.corrupted for e in pool)
    with pytest.raises(ValueError, match="quality"):
        corrupted_rows(10, 1.5, seed=0)


def test_cot_styles_show_all_last_or_no_steps():
    steps = ("a1", "b2", "c3")
    assert shown_steps(steps, "full") == steps
    assert shown_steps(steps, "short") == ("c3",)
    assert shown_steps(steps, "none") == ()
    pool = training_pool(("add",), 1, 20, seed=0, cot="none")
    assert all(e.completion.startswith("#### ") and e.steps == () for e in pool)
    with pytest.raises(ValueError, match="CoT style"):
        shown_steps(steps, "long")
