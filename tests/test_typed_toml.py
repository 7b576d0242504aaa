from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass(frozen=True)
class Spread:
    file: Path  # a path, as written
    steps: tuple[int, ...] = field(default=(1,), metadata={"takes": "a list of budgets"})  # its errors say so
    hue: tuple[str, ...] = field(default=(), metadata={"empty": True})  # an empty list allowed
    where: str | None = None  # optional
    names: dict[str, str] = field(default_factory=dict)  # a table of strings
    rows: tuple[dict, ...] = ()  # tables of any keys


def test_paths_optionals_tables_and_lists_that_may_be_empty():
    got = typed_table(Spread, {"file": "a/b.nc", "hue": [], "where": "x > 1", "names": {"A": "a"},
                               "rows": [{"k": 1}, {"k": 2}]}, "[s]", "f.toml")
    assert got == Spread(Path("a/b.nc"), (1,), (), "x > 1", {"A": "a"}, ({"k": 1}, {"k": 2}))
    assert typed_table(Spread, {"file": "a"}, "[s]", "f.toml").where is None


@pytest.mark.parametrize("table, message", [
    ({"file": 1}, "f.toml: [s] file must be a path, got 1"),
    ({"file": "a", "where": 2}, "f.toml: [s] where must be a string, got 2"),
    ({"file": "a", "steps": "last"}, "f.toml: [s] steps must be a list of budgets, got 'last'"),
    ({"file": "a", "names": ["a"]}, "f.toml: [s] names must be a table, got ['a']"),
    ({"file": "a", "names": {"A": 1}}, "f.toml: [s] names.A must be a string, got 1"),
    ({"file": "a", "rows": [{"k": 1}, {"k": 1}]}, "f.toml: [s] rows lists a value twice: [{'k': 1}, {'k': 1}]"),
])
def test_the_new_field_types_report_problems_the_same_way(table, message):
    with pytest.raises(UserError) as error:
        typed_table(Spread, table, "[s]", "f.toml")
    assert str(error.value) == message
