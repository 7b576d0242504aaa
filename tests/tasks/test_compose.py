import numpy as np

from scaling.tasks.compose import COMPOSITIONS, JOIN, compositions_within, hops
from scaling.tasks.families import completion_text
from scaling.tasks.grader import grade
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


def test_a_two_hop_composition_feeds_each_answer_into_the_next_family():
    prompt = "add 99 and 96" + JOIN + "reverse the list it" + JOIN + "dedupe it"
    problem = get_task("add_then_reverse_then_dedupe").solve(prompt)
    assert problem.steps == ("9+6+0=15", "9+9+1=19", "5", "5 9", "5 9 1", "1:5 new 5", "2:9 new 5 9", "3:1 new 5 9 1")
    assert problem.answer == "5 9 1"
    gold = grade("add_then_reverse_then_dedupe", prompt, completion_text(problem.steps, problem.answer))
    assert gold.answer_correct and gold.chain_correct
    # A wrong sum carries through both later families: reversed and deduplicated from the wrong digits.
    wrong = ("9+6+0=16", "9+9+1=19", "6", "6 9", "6 9 1", "1:6 new 6", "2:9 new 6 9", "3:1 new 6 9 1")
    graded = grade("add_then_reverse_then_dedupe", prompt, completion_text(wrong, "6 9 1"))
    assert not graded.answer_correct and graded.process_acc == 0.0
    task = get_task("add_then_reverse_then_dedupe")
    assert all(task.step_ok(problem.fields, wrong[:i], step) for i, step in enumerate(wrong) if i)


def test_two_hop_compositions_parse_back_and_are_named_by_their_three_parts():
    two_hop = [task for task in COMPOSITIONS.values() if hops(task.name) == 2]
    assert {"add_then_reverse_then_dedupe", "add_then_sort_then_reverse", "sort_then_reverse_then_dedupe"} <= {
        task.name for task in two_hop}
    rng = np.random.default_rng(1)
    for task in two_hop:
        assert len(task.phrasings) >= 27 and task.id_range == get_task(task.name.split("_then_")[0]).id_range
        for _ in range(20):
            problem = task.draw(rng, task.id_range[1])
            assert task.solve(problem.prompt) == problem and problem.prompt.count(JOIN) == 2


def test_hops_counts_the_answers_fed_on():
    assert [hops(name) for name in ("add", "add_then_reverse", "add_then_reverse_then_dedupe")] == [0, 1, 2]


def test_compositions_within_adds_two_hops_after_the_one_hop_ones_all_parts_within_the_families():
    names = [c.name for c in compositions_within(["add", "reverse", "dedupe"])]
    assert names == ["add_then_reverse", "reverse_then_dedupe", "add_then_reverse_then_dedupe"]
    assert [c.name for c in compositions_within(["add", "sort", "reverse"])] == [
        "add_then_reverse", "add_then_sort", "sort_then_reverse", "add_then_sort_then_reverse"]
