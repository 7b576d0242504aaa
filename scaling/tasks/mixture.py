"""SFT mixtures and evaluation splits.

Every problem has a key (family and canonical operands, whatever its phrasing or CoT style), and one
key in eight is reserved for evaluation (`is_evaluation_key`, a hash): training pools draw only from
the other seven, evaluation splits only from that one. So no evaluation item is ever a training
problem in another phrasing, in any cell, whatever the pool's size or seed.

Diversity k means the first k families of an ordered list, at a fixed number of unique problems
whatever k is, so diversity is not confounded with the amount of data. Quality q means that exactly
round((1 - q) · n) training examples carry one error in their CoT. Each family's last phrasing is
never trained: the `ood_phrasing` split asks in it.

A grid has one evaluation set, drawn from its family list with the evaluation seed alone: every cell,
whatever its diversity, quality or seed, is evaluated on the same problems (`evaluation_split`), so
"more diversity" never means "a different test". The `train` split is each cell's own: the first
uncorrupted items of its pool (`memorization_split`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from scaling.tasks.chance import chance_of
from scaling.tasks.compose import compositions_within, hops
from scaling.tasks.families import RULE_VARIANTS, Family, completion_text
from scaling.tasks.quality import corrupt, corrupted_rows, shown_steps
from scaling.tasks.registry import TASKS, get_task

# Appended to, never reordered: a split's index seeds its evaluation problems.
SPLITS = ("train", "id", "ood_length", "ood_family", "ood_compose", "ood_phrasing", "ood_rule")
# The splits a positive control can be trained for: each out-of-distribution split (`control_pool`).
CONTROLLED_SPLITS = ("ood_length", "ood_family", "ood_compose", "ood_phrasing", "ood_rule")
EVALUATION_SHARE = 8  # one problem key in this many is evaluation-only
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
    key: str = ""  # the problem's key (family and canonical operands; see Family.key)
    chance: float = 0.0  # the probability that a guess of the answer's type is right (scaling.tasks.chance)
    context: tuple[tuple[str, str], ...] = ()  # (role, content) messages before the completion, for a user's chat
    # data: a chat template renders them; `prompt` is their plain rendering. Empty: one user turn, the prompt.
    distance: int = 0  # how far past training it lies: ood_length's difficulty levels above the trained range,
    # ood_compose's hops (families chained); 0 elsewhere


def is_evaluation_key(key: str) -> bool:
    """Whether a problem is reserved for evaluation: a fixed eighth of all problems, by a hash of the key."""
    return hashlib.blake2b(key.encode(), digest_size=8).digest()[0] % EVALUATION_SHARE == 0


def _example(family: Family, split: str, difficulty: int, rng: np.random.Generator,
             phrasings: Sequence[int]) -> Example:
    problem = family.draw(rng, difficulty, phrasings)
    digest = hashlib.blake2b(f"{family.name}\n{problem.prompt}".encode(), digest_size=8).hexdigest()
    return Example(digest, family.name, split, difficulty, problem.prompt, problem.steps, problem.answer,
                   completion_text(problem.steps, problem.answer), phrasing=problem.phrasing, key=problem.key,
                   chance=chance_of(family.name, problem), distance=_distance(split, family, difficulty))


def _distance(split: str, family: Family, difficulty: int) -> int:
    """How far past training an example of this split lies (Example.distance)."""
    if split == "ood_length":
        return family.distance(difficulty)
    if split == "ood_compose":
        return hops(family.name)
    return 0


def _draw_unique(
    family: Family,
    split: str,
    difficulty_range: tuple[int, int],
    n: int,
    rng: np.random.Generator,
    phrasings: Sequence[int],
    evaluation: bool,
) -> list[Example]:
    """n examples of distinct problems (keys), from the evaluation share of keys or from the rest."""
    examples, seen = [], set()
    rejected_in_a_row = 0
    # Bounded: a family too small for n is an input error, not a hang.
    while len(examples) < n and rejected_in_a_row < MAX_REJECTIONS_IN_A_ROW:
        difficulty = int(rng.integers(difficulty_range[0], difficulty_range[1] + 1))
        example = _example(family, split, difficulty, rng, phrasings)
        if example.key in seen or is_evaluation_key(example.key) != evaluation:
            rejected_in_a_row += 1
            continue
        rejected_in_a_row = 0
        seen.add(example.key)
        examples.append(example)
    if len(examples) < n:
        share = "evaluation" if evaluation else "training"
        raise ValueError(f"family {family.name!r} has fewer than {n} distinct {share} problems in difficulties "
                         f"{difficulty_range}")
    return examples


def even_shares(total: int, parts: int) -> list[int]:
    """total split into parts as evenly as possible, the first ones taking the remainder."""
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
        styled.append(dataclasses.replace(example, steps=shown, answer=answer, completion=completion_text(shown, answer),
                                          corrupted=corrupted_step is not None, corrupted_step=corrupted_step, cot=cot))
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
    """The unique SFT problems of a mixture of the first `diversity` families, shuffled: never an
    evaluation problem, never the held-out phrasing.

    `phrasings` limits each family to its first few trained phrasings (diversity within a family).
    """
    if not 1 <= diversity <= len(families):
        raise ValueError(f"diversity {diversity} must lie between 1 and the {len(families)} families given")
    if phrasings is not None and phrasings < 1:
        raise ValueError(f"phrasings must be at least 1, got {phrasings}")
    pool: list[Example] = []
    for index, (name, share) in enumerate(zip(families[:diversity], even_shares(n_examples, diversity))):
        family = get_task(name)
        trained = family.trained_phrasings[:phrasings]
        rng = np.random.default_rng([seed, 0, index])
        pool += _draw_unique(family, "train", family.id_range, share, rng, trained, evaluation=False)
    order = np.random.default_rng([seed, 1]).permutation(len(pool))
    return with_quality_and_style([pool[i] for i in order], quality, cot, seed)


def memorization_split(pool: list[Example], n: int) -> list[Example]:
    """The `train` split: the first n pool items whose CoT is correct, as trained (a corrupted item's
    answer is wrong by construction, so it could never count as memorized)."""
    return [dataclasses.replace(e, split="train") for e in pool if not e.corrupted][:n]


def split_families(split: str, families: Sequence[str], ood_families: Sequence[str]) -> list[str]:
    """The task names an evaluation split draws from, for a grid over `families` (trained or not in a cell)."""
    if set(ood_families) & set(families):
        raise ValueError("ood_family families must not be in the SFT mixture")
    if split in ("id", "ood_length", "ood_phrasing"):
        return list(families)
    if split == "ood_family":
        names = list(ood_families)
    elif split == "ood_compose":
        names = [c.name for c in compositions_within(families)]
    elif split == "ood_rule":
        names = [RULE_VARIANTS[name].name for name in families if name in RULE_VARIANTS]
    else:
        raise ValueError(f"unknown evaluation split {split!r}; splits are {', '.join(SPLITS[1:])}")
    if not names:
        raise ValueError(f"split {split!r} has no families for the family list {', '.join(families)}")
    return names


def evaluation_split(
    split: str,
    families: Sequence[str],
    ood_families: Sequence[str],
    n: int,
    seed: int,
    cot: str = "full",
) -> list[Example]:
    """n examples of each family of one evaluation split of a grid over `families`, with correct CoT in the style
    `cot`.

    The same problems for every cell of the grid (they depend on the families, n and the evaluation
    seed only), all from the evaluation share of problem keys: `id` in the trained phrasings and ID
    difficulties, `ood_length` harder (as many problems at each level above the trained range), `ood_phrasing`
    in each family's held-out phrasing, `ood_family` the held-out families, `ood_compose` compositions of the
    families (as many of each), `ood_rule` each family's rule variant, its rule stated in the prompt.
    """
    if split == "train":
        raise ValueError("the train split is a cell's own pool: see memorization_split")
    examples: list[Example] = []
    for name in split_families(split, families, ood_families):
        examples += _evaluation_problems(get_task(name), split, n, seed)
    return with_quality_and_style(examples, 1.0, cot, seed)


def _evaluation_problems(family: Family, split: str, n: int, seed: int) -> list[Example]:
    """n distinct evaluation-share problems of one family for a split: the split decides difficulty and phrasing.
    `ood_length` takes an even share at each level above the trained range, so each distance is measured alike."""
    rng = np.random.default_rng([seed, 2 + SPLITS.index(split), list(TASKS).index(family.name)])
    phrasings = (family.held_out_phrasing,) if split == "ood_phrasing" else family.trained_phrasings
    if split != "ood_length":
        return _draw_unique(family, split, family.id_range, n, rng, phrasings, evaluation=True)
    levels = range(family.ood_range[0], family.ood_range[1] + 1)
    return [example for level, share in zip(levels, even_shares(n, len(levels)))
            for example in _draw_unique(family, split, (level, level), share, rng, phrasings, evaluation=True)]


def control_pool(split: str, families: Sequence[str], ood_families: Sequence[str], n_examples: int, seed: int,
                 cot: str = "full") -> list[Example]:
    """The SFT pool of a positive control for `split`: unique problems of that split's own distribution (its
    families, its phrasings, and for `ood_length` every difficulty from the trained range to the hardest level),
    evenly over the split's families and shuffled, so that its accuracy there is what a model that *was* trained
    on that distribution reaches (the split's headroom). From the training share of keys, like every pool:
    never an evaluation problem."""
    if split not in CONTROLLED_SPLITS:
        raise ValueError(f"split {split!r} has no positive control; controlled splits are {', '.join(CONTROLLED_SPLITS)}")
    names = split_families(split, families, ood_families)
    pool: list[Example] = []
    for index, (name, share) in enumerate(zip(names, even_shares(n_examples, len(names)))):
        family = get_task(name)
        difficulties = (family.id_range[0], family.ood_range[1]) if split == "ood_length" else family.id_range
        phrasings = range(len(family.phrasings)) if split == "ood_phrasing" else family.trained_phrasings
        rng = np.random.default_rng([seed, 3, SPLITS.index(split), index])
        pool += _draw_unique(family, "train", difficulties, share, rng, phrasings, evaluation=False)
    order = np.random.default_rng([seed, 1]).permutation(len(pool))
    return with_quality_and_style([pool[i] for i in order], 1.0, cot, seed)


def sample(family: str, split: str, n: int, seed: int, quality: float = 1.0, cot: str = "full") -> list[Example]:
    """n examples of one family and split, as `scaling data sample` prints them.

    `train` is that family's training pool; the evaluation splits draw from the evaluation share of
    problems, so they never meet any training pool of any size or seed. `ood_family` draws the family
    as a held-out one; `ood_compose` needs a composition's name and `ood_rule` a rule variant's. Quality
    applies to the train split only.
    """
    task = get_task(family)
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    if quality != 1.0 and split != "train":
        raise ValueError("--quality applies to the train split only: evaluation splits are always correct")
    what = "a composition" if task.kind == "composition" else "a rule variant" if task.variant_of else "a base family"
    needed = {"ood_compose": "a composition", "ood_rule": "a rule variant"}.get(split, "a base family")
    if what != needed:
        raise ValueError(f"split {split} takes {needed}; {family!r} is {what}")
    if split == "train":
        return training_pool((family,), 1, n, seed, quality, cot)
    return with_quality_and_style(_evaluation_problems(task, split, n, seed), 1.0, cot, seed)
