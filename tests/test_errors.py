import pytest

from scaling.errors import first_line


@pytest.mark.parametrize("error, plain, typed", [
    (ValueError("bad value\nmore detail"), "bad value", "ValueError: bad value"),
    (KeyError("name"), "'name'", "KeyError: 'name'"),
    (OSError("\n  indented first line\nsecond"), "indented first line", "OSError: indented first line"),
    (RuntimeError(""), "RuntimeError", "RuntimeError"),
    (TypeError("  \n "), "TypeError", "TypeError"),
])
def test_first_line_is_the_reason_in_one_line(error, plain, typed):
    assert first_line(error) == plain
    assert first_line(error, with_type=True) == typed
