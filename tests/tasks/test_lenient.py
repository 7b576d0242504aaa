"""Lenient answer grading of a base before SFT: plain strings, and the grader beside the strict one."""

import dataclasses
import math
import pickle

import pytest

from scaling.tasks.grader import verify_example
from scaling.tasks.lenient import LenientGrader, last_number, lenient_answer_correct
from scaling.tasks.mixture import evaluation_split


@pytest.mark.parametrize("completion", ["921 + 786 = 1707.", "The answer is 1,707", "#### 1707", "1707",
                                        "Let me add.\n921 + 786\n= 1707\n", "so 1707!\n\n", "#### 1,707\nmore 5"])
def test_the_answer_counts_where_a_plain_writer_puts_it(completion):
    assert lenient_answer_correct("1707", completion)


@pytest.mark.parametrize("completion", ["921 + 786 = 1708.", "The answer is 1707 or 1708", "", "no idea",
                                        "#### 1708\n1707", "17,07", "1707.5", "-1707"])
def test_a_wrong_or_missing_answer_is_wrong(completion):
    assert not lenient_answer_correct("1707", completion)


def test_a_minus_sign_is_a_sign_unless_it_follows_a_number():
    assert [last_number(t) for t in ("68-30", "68 - 30", "x = -3", "it is -3", "(5)-3", "none")] == [30, 30, -3, -3, 3, None]
    assert lenient_answer_correct("-3", "The result is -3.") and not lenient_answer_correct("-3", "5-3")


def test_a_non_numeric_answer_is_the_last_line_less_its_punctuation():
    assert lenient_answer_correct("9 4 3", "Reversed:\n9 4 3.\n")
    assert lenient_answer_correct("yes", "#### yes")
    assert not lenient_answer_correct("9 4 3", "The list reversed is 9 4 3")  # a number's leniency only
    assert not lenient_answer_correct("9 4 3", "9 4 3\n3 4 9")


def test_the_lenient_grader_credits_what_the_strict_one_rejects_and_everything_it_accepts():
    example = evaluation_split("id", ("add",), (), 4, 0, "full")[0]
    reference = example.answer
    free = f"{example.prompt} The sum is {int(reference):,}."
    assert not verify_example(example, free).answer_correct
    graded = LenientGrader()(example, free)
    assert graded.answer_correct and math.isnan(graded.process_acc) and graded.chain_correct is None
    assert verify_example(example, example.completion).answer_correct and LenientGrader()(example, example.completion).answer_correct
    assert pickle.loads(pickle.dumps(LenientGrader(solved=False))) == LenientGrader(solved=False)  # plans travel to workers


def test_unsolved_the_reference_is_the_examples_own_answer():
    example = dataclasses.replace(evaluation_split("id", ("add",), (), 1, 0, "full")[0], answer="100000")
    assert LenientGrader(solved=False)(example, "it is 100000").answer_correct  # a dataset row's answer
    assert not LenientGrader()(example, "it is 100000").answer_correct  # the family's own solution
