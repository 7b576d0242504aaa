"""Tasks and examples as plain records, for the command line and for files."""

from __future__ import annotations

import dataclasses

from scaling.tasks.mixture import Example
from scaling.tasks.registry import TASKS


def family_records() -> list[dict]:
    """Every task with its kind, difficulty ranges, phrasing count and description."""
    return [
        {
            "name": f.name,
            "kind": f.kind,
            "description": f.description,
            "id_range": list(f.id_range),
            "ood_range": list(f.ood_range),
            "phrasings": len(f.phrasings),
        }
        for f in TASKS.values()
    ]


def example_record(example: Example) -> dict:
    """An example as the JSON object of `scaling data sample`."""
    record = dataclasses.asdict(example)
    record["steps"] = list(example.steps)
    if not example.context:  # only a user's chat data has one; the synthetic tasks' records stay as they were
        del record["context"]
    return record
