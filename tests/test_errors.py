import re
from pathlib import Path

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


def test_no_module_cuts_an_error_message_to_its_first_line_itself():
    package = Path(__file__).resolve().parents[1] / "scaling"
    cutting = re.compile(r"""(str\(\w+\)(\.strip\(\))?|\{\w+\}["'])\.splitlines\(\)""")
    found = [f"{path.relative_to(package)}:{number}" for path in package.rglob("*.py") if path.name != "errors.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if cutting.search(line)]
    assert not found, f"use scaling.errors.first_line: {found}"
