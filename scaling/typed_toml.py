"""A TOML table as a frozen dataclass: every key known, every value of its field's type, checked before any
work, with each problem a UserError that names the file, the table and the key.

A field typed str, int, float or bool takes that TOML value (an integer is a float too); tuple[T, ...] takes
a list of distinct T (or one T, a list of one); a dataclass field takes a nested table. Checks of meaning
(ranges, names that must exist) stay in each dataclass's `__post_init__`, whose ValueError is reported the same way.
"""

from __future__ import annotations

import dataclasses
import typing

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
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = typed_table(hint, table[name], f"[{where.strip('[]')}.{name}]", source)
        else:
            values[name] = _typed_value(table[name], hint, f"{where} {name}", source)
    try:
        return cls(**values)
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None


def _typed_value(raw, hint, what: str, source: str):
    """raw checked against a field type: str, int, float, or tuple[T, ...] (a TOML list, or one value)."""
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise UserError(f"{source}: {what} must list at least one value")
        values = tuple(_typed_value(one, item, what, source) for one in items)
        if len(set(values)) != len(values):
            raise UserError(f"{source}: {what} lists a value twice: {list(values)}")
        return values
    ok = {str: isinstance(raw, str), int: isinstance(raw, int) and not isinstance(raw, bool),
          float: isinstance(raw, (int, float)) and not isinstance(raw, bool), bool: isinstance(raw, bool)}[hint]
    if not ok:
        kind = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}[hint]
        raise UserError(f"{source}: {what} must be {kind}, got {raw!r}")
    return float(raw) if hint is float else raw
