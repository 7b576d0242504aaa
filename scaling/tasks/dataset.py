"""A user's own SFT data as a grid's data source (`DatasetSource`): a JSONL file whose rows name a group.

The rows of a file play the parts the synthetic families play in `scaling.tasks.mixture`:

- **Groups** (the values of one field, say "category") stand where families stood: diversity k trains
  on the first k of an ordered list, at a fixed number of examples whatever k is; `ood_groups` are
  held out of every mixture and make the `ood_family` split.
- **The `id` split** holds back, per trained group, rows of distinct problems that no training row
  repeats (a problem is a normalized prompt: Unicode form, case and whitespace ignored), chosen by the
  evaluation seed alone, so every cell meets the same evaluation rows whatever its diversity, quality
  or seed. A separate evaluation file (`eval_source`) can take their place.
- **Quality q**, with a boolean `quality_field`, means that round(q · share) of each group's training
  rows are verified and the rest are not (nested: the verified rows at a lower quality are some of those
  at a higher one). Without the field every row counts as verified. Unverified rows are never evaluated.
  `quality_field = "@steps"` lets the step checker decide instead of a field (`scaling.tasks.steps`): a row
  is unverified when the checker finds a wrong arithmetic step in its completion. A row with no statement
  the checker can check holds nothing it can fault, so it counts as verified, as every row does without a
  quality field: the quality axis then mixes rows with found errors into rows without, and never treats
  prose the checker cannot read as an error. A file where no row of the groups has a checkable statement is
  refused (the axis would vary nothing).
- **CoT style** keeps the whole completion (`full`), its last step line and its answer (`short`), or the
  answer only (`none`); the answer part begins where the extractor finds it.
- **Answers** are read by an `AnswerExtractor`. A row's reference answer is its `answer` field, else what
  the extractor reads from its completion; every row must have an answer the extractor finds in its
  completion, or a model trained on it would learn a format no grader can read. A group's chance floor is
  the share of its most common reference answer: what always giving that one answer would score.

Rows are put in a canonical order (by a hash of their content) before anything is drawn, so a file with
the same rows in another order gives the same cells; the file's `fingerprint` (its sorted row hashes)
is part of every cell id, so an edited file gives new cells, never stale results.
"""

from __future__ import annotations

import functools
import hashlib
import json
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterable, Sequence

import numpy as np

from scaling.errors import UserError
from scaling.tasks.grader import AnswerGrader, Grader
from scaling.tasks.jsonl import AnswerExtractor, BadLine, SftRecord, json_objects, parse_record, reference_answer
from scaling.tasks.lenient import LenientGrader
from scaling.tasks.mixture import Example, even_shares
from scaling.tasks.quality import COT_STYLES
from scaling.tasks.steps import check_steps
from scaling.user_files import regular_file

SPLITS = ("train", "id", "ood_family")  # the evaluation splits a dataset can make
STEPS_QUALITY = "@steps"  # the quality_field that asks the step checker (no field of a row may start with @)
SOURCE, EVAL_SOURCE = "[data] source", "[data] eval_source"  # its files, as messages name them


@dataclass(frozen=True)
class DatasetSource:
    """A grid's data source made of a user's file (see `scaling.tasks.source.DataSource`), its paths resolved:
    hashable, so reads are cached."""

    spec_keys: ClassVar[tuple[str, ...]] = ("source", "eval_source", "group_by", "groups", "ood_groups",
                                            "quality_field", "answer")  # the [data] keys that describe it
    trained_key: ClassVar[str] = "groups"  # the [data] key that lists what diversity counts
    needs_spec_dir: ClassVar[bool] = True  # its files are named relative to the spec's folder

    path: str  # the JSONL file of SFT rows
    groups: tuple[str, ...]  # ordered: diversity k trains on the first k
    ood_groups: tuple[str, ...] = ()  # held out of every mixture: the ood_family split
    group_by: str = "family"  # the field whose values are the groups
    quality_field: str = ""  # a boolean field: true marks a verified row ("": every row counts as verified;
    # STEPS_QUALITY: verified unless the step checker finds a wrong arithmetic step)
    extractor: AnswerExtractor = AnswerExtractor()
    eval_path: str = ""  # a separate JSONL file of evaluation rows ("": held back from `path`)

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError(f"[data] groups is required with source: the values of {self.group_by!r} to train on, "
                             f"in order")
        if not self.group_by:
            raise ValueError("[data] group_by must name a field")
        if set(self.groups) & set(self.ood_groups):
            raise ValueError(f"[data] ood_groups {sorted(set(self.groups) & set(self.ood_groups))} are also in groups "
                             f"(a held-out group is never trained)")

    @property
    def trained(self) -> tuple[str, ...]:
        return self.groups

    @property
    def default_splits(self) -> tuple[str, ...]:
        """The splits it makes: ood_family only where groups are held out."""
        return tuple(s for s in SPLITS if s != "ood_family" or self.ood_groups)

    @property
    def grader(self) -> Grader:
        """The answer the extractor reads must equal the row's reference; steps are counted, never verified."""
        return AnswerGrader(self.extractor)

    @property
    def zero_shot_grader(self) -> Grader:
        return LenientGrader(solved=False)  # no family solves a group: the row's own answer is the reference

    def check_grid(self, splits: Sequence[str], qualities: Sequence[float]) -> None:
        """What a grid's splits and quality axis may ask of it (its rows are checked by `check_files`)."""
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise ValueError(f"[eval] splits: split {unknown[0]!r} needs the synthetic families; a dataset makes the "
                             f"splits {', '.join(SPLITS)}")
        if "ood_family" in splits and not self.ood_groups:
            raise ValueError("[eval] splits: ood_family needs [data] ood_groups (groups held out of every mixture)")
        if not self.quality_field and any(q != 1.0 for q in qualities):
            raise ValueError(f"[axes] quality {[q for q in qualities if q != 1.0][0]:g} needs [data] quality_field "
                             f"(the boolean field that marks verified rows)")

    def check_files(self, splits: Sequence[str], n: int, eval_seed: int, pools: Sequence[tuple[int, int, float]],
                    seed: int) -> None:
        """Every row of both files, and that the evaluation set and each pool (diversity, examples, quality) at
        `seed` can be drawn: what can be known before any work."""
        dataset_of(self)
        if self.eval_path:
            eval_dataset_of(self)
        try:
            evaluation = self.evaluation_set(splits, n, eval_seed, "full")
        except ValueError as error:
            raise UserError(f"[eval] splits: {error}") from None
        held_out = frozenset(e.key for examples in evaluation.values() for e in examples)
        for diversity, examples, quality in pools:
            self.training_pool(diversity, examples, seed, quality, "full", held_out)

    def first_unencodable(self, alphabet: str) -> tuple[str, int, str] | None:
        """(file, line, character) of the first row (training file first) holding a character outside the alphabet."""
        for dataset in [dataset_of(self)] + ([eval_dataset_of(self)] if self.eval_path else []):
            outside = first_unencodable(dataset, alphabet)
            if outside is not None:
                return (dataset.path, *outside)
        return None

    def drawn_content(self) -> dict:
        """Its files as what decides results: the fingerprints of their rows, never their paths (moving a file
        keeps its cells; editing it makes new ones)."""
        return {"source": fingerprint(self.path, SOURCE), "eval_source": fingerprint(self.eval_path, EVAL_SOURCE)
                if self.eval_path else ""}

    def evaluation_set(self, splits: Sequence[str], n: int, seed: int, cot: str) -> dict[str, list[Example]]:
        """The evaluation rows of each split but `train`, as examples in the style `cot`: the same rows for every
        cell. From the eval file when there is one (all its rows of the trained groups are `id`, of the held-out
        groups `ood_family`), else held back from the training file (`n` rows of each group a split)."""
        train = dataset_of(self)
        split_groups = {"id": self.groups, "ood_family": self.ood_groups}
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise ValueError(f"split {unknown[0]!r} needs the synthetic families; a dataset has the splits "
                             f"{', '.join(SPLITS)}")
        out = {}
        for split in splits:
            if split == "train":
                continue
            if not split_groups[split]:
                raise ValueError(f"split {split!r} has no groups: name [data] ood_groups")
            if self.eval_path:
                evaluation = eval_dataset_of(self)
                rows = [row for row in evaluation.rows if row.group in split_groups[split]]
                if not rows:
                    raise UserError(f"{self.eval_path}: no rows of groups {', '.join(split_groups[split])} for the "
                                    f"{split} split")
            else:
                evaluation, rows = train, _evaluation_rows(train, split_groups[split], n, seed, split)
            chance = {group: group_chance(evaluation, group) for group in split_groups[split]}
            out[split] = [_example(row, split, cot, self.extractor, chance[row.group]) for row in rows]
        return out

    def training_pool(self, diversity: int, n_examples: int, seed: int, quality: float, cot: str,
                      held_out: frozenset[str]) -> list[Example]:
        """The SFT examples of a mixture of the first `diversity` groups, shuffled: no problem in `held_out` (the
        evaluation rows' keys), round(quality · share) verified rows per group and the rest unverified."""
        if not 1 <= diversity <= len(self.groups):
            raise ValueError(f"diversity {diversity} must lie between 1 and the {len(self.groups)} groups given")
        return self._pool(self.groups[:diversity], n_examples, seed, quality, cot, held_out, f"at diversity {diversity}")

    def control_splits(self, splits: Sequence[str]) -> tuple[str, ...]:
        return ("ood_family",) if "ood_family" in splits else ()  # the only split a dataset makes beyond id

    def control_trained(self, split: str) -> tuple[str, ...]:
        return self.ood_groups

    def control_pool(self, split: str, n_examples: int, seed: int, cot: str, held_out: frozenset[str]) -> list[Example]:
        """A positive control's SFT examples: verified rows of the held-out groups, none of them an evaluation row."""
        return self._pool(self.ood_groups, n_examples, seed, 1.0, cot, held_out, "for the ood_family control")

    def training_texts(self, pools: Sequence[tuple[int, int, float]], seeds: Sequence[int]) -> Iterable[str]:
        """Every row of the training file, prompt and completion: any of them may be drawn (whatever the pools)."""
        return tuple(f"{row.record.prompt}\n{row.record.completion}" for row in dataset_of(self).rows)

    def notes(self) -> tuple[str, ...]:
        return ()

    def provenance(self) -> dict:
        return {}  # the user's files: their fingerprints are in every cell id

    def _pool(self, groups: Sequence[str], n_examples: int, seed: int, quality: float, cot: str,
              held_out: frozenset[str], which: str) -> list[Example]:
        """Unique SFT examples evenly over `groups`, shuffled (see training_pool); `which` names the pool in messages."""
        dataset = dataset_of(self)
        pool: list[Example] = []
        for index, (group, share) in enumerate(zip(groups, even_shares(n_examples, len(groups)))):
            chance = group_chance(dataset, group)
            rows = [row for row in dataset.of(group) if row.key not in held_out]
            verified_count = round(quality * share)
            wanted = {True: verified_count, False: share - verified_count}
            for verified, count in wanted.items():
                candidates = [row for row in rows if row.verified == verified]
                if len(candidates) < count:
                    kind = "verified" if verified else "unverified"
                    raise UserError(f"[data] examples = {n_examples} {which} and quality {quality:g} "
                                    f"needs {count} {kind} training rows of group {group!r}, which has {len(candidates)}"
                                    + (" after the evaluation rows held back" if verified and not self.eval_path else ""))
                # One permutation per group and kind, whatever the quality: a lower quality keeps a prefix of the
                # verified rows.
                order = np.random.default_rng([seed, 0, index, int(verified)]).permutation(len(candidates))
                pool += [_example(candidates[i], "train", cot, self.extractor, chance) for i in order[:count]]
        order = np.random.default_rng([seed, 1]).permutation(len(pool))
        return [pool[i] for i in order]


@dataclass(frozen=True)
class Row:
    """One row of a user's file that belongs to a named group."""

    line: int  # its line number in the file, for messages
    group: str
    record: SftRecord
    reference: str  # the answer a completion must give, as the extractor reads answers
    answer_start: int  # where the completion's answer part begins (see AnswerExtractor.answer_start)
    verified: bool
    key: str  # a hash of the normalized prompt: rows with one key are one problem
    digest: str  # a hash of the row's JSON content (key order and spacing ignored): its canonical place


@dataclass(frozen=True)
class Dataset:
    """The rows of a file that belong to named groups, in canonical order."""

    path: str
    rows: tuple[Row, ...]

    def of(self, group: str) -> list[Row]:
        return [row for row in self.rows if row.group == group]


def normalized_prompt(prompt: str) -> str:
    """A prompt as problems are compared: Unicode compatibility form, case folded, runs of whitespace as one space."""
    return " ".join(unicodedata.normalize("NFKC", prompt).casefold().split())


def prompt_key(prompt: str) -> str:
    """A problem's key: a hash of its normalized prompt (rows with one key are one problem, whatever their source)."""
    return _hash(normalized_prompt(prompt))


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _canonical(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@functools.lru_cache(maxsize=16)
def _fingerprint(path: str, what: str, size: int, mtime_ns: int) -> str:
    digests = sorted(_hash(_canonical(obj)) for _, obj in json_objects(path, what))
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]


def _version(path: str | Path, what: str) -> tuple[int, int]:
    """(size, modification time) of a regular file: the key its reads are cached under."""
    stat = regular_file(path, what).stat()
    return stat.st_size, stat.st_mtime_ns


def fingerprint(path: str | Path, what: str) -> str:
    """A hash of a JSONL file's rows that ignores their order, key order and spacing (read once per file version);
    `what` names the file in messages ("[data] source")."""
    return _fingerprint(str(path), what, *_version(path, what))


def read_dataset(path: str, what: str, groups: Sequence[str], group_by: str, quality_field: str,
                 extractor: AnswerExtractor, every_group: bool = True) -> Dataset:
    """The rows of the named groups, validated, in canonical order; every problem is a UserError naming the file
    (as `what`, say "[data] source") and line. Rows of other groups are parsed (a broken line is refused wherever
    it is) but not kept. With `every_group`, a group without rows is refused (a training file must hold each group
    it names)."""
    return _read(str(path), what, *_version(path, what), tuple(groups), group_by, quality_field, extractor, every_group)


@functools.lru_cache(maxsize=8)
def _read(path: str, what: str, size: int, mtime_ns: int, groups: tuple[str, ...], group_by: str, quality_field: str,
          extractor: AnswerExtractor, every_group: bool) -> Dataset:
    rows: list[Row] = []
    unanswered: list[int] = []  # line numbers of rows whose completion holds no answer the extractor finds
    lines = 0
    checked = 0  # rows of the groups with a statement the step checker checked (quality_field STEPS_QUALITY)
    for number, obj in json_objects(path, what):
        lines += 1
        where = f"{path} line {number}"
        try:
            record = parse_record(obj)
        except BadLine as error:
            raise UserError(f"{where}: {error}") from None
        group = obj.get(group_by)
        if group is None:
            raise UserError(f'{where}: no "{group_by}" field (the [data] group_by field)')
        if not isinstance(group, (str, int)) or isinstance(group, bool):
            raise UserError(f'{where}: "{group_by}" must be a string or an integer, got {json.dumps(group)}')
        group = str(group)
        if group not in groups:
            continue
        verified = True
        if quality_field == STEPS_QUALITY:
            steps = check_steps(record.completion)
            verified = steps.first_wrong is None
            checked += steps.steps > 0
        elif quality_field:
            verified = obj.get(quality_field)
            if not isinstance(verified, bool):
                raise UserError(f'{where}: "{quality_field}" (the [data] quality_field) must be true or false, '
                                f"got {json.dumps(verified)}")
        try:
            start = extractor.answer_start(record.completion)
            reference = reference_answer(record, extractor)
        except UserError as error:  # an answer pattern that took too long on this completion
            raise UserError(f"{where}: {error}") from None
        if start is None or reference is None:
            unanswered.append(number)  # reported below: one message for a file where no row has an answer
            continue
        rows.append(Row(number, group, record, reference, start, verified, prompt_key(record.prompt),
                        _hash(_canonical(obj))))
    if lines == 0:
        raise UserError(f"{path} holds no rows")
    if unanswered and not rows:
        raise UserError(f"{path}: no row of groups {', '.join(groups)} has an answer the {_describe(extractor)} "
                        f"finds in its completion (check [data] answer)")
    if unanswered:
        raise UserError(f"{path} line {unanswered[0]}: the {_describe(extractor)} finds no answer in the completion "
                        f"({len(unanswered)} such rows; a model trained on them would learn a format no grader reads)")
    if quality_field == STEPS_QUALITY and rows and not checked:
        raise UserError(f"{path}: no row of groups {', '.join(groups)} has an arithmetic statement the step checker "
                        f"can check ([data] quality_field {STEPS_QUALITY!r} would mark every row verified)")
    counts = Counter(row.group for row in rows)
    for group in groups if every_group else ():
        if counts[group] == 0:
            raise UserError(f'{path}: group {group!r} has no rows (no row has "{group_by}": {json.dumps(group)})')
    return Dataset(path, tuple(sorted(rows, key=lambda row: (row.digest, row.line))))


def _describe(extractor: AnswerExtractor) -> str:
    if extractor.mode == "marker":
        return f"answer marker {extractor.marker!r}"
    if extractor.mode == "regex":
        return f"answer pattern {extractor.pattern!r}"
    return "last-number extractor"


def group_chance(dataset: Dataset, group: str) -> float:
    """The share of the group's most common reference answer among its verified rows: what always giving
    that answer would score, the floor a model reaches without solving anything."""
    answers = Counter(row.reference for row in dataset.of(group) if row.verified)
    return max(answers.values()) / sum(answers.values()) if answers else 0.0


def styled_completion(row: Row, cot: str) -> str:
    """The row's completion in a CoT style: whole (`full`), its last step line and answer (`short`), the answer (`none`)."""
    return styled_text(row.record.completion, row.answer_start, cot)


def styled_text(text: str, answer_start: int, cot: str) -> str:
    """A completion whose answer part begins at `answer_start` in a CoT style (see `styled_completion`)."""
    if cot not in COT_STYLES:
        raise ValueError(f"unknown CoT style {cot!r}; styles are {', '.join(COT_STYLES)}")
    if cot == "full":
        return text
    head, tail = text[:answer_start], text[answer_start:]
    steps = [line for line in head.split("\n") if line.strip()]
    return f"{steps[-1].strip()}\n{tail}" if cot == "short" and steps else tail


def _example(row: Row, split: str, cot: str, extractor: AnswerExtractor, chance: float) -> Example:
    completion = styled_completion(row, cot)
    steps, _ = extractor.parse(completion)
    return Example(row.digest, row.group, split, 0, row.record.prompt, tuple(steps), row.reference, completion,
                   corrupted=not row.verified, cot=cot, key=row.key, chance=chance, context=row.record.context)


def _evaluation_rows(dataset: Dataset, groups: Sequence[str], n: int, seed: int, split: str) -> list[Row]:
    """n verified rows of distinct problems of each group, in an order fixed by the seed alone."""
    chosen = []
    for group in groups:
        first_of_key: dict[str, Row] = {}
        for row in dataset.of(group):
            if row.verified:
                first_of_key.setdefault(row.key, row)
        ranked = sorted(first_of_key.values(), key=lambda row: _hash(f"{seed}\n{row.key}"))
        if len(ranked) < n:
            raise UserError(f"[eval] n = {n}: the {split} split needs {n} distinct verified problems of group "
                            f"{group!r}, which has {len(ranked)} (lower [eval] n)")
        chosen += ranked[:n]
    return chosen


def dataset_of(source: DatasetSource) -> Dataset:
    """The training file's rows of every named group."""
    return read_dataset(source.path, SOURCE, (*source.groups, *source.ood_groups), source.group_by,
                        source.quality_field, source.extractor)


def eval_dataset_of(source: DatasetSource) -> Dataset:
    """The evaluation file's rows of every named group (every row counts as verified: the user chose them)."""
    return read_dataset(source.eval_path, EVAL_SOURCE, (*source.groups, *source.ood_groups), source.group_by, "",
                        source.extractor, every_group=False)


def first_unencodable(dataset: Dataset, alphabet: str) -> tuple[int, str] | None:
    """(line, character) of the first row (in file order) holding a character outside the alphabet; None if all fit."""
    allowed = set(alphabet)
    for row in sorted(dataset.rows, key=lambda r: r.line):
        texts = [row.record.prompt, row.record.completion, *(content for _, content in row.record.context)]
        for text in texts:
            outside = set(text) - allowed
            if outside:
                return row.line, min(outside, key=text.index)
    return None

