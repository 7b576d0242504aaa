"""Every task by name: the base families, their compositions and their rule variants."""

from __future__ import annotations

from scaling.tasks.compose import COMPOSITIONS
from scaling.tasks.families import FAMILIES, RULE_VARIANTS, Family

# Variants come last, so adding them moved no earlier task's place (evaluation seeds use it).
TASKS: dict[str, Family] = FAMILIES | COMPOSITIONS | {variant.name: variant for variant in RULE_VARIANTS.values()}


def get_task(name: str) -> Family:
    if name not in TASKS:
        raise ValueError(f"unknown task family {name!r}; families are {', '.join(TASKS)}")
    return TASKS[name]
