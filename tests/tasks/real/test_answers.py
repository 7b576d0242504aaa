"""The benchmarks' answer rules on hand-made completions."""

import pickle

import pytest

from scaling.tasks.mixture import Example
from scaling.tasks.real import answers
from scaling.tasks.real.answers import (RuleGrader, UNVERIFIABLE, gsm8k_answer, gsm8k_correct, gsm8k_lenient,
                                        last_number, math_answer, math_correct, math_equal, math_verdict)


def test_gsm8k_reads_the_number_after_the_marker_without_commas_dollars_or_a_period():
    assert gsm8k_answer("so 3*360=1080\n#### $1,080.") == "1080"
    assert gsm8k_answer("#### 2.50 dollars") == "2.5" and gsm8k_answer("#### -3") == "-3"
    assert gsm8k_answer("the answer is 1080") is None and gsm8k_answer("#### none") is None
    assert gsm8k_correct("1080", "x\n#### $1,080.00") and not gsm8k_correct("1080", "#### 1081")


def test_gsm8k_lenient_takes_the_last_number_where_no_marker_is_written():
    assert gsm8k_lenient("She pays 5 - 2 = 3 dollars, so $1,200.50 in all.") == "1200.5"
    assert gsm8k_lenient("68-30") == "30" and gsm8k_lenient("x = -3") == "-3"
    assert gsm8k_lenient("#### 7\nthen 9") == "7"  # the marker wins where it is written
    assert gsm8k_correct("18", "Janet makes 18 dollars.", lenient=True)
    assert not gsm8k_correct("18", "Janet makes 18 dollars.")  # strict: no marker, no answer
    assert last_number("no digits") is None


def test_math_reads_after_the_marker_else_the_last_box():
    assert math_answer("so\n#### \\frac12") == "\\frac12"
    assert math_answer("first \\boxed{1}, finally \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert math_answer("no answer here") is None


@pytest.mark.parametrize("completion", ["#### 0.5", "#### 1/2", "#### \\frac{1}{2}", "the answer is $\\boxed{\\dfrac12}$"])
def test_math_equivalent_forms_are_equal(completion):
    assert math_equal("\\frac12", completion)


def test_math_wrong_and_garbage_answers_are_wrong_and_counted_never_raised():
    assert not math_equal("\\frac12", "#### 3")
    UNVERIFIABLE.clear()
    assert not math_equal("3", "#### }}{{")
    assert not math_correct("3", "\\boxed{")  # an unclosed box is no answer
    assert sum(UNVERIFIABLE.values()) == 1 and math_verdict("3", "}}{{") == (False, "unparseable")
    assert math_verdict("3", None) == (False, "no answer")


def test_math_verify_raising_is_graded_wrong_not_raised(monkeypatch):
    def broken(answer):
        raise RecursionError("deep")

    monkeypatch.setattr(answers, "_parsed", broken)
    assert math_verdict("3", "3") == (False, "RecursionError")


def test_rule_graders_are_picklable_and_grade_the_examples_answer():
    example = Example("gsm8k/0", "gsm8k", "gsm8k", 0, "q", (), "18", "#### 18")
    strict, lenient = RuleGrader("gsm8k"), RuleGrader("gsm8k", lenient=True)
    assert pickle.loads(pickle.dumps(strict)) == strict
    assert strict(example, "#### 18").answer_correct and not strict(example, "it is 18").answer_correct
    grade = lenient(example, "it is 18")
    assert grade.answer_correct and grade.chain_correct is None and grade.process_acc != grade.process_acc
    with pytest.raises(ValueError, match="unknown answer rule"):
        RuleGrader("mmlu")
