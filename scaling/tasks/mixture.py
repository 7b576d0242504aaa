"""SFT mixtures and evaluation splits.

Diversity k means the first k families of an ordered list, at a fixed number of unique examples
whatever k is, so diversity is not confounded with the amount of data. No evaluation prompt other
than the `train` split's appears in the training pool (checked by exact string).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from scaling.tasks.families import FAMILIES, Family, completion_text, get_family

SPLITS = ("train", "id", "ood_length", "ood_family")
MAX_REJECTIONS_IN_A_ROW = 10_000  # duplicates drawn in a row before a family counts as exhausted


@dataclass(frozen=True)
class Example:
    """One SFT or evaluation example, in the fields of `scaling data sample`."""

    id: str  # content hash of family and prompt
    family: str
    split: str
    difficulty: int
    prompt: str
    steps: tuple[str, ...]
    answer: str
    completion: str
    corrupted: bool = False  # quality < 1 puts an error in the CoT (full quality here: never)


def _example(family: Family, split: str, difficulty: int, rng: np.random.Generator) -> Example:
    problem = family.draw(rng, difficulty)
    digest = hashlib.sha256(f"{family.name}\n{problem.prompt}".encode()).hexdigest()[:16]
    return Example(
        id=digest,
        family=family.name,
        split=split,
        difficulty=difficulty,
        prompt=problem.prompt,
        steps=problem.steps,
        answer=problem.answer,
        completion=completion_text(problem.steps, problem.answer),
    )


def _draw_unique(
    family: Family,
    split: str,
    difficulty_range: tuple[int, int],
    n: int,
    rng: np.random.Generator,
    exclude: set[str],
) -> list[Example]:
    """n examples with prompts distinct from each other and from `exclude`."""
    examples, seen = [], set(exclude)
    rejected_in_a_row = 0
    # Bounded: a family too small for n is an input error, not a hang.
    while len(examples) < n and rejected_in_a_row < MAX_REJECTIONS_IN_A_ROW:
        difficulty = int(rng.integers(difficulty_range[0], difficulty_range[1] + 1))
        example = _example(family, split, difficulty, rng)
        if example.prompt in seen:
            rejected_in_a_row += 1
            continue
        rejected_in_a_row = 0
        seen.add(example.prompt)
        examples.append(example)
    if len(examples) < n:
        raise ValueError(f"family {family.name!r} has fewer than {n} distinct {split} prompts in difficulties {difficulty_range}")
    return examples


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def training_pool(families: tuple[str, ...], diversity: int, n_examples: int, seed: int) -> list[Example]:
    """The unique SFT examples of a mixture of the first `diversity` families, shuffled."""
    if not 1 <= diversity <= len(families):
        raise ValueError(f"diversity {diversity} must lie between 1 and the {len(families)} families given")
    pool: list[Example] = []
    for index, (name, share) in enumerate(zip(families[:diversity], _shares(n_examples, diversity))):
        family = get_family(name)
        rng = np.random.default_rng([seed, 0, index])
        pool += _draw_unique(family, "train", family.id_range, share, rng, exclude=set())
    order = np.random.default_rng([seed, 1]).permutation(len(pool))
    return [pool[i] for i in order]


def evaluation_split(
    split: str,
    pool: list[Example],
    families: tuple[str, ...],
    diversity: int,
    ood_families: tuple[str, ...],
    n: int,
    seed: int,
) -> list[Example]:
    """n examples of one split for a cell trained on `pool`; fresh prompts unless split is `train`."""
    if split == "train":
        return pool[:n]
    if split == "ood_family":
        names, use_ood_range = ood_families, False
    elif split in ("id", "ood_length"):
        names, use_ood_range = families[:diversity], split == "ood_length"
    else:
        raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
    if not names:
        raise ValueError(f"split {split!r} needs at least one family")
    if set(ood_families) & set(families[:diversity]):
        raise ValueError("ood_family families must not be in the SFT mixture")
    training_prompts = {example.prompt for example in pool}
    examples: list[Example] = []
    for name, share in zip(names, _shares(n, len(names))):
        family = get_family(name)
        rng = np.random.default_rng([seed, 2 + SPLITS.index(split), list(FAMILIES).index(name)])
        difficulty_range = family.ood_range if use_ood_range else family.id_range
        examples += _draw_unique(family, split, difficulty_range, share, rng, exclude=training_prompts)
    return examples

