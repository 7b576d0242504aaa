import numpy as np

from scaling.tasks.compose import COMPOSITIONS, JOIN, compositions_within
from scaling.tasks.registry import get_task


def test_a_composition_feeds_the_first_answer_into_the_second():
    task = get_task("add_then_reverse")
    problem = task.solve("add 99 and 96" + JOIN + "reverse the list it")
    assert problem.steps == ("9+6+0=15", "9+9+1=19", "5", "5 9", "5 9 1")
    assert problem.answer == "5 9 1"


def test_compositions_round_trip_and_verify():
    rng = np.random.default_rng(0)
    for task in COMPOSITIONS.values():
        assert task.kind == "composition" and len(task.phrasings) >= 9
        for _ in range(200):
            problem = task.draw(rng, int(rng.integers(task.id_range[0], task.ood_range[1] + 1)))
            assert task.solve(problem.prompt) == problem
            assert all(task.step_ok(problem.fields, problem.steps[:i], s) for i, s in enumerate(problem.steps))


def test_an_early_error_carries_into_the_second_task():
    task = get_task("add_then_reverse")
    fields = task.solve("55+44=?" + JOIN + "reverse it").fields
    wrong_first = ["5+4+0=8", "5+4+0=9"]  # first column wrong: 98 instead of 99
    assert task.next_step(fields, wrong_first) == "8"
    assert task.step_ok(fields, wrong_first, "8") and not task.step_ok(fields, wrong_first, "9")


def test_only_compositions_of_trained_families_are_offered():
    assert [c.name for c in compositions_within(["add", "reverse"])] == ["add_then_reverse"]
    assert compositions_within(["add"]) == []
