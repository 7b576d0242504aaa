"""Where a grid's SFT data comes from: the synthetic task families, or a user's JSONL file
(`scaling.tasks.dataset.DatasetSource`); a named real source (GSM8K, reasoning-gym) is one more type.

A source owns what differs between them: what diversity counts, drawing a cell's training pool, the
grid's evaluation set, the splits it can offer, how completions are graded (and graded zero-shot,
before SFT), each example's chance floor, and what of it decides results (cell ids). The grid spec
makes one from its `[data]` (`scaling.grid.spec.DataSpec.data_source`); callers ask it, never test
its kind.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar, Iterable, Protocol, Sequence

from scaling.tasks.grader import Grader, verify_example
from scaling.tasks.lenient import LenientGrader
from scaling.tasks.families import DEFAULT_OOD_FAMILIES, RULE_VARIANTS
from scaling.tasks.mixture import (CONTROLLED_SPLITS, Example, control_pool, evaluation_split, split_families,
                                   training_pool)
from scaling.tasks.registry import TASKS


# The splits the synthetic families make by default (ood_compose is asked for by name: it multiplies the set).
FAMILY_SPLITS = ("train", "id", "ood_length", "ood_family", "ood_phrasing", "ood_rule")


class DataSource(Protocol):
    """A grid's SFT data and evaluation set; hashable (cell data is cached by it) and picklable."""

    spec_keys: ClassVar[tuple[str, ...]]  # the [data] keys that describe this kind of source (the others must stay out)
    trained_key: ClassVar[str]  # the [data] key that lists what diversity counts, for messages
    needs_spec_dir: ClassVar[bool]  # it names files relative to the spec's folder

    @property
    def trained(self) -> tuple[str, ...]:
        """The ordered families or groups: diversity k trains on the first k."""

    @property
    def default_splits(self) -> tuple[str, ...]:
        """The evaluation splits of a grid whose [eval] names none."""

    @property
    def grader(self) -> Grader:
        """How a generated completion is graded after SFT."""

    @property
    def zero_shot_grader(self) -> Grader:
        """How a base's completion is graded before any SFT taught it the answer format (scaling.tasks.lenient)."""

    def check_grid(self, splits: Sequence[str], qualities: Sequence[float]) -> None:
        """ValueError, naming the spec's section, where a grid's splits or quality axis ask what it cannot give."""

    def check_files(self, splits: Sequence[str], n: int, eval_seed: int, pools: Sequence[tuple[int, int, float]],
                    seed: int) -> None:
        """UserError for anything about its files that can be known before any work."""

    def first_unencodable(self, alphabet: str) -> tuple[str, int, str] | None:
        """(file, line, character) of the first text of it outside the alphabet; None if all of it fits."""

    def drawn_content(self) -> dict:
        """The [data] keys whose written value is not what decides results, each as what does: a file as the
        fingerprint of its rows, a default as the value it stands for."""

    def evaluation_set(self, splits: Sequence[str], n: int, seed: int, cot: str) -> dict[str, list[Example]]:
        """The grid's evaluation examples of each split but `train`: the same for every cell."""

    def training_pool(self, diversity: int, n_examples: int, seed: int, quality: float, cot: str,
                      held_out: frozenset[str]) -> list[Example]:
        """A cell's unique SFT examples, shuffled: never a problem whose key is in `held_out` (the evaluation set's)."""

    def control_splits(self, splits: Sequence[str]) -> tuple[str, ...]:
        """The splits among `splits` a positive control can be trained for (`[eval] controls`)."""

    def control_trained(self, split: str) -> tuple[str, ...]:
        """The families or groups a positive control for `split` trains on."""

    def control_pool(self, split: str, n_examples: int, seed: int, cot: str, held_out: frozenset[str]) -> list[Example]:
        """A positive control's SFT examples: `split`'s own distribution, never a problem in `held_out`."""

    def training_texts(self, pools: Sequence[tuple[int, int, float]], seeds: Sequence[int]) -> Iterable[str]:
        """Every text (prompt and completion) any cell of a grid with these (diversity, examples, quality) pools and
        seeds, or its controls, can train on: what benchmark items are decontaminated against
        (scaling.tasks.real.decontamination)."""

    def notes(self) -> tuple[str, ...]:
        """Lines `scaling run` prints about the data before it starts (what decontamination removed)."""

    def provenance(self) -> dict:
        """Where its data come from (package, version, file, licence, item ids), for every results file's attributes;
        empty for data the toolkit generates or the user's files (fingerprinted in cell ids)."""


@dataclass(frozen=True)
class FamilySource:
    """The synthetic task families (`scaling.tasks.mixture`): generated, verified step by step."""

    spec_keys: ClassVar[tuple[str, ...]] = ("families", "ood_families", "phrasings")  # the [data] keys that describe it
    trained_key: ClassVar[str] = "families"  # the [data] key that lists what diversity counts
    needs_spec_dir: ClassVar[bool] = False  # it has no files

    families: tuple[str, ...]  # ordered: diversity k trains on the first k
    ood_families: tuple[str, ...] = ()  # held out of every mixture: the ood_family split (default_ood_families)
    phrasings: int = 0  # trained prompt phrasings per family (0: all of them)

    def __post_init__(self) -> None:
        if not self.families:
            raise ValueError("[data] families is required (or source = a JSONL file of your own data)")
        base_families = [name for name, task in TASKS.items() if task.kind != "composition"]
        for where, names in (("families", self.families), ("ood_families", self.ood_families)):
            unknown = [n for n in names if n not in base_families]
            if unknown:
                raise ValueError(f"[data] {where}: unknown family {unknown[0]!r} (see `scaling data families`)")
        if set(self.families) & set(self.ood_families):
            raise ValueError(f"[data] ood_families {sorted(set(self.families) & set(self.ood_families))} are also in "
                             f"families")

    @property
    def trained(self) -> tuple[str, ...]:
        return self.families

    @property
    def default_splits(self) -> tuple[str, ...]:
        """Every split of FAMILY_SPLITS its families make: ood_family where families are held out, ood_rule where
        a family has a rule variant."""
        makes = {"ood_family": bool(self.ood_families), "ood_rule": any(name in RULE_VARIANTS for name in self.families)}
        return tuple(split for split in FAMILY_SPLITS if makes.get(split, True))

    @property
    def grader(self) -> Grader:
        return verify_example  # each family verifies answer and steps

    @property
    def zero_shot_grader(self) -> Grader:
        return LenientGrader(solved=True)  # the family's own solution of the prompt is the reference

    def check_grid(self, splits: Sequence[str], qualities: Sequence[float]) -> None:
        for split in splits:
            if split != "train":
                try:
                    split_families(split, self.families, self.ood_families)
                except ValueError as error:
                    raise ValueError(f"[eval] splits: {error}") from None

    def check_files(self, splits: Sequence[str], n: int, eval_seed: int, pools: Sequence[tuple[int, int, float]],
                    seed: int) -> None:
        pass  # no files; a pool larger than a family can give fails its cells, with the reason, when they run

    def first_unencodable(self, alphabet: str) -> tuple[str, int, str] | None:
        return None  # the families write in the character tokenizer's alphabet

    def drawn_content(self) -> dict:
        return {"ood_families": list(self.ood_families)}  # the held-out families drawn, named or by default

    def evaluation_set(self, splits: Sequence[str], n: int, seed: int, cot: str) -> dict[str, list[Example]]:
        return _evaluation_set(self.families, self.ood_families, tuple(splits), n, seed, cot)

    def training_pool(self, diversity: int, n_examples: int, seed: int, quality: float, cot: str,
                      held_out: frozenset[str]) -> list[Example]:
        # `held_out` is never met: evaluation problems are a reserved share of keys (mixture.is_evaluation_key).
        return training_pool(self.families, diversity, n_examples, seed, quality, cot, self.phrasings or None)

    def control_splits(self, splits: Sequence[str]) -> tuple[str, ...]:
        return tuple(split for split in splits if split in CONTROLLED_SPLITS)

    def control_trained(self, split: str) -> tuple[str, ...]:
        return tuple(split_families(split, self.families, self.ood_families))

    def control_pool(self, split: str, n_examples: int, seed: int, cot: str, held_out: frozenset[str]) -> list[Example]:
        # `held_out` is never met, as for training_pool: a control draws from the training share of keys.
        return control_pool(split, self.families, self.ood_families, n_examples, seed, cot)

    def training_texts(self, pools: Sequence[tuple[int, int, float]], seeds: Sequence[int]) -> Iterable[str]:
        return ()  # synthetic arithmetic and symbol tasks share no English phrasing with a benchmark

    def notes(self) -> tuple[str, ...]:
        return ()

    def provenance(self) -> dict:
        return {}


def default_ood_families(families: Sequence[str]) -> tuple[str, ...]:
    """The held-out families of a grid whose [data] names none: the default pair (a test reachable from `add`, and
    the negative control), less any the grid trains."""
    return tuple(name for name in DEFAULT_OOD_FAMILIES if name not in families)


@functools.lru_cache(maxsize=8)  # the same for every cell of a grid, and slow to draw
def _evaluation_set(families: tuple[str, ...], ood_families: tuple[str, ...], splits: tuple[str, ...], n: int, seed: int,
                    cot: str) -> dict[str, list[Example]]:
    return {split: evaluation_split(split, families, ood_families, n, seed, cot) for split in splits if split != "train"}
