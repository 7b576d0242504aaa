"""sum3, the held-out test of transfer from add: in its ID range every step is one add trains, at a length
add trains, in a chain no longer than add's longest; above it, one more step per level."""

import re

import numpy as np
import pytest

from scaling.tasks.families import FAMILIES

ADD, SUM3 = FAMILIES["add"], FAMILIES["sum3"]
DRAWS = 2000  # per difficulty
ADD_STEP = re.compile(r"(\d)\+(\d)\+([01])=(\d{1,2})")  # `x+y+carry=total`, the one step add writes


def _trained_add_problems() -> list[dict[str, str]]:
    rng = np.random.default_rng(0)
    return [ADD.draw_fields(rng, d) for d in range(ADD.id_range[0], ADD.id_range[1] + 1) for _ in range(DRAWS)]


TRAINED_ADD = _trained_add_problems()
LONGEST_ADD_CHAIN = max(ADD.n_steps(fields) for fields in TRAINED_ADD)


def test_the_step_format_is_the_one_add_writes():
    assert all(ADD_STEP.fullmatch(step) for fields in TRAINED_ADD[::10] for step in ADD.gold_steps(fields))


def _additions(problem) -> tuple[tuple[str, str], tuple[str, str]]:
    """The two additions sum3 writes: a + b, then the first one's result + c."""
    a, b, c = problem.fields["a"], problem.fields["b"], problem.fields["c"]
    return (a, b), (str(int(a) + int(b)), c)


@pytest.mark.parametrize("difficulty", range(SUM3.id_range[0], SUM3.id_range[1] + 1))
def test_every_id_step_is_an_add_step_of_a_trained_length_in_a_chain_add_trains(difficulty):
    rng = np.random.default_rng(difficulty)
    for _ in range(DRAWS):
        problem = SUM3.draw(rng, difficulty)
        assert len(problem.steps) <= LONGEST_ADD_CHAIN == 3, problem
        written = 0
        for a, b in _additions(problem):
            addition = {"a": a, "b": b}
            columns = ADD.n_steps(addition)
            assert columns <= ADD.id_range[1], (problem, addition)
            # Each step is what add's own procedure writes for this addition, in add's step format.
            assert problem.steps[written : written + columns] == ADD.gold_steps(addition), problem
            assert all(ADD_STEP.fullmatch(step) for step in ADD.gold_steps(addition))
            written += columns
        assert written == len(problem.steps)
        assert problem.answer == str(sum(int(problem.fields[k]) for k in "abc"))


@pytest.mark.parametrize("difficulty", range(SUM3.ood_range[0], SUM3.ood_range[1] + 1))
def test_each_level_above_the_id_range_is_one_step_longer(difficulty):
    rng = np.random.default_rng(difficulty)
    for _ in range(200):
        problem = SUM3.draw(rng, difficulty)
        assert len(problem.steps) == LONGEST_ADD_CHAIN + SUM3.distance(difficulty)
        assert problem.answer == str(sum(int(problem.fields[k]) for k in "abc"))


def test_the_second_addition_reads_its_first_operand_from_the_first_ones_result():
    problem = SUM3.solve("8+5+7=?")
    assert problem.steps == ("8+5+0=13", "3+7+0=10", "1+0+1=2") and problem.answer == "20"
    steps = ["8+5+0=14"]  # a wrong first total carries into the second addition
    for _ in range(2):
        steps.append(SUM3.next_step(problem.fields, steps))
    assert steps[1:] == ["4+7+0=11", "1+0+1=2"] and SUM3.final_answer(problem.fields, steps) == "21"


def test_order_variants_of_one_sum_are_one_problem():
    keys = {SUM3.solve(prompt).key for prompt in ("8+5+12=?", "add 5, 8 and 12", "what is 12 plus 5 plus 8?")}
    assert len(keys) == 1
    assert SUM3.solve("8+5+13=?").key not in keys
