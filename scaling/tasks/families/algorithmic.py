"""Algorithmic families: list reversal."""

from __future__ import annotations

from typing import Sequence

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
)

FAMILIES = (REVERSE,)
