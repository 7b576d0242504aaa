"""Algorithmic families: list reversal, sorting, counting, deduplication, pointer following."""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np

from scaling.tasks.families.base import DIGIT_LIST, Family, Fields, draw_digit_list


# reverse: step i is the reversed prefix built so far, one more item each time.
def _reverse_next(fields: Fields, previous: Sequence[str]) -> str:
    backwards = fields["items"].split()[::-1]
    return f"{previous[-1]} {backwards[len(previous)]}" if previous else backwards[0]


REVERSE = Family(
    name="reverse",
    kind="algorithmic",
    description="reverse a list of digits, one item per step",
    id_range=(2, 5),
    ood_range=(6, 8),
    phrasings=("reverse {items}", "reverse the list {items}", "write {items} backwards"),
    field_patterns=(("items", DIGIT_LIST),),
    draw_fields=lambda rng, length: {"items": draw_digit_list(rng, length)},
    n_steps=lambda fields: len(fields["items"].split()),
    next_step=_reverse_next,
    final_answer=lambda fields, steps: steps[-1],
    skills=("reverse",),
)


# sort: selection sort. Step i is the sorted prefix, extended by the smallest item not yet picked;
# what is left is the list minus the items the previous step shows, so a wrong pick carries on.
def selection_step(choose: Callable[[list[str]], str]) -> Callable[[Fields, Sequence[str]], str]:
    """Selection sort's next step, picking with `choose` (min: ascending, max: descending)."""

    def next_step(fields: Fields, previous: Sequence[str]) -> str:
        picked = previous[-1].split() if previous else []
        remaining = fields["items"].split()
        for item in picked:
            remaining.remove(item)  # ValueError when a step shows an item the list does not hold
        return " ".join([*picked, choose(remaining)])

    return next_step


_sort_next = selection_step(min)


SORT = Family(
    name="sort",
    kind="algorithmic",
    description="sort a list of digits ascending by repeated selection of the smallest remaining item",
    id_range=(2, 5),
    ood_range=(6, 8),
    phrasings=("sort {items}", "sort the list {items}", "put {items} in ascending order"),
    field_patterns=(("items", DIGIT_LIST),),
    draw_fields=lambda rng, length: {"items": draw_digit_list(rng, length)},
    n_steps=lambda fields: len(fields["items"].split()),
    next_step=_sort_next,
    final_answer=lambda fields, steps: steps[-1],
    skills=("sort",),
)


# count: one step per item, `3:7 yes 2` (position, item, match, running count), the count read from the
# previous step. The position keeps neighbours distinct when a non-matching item repeats.
def _draw_count(rng: np.random.Generator, length: int) -> Fields:
    target, *uniforms = rng.random(2 * length + 1).tolist()
    target_digit = int(target * 10)
    # A quarter of the items are forced to the target, or most counts of short lists would be 0.
    items = [target_digit if force < 0.25 else int(value * 10) for force, value in zip(uniforms[::2], uniforms[1::2])]
    return {"target": str(target_digit), "items": " ".join(map(str, items))}


def _count_next(fields: Fields, previous: Sequence[str]) -> str:
    position = len(previous)
    count = int(previous[-1].rsplit(" ", 1)[1]) if previous else 0
    item = fields["items"].split()[position]
    matches = item == fields["target"]
    return f"{position + 1}:{item} {'yes' if matches else 'no'} {count + matches}"


COUNT = Family(
    name="count",
    kind="algorithmic",
    description="count the occurrences of a digit in a list, with a running count per item",
    id_range=(2, 5),
    ood_range=(6, 8),
    phrasings=("count the {target}s in {items}", "how many {target}s are in {items}?", "how often does {target} occur in {items}?"),
    field_patterns=(("target", r"\d"), ("items", DIGIT_LIST)),
    draw_fields=_draw_count,
    n_steps=lambda fields: len(fields["items"].split()),
    next_step=_count_next,
    final_answer=lambda fields, steps: str(int(steps[-1].rsplit(" ", 1)[1])),
    skills=("count",),
)


# dedupe: one step per item, `3:1 dup 1 3` or `4:2 new 1 3 2` (position, item, seen before or not, the
# list kept so far), the kept list read from the previous step. The position keeps neighbours distinct
# when a repeated item is dropped twice in a row.
def _draw_dedupe(rng: np.random.Generator, length: int) -> Fields:
    uniforms = rng.random(2 * length).tolist()
    items: list[str] = []
    for repeat, value in zip(uniforms[::2], uniforms[1::2]):
        # A third of the items repeat an earlier one, or short lists would rarely hold a duplicate.
        items.append(items[int(value * len(items))] if items and repeat < 1 / 3 else str(int(value * 10)))
    return {"items": " ".join(items)}


def _dedupe_next(fields: Fields, previous: Sequence[str]) -> str:
    position = len(previous)
    kept = previous[-1].split()[2:] if previous else []
    item = fields["items"].split()[position]
    if item in kept:
        return f"{position + 1}:{item} dup {' '.join(kept)}"
    return f"{position + 1}:{item} new {' '.join([*kept, item])}"


DEDUPE = Family(
    name="dedupe",
    kind="algorithmic",
    description="remove repeated digits from a list, keeping first occurrences, one item per step",
    id_range=(2, 5),
    ood_range=(6, 8),
    phrasings=("dedupe {items}", "remove repeats from {items}", "keep first copies in {items}"),
    field_patterns=(("items", DIGIT_LIST),),
    draw_fields=_draw_dedupe,
    n_steps=lambda fields: len(fields["items"].split()),
    next_step=_dedupe_next,
    final_answer=lambda fields, steps: " ".join(steps[-1].split()[2:]),
    skills=("dedupe",),
)


# lookup: follow a chain of variable bindings to a digit, among distractor bindings, one hop per
# step: `1:b=a`, `2:a=c`, `3:c=7`. The variable to look up next is read from the previous step's right
# side. The hop number gives every step a digit (a corruption changes a digit); it does not feed the
# answer, so a corrupted hop number stays a local error.
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_DISTRACTORS = 2  # bindings off the chain, bound to a digit or to an earlier variable


def _draw_lookup(rng: np.random.Generator, hops: int) -> Fields:
    n_bindings = hops + _DISTRACTORS
    names = [_LETTERS[i] for i in rng.permutation(len(_LETTERS))[:n_bindings].tolist()]
    # One call for every random choice below: the value, two per distractor, and a sort key per binding.
    value, *uniforms = rng.random(1 + 2 * _DISTRACTORS + n_bindings).tolist()
    distractor_uniforms, order_keys = uniforms[: 2 * _DISTRACTORS], uniforms[2 * _DISTRACTORS :]
    bindings = [f"{name}={target}" for name, target in zip(names, names[1:hops])]
    bindings.append(f"{names[hops - 1]}={int(value * 10)}")
    for j in range(_DISTRACTORS):
        to_digit, pick = distractor_uniforms[2 * j], distractor_uniforms[2 * j + 1]
        # Only earlier variables: the chain never points at a distractor, so there are no cycles.
        target = str(int(pick * 10)) if to_digit < 0.5 else names[int(pick * (hops + j))]
        bindings.append(f"{names[hops + j]}={target}")
    shuffled = [binding for _, binding in sorted(zip(order_keys, bindings))]
    return {"bindings": ", ".join(shuffled), "query": names[0]}


@functools.lru_cache(maxsize=256)  # every step of a CoT reads the same bindings: parse them once
def _bound(bindings: str) -> dict[str, str]:
    """The variable each binding names, mapped to its right side (shared: do not mutate)."""
    return dict(binding.split("=") for binding in bindings.split(", "))


def _lookup_hops(fields: Fields) -> int:
    bound, variable = _bound(fields["bindings"]), fields["query"]
    for hops in range(1, len(bound) + 1):  # bounded: a hand-written cyclic prompt must not hang
        variable = bound[variable]
        if variable.isdigit():
            return hops
    raise ValueError(f"bindings {fields['bindings']!r} never reach a value from {fields['query']!r}")


def _lookup_next(fields: Fields, previous: Sequence[str]) -> str:
    variable = previous[-1].split("=")[1] if previous else fields["query"]
    return f"{len(previous) + 1}:{variable}={_bound(fields['bindings'])[variable]}"


LOOKUP = Family(
    name="lookup",
    kind="algorithmic",
    description="follow a chain of variable bindings to its value among distractors, one hop per step",
    id_range=(1, 3),
    ood_range=(4, 6),
    phrasings=("{bindings}; what is {query}?", "given {bindings}, find {query}", "if {bindings}, then {query}=?"),
    field_patterns=(("bindings", r"[a-z]=[a-z0-9](?:, [a-z]=[a-z0-9])*"), ("query", "[a-z]")),
    draw_fields=_draw_lookup,
    n_steps=_lookup_hops,
    next_step=_lookup_next,
    final_answer=lambda fields, steps: steps[-1].split("=")[1],
    canonical=lambda fields: ", ".join(sorted(fields["bindings"].split(", "))) + f"|{fields['query']}",
    skills=("lookup",),
)

FAMILIES = (REVERSE, SORT, COUNT, DEDUPE, LOOKUP)
