from dataclasses import dataclass

import pytest

from scaling.errors import UserError
from scaling.typed_toml import typed_table


@dataclass(frozen=True)
class Inner:
    rate: float = 1.0  # a number: TOML integers are read as floats


@dataclass(frozen=True)
class Outer:
    name: str  # required
    sizes: tuple[int, ...] = (1,)  # one value or a list of distinct ones
    on: bool = False
    inner: Inner = Inner()  # a nested table

    def __post_init__(self):
        if self.name == "bad":
            raise ValueError("name must not be bad")


def test_a_table_becomes_its_dataclass_with_typed_values():
    assert typed_table(Outer, {"name": "a", "sizes": 3, "inner": {"rate": 2}}, "[x]", "f.toml") == \
        Outer("a", (3,), False, Inner(2.0))
    assert isinstance(typed_table(Inner, {"rate": 2}, "[x.inner]", "f.toml").rate, float)


@pytest.mark.parametrize("table, message", [
    ([], "f.toml: [x] must be a table"),
    ({"name": "a", "colour": 1}, "f.toml: unknown key [x] 'colour' (known: name, sizes, on, inner)"),
    ({}, "f.toml: [x] name is required"),
    ({"name": 1}, "f.toml: [x] name must be a string, got 1"),
    ({"name": "a", "sizes": []}, "f.toml: [x] sizes must list at least one value"),
    ({"name": "a", "sizes": [2, 2]}, "f.toml: [x] sizes lists a value twice: [2, 2]"),
    ({"name": "a", "sizes": [True]}, "f.toml: [x] sizes must be an integer, got True"),
    ({"name": "a", "on": 1}, "f.toml: [x] on must be true or false, got 1"),
    ({"name": "a", "inner": {"rate": "fast"}}, "f.toml: [x.inner] rate must be a number, got 'fast'"),
    ({"name": "bad"}, "f.toml: name must not be bad"),
])
def test_every_problem_is_one_user_error_naming_file_table_and_key(table, message):
    with pytest.raises(UserError) as error:
        typed_table(Outer, table, "[x]", "f.toml")
    assert str(error.value) == message
