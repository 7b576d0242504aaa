import numpy as np
import pytest

from scaling.tasks.families import ANSWER_MARK, FAMILIES, completion_text, get_family


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_drawn_prompt_solves_back_to_the_same_problem(name):
    family = FAMILIES[name]
    rng = np.random.default_rng(0)
    for difficulty in range(family.id_range[0], family.ood_range[1] + 1):
        problem = family.draw(rng, difficulty)
        assert family.solve(problem.prompt) == problem
        assert completion_text(problem.steps, problem.answer).endswith(ANSWER_MARK + problem.answer)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_ood_difficulties_lie_above_id_and_every_phrasing_is_used(name):
    family = FAMILIES[name]
    assert family.ood_range[0] > family.id_range[1]
    rng = np.random.default_rng(1)
    prompts = [family.draw(rng, family.id_range[1]).prompt for _ in range(60)]
    used = {family.parse(prompt)[1] for prompt in prompts}
    assert len(family.phrasings) >= 3 and used == set(range(len(family.phrasings)))


def test_addition_steps_are_column_sums_with_carries():
    problem = get_family("add").solve("478+95=?")
    assert problem.steps == ("8+5+0=13", "7+9+1=17", "4+0+1=5")
    assert problem.answer == "573"


def test_subtraction_steps_borrow():
    problem = get_family("sub").solve("subtract 58 from 402")
    assert problem.steps == ("2-8-0=4 b1", "0-5-1=4 b1", "4-0-1=3 b0")
    assert problem.answer == "344"


def test_reverse_steps_build_the_reversed_list():
    assert get_family("reverse").solve("reverse 1 2 3").steps == ("3", "3 2", "3 2 1")


def test_a_prompt_of_another_family_is_rejected():
    with pytest.raises(ValueError, match="not a reverse problem"):
        get_family("reverse").solve("12+3=?")
    with pytest.raises(ValueError, match="unknown task family"):
        get_family("calculus")
