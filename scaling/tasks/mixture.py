"""SFT mixtures and evaluation splits.

Diversity k means the first k families of an ordered list, at a fixed number of unique examples
whatever k is, so diversity is not confounded with the amount of data. Quality q means that exactly
round((1 - q) · n) training examples carry one error in their CoT. No prompt of an evaluation split
other than `train` appears in the training pool (checked by exact string), and `ood_family`
families may not be in the mixture.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from scaling.tasks.compose import compositions_within
from scaling.tasks.families import Family, completion_text
from scaling.tasks.quality import corrupt, corrupted_rows, shown_steps
from scaling.tasks.registry import TASKS, get_task

SPLITS = ("train", "id", "ood_length", "ood_family", "ood_compose")
MAX_REJECTIONS_IN_A_ROW = 10_000  # duplicates drawn in a row before a family counts as exhausted


@dataclass(frozen=True)
class Example:
    """One SFT or evaluation example, in the fields of `scaling data sample`."""

    id: str  # content hash of family and prompt
    family: str
    split: str
    difficulty: int
    prompt: str
    steps: tuple[str, ...]  # the CoT steps the completion shows
    answer: str  # the final answer the completion gives (wrong where a corruption carried through)
    completion: str
    corrupted: bool = False  # this example's CoT holds one error
    corrupted_step: int | None = None  # index of the wrong step in the full CoT, if corrupted
    phrasing: int = 0  # index of the prompt's phrasing within its family
    cot: str = "full"  # CoT style: full, short or none


def _example(family: Family, split: str, difficulty: int, rng: np.random.Generator, phrasings: int | None) -> Example:
    problem = family.draw(rng, difficulty)
    if phrasings is not None and problem.phrasing >= phrasings:  # fewer phrasings: diversity within a family
        problem = family.problem(problem.fields, problem.phrasing % phrasings)
    digest = hashlib.blake2b(f"{family.name}\n{problem.prompt}".encode(), digest_size=8).hexdigest()
    return Example(digest, family.name, split, difficulty, problem.prompt, problem.steps, problem.answer,
                   completion_text(problem.steps, problem.answer), phrasing=problem.phrasing)


def _draw_unique(
    family: Family,
    split: str,
    difficulty_range: tuple[int, int],
    n: int,
    rng: np.random.Generator,
    exclude: set[str],
    phrasings: int | None = None,
) -> list[Example]:
    """n examples with prompts distinct from each other and from `exclude`."""
    examples, seen = [], set(exclude)
    rejected_in_a_row = 0
    # Bounded: a family too small for n is an input error, not a hang.
    while len(examples) < n and rejected_in_a_row < MAX_REJECTIONS_IN_A_ROW:
        difficulty = int(rng.integers(difficulty_range[0], difficulty_range[1] + 1))
        example = _example(family, split, difficulty, rng, phrasings)
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


def with_quality_and_style(examples: list[Example], quality: float, cot: str, seed: int) -> list[Example]:
    """Corrupt exactly round((1 - quality) · n) examples, then render every CoT in the style `cot`."""
    wrong = corrupted_rows(len(examples), quality, seed)
    rng = np.random.default_rng([seed, 8])
    styled = []
    for row, example in enumerate(examples):
        if row not in wrong and cot == example.cot:  # nothing to change: keep the object (fast path)
            styled.append(example)
            continue
        steps, answer, corrupted_step = example.steps, example.answer, None
        if row in wrong:
            family = get_task(example.family)
            error = corrupt(family, family.solve(example.prompt), rng)
            steps, answer, corrupted_step = error.steps, error.answer, error.step
        shown = shown_steps(steps, cot)
        styled.append(Example(example.id, example.family, example.split, example.difficulty, example.prompt, shown,
                              answer, completion_text(shown, answer), corrupted_step is not None, corrupted_step,
                              example.phrasing, cot))
    return styled


def training_pool(
    families: Sequence[str],
    diversity: int,
    n_examples: int,
    seed: int,
    quality: float = 1.0,
    cot: str = "full",
    phrasings: int | None = None,
) -> list[Example]:
    """The unique SFT examples of a mixture of the first `diversity` families, shuffled.

    `phrasings` limits each family to its first few prompt phrasings (diversity within a family).
    """
    if not 1 <= diversity <= len(families):
        raise ValueError(f"diversity {diversity} must lie between 1 and the {len(families)} families given")
    if phrasings is not None and phrasings < 1:
        raise ValueError(f"phrasings must be at least 1, got {phrasings}")
    pool: list[Example] = []
    for index, (name, share) in enumerate(zip(families[:diversity], _shares(n_examples, diversity))):
        family = get_task(name)
        rng = np.random.default_rng([seed, 0, index])
        pool += _draw_unique(family, "train", family.id_range, share, rng, exclude=set(), phrasings=phrasings)
    order = np.random.default_rng([seed, 1]).permutation(len(pool))
    return with_quality_and_style([pool[i] for i in order], quality, cot, seed)


def split_families(split: str, families: Sequence[str], diversity: int, ood_families: Sequence[str]) -> list[str]:
    """The task names an evaluation split draws from, for a mixture of the first `diversity` families."""
    trained = list(families[:diversity])
    if set(ood_families) & set(trained):
        raise ValueError("ood_family families must not be in the SFT mixture")
    if split in ("id", "ood_length"):
        return trained
    if split == "ood_family":
        names = list(ood_families)
    elif split == "ood_compose":
        names = [c.name for c in compositions_within(trained)]
    else:
        raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
    if not names:
        raise ValueError(f"split {split!r} has no families for the mixture {', '.join(trained)}")
    return names


def evaluation_split(
    split: str,
    pool: list[Example],
    families: Sequence[str],
    diversity: int,
    ood_families: Sequence[str],
    n: int,
    seed: int,
    cot: str = "full",
) -> list[Example]:
    """n examples of one split for a cell trained on `pool`, with correct CoT in the cell's style.

    `train` is the first n pool examples as trained on (corruptions included); other splits draw
    fresh prompts.
    """
    if split == "train":
        return pool[:n]
    names = split_families(split, families, diversity, ood_families)
    training_prompts = {example.prompt for example in pool}
    examples: list[Example] = []
    for name, share in zip(names, _shares(n, len(names))):
        family = get_task(name)
        rng = np.random.default_rng([seed, 2 + SPLITS.index(split), list(TASKS).index(name)])
        difficulty_range = family.ood_range if split == "ood_length" else family.id_range
        examples += _draw_unique(family, split, difficulty_range, share, rng, exclude=training_prompts)
    return with_quality_and_style(examples, 1.0, cot, seed)


def sample(family: str, split: str, n: int, seed: int, quality: float = 1.0, cot: str = "full") -> list[Example]:
    """n examples of one family and split, as `scaling data sample` prints them.

    `train` is that family's training pool; `id` and `ood_length` are fresh prompts outside the
    training pool of the same seed and size; `ood_family` draws the family as a held-out one;
    `ood_compose` needs a composition's name. Quality applies to the training split only.
    """
    task = get_task(family)
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    if quality != 1.0 and split != "train":
        raise ValueError("--quality applies to the train split only: evaluation splits are always correct")
    if (task.kind == "composition") != (split == "ood_compose"):
        what = "a composition" if task.kind == "composition" else "a base family"
        raise ValueError(f"split ood_compose takes a composition and the other splits a base family; {family!r} is {what}")
    if split == "ood_compose":
        rng = np.random.default_rng([seed, 2 + SPLITS.index(split), list(TASKS).index(family)])
        return with_quality_and_style(_draw_unique(task, split, task.id_range, n, rng, set()), 1.0, cot, seed)
    pool = training_pool((family,), 1, n, seed, quality, cot)
    if split == "train":
        return pool
    if split == "ood_family":
        examples = evaluation_split("id", pool, (family,), 1, (), n, seed, cot)
        return [dataclasses.replace(e, split="ood_family") for e in examples]
    return evaluation_split(split, pool, (family,), 1, (), n, seed, cot)
