"""The registry of task families, in their default diversity order (diversity k = the first k), and their
rule variants.

The order interleaves kinds of reasoning, so each added family brings a new skill rather than a
near copy of one already in the mixture. The last two are the default held-out families of the
`ood_family` split, each its own row everywhere, never pooled:

- `sum3`, the test of transfer from `add`: a + b + c as two additions written in add's own steps
  (`x+y+carry=total`), a and b of one digit and c of one or two in the ID range, so its chain is never
  longer than add's longest trained chain (3 steps) and each addition has at most 2 columns (add
  trains up to 3). What is new, and only this: the three-operand prompt; reading the second
  addition's first operand from the first addition's result (`8+5+0=13` makes it 13); and operands
  of different lengths (add's two operands always have the same number of digits), the shorter one's
  missing digits written as 0 (`13+7`: `3+7+0=10`, `1+0+1=2`).
- `sub`, the negative control: its steps use a borrow format no other family writes, so it stays at
  chance by construction.

Each rule variant (`variants.py`) changes one base family's rule, stated in its prompts: `RULE_VARIANTS`
maps the base family to it. Variants are tasks (`scaling.tasks.registry.TASKS`) but not `FAMILIES`:
never trained by default, they are the `ood_rule` split, and a control cell trains on them.
"""

from __future__ import annotations

from scaling.tasks.families import algorithmic, arithmetic, language, symbolic, variants
from scaling.tasks.families.base import ANSWER_MARK, Family, Problem, completion_text

__all__ = ["ANSWER_MARK", "DEFAULT_OOD_FAMILIES", "FAMILIES", "RULE_VARIANTS", "Family", "Problem", "completion_text",
           "get_family"]

DEFAULT_ORDER = ("add", "reverse", "bool", "word", "sort", "lookup", "mul", "lineq", "compare", "count", "dedupe", "mod",
                 "sum3", "sub")
DEFAULT_OOD_FAMILIES = ("sum3", "sub")

_ALL = {f.name: f for module in (arithmetic, algorithmic, symbolic, language) for f in module.FAMILIES}
assert set(_ALL) == set(DEFAULT_ORDER), "every family has a place in the default order"
FAMILIES: dict[str, Family] = {name: _ALL[name] for name in DEFAULT_ORDER}

# The base family's name to its rule variant.
RULE_VARIANTS: dict[str, Family] = {variant.variant_of: variant for variant in variants.FAMILIES}
assert set(RULE_VARIANTS) <= set(FAMILIES) and len(RULE_VARIANTS) == len(variants.FAMILIES), "one variant per family"


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; families are {', '.join(FAMILIES)}")
    return FAMILIES[name]
