"""The registry of task families, in their default diversity order (diversity k = the first k).

The order interleaves kinds of reasoning, so each added family brings a new skill rather than a
near copy of one already in the mixture. The last two are the default held-out families of the
`ood_family` split: `sum3`, written entirely in add's steps (transfer from add is possible), and
`sub`, whose steps use a borrow format no other family writes: the negative control, at chance by
construction.
"""

from __future__ import annotations

from scaling.tasks.families import algorithmic, arithmetic, language, symbolic
from scaling.tasks.families.base import ANSWER_MARK, Family, Problem, completion_text

__all__ = ["ANSWER_MARK", "DEFAULT_OOD_FAMILIES", "FAMILIES", "Family", "Problem", "completion_text", "get_family"]

DEFAULT_ORDER = ("add", "reverse", "bool", "word", "sort", "lookup", "mul", "lineq", "compare", "count", "dedupe", "mod",
                 "sum3", "sub")
DEFAULT_OOD_FAMILIES = ("sum3", "sub")

_ALL = {f.name: f for module in (arithmetic, algorithmic, symbolic, language) for f in module.FAMILIES}
assert set(_ALL) == set(DEFAULT_ORDER), "every family has a place in the default order"
FAMILIES: dict[str, Family] = {name: _ALL[name] for name in DEFAULT_ORDER}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; families are {', '.join(FAMILIES)}")
    return FAMILIES[name]
