"""Compositions of task families, for the `ood_compose` split: one hop (two families) and two hops (three).

`first then second` feeds the first family's answer into one field of the second: the prompt is
the first prompt, `; then `, and the second prompt with that field written as `it`; the CoT is the
first CoT followed by the second, computed from the first's answer *as written in the steps*, so an
error early on carries through. A composition is itself a Family, so the sampler, the grader and
the corruptions work on it unchanged, and a composition composed with a third family along a link
from its last part is a two-hop composition (`add_then_reverse_then_dedupe`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from scaling.tasks.families import Family
from scaling.tasks.families.base import Fields

JOIN = "; then "


@dataclass(frozen=True)
class Link:
    """How the first family's answer becomes the second family's `field`."""

    first: str
    second: str
    field: str
    convert: Callable[[str], str]


def _split(fields: Fields) -> tuple[Fields, Fields]:
    first = {k[2:]: v for k, v in fields.items() if k.startswith("x_")}
    second = {k[2:]: v for k, v in fields.items() if k.startswith("y_")}
    return first, second


def compose(first: Family, second: Family, field: str, convert: Callable[[str], str]) -> Family:
    """The family `first then second`, second's `field` being convert(first's answer)."""
    assert any(name == field for name, _ in second.field_patterns), f"{second.name} has no field {field}"

    def second_fields(fields: Fields, first_steps: Sequence[str]) -> Fields:
        first_fields, rest = _split(fields)
        return rest | {field: convert(first.final_answer(first_fields, first_steps))}

    def n_first(fields: Fields) -> int:
        return first.n_steps(_split(fields)[0])

    def draw_fields(rng: np.random.Generator, difficulty: int) -> Fields:
        first_fields = first.draw_fields(rng, difficulty)
        second_drawn = second.draw_fields(rng, int(rng.integers(second.id_range[0], second.id_range[1] + 1)))
        return {f"x_{k}": v for k, v in first_fields.items()} | {f"y_{k}": v for k, v in second_drawn.items() if k != field}

    def n_steps(fields: Fields) -> int:
        first_fields = _split(fields)[0]
        return n_first(fields) + second.n_steps(second_fields(fields, first.gold_steps(first_fields)))

    def next_step(fields: Fields, previous: Sequence[str]) -> str:
        k = n_first(fields)
        if len(previous) < k:
            return first.next_step(_split(fields)[0], previous)
        return second.next_step(second_fields(fields, previous[:k]), previous[k:])

    def final_answer(fields: Fields, steps: Sequence[str]) -> str:
        k = n_first(fields)
        return second.final_answer(second_fields(fields, steps[:k]), steps[k:])

    def prefixed(phrasing: str, prefix: str) -> str:
        out = phrasing
        for name, _ in (first if prefix == "x_" else second).field_patterns:
            out = out.replace("{" + name + "}", "it" if (prefix == "y_" and name == field) else "{" + prefix + name + "}")
        return out

    phrasings = tuple(
        prefixed(a, "x_") + JOIN + prefixed(b, "y_") for a in first.phrasings for b in second.phrasings
    )
    patterns = tuple((f"x_{n}", r) for n, r in first.field_patterns) + tuple(
        (f"y_{n}", r) for n, r in second.field_patterns if n != field
    )
    return Family(
        name=f"{first.name}_then_{second.name}",
        kind="composition",
        description=f"{first.name}, then {second.name} of the result",
        id_range=first.id_range,
        ood_range=first.ood_range,
        phrasings=phrasings,
        field_patterns=patterns,
        draw_fields=draw_fields,
        n_steps=n_steps,
        next_step=next_step,
        final_answer=final_answer,
    )


def digits_spaced(number: str) -> str:
    """A number as a list of its digits: `573` -> `5 7 3`."""
    return " ".join(number.strip())


def same(value: str) -> str:
    return value


def _links() -> tuple[Link, ...]:
    return (
        Link("add", "reverse", "items", digits_spaced),
        Link("sub", "reverse", "items", digits_spaced),
        Link("mul", "reverse", "items", digits_spaced),
        Link("add", "mod", "number", same),
        Link("mul", "mod", "number", same),
        Link("add", "sort", "items", digits_spaced),
        Link("sort", "reverse", "items", same),
        Link("reverse", "dedupe", "items", same),
        Link("dedupe", "sort", "items", same),
    )


def _parts(name: str) -> list[str]:
    return name.split("_then_")


def _build() -> dict[str, Family]:
    """Every one-hop composition the links allow, then every two-hop one (a one-hop composition followed by a
    link from its last part): one-hop names and their order never depend on the two-hop ones."""
    from scaling.tasks.families import FAMILIES

    one_hop = {}
    for link in _links():
        if link.first in FAMILIES and link.second in FAMILIES:
            family = compose(FAMILIES[link.first], FAMILIES[link.second], link.field, link.convert)
            one_hop[family.name] = family
    two_hop = {}
    for first in one_hop.values():
        for link in _links():
            if link.first == _parts(first.name)[-1] and link.second in FAMILIES:
                family = compose(first, FAMILIES[link.second], link.field, link.convert)
                two_hop[family.name] = family
    return one_hop | two_hop


def hops(task: str) -> int:
    """How many times a task feeds one family's answer into another: 1 or 2 for a composition, 0 otherwise."""
    return len(_parts(task)) - 1


COMPOSITIONS: dict[str, Family] = _build()


def compositions_within(families: Sequence[str]) -> list[Family]:
    """The compositions, one-hop then two-hop, all of whose parts are among `families` (trained ones, for
    ood_compose)."""
    allowed = set(families)
    return [c for c in COMPOSITIONS.values() if set(_parts(c.name)) <= allowed]
