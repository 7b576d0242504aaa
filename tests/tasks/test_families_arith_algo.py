"""The mul, mod, sort, count, dedupe and lookup families: gold CoT, parsing, corruption, robustness."""

import functools

import numpy as np
import pytest

from scaling.tasks import tokenizer
from scaling.tasks.families import algorithmic, arithmetic
from scaling.tasks.families.base import ANSWER_MARK, UNREADABLE, Family, Problem, completion_text

NAMES = ("mul", "mod", "sort", "count", "dedupe", "lookup")
BY_NAME = {family.name: family for family in (*arithmetic.FAMILIES, *algorithmic.FAMILIES)}
# Steps a model might write instead of a readable one.
GARBAGE = ("x", "", "12==", "=", ":", " ", "1:", "=5", "-3", "a=z", "1:q=", "1 2 99", "9:9 yes x", "1:5%0=1", "4 ####")


def _difficulties(family: Family) -> list[int]:
    return [*range(family.id_range[0], family.id_range[1] + 1), *range(family.ood_range[0], family.ood_range[1] + 1)]


@functools.cache
def _drawn(name: str, n: int = 2000, seed: int = 0) -> tuple[Problem, ...]:
    """n problems cycling through every ID and OOD difficulty (cached: several tests read them)."""
    family, rng = BY_NAME[name], np.random.default_rng(seed)
    difficulties = _difficulties(family)
    return tuple(family.draw(rng, difficulties[i % len(difficulties)]) for i in range(n))


def _change_digit(step: str, rng: np.random.Generator) -> str:
    positions = [i for i, c in enumerate(step) if c.isdigit()]
    at = positions[int(rng.integers(len(positions)))]
    return step[:at] + str((int(step[at]) + int(rng.integers(1, 10))) % 10) + step[at + 1 :]


def test_new_families_follow_the_existing_ones_in_each_module():
    assert [f.name for f in arithmetic.FAMILIES] == ["add", "sub", "mul", "mod", "sum3"]
    assert [f.name for f in algorithmic.FAMILIES] == ["reverse", "sort", "count", "dedupe", "lookup"]


@pytest.mark.parametrize("name", NAMES)
def test_gold_cot_passes_the_step_verifier_and_gives_the_answer(name):
    family = BY_NAME[name]
    for problem in _drawn(name):
        for i, step in enumerate(problem.steps):
            assert family.step_ok(problem.fields, problem.steps[:i], step), (problem.prompt, i)
        assert not family.step_ok(problem.fields, problem.steps, problem.steps[-1])  # nothing after the last
        assert family.final_answer(problem.fields, problem.steps) == problem.answer


@pytest.mark.parametrize("name", NAMES)
def test_every_drawn_prompt_solves_back_to_its_problem(name):
    family = BY_NAME[name]
    for problem in _drawn(name):
        assert family.solve(problem.prompt) == problem


@pytest.mark.parametrize("name", NAMES)
def test_steps_are_one_line_in_the_vocabulary_hold_a_digit_and_differ_from_their_successor(name):
    for problem in _drawn(name):
        tokenizer.encode(problem.prompt + completion_text(problem.steps, problem.answer))  # ValueError outside it
        assert problem.answer and "\n" not in problem.answer
        for step, successor in zip(problem.steps, problem.steps[1:] + ("",)):
            assert "\n" not in step and "####" not in step and any(c.isdigit() for c in step), step
            assert step != successor, problem.steps  # a skipped step must be detectable


@pytest.mark.parametrize(
    "name, prompt, steps, answer",
    [
        ("mul", "what is 47 times 23?", ("47*3=141", "47*20=940", "141+940=1081"), "1081"),
        ("mul", "multiply 12 by 305", ("12*5=60", "12*00=0", "60+0=60", "12*300=3600", "60+3600=3660"), "3660"),
        ("mul", "9*8=?", ("9*8=72",), "72"),  # a 1-digit a is never drawn but still parses
        ("mod", "1234%7=?", ("1:1%7=1", "2:12%7=5", "3:53%7=4", "4:44%7=2"), "2"),
        ("mod", "remainder of 985 divided by 13", ("1:9%13=9", "2:98%13=7", "3:75%13=10"), "10"),
        ("sort", "sort the list 3 1 2 1", ("1", "1 1", "1 1 2", "1 1 2 3"), "1 1 2 3"),
        ("count", "how many 7s are in 7 1 7?", ("1:7 yes 1", "2:1 no 1", "3:7 yes 2"), "2"),
        ("count", "count the 0s in 5 5", ("1:5 no 0", "2:5 no 0"), "0"),
        ("dedupe", "dedupe 1 3 1 1 2", ("1:1 new 1", "2:3 new 1 3", "3:1 dup 1 3", "4:1 dup 1 3", "5:2 new 1 3 2"), "1 3 2"),
        ("lookup", "a=c, c=7, b=a, d=4; what is b?", ("1:b=a", "2:a=c", "3:c=7"), "7"),
        ("lookup", "given e=3, f=e, find e", ("1:e=3",), "3"),
    ],
)
def test_hand_worked_examples(name, prompt, steps, answer):
    problem = BY_NAME[name].solve(prompt)
    assert problem.steps == steps
    assert problem.answer == answer


@pytest.mark.parametrize(
    "name, prompt, at, wrong_step, continuation, answer",
    [
        ("mul", "47*23=?", 0, "47*3=151", ("47*20=940", "151+940=1091"), "1091"),
        ("mod", "1234%7=?", 1, "2:12%7=6", ("3:63%7=0", "4:4%7=4"), "4"),
        ("sort", "sort 3 1 2 1", 1, "1 2", ("1 2 1", "1 2 1 3"), "1 2 1 3"),
        ("count", "how many 7s are in 7 1 7?", 0, "1:7 yes 3", ("2:1 no 3", "3:7 yes 4"), "4"),
        ("dedupe", "dedupe 1 3 1 1 2", 1, "2:3 new 1 5", ("3:1 dup 1 5", "4:1 dup 1 5", "5:2 new 1 5 2"), "1 5 2"),
        ("lookup", "a=c, c=7, b=a, d=4; what is b?", 2, "3:c=8", (), "8"),
    ],
)
def test_a_wrong_value_carries_into_later_steps_and_the_answer(name, prompt, at, wrong_step, continuation, answer):
    family = BY_NAME[name]
    problem = family.solve(prompt)
    steps = [*problem.steps[:at], wrong_step]
    for _ in range(at + 1, len(problem.steps)):
        steps.append(family.next_step(problem.fields, steps))
    assert tuple(steps[at + 1 :]) == continuation
    assert family.final_answer(problem.fields, steps) == answer


@pytest.mark.parametrize("name", NAMES)
def test_a_changed_digit_is_rejected_at_its_step_and_the_procedure_continues_or_stops_cleanly(name):
    family, rng = BY_NAME[name], np.random.default_rng(3)
    for problem in _drawn(name)[:500]:
        at = int(rng.integers(len(problem.steps)))
        steps = [*problem.steps[:at], _change_digit(problem.steps[at], rng)]
        assert all(family.step_ok(problem.fields, steps[:i], steps[i]) for i in range(at))
        assert not family.step_ok(problem.fields, steps[:at], steps[at])
        if at + 1 < len(problem.steps):  # skipping step `at` is caught too
            assert not family.step_ok(problem.fields, problem.steps[:at], problem.steps[at + 1])
        try:
            while len(steps) < len(problem.steps):
                steps.append(family.next_step(problem.fields, steps))
                assert family.step_ok(problem.fields, steps[:-1], steps[-1])
            assert isinstance(family.final_answer(problem.fields, steps), str)
        except UNREADABLE:
            pass  # the error broke the procedure; the corrupter copies the gold remainder then


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_draws_the_same_problems(name):
    family = BY_NAME[name]
    first, second = np.random.default_rng(7), np.random.default_rng(7)
    for difficulty in _difficulties(family) * 5:
        assert family.draw(first, difficulty) == family.draw(second, difficulty)


@pytest.mark.parametrize("name", NAMES)
def test_garbage_steps_are_rejected_without_raising(name):
    family = BY_NAME[name]
    for problem in _drawn(name)[:40]:  # the draws cycle through every difficulty
        gold = problem.steps
        previous_steps = [[g] for g in GARBAGE] + [[*gold[:1], g] for g in GARBAGE] + [list(GARBAGE[:3]), list(gold) * 2]
        for previous in previous_steps:
            for step in (*GARBAGE, gold[0], gold[-1]):
                assert family.step_ok(problem.fields, previous, step) in (True, False)
            try:
                family.next_step(problem.fields, previous)
            except UNREADABLE:
                pass
            try:
                family.final_answer(problem.fields, previous)
            except UNREADABLE:
                pass


@pytest.mark.parametrize("name", NAMES)
def test_id_and_ood_ranges_each_hold_at_least_200_distinct_prompts(name):
    family, rng = BY_NAME[name], np.random.default_rng(11)
    for low, high in (family.id_range, family.ood_range):
        prompts = {family.draw(rng, int(rng.integers(low, high + 1))).prompt for _ in range(600)}
        assert len(prompts) >= 200, (low, high, len(prompts))


@pytest.mark.parametrize("name", NAMES)
def test_id_examples_stay_short_at_the_top_of_the_range(name):
    family, rng = BY_NAME[name], np.random.default_rng(5)
    lengths = []
    for _ in range(500):
        problem = family.draw(rng, family.id_range[1])
        lengths.append(len(problem.prompt) + len(completion_text(problem.steps, problem.answer)))
    assert max(lengths) <= 120
    assert completion_text(problem.steps, problem.answer).endswith(ANSWER_MARK + problem.answer)
