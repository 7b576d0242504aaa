"""Every task by name: the base families and their compositions."""

from __future__ import annotations

from scaling.tasks.compose import COMPOSITIONS
from scaling.tasks.families import FAMILIES, Family

TASKS: dict[str, Family] = FAMILIES | COMPOSITIONS


def get_task(name: str) -> Family:
    if name not in TASKS:
        raise ValueError(f"unknown task family {name!r}; families are {', '.join(TASKS)}")
    return TASKS[name]
