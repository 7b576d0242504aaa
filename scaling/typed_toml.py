"""A TOML table as a frozen dataclass: every key known, every value of its field's type, checked before any
work, with each problem a UserError that names the file, the table and the key.

A field typed str, int, float or bool takes that TOML value (an integer is a float too), Path takes a string;
T | None is an optional T (its default None); tuple[T, ...] takes a list of distinct T (or one T, a list of one),
empty only where its metadata says "empty": True; dict[str, T] takes a table of T and a bare dict any table; a
dataclass field takes a nested table. A field's metadata "takes" says in words what it takes, for its errors.
Checks of meaning (ranges, names that must exist) stay in each dataclass's `__post_init__`, whose ValueError is
reported the same way.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

from scaling.errors import UserError


def typed_table(cls, table, where: str, source: str):
    """An instance of the dataclass cls from a TOML table, every key known and every value of its type."""
    if not isinstance(table, dict):
        raise UserError(f"{source}: {where} must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise UserError(f"{source}: unknown key {where} {unknown[0]!r} (known: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        if name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise UserError(f"{source}: {where} {name} is required")
            continue
        hint = _optional(hints[name])
        if dataclasses.is_dataclass(hint):
            values[name] = typed_table(hint, table[name], f"[{where.strip('[]')}.{name}]", source)
            continue
        try:
            values[name] = _typed_value(table[name], hint, f"{where} {name}", source, f.metadata.get("empty", False))
        except UserError:
            if "takes" not in f.metadata:
                raise
            raise UserError(f"{source}: {where} {name} must be {f.metadata['takes']}, got {table[name]!r}") from None
    try:
        return cls(**values)
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None


def _optional(hint):
    """T for a field typed T | None (its default None stands for the key left out), else the hint itself."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        arms = [arm for arm in typing.get_args(hint) if arm is not type(None)]
        assert len(arms) == 1, f"only T | None is supported, not {hint}"
        return arms[0]
    return hint


def _typed_value(raw, hint, what: str, source: str, may_be_empty: bool = False):
    """raw checked against a field type: str, int, float, bool, Path, tuple[T, ...] (a TOML list, or one value),
    dict[str, T] or dict (a TOML table)."""
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        items = raw if isinstance(raw, list) else [raw]
        if not items and not may_be_empty:
            raise UserError(f"{source}: {what} must list at least one value")
        values = tuple(_typed_value(one, item, what, source) for one in items)
        if any(value in values[:i] for i, value in enumerate(values)):  # tables are not hashable
            raise UserError(f"{source}: {what} lists a value twice: {list(values)}")
        return values
    if hint is dict or typing.get_origin(hint) is dict:
        if not isinstance(raw, dict):
            raise UserError(f"{source}: {what} must be a table, got {raw!r}")
        item = typing.get_args(hint)[1] if typing.get_args(hint) else None
        return {key: value if item is None else _typed_value(value, item, f"{what}.{key}", source)
                for key, value in raw.items()}
    ok = {str: isinstance(raw, str), int: isinstance(raw, int) and not isinstance(raw, bool),
          float: isinstance(raw, (int, float)) and not isinstance(raw, bool), bool: isinstance(raw, bool),
          Path: isinstance(raw, str)}[hint]
    if not ok:
        kind = {float: "a number", int: "an integer", bool: "true or false", str: "a string", Path: "a path"}[hint]
        raise UserError(f"{source}: {what} must be {kind}, got {raw!r}")
    return float(raw) if hint is float else Path(raw) if hint is Path else raw
