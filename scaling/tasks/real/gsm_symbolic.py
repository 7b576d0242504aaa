"""GSM-style word problems with worked CoT from reasoning-gym's templates as a grid's data source
(`[data] source = "gsm_symbolic"`, `GsmSymbolicSource`).

reasoning-gym's `gsm_symbolic` holds 100 templates, each written from one GSM8K test question, whose generator
draws fresh names and numbers: `generate_<i>(Random, 1.0)` gives a question and its worked solution
(`answer_cot`, ending `#### N`). Its dataset class appends an instruction to each question; this source calls
the generators directly, so a prompt is the problem alone.

- **Groups** are template ids as strings ("0".."99"); diversity k trains on the first k. By default they are
  the templates reasoning-gym marks good (`tasks_ok`, 85) less `ood_groups`, in `TEMPLATE_ORDER`: a shuffle
  fixed by `TEMPLATE_ORDER_SEED`. A template's index is the order its GSM8K source was ported in, which may
  follow anything (the source's order, its length, when it was written); a random order is independent of
  difficulty by construction, so the templates diversity k adds are a random draw, not the next harder ones.
  The templates reasoning-gym marks broken (`tasks_need_fix`) are refused.
- **Rows** are drawn from (template, stream, index), each by `random.Random("<template>:<stream>:<index>")` (a
  string seed is hashed by SHA-512, stable across runs and machines, unlike `hash()`). A template's rows of
  one stream are its first distinct problems (a problem is its normalized question, `prompt_key`): training
  pools take stream "train:<seed>", the evaluation set "eval:<eval seed>", a template's chance floor
  "chance". Training rows skip every problem of the evaluation set (`held_out`), so no cell trains on one.
- **Splits**: `train`, `id` (fresh problems of every trained template, `[eval] n` each, the same for every
  cell), `ood_family` (problems of `ood_groups`, templates no mixture trains: a held-out family of real
  problems). The `ood_family` control trains on the held-out templates.
- **Quality** q keeps round(q · share) of each template's training rows as the template wrote them and puts one
  arithmetic error into the CoT of the rest (`scaling.tasks.steps.inject_error`: one statement's written result
  made wrong, seeded by the row; the final answer stays), so a lower quality keeps a prefix of a higher one's
  correct rows. A row whose CoT holds no statement to corrupt stays as written (rare: 10 of 850 draws).
- **Grading** after SFT: the number after the last `####` equals the answer, as numbers ("16.0" is 16);
  zero-shot, the lenient grader against the example's own answer.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar, Sequence

import numpy as np

from scaling.errors import UserError
from scaling.tasks.dataset import prompt_key, styled_text
from scaling.tasks.grader import Grade, Grader
from scaling.tasks.jsonl import AnswerExtractor
from scaling.tasks.lenient import LenientGrader
from scaling.tasks.mixture import Example, even_shares
from scaling.tasks.real.fold import FOLDS, fold_text
from scaling.tasks.real.packages import REASONING_GYM
from scaling.tasks.steps import check_steps, inject_error

NAME = "gsm_symbolic"  # the [data] source value that names it
SPLITS = ("train", "id", "ood_family")
TEMPLATE_ORDER_SEED = 36  # fixes TEMPLATE_ORDER (issue 36); changing it changes every default grid's mixtures
CHANCE_DRAWS = 500  # draws of a template whose distinct problems' answers give its chance floor
MARKER = "####"  # where a worked solution's answer part begins
_EXTRACTOR = AnswerExtractor("marker", MARKER)


def _module():
    """reasoning-gym's gsm_symbolic module, imported only when needed: a missing package is one line naming how to
    install it."""
    REASONING_GYM.folder()
    from reasoning_gym.arithmetic.gsm_symbolic import gsm_symbolic
    return gsm_symbolic


@functools.lru_cache(maxsize=1)
def _generators() -> dict:
    module = _module()
    return module.GSMSymbolicDataset(module.GSMSymbolicDatasetConfig(seed=0, size=1)).generators


def good_templates() -> tuple[str, ...]:
    """The templates reasoning-gym marks good, in TEMPLATE_ORDER."""
    ids = sorted(_module().tasks_ok)
    random.Random(TEMPLATE_ORDER_SEED).shuffle(ids)
    return tuple(str(i) for i in ids)


def broken_templates() -> frozenset[str]:
    """The templates reasoning-gym marks as needing a fix (tasks_need_fix)."""
    return frozenset(str(i) for i in _module().tasks_need_fix)


@dataclass(frozen=True)
class Problem:
    """One generated problem of a template, folded as the source folds its texts."""

    template: str
    index: int  # its draw within its stream
    question: str
    completion: str  # the worked solution, ending "#### N"
    answer: str  # N as reasoning-gym formats it
    key: str  # prompt_key(question): one key, one problem

    @property
    def answer_start(self) -> int:
        return self.completion.rfind(MARKER)


@functools.lru_cache(maxsize=2**15)  # a grid draws a template's streams again for each cell
def problem(template: str, stream: str, index: int, fold: str) -> Problem:
    """The `index`th draw of a template's stream: deterministic in its arguments."""
    drawn = _generators()[int(template)](random.Random(f"{template}:{stream}:{index}"), 1.0)
    question = fold_text(drawn["question"], fold)
    return Problem(template, index, question, fold_text(drawn["metadata"]["answer_cot"], fold), drawn["answer"],
                   prompt_key(question))


def distinct_problems(template: str, stream: str, count: int, fold: str,
                      excluded: frozenset[str] = frozenset()) -> list[Problem]:
    """The first `count` distinct problems of a template's stream whose keys are not `excluded`; a ValueError
    where the template gives fewer within 20 draws per problem asked (some templates hold only a few hundred)."""
    found: list[Problem] = []
    seen = set(excluded)
    draws = 20 * count + 200
    for index in range(draws):
        if len(found) == count:
            break
        drawn = problem(template, stream, index, fold)
        if drawn.key not in seen:
            seen.add(drawn.key)
            found.append(drawn)
    if len(found) < count:
        raise ValueError(f"gsm_symbolic template {template} gives {len(found)} distinct problems in {draws} draws, "
                         f"fewer than the {count} needed")
    return found


def answers_equal(reference: str, stated: str | None) -> bool:
    """Whether a stated answer is the reference number ("16.0" and "1,600" read as numbers); text that is no
    number is wrong."""
    if stated is None:
        return False
    try:
        return Fraction(stated.replace(",", "").strip()) == Fraction(reference.replace(",", "").strip())
    except (ValueError, ZeroDivisionError):
        return False


@dataclass(frozen=True)
class GsmAnswerGrader:
    """A `Grader` of the answer after the last `####`, compared with the reference as a number; steps are counted,
    never verified (process and chain accuracy undefined)."""

    def __call__(self, example: Example, completion: str) -> Grade:
        steps, stated = _EXTRACTOR.parse(completion)
        return Grade(answer_correct=answers_equal(example.answer, stated), process_acc=float("nan"),
                     chain_correct=None, steps=len(steps))


@functools.lru_cache(maxsize=256)
def template_chance(template: str, fold: str) -> float:
    """The share of the most common answer among a template's distinct problems in CHANCE_DRAWS draws: what always
    giving that answer would score."""
    drawn = [problem(template, "chance", index, fold) for index in range(CHANCE_DRAWS)]
    answers = Counter(Fraction(p.answer) for p in {p.key: p for p in drawn}.values())
    return max(answers.values()) / sum(answers.values())


def _example(drawn: Problem, split: str, cot: str, chance: float, corrupted_line: int | None = None) -> Example:
    completion = styled_text(drawn.completion, drawn.answer_start, cot)
    steps, _ = _EXTRACTOR.parse(completion)
    digest = hashlib.blake2b(f"{NAME}/{drawn.template}\n{drawn.question}".encode(), digest_size=8).hexdigest()
    return Example(digest, drawn.template, split, 0, drawn.question, tuple(steps), drawn.answer, completion, cot=cot,
                   key=drawn.key, chance=chance, corrupted=corrupted_line is not None, corrupted_step=corrupted_line)


def corrupted(drawn: Problem, seed: int) -> tuple[Problem, int] | None:
    """The problem with one arithmetic error in its CoT (seeded by the cell's seed and the row) and the line it is
    on; None where the CoT has no statement to corrupt."""
    injected = inject_error(drawn.completion, random.Random(f"{drawn.template}:corrupt:{seed}:{drawn.index}"))
    if injected is None:
        return None
    text, statement = injected
    return dataclasses.replace(drawn, completion=text), check_steps(text).statements[statement].line


@dataclass(frozen=True)
class GsmSymbolicSource:
    """reasoning-gym's GSM-style templates as a grid's data source (see `scaling.tasks.source.DataSource`); made by
    `gsm_symbolic_source`, which fills in the default groups."""

    spec_keys: ClassVar[tuple[str, ...]] = ("source", "groups", "ood_groups", "fold")  # the [data] keys it takes
    trained_key: ClassVar[str] = "groups"  # the [data] key that lists what diversity counts
    needs_spec_dir: ClassVar[bool] = False  # it names no file

    groups: tuple[str, ...]  # template ids, ordered: diversity k trains on the first k
    ood_groups: tuple[str, ...] = ()  # templates held out of every mixture: the ood_family split
    fold: str = "none"  # how its texts are written (scaling.tasks.real.fold)

    def __post_init__(self) -> None:
        if self.fold not in FOLDS:
            raise ValueError(f"[data] fold must be one of {', '.join(FOLDS)}, got {self.fold!r}")
        if not self.groups:
            raise ValueError("[data] groups: gsm_symbolic needs at least one template to train on")
        broken = broken_templates()
        for where, names in (("groups", self.groups), ("ood_groups", self.ood_groups)):
            for name in names:
                if not (name.isdigit() and str(int(name)) == name and int(name) in _generators()):
                    raise ValueError(f"[data] {where}: unknown gsm_symbolic template {name!r}; templates are "
                                     f"\"0\"..\"99\"")
                if name in broken:
                    raise ValueError(f"[data] {where}: gsm_symbolic template {name} is one reasoning-gym marks as "
                                     f"needing a fix (tasks_need_fix), so its problems are not trusted")
            if len(set(names)) < len(names):
                raise ValueError(f"[data] {where}: template {Counter(names).most_common(1)[0][0]!r} is named twice")
        if set(self.groups) & set(self.ood_groups):
            raise ValueError(f"[data] ood_groups {sorted(set(self.groups) & set(self.ood_groups))} are also in groups "
                             f"(a held-out template is never trained)")

    @property
    def trained(self) -> tuple[str, ...]:
        return self.groups

    @property
    def default_splits(self) -> tuple[str, ...]:
        """The splits it makes: ood_family only where templates are held out."""
        return tuple(s for s in SPLITS if s != "ood_family" or self.ood_groups)

    @property
    def grader(self) -> Grader:
        return GsmAnswerGrader()

    @property
    def zero_shot_grader(self) -> Grader:
        return LenientGrader(solved=False)  # no family solves a template: the example's own answer is the reference

    def check_grid(self, splits: Sequence[str], qualities: Sequence[float]) -> None:
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise ValueError(f"[eval] splits: split {unknown[0]!r} needs the synthetic families; gsm_symbolic makes "
                             f"the splits {', '.join(SPLITS)}")
        if "ood_family" in splits and not self.ood_groups:
            raise ValueError("[eval] splits: ood_family needs [data] ood_groups (templates held out of every mixture)")

    def check_files(self, splits: Sequence[str], n: int, eval_seed: int, pools: Sequence[tuple[int, int, float]],
                    seed: int) -> None:
        """That the evaluation set and each pool (diversity, examples, quality) at `seed` can be drawn: every
        template asked for gives enough distinct problems."""
        try:
            evaluation = self.evaluation_set(splits, n, eval_seed, "full")
        except ValueError as error:
            raise UserError(f"[eval] n = {n}: {error}") from None
        held_out = frozenset(e.key for examples in evaluation.values() for e in examples)
        for diversity, examples, quality in pools:
            try:
                self.training_pool(diversity, examples, seed, quality, "full", held_out)
            except ValueError as error:
                raise UserError(f"[data] examples = {examples} at diversity {diversity}: {error}") from None

    def first_unencodable(self, alphabet: str) -> tuple[str, int, str] | None:
        """(where, draw, character) of the first character outside the alphabet among each template's first
        CHANCE_DRAWS draws (a template's characters come from its text and its lists of names and items, which
        that many draws meet)."""
        allowed = set(alphabet)
        for template in (*self.groups, *self.ood_groups):
            for index in range(CHANCE_DRAWS):
                drawn = problem(template, "chance", index, self.fold)
                outside = set(drawn.question + drawn.completion) - allowed
                if outside:
                    text = drawn.question + drawn.completion
                    return (f'gsm_symbolic template {template} ([data] fold = "ascii" folds it)', index,
                            min(outside, key=text.index))
        return None

    def drawn_content(self) -> dict:
        """What decides its rows beyond the written keys: the package version drawn from, the groups a default
        stands for, the fold."""
        return {"source": {"name": NAME, "package": REASONING_GYM.distribution,
                           "version": REASONING_GYM.installed_version()},
                "groups": list(self.groups), "fold": self.fold}

    def notes(self) -> tuple[str, ...]:
        return ()  # its evaluation rows are held out of training by key; nothing is removed to report

    def provenance(self) -> dict:
        """What a results file records of its data: package, installed version, licence, templates used."""
        return REASONING_GYM.provenance("arithmetic/gsm_symbolic") | {
            "source": NAME, "templates": list(self.groups), "held_out_templates": list(self.ood_groups),
            "fold": self.fold}

    def evaluation_set(self, splits: Sequence[str], n: int, seed: int, cot: str) -> dict[str, list[Example]]:
        """`n` distinct problems of each trained template (`id`) and of each held-out one (`ood_family`), from the
        stream of the evaluation seed: the same for every cell."""
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise ValueError(f"split {unknown[0]!r} needs the synthetic families; gsm_symbolic has the splits "
                             f"{', '.join(SPLITS)}")
        return _evaluation_set(self, tuple(splits), n, seed, cot)

    def training_pool(self, diversity: int, n_examples: int, seed: int, quality: float, cot: str,
                      held_out: frozenset[str]) -> list[Example]:
        """The SFT examples of a mixture of the first `diversity` templates, evenly shared, shuffled: no problem in
        `held_out`; round(quality · share) of each template's rows correct, the rest with one arithmetic error."""
        if not 1 <= diversity <= len(self.groups):
            raise ValueError(f"diversity {diversity} must lie between 1 and the {len(self.groups)} templates given")
        return self._pool(self.groups[:diversity], n_examples, seed, cot, held_out, quality)

    def control_splits(self, splits: Sequence[str]) -> tuple[str, ...]:
        return ("ood_family",) if "ood_family" in splits else ()

    def control_trained(self, split: str) -> tuple[str, ...]:
        return self.ood_groups

    def control_pool(self, split: str, n_examples: int, seed: int, cot: str, held_out: frozenset[str]) -> list[Example]:
        """A positive control's SFT examples: problems of the held-out templates, none of them an evaluation one."""
        return self._pool(self.ood_groups, n_examples, seed, cot, held_out)

    def training_texts(self, pools: Sequence[tuple[int, int, float]], seeds: Sequence[int], control_n: int = 0,
                       held_out: frozenset[str] = frozenset()) -> tuple[str, ...]:
        """The prompt and full completion of every training row a grid's cells draw: each pool (diversity, examples,
        quality) at each seed, and the ood_family control's `control_n` examples at the first seed (0: no control).
        The short and none CoT styles keep a part of the full completion, so these texts hold theirs. With the
        evaluation set's keys as `held_out` they are the cells' rows exactly; without, the rows drawn as if none
        were held out (a cell takes the next problem where a draw repeats an evaluation one)."""
        texts: dict[str, None] = {}
        drawn = [self.training_pool(d, n, seed, 1.0, "full", held_out) for d, n, _ in pools for seed in seeds]
        if control_n and self.ood_groups:
            drawn.append(self.control_pool("ood_family", control_n, seeds[0], "full", held_out))
        for examples in drawn:
            texts.update((f"{e.prompt}\n{e.completion}", None) for e in examples)
        return tuple(texts)

    def _pool(self, templates: Sequence[str], n_examples: int, seed: int, cot: str,
              held_out: frozenset[str], quality: float = 1.0) -> list[Example]:
        """Unique SFT examples evenly over `templates`, shuffled by the seed: each template's first distinct
        problems of its training stream, so a smaller share is a prefix of a larger one; past round(quality · share)
        of them, each with one arithmetic error in its CoT."""
        pool: list[Example] = []
        for template, share in zip(templates, even_shares(n_examples, len(templates))):
            chance = template_chance(template, self.fold)
            correct = round(quality * share)
            for rank, drawn in enumerate(distinct_problems(template, f"train:{seed}", share, self.fold, held_out)):
                wrong = corrupted(drawn, seed) if rank >= correct else None
                pool.append(_example(wrong[0], "train", cot, chance, wrong[1]) if wrong else
                            _example(drawn, "train", cot, chance))
        order = np.random.default_rng([seed, 1]).permutation(len(pool))
        return [pool[i] for i in order]


def gsm_symbolic_source(groups: Sequence[str], ood_groups: Sequence[str], fold: str) -> GsmSymbolicSource:
    """The source a grid's [data] describes: `groups` as given, or (none given) the good templates less `ood_groups`."""
    chosen = tuple(groups) or tuple(t for t in good_templates() if t not in ood_groups)
    return GsmSymbolicSource(chosen, tuple(ood_groups), fold)


@functools.lru_cache(maxsize=8)  # the same for every cell of a grid
def _evaluation_set(source: GsmSymbolicSource, splits: tuple[str, ...], n: int, seed: int,
                    cot: str) -> dict[str, list[Example]]:
    split_templates = {"id": source.groups, "ood_family": source.ood_groups}
    out = {}
    for split in splits:
        if split == "train":
            continue
        if not split_templates[split]:
            raise ValueError(f"split {split!r} has no templates: name [data] ood_groups")
        out[split] = [_example(p, split, cot, template_chance(template, source.fold))
                      for template in split_templates[split]
                      for p in distinct_problems(template, f"eval:{seed}", n, source.fold)]
    return out
