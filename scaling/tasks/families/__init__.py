"""The registry of task families, in their default diversity order (diversity k = the first k)."""

from __future__ import annotations

from scaling.tasks.families import algorithmic, arithmetic
from scaling.tasks.families.base import ANSWER_MARK, Family, Problem, completion_text

__all__ = ["ANSWER_MARK", "FAMILIES", "Family", "Problem", "completion_text", "get_family"]

FAMILIES: dict[str, Family] = {f.name: f for module in (arithmetic, algorithmic) for f in module.FAMILIES}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; families are {', '.join(FAMILIES)}")
    return FAMILIES[name]
