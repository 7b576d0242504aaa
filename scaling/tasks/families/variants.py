"""Rule variants: a base family's task with one rule changed, the change stated in every prompt.

As in Chu et al. (2025), *SFT Memorizes, RL Generalizes*: the same task under a changed rule tells a
model that follows the prompt from one that replays the trained procedure. Each variant draws its
problems as its base family does, writes its steps in the base family's step format, and has its own
procedure and so its own verifier; the base rule's answer is wrong for it. Variants are never trained
by default: they are the `ood_rule` split, and a control cell trains on them.

    add_base8       addition in base 8: digits 0-7, each column total written in base 8 (`5+7+0=14`)
    sort_desc       sort descending: selection of the largest remaining item
    reverse_pairs   reverse the order of the list's pairs, each pair keeping its own order
    lookup_arrow    bindings written `7->c`: the variable on the right takes the value on the left
    count_not       count the items that are not the target (`yes`: the item counts)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from scaling.tasks.families.algorithmic import COUNT, LOOKUP, REVERSE, SORT, selection_step
from scaling.tasks.families.arithmetic import ADD
from scaling.tasks.families.base import DIGIT_LIST, Family, Fields

BASE = 8
_OCTAL_NUMBER = r"[0-7]+"


# add_base8: add's column steps `x+y+carry=total`, every number in base 8, so the carry is the total's
# leading digit as in add, but a column carries from 8 on rather than from 10. Every problem has a column
# whose total reaches 8, so the base-10 rule never gives the answer (it would for a third of them).
def _octal(n: int) -> str:
    return format(n, "o")


def _draw_octal_pair(rng: np.random.Generator, digits: int) -> Fields:
    low = 0 if digits == 1 else BASE ** (digits - 1)
    while True:
        a, b = sorted((int(v) for v in rng.integers(low, BASE**digits, size=2)), reverse=True)  # a >= b, as in add
        fields = {"a": _octal(a), "b": _octal(b)}
        if _any_column_reaches_the_base(fields):
            return fields


def _any_column_reaches_the_base(fields: Fields) -> bool:
    return any(int(step.split("=")[1], BASE) >= BASE for step in ADD_BASE8.gold_steps(fields))


def _octal_digit(number: str, column: int) -> int:
    """The column-th digit of a base-8 numeral, least significant first (0 past its length)."""
    return int(number[-1 - column]) if column < len(number) else 0


def _add_base8_next(fields: Fields, previous: Sequence[str]) -> str:
    column = len(previous)
    carry = int(previous[-1].split("=")[1], BASE) // BASE if previous else 0
    x, y = _octal_digit(fields["a"], column), _octal_digit(fields["b"], column)
    return f"{x}+{y}+{carry}={_octal(x + y + carry)}"


def _add_base8_answer(fields: Fields, steps: Sequence[str]) -> str:
    totals = [int(step.split("=")[1], BASE) for step in steps]
    digits = "".join(str(total % BASE) for total in reversed(totals))
    return str(int(str(totals[-1] // BASE) + digits))  # base-8 digits throughout: int() only drops leading zeros


ADD_BASE8 = Family(
    name="add_base8",
    kind="arithmetic",
    description="addition in base 8, column by column, each column total written in base 8",
    id_range=ADD.id_range,
    ood_range=ADD.ood_range,
    phrasings=("add {a} and {b} in base 8", "in base 8, {a}+{b}=?", "what is {a} plus {b} in base 8?"),
    field_patterns=(("a", _OCTAL_NUMBER), ("b", _OCTAL_NUMBER)),
    draw_fields=_draw_octal_pair,
    n_steps=lambda fields: max(len(fields["a"]), len(fields["b"])),
    next_step=_add_base8_next,
    final_answer=_add_base8_answer,
    skills=("add",),
    variant_of="add",
)


# sort_desc: sort's selection steps, the sorted prefix extended by the largest item not yet picked.
_sort_desc_next = selection_step(max)


SORT_DESC = Family(
    name="sort_desc",
    kind="algorithmic",
    description="sort a list of digits descending by repeated selection of the largest remaining item",
    id_range=SORT.id_range,
    ood_range=SORT.ood_range,
    phrasings=("sort {items} descending", "sort the list {items} from largest to smallest",
               "put {items} in descending order"),
    field_patterns=(("items", DIGIT_LIST),),
    draw_fields=SORT.draw_fields,
    n_steps=SORT.n_steps,
    next_step=_sort_desc_next,
    final_answer=lambda fields, steps: steps[-1],
    skills=("sort",),
    variant_of="sort",
)


# reverse_pairs: reverse's steps, the answer built one item per step, but the list is cut into pairs from
# the left (`1 2 | 3 4 | 5`) and the pairs reversed, each keeping its order: `5 3 4 1 2`. Unlike other
# rearrangements of the list, this one differs from plain reversal at every length (`1 2` stays `1 2`).
def _reversed_pairs(items: Sequence[str]) -> list[str]:
    pairs = [items[i : i + 2] for i in range(0, len(items), 2)]
    return [item for pair in reversed(pairs) for item in pair]


def _reverse_pairs_next(fields: Fields, previous: Sequence[str]) -> str:
    answer = _reversed_pairs(fields["items"].split())
    return f"{previous[-1]} {answer[len(previous)]}" if previous else answer[0]


REVERSE_PAIRS = Family(
    name="reverse_pairs",
    kind="algorithmic",
    description="reverse the order of a list's pairs, each pair keeping its order, one item per step",
    id_range=REVERSE.id_range,
    ood_range=REVERSE.ood_range,
    phrasings=("reverse the pairs of {items}, keeping each pair in order",
               "reverse {items} pair by pair, each pair kept in order",
               "write the pairs of {items} backwards, each pair unchanged"),
    field_patterns=(("items", DIGIT_LIST),),
    draw_fields=REVERSE.draw_fields,
    n_steps=REVERSE.n_steps,
    next_step=_reverse_pairs_next,
    final_answer=lambda fields, steps: steps[-1],
    skills=("reverse",),
    variant_of="reverse",
)


# lookup_arrow: lookup's bindings written the other way round, `7->c, c->a`: the right side takes the left
# side's value. The steps are lookup's, `1:a=c`, `2:c=7`, one hop per step from the queried variable.
def _draw_arrows(rng: np.random.Generator, hops: int) -> Fields:
    fields = LOOKUP.draw_fields(rng, hops)
    arrows = (binding.split("=") for binding in fields["bindings"].split(", "))
    return {"bindings": ", ".join(f"{value}->{name}" for name, value in arrows), "query": fields["query"]}


def _as_lookup(fields: Fields) -> Fields:
    """The same bindings in lookup's own syntax, `c=7, a=c`, whose procedure then follows them."""
    arrows = (arrow.split("->") for arrow in fields["bindings"].split(", "))
    return {"bindings": ", ".join(f"{name}={value}" for value, name in arrows), "query": fields["query"]}


LOOKUP_ARROW = Family(
    name="lookup_arrow",
    kind="algorithmic",
    description="follow bindings written value->variable (the right side takes the left) to a value",
    id_range=LOOKUP.id_range,
    ood_range=LOOKUP.ood_range,
    phrasings=("{bindings} (x->y gives y the value of x); what is {query}?",
               "given {bindings}, where x->y sets y to x, find {query}",
               "if {bindings}, each arrow setting the variable it points to, then {query}=?"),
    field_patterns=(("bindings", r"[a-z0-9]->[a-z](?:, [a-z0-9]->[a-z])*"), ("query", "[a-z]")),
    draw_fields=_draw_arrows,
    n_steps=lambda fields: LOOKUP.n_steps(_as_lookup(fields)),
    next_step=lambda fields, previous: LOOKUP.next_step(_as_lookup(fields), previous),
    final_answer=lambda fields, steps: steps[-1].split("=")[1],
    canonical=lambda fields: ", ".join(sorted(fields["bindings"].split(", "))) + f"|{fields['query']}",
    skills=("lookup",),
    variant_of="lookup",
)


# count_not: count's steps `3:7 yes 2`, where `yes` now says the item counts: it is not the target.
def _count_not_next(fields: Fields, previous: Sequence[str]) -> str:
    position = len(previous)
    count = int(previous[-1].rsplit(" ", 1)[1]) if previous else 0
    item = fields["items"].split()[position]
    counts = item != fields["target"]
    return f"{position + 1}:{item} {'yes' if counts else 'no'} {count + counts}"


COUNT_NOT = Family(
    name="count_not",
    kind="algorithmic",
    description="count the items of a list that are not a given digit, with a running count per item",
    id_range=COUNT.id_range,
    ood_range=COUNT.ood_range,
    phrasings=("count the items other than {target} in {items}", "how many items of {items} are not {target}?",
               "how many digits in {items} differ from {target}?"),
    field_patterns=(("target", r"\d"), ("items", DIGIT_LIST)),
    draw_fields=COUNT.draw_fields,
    n_steps=COUNT.n_steps,
    next_step=_count_not_next,
    final_answer=COUNT.final_answer,
    skills=("count",),
    variant_of="count",
)

FAMILIES = (ADD_BASE8, SORT_DESC, REVERSE_PAIRS, LOOKUP_ARROW, COUNT_NOT)
