"""The safe arithmetic parser: exact values of what CoT writes, refusals of anything else, and how a written
result may round."""

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling.tasks.arithmetic import MAX_CHARACTERS, MAX_DEPTH, evaluate, written_equals


@pytest.mark.parametrize("expression, value", [
    ("16-3-4", 9),
    ("80000*1.5", 120000),
    ("1,200 / 12", 100),
    (".5 * 4", 2),
    ("10/3*3", 10),  # exact: no float rounding
    ("2 + 3 * 4", 14),
    ("(2 + 3) * 4", 20),
    ("2+2(18)", 38),  # a product written without its sign
    ("20% * 50", 10),
    ("50% * 50%", Fraction(1, 4)),
    ("-3 - -2", -1),
    ("6 − 2", 4),  # unicode minus
    ("9 x 4", 36),
    ("9 × 4", 36),
    ("12 ÷ 4", 3),
    ("10÷2/5", 25),  # after ÷ a tight fraction is one number
    ("10/2/5", 1),  # left to right otherwise
    ("12 x 0.6666666666666666", Fraction("7.9999999999999992")),
])
def test_values_are_exact(expression, value):
    assert evaluate(expression) == Fraction(value)


@pytest.mark.parametrize("expression", [
    '__import__("os").system("true")', "a + 1", "2 ** 3", "2 ^ 3", "1,2345 + 1", "3 +", "(1 + 2", "1 + 2)", "",
    "lambda: 1", "1e5", "9" * 41,
])
def test_what_is_not_arithmetic_is_refused(expression):
    with pytest.raises(ValueError):
        evaluate(expression)


def test_sizes_are_bounded_and_division_by_zero_is_arithmetic():
    with pytest.raises(ValueError, match="longer than"):
        evaluate("1+" * MAX_CHARACTERS + "1")
    with pytest.raises(ValueError, match="nested"):
        evaluate("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ArithmeticError):
        evaluate("5 / (3 - 3)")


@pytest.mark.parametrize("value, written, right", [
    (Fraction(10, 3), "3.33", True),  # rounded to its two places
    (Fraction(10, 3), "3.3", True),
    (Fraction(10, 3), "3.5", False),
    (Fraction(10, 3), "3", False),  # an integer is exact
    (Fraction(768), "768", True),
    (Fraction(768), "770", False),
    (Fraction(768), "768.0", True),
    (Fraction(130000), "130,000", True),
    (Fraction(1, 2), "50.0%", True),  # the fraction as a percent
    (Fraction(20), "20%", True),  # a value already times 100, labelled
    (Fraction(1, 4), "26%", False),
    (Fraction(28, 3), "9.333333333333334", True),  # a float's printed digits
    (Fraction(-5), "-5", True),
    (Fraction(5), "-5", False),
])
def test_a_written_result_may_round_to_its_places(value, written, right):
    assert written_equals(value, written) is right


def test_a_written_result_that_is_no_number_is_refused():
    with pytest.raises(ValueError):
        written_equals(Fraction(1), "one")


def _expressions():
    """(text, value) of random expressions, formatted as a writer might."""
    numbers = st.one_of(st.integers(0, 10 ** 6).map(lambda n: (f"{n:,}" if n % 2 else str(n), Fraction(n))),
                        st.decimals(0, 1000, places=2, allow_nan=False).map(lambda d: (str(d), Fraction(str(d)))))

    def combine(children):
        def join(pair, op):
            (a, x), (b, y) = pair
            if op == "/" and y == 0:
                return f"({a}) + ({b})", x + y
            values = {"+": x + y, "-": x - y, "*": x * y, "×": x * y, "/": x / y if y else None}
            return f"({a}) {op} ({b})", values[op]
        return st.tuples(st.tuples(children, children), st.sampled_from("+-*×/")).map(lambda t: join(*t))

    return st.recursive(numbers, combine, max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(_expressions())
def test_formatted_expressions_parse_to_their_value(pair):
    text, value = pair
    assert evaluate(text) == value
