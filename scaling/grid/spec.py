"""Grid specs: a TOML file, validated before any work starts, expanded into content-addressed cells.

A spec names the axes whose Cartesian product is the set of cells, the SFT data, the optimizer and
the evaluation; `[run]` says how to execute and never changes a result, so it is not part of a
cell's id. Every problem is a UserError naming the section and key, so `scaling run` can print one
line and exit 2 before anything is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from scaling.trainer.config import FULL, LoraConfig, TrainConfig, adapter_label
from scaling.errors import UserError
from scaling.user_files import regular_file
from scaling.grid.bases import Base, Pretraining, parse_base
from scaling.schema import DATA_VERSION, LEGACY_AXES
from scaling.tasks.dataset import DatasetSource
from scaling.tasks.jsonl import AnswerExtractor
from scaling.tasks.mixture import SPLITS
from scaling.tasks.quality import COT_STYLES
from scaling.tasks.real.evaluation import BENCHMARKS, BenchmarkSource, check_sources
from scaling.tasks.real.fold import FOLDS
from scaling.tasks.real.gsm_symbolic import GsmSymbolicSource, gsm_symbolic_source
from scaling.tasks.source import FAMILY_SPLITS, DataSource, FamilySource, default_ood_families
from scaling.typed_toml import typed_table

EXECUTORS = ("local", "ray", "slurm")
MAX_SEED = 2**31  # seeds feed jax.random.key and numpy generators, which take at most 63 bits; 31 keep every use safe
# Upper bounds of the numeric keys: a value past one is impossible here, and would overflow a 32-bit field or ask to
# allocate what no machine holds (batch_size = 10^11 once asked numpy for 34.9 TiB) instead of being refused by name.
MAX_STEPS = 10**9  # optimizer steps (budgets, warmup, checkpoints): steps reach jax.random.fold_in as 32 bits
MAX_ROWS = 2**20  # rows of a train step or an evaluation batch: a batch's arrays are rows x tokens per row
MAX_ROW_TOKENS = 2**20  # tokens of a row (pack_length, pretrain_context): as long as any model's context
MAX_TOKENS = 10**14  # pretraining tokens: more than the largest corpora any model is trained on
MAX_EXAMPLES = 10**7  # unique SFT examples of a cell: each is drawn and held in memory (about a kilobyte)
MAX_EVALUATED = 10**5  # evaluation problems per family: every cell decodes each at every budget
MAX_COUNT = 2**31 - 1  # Ray and SLURM counts (CPUs, GB, minutes, retries): 32-bit fields there
MAX_WORKERS = 1024  # local worker processes: more than any one machine's cores
MAX_WAIT_S = 86_400  # [run] seconds (heartbeat, staleness, grace): a day; the timers of lock and grace threads
# overflow the platform's time_t near 1e11 s, in a thread, as a traceback instead of a refusal


def _check_bounds(section: str, config, bounds: dict[str, int]) -> None:
    """ValueError naming the first key of `config` above its bound, or a float key that is not finite."""
    for name, bound in bounds.items():
        value = getattr(config, name)
        too_big = [v for v in (value if isinstance(value, tuple) else (value,)) if v > bound]
        if too_big:
            raise ValueError(f"[{section}] {name} must be at most {bound:,}, got {too_big[0]}")
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, tuple) else (value,))):
            raise ValueError(f"[{section}] {f.name} must be a finite number, got {value}")


@dataclass(frozen=True)
class AxesSpec:
    """The grid's axes: every combination is one cell."""

    size: tuple[str, ...]  # the bases (see scaling.grid.bases): preset names or "hf:PATH"; the axis keeps its first
    # name, which results files and cell ids hold
    pretrain_tokens: tuple[int, ...] = (0,)  # corpus tokens a preset base is pretrained on (0: random init)
    diversity: tuple[int, ...] = (1,)  # number of SFT families: the first k of [data] families
    quality: tuple[float, ...] = (1.0,)  # fraction of SFT examples whose CoT is correct
    cot: tuple[str, ...] = ("full",)  # CoT style: full, short or none
    seed: tuple[int, ...] = (0,)  # data, initialization and data-order seed
    adapter: tuple[LoraConfig | None, ...] | None = None  # what trains: None in the tuple is full fine-tuning, a
    # LoraConfig LoRA adapters on the frozen base; written "full" or { rank = 8, alpha = 16, ... } (`parse_adapter`).
    # None: not an axis here ([train] adapter, or full fine-tuning)

    def __post_init__(self) -> None:
        _check_bounds("axes", self, {"pretrain_tokens": MAX_TOKENS})
        if self.adapter is not None:
            labels = [adapter_label(a) for a in self.adapter]
            if not labels or len(set(labels)) != len(labels):
                raise ValueError(f"[axes] adapter must list distinct adapters, got {labels}")
        bases = [parse_base(size, Path(".")) for size in self.size]
        if any(t < 0 for t in self.pretrain_tokens):
            raise ValueError(f"[axes] pretrain_tokens must be >= 0, got {list(self.pretrain_tokens)}")
        for base in bases:
            base.check_pretrain_tokens(self.pretrain_tokens)
        if any(k < 1 for k in self.diversity):
            raise ValueError(f"[axes] diversity must be >= 1, got {list(self.diversity)}")
        if any(not 0.0 <= q <= 1.0 for q in self.quality):
            raise ValueError(f"[axes] quality must lie in [0, 1], got {list(self.quality)}")
        if any(c not in COT_STYLES for c in self.cot):
            raise ValueError(f"[axes] cot must be among {', '.join(COT_STYLES)}, got {list(self.cot)}")
        if any(not 0 <= s < MAX_SEED for s in self.seed):
            raise ValueError(f"[axes] seed must lie in 0..{MAX_SEED - 1}, got {list(self.seed)}")


@dataclass(frozen=True)
class AnswerSpec:
    """How a dataset's answers are read from completions (see scaling.tasks.jsonl.AnswerExtractor)."""

    mode: str = "marker"  # marker, regex or last_number
    marker: str = "####"  # marker: the answer is the rest of the line after the marker's last occurrence
    pattern: str = ""  # regex: the last match's group 1 (or the whole match) is the answer

    def __post_init__(self) -> None:
        try:
            self.extractor()
        except UserError as error:
            raise ValueError(f"[data] answer: {error}") from None

    def extractor(self) -> AnswerExtractor:
        return AnswerExtractor(self.mode, self.marker, self.pattern or None)


# Sources named by a word in place of a file, each made of [data]'s groups, ood_groups and fold. A `source` with no
# path separator and no extension is a name (a file named like a word is written "./word"): a mistyped name is then
# refused as one, not looked for as a missing file.
NAMED_SOURCES: dict[str, Callable[..., DataSource]] = {"gsm_symbolic": gsm_symbolic_source}
NAMED_SPEC_KEYS = GsmSymbolicSource.spec_keys  # the [data] keys a named source takes
# The [data] keys only one kind of source takes: the others' stay out of a grid's cell ids, which stay what they were.
SOURCE_KEYS = tuple(dict.fromkeys(FamilySource.spec_keys + DatasetSource.spec_keys + NAMED_SPEC_KEYS))
EXAMPLES_PER = ("cell", "family")  # meaningless for a dataset, so not in its cell ids


@dataclass(frozen=True)
class DataSpec:
    """The SFT data shared by every cell, as [data] writes it: synthetic task families, or a user's JSONL dataset
    (`source`). What the cells draw from is its `data_source`."""

    families: tuple[str, ...] = ()  # ordered task families; diversity k trains on the first k
    ood_families: tuple[str, ...] | None = field(default=None, metadata={"empty": True})  # held out of every mixture:
    # the ood_family split (None: the default pair less any trained, tasks.source.default_ood_families; []: none)
    examples: int = 2000  # unique SFT examples per cell, whatever the diversity (examples_per = "cell")
    examples_per: str = "cell"  # "family": examples per trained family, so diversity k trains on k·examples
    phrasings: int = 0  # prompt phrasings per family (0: all of them)
    pack_length: int = 0  # tokens per packed training row (0: the cell's longest sequence)
    source: str = ""  # a JSONL file of your own SFT data in place of families (relative: to the spec's folder), or
    # a named real source (NAMED_SOURCES: "gsm_symbolic")
    eval_source: str = ""  # a JSONL file of evaluation rows ("": held back from source)
    group_by: str = "family"  # source: the field whose values play the part of families
    groups: tuple[str, ...] = ()  # source: ordered groups; diversity k trains on the first k
    ood_groups: tuple[str, ...] = ()  # source: groups held out of every mixture (the ood_family split)
    quality_field: str = ""  # source: a boolean field marking verified rows; quality q keeps that share verified
    answer: AnswerSpec = field(default_factory=AnswerSpec)  # source: how answers are read from completions
    fold: str = "none"  # a named source: its texts as written ("none"), or folded into the character tokenizer's
    # alphabet ("ascii", scaling.tasks.real.fold) so a preset base can spell them

    def __post_init__(self) -> None:
        _check_bounds("data", self, {"examples": MAX_EXAMPLES, "pack_length": MAX_ROW_TOKENS})
        self.data_source(Path("."))  # the source checks itself
        if self.examples_per not in EXAMPLES_PER:
            raise ValueError(f"[data] examples_per must be one of {', '.join(EXAMPLES_PER)}, got {self.examples_per!r}")
        for name, minimum in (("examples", 1), ("phrasings", 0), ("pack_length", 0)):
            if getattr(self, name) < minimum:
                raise ValueError(f"[data] {name} must be >= {minimum}, got {getattr(self, name)}")

    def examples_at(self, diversity: int) -> int:
        """Unique SFT examples of a cell at this diversity: fixed per cell (diversity not confounded with
        amount), or fixed per family (each family learned from as many examples whatever the diversity)."""
        return self.examples * (diversity if self.examples_per == "family" else 1)

    @property
    def trained(self) -> tuple[str, ...]:
        """The ordered families or groups a cell's diversity counts."""
        return self.data_source(Path(".")).trained

    def data_source(self, base_dir: Path) -> DataSource:
        """What the cells draw from, its paths resolved against the spec's folder: a named real source where `source`
        is one's name, a user's file where it names one, else the synthetic families (the one place that tells them
        apart). A key of another kind is refused."""
        if self.fold not in FOLDS:
            raise ValueError(f"[data] fold must be one of {', '.join(FOLDS)}, got {self.fold!r}")
        if self.source in NAMED_SOURCES:
            self._refuse(FamilySource.spec_keys, f"names synthetic tasks; source = {self.source!r} trains on its own "
                                                 f"groups (groups, ood_groups)")
            self._refuse(tuple(k for k in DatasetSource.spec_keys if k not in NAMED_SPEC_KEYS),
                         f"describes a JSONL file; source = {self.source!r} makes its own rows, groups and answers")
            return NAMED_SOURCES[self.source](self.groups, self.ood_groups, self.fold)
        if self.source and is_source_name(self.source):
            raise ValueError(f"[data] source: unknown source {self.source!r}: named sources are "
                             f"{', '.join(NAMED_SOURCES)}; otherwise give a JSONL file (a file named like a word: "
                             f"./{self.source})")
        self._refuse(("fold",), "applies to a named source (gsm_symbolic): the synthetic families and a JSONL file's "
                                "rows are used as written")
        if self.source:
            self._refuse(FamilySource.spec_keys, "names synthetic tasks; with source, the groups of your data stand in "
                                                 "their place (groups, ood_groups)")
            return DatasetSource(str(_resolved(self.source, base_dir)), self.groups, self.ood_groups, self.group_by,
                                 self.quality_field, self.answer.extractor(),
                                 str(_resolved(self.eval_source, base_dir)) if self.eval_source else "")
        self._refuse(DatasetSource.spec_keys, "describes a dataset: give source = a JSONL file with it")
        held_out = default_ood_families(self.families) if self.ood_families is None else self.ood_families
        return FamilySource(self.families, held_out, self.phrasings)

    def _refuse(self, keys: tuple[str, ...], why: str) -> None:
        given = [key for key in keys if getattr(self, key) != _default(DataSpec, key)]
        if given:
            raise ValueError(f"[data] {given[0]} {why}")

    def results_content(self, base_dir: Path) -> dict:
        """The [data] that determines results: the source's own keys, its files as it fingerprints them."""
        content = dataclasses.asdict(self)
        if self.examples_per == "cell":  # the default before the key existed: earlier grids keep their cell ids
            del content["examples_per"]
        source = self.data_source(base_dir)
        return {k: v for k, v in content.items() if k not in SOURCE_KEYS or k in source.spec_keys} | source.drawn_content()


def is_source_name(source: str) -> bool:
    """Whether a [data] source is written as a name (no path separator, no extension) rather than a file."""
    return re.fullmatch(r"[A-Za-z0-9_-]+", source) is not None


def _default(cls, name: str):
    """A dataclass field's default value."""
    f = cls.__dataclass_fields__[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _resolved(path: str, base_dir: Path) -> Path:
    """A path as written in a spec: relative ones are relative to the spec's folder."""
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else Path(base_dir) / resolved


@dataclass(frozen=True)
class TrainSpec:
    """Optimization of every cell (see scaling.trainer.config.TrainConfig) and of pretrained bases."""

    budgets: tuple[int, ...]  # the steps axis: optimizer steps at which each cell is evaluated
    batch_size: int = 32  # training rows per step (packed rows hold several examples)
    lr: float = 3e-3  # AdamW peak learning rate
    warmup_steps: int = 20  # linear warmup steps
    weight_decay: float = 0.1  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # global gradient-norm clip
    schedule: str = "wsd"  # wsd (one run, an annealed branch per budget), cosine or constant
    decay_fraction: float = 0.2  # wsd: each budget's decay is this fraction of it
    steps_axis: str = "branches"  # branches, or separate: one fresh run per budget, to validate
    checkpoint_every: int = 0  # also checkpoint every this many trunk steps (0: after each budget only)
    pretrain_batch_size: int = 32  # pretraining rows per step
    pretrain_lr: float = 3e-3  # pretraining peak learning rate (cosine schedule)
    pretrain_context: int = 256  # pretraining row length in tokens
    adapter: LoraConfig | None = None  # every cell's: None, written "full", trains every weight; a LoRA table
    # { rank, alpha, dropout, targets } trains adapters on the frozen base (see `parse_adapter`)

    def __post_init__(self) -> None:
        _check_bounds("train", self, {"budgets": MAX_STEPS, "warmup_steps": MAX_STEPS, "checkpoint_every": MAX_STEPS,
                                      "batch_size": MAX_ROWS, "pretrain_batch_size": MAX_ROWS,
                                      "pretrain_context": MAX_ROW_TOKENS})
        try:
            self.config(seed=0)
        except ValueError as error:
            raise ValueError(f"[train] {str(error).removeprefix('TrainConfig.')}") from None
        for name in ("pretrain_batch_size", "pretrain_context"):
            if getattr(self, name) < 1:
                raise ValueError(f"[train] {name} must be >= 1, got {getattr(self, name)}")
        if not self.pretrain_lr > 0:
            raise ValueError(f"[train] pretrain_lr must be > 0, got {self.pretrain_lr}")
        if self.weight_decay < 0 or not self.grad_clip > 0:
            raise ValueError(f"[train] need weight_decay >= 0 and grad_clip > 0, got {self.weight_decay} and {self.grad_clip}")

    @property
    def pretraining(self) -> Pretraining:
        """How preset bases are pretrained."""
        return Pretraining(self.pretrain_context, self.pretrain_batch_size, self.pretrain_lr)

    def config(self, seed: int) -> TrainConfig:
        """The optimizer settings of a cell with this seed."""
        return TrainConfig(budgets=self.budgets, batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
                           weight_decay=self.weight_decay, grad_clip=self.grad_clip, seed=seed, schedule=self.schedule,
                           decay_fraction=self.decay_fraction, steps_axis=self.steps_axis,
                           checkpoint_every=self.checkpoint_every)


@dataclass(frozen=True)
class EvalSpec:
    """What every cell is evaluated on at every budget."""

    splits: tuple[str, ...] = FAMILY_SPLITS  # see tasks.mixture.SPLITS; a spec that names none takes
    # its data source's (`parse_spec`)
    n: int = 256  # problems per family (a dataset: per group) of each evaluation split, the same for every cell
    batch_size: int = 256  # examples decoded together (capped: `decode_batch`; decoding slows per row beyond ~64 on CPU)
    seed: int = 0  # draws the evaluation set, whatever the cells' seeds: every cell meets the same problems
    memorization_n: int = 128  # the train split: a cell's first correct training items, for its memorization step
    controls: bool = False  # also train a positive control per base, CoT style and out-of-distribution split: a cell
    # trained on that split's own distribution, whose accuracy there is the split's headroom (Cell.control)
    sources: tuple[str, ...] = ()  # benchmarks evaluated beside the splits, each a split of its name
    # (scaling.tasks.real.evaluation.BENCHMARKS: gsm8k, math500, math), decontaminated against the training data
    benchmark_n: int = 0  # items of each benchmark, chosen by `seed`, the same for every cell (0: all decontaminated)

    def __post_init__(self) -> None:
        _check_bounds("eval", self, {"n": MAX_EVALUATED, "memorization_n": MAX_EVALUATED, "batch_size": MAX_ROWS,
                                     "benchmark_n": MAX_EVALUATED})
        check_sources(self.sources)
        unknown = [s for s in self.splits if s not in SPLITS and s not in BENCHMARKS]
        if unknown:
            raise ValueError(f"[eval] splits: unknown split {unknown[0]!r}; splits are {', '.join(SPLITS)} (and the "
                             f"benchmarks of [eval] sources: {', '.join(BENCHMARKS)})")
        unnamed = [s for s in self.splits if s in BENCHMARKS and s not in self.sources]
        if unnamed:
            raise ValueError(f"[eval] splits: {unnamed[0]!r} is a benchmark: name it in [eval] sources")
        if self.benchmark_n < 0 or (self.benchmark_n and not self.sources):
            raise ValueError(f"[eval] benchmark_n must be >= 0 and needs [eval] sources, got {self.benchmark_n}")
        if self.n < 1 or self.batch_size < 1 or self.memorization_n < 1:
            raise ValueError(f"[eval] n, batch_size and memorization_n must be >= 1, got {self.n}, {self.batch_size} "
                             f"and {self.memorization_n}")
        if not 0 <= self.seed < MAX_SEED:
            raise ValueError(f"[eval] seed must lie in 0..{MAX_SEED - 1}, got {self.seed}")

    @property
    def decode_batch(self) -> int:
        """Rows decoded together: batch_size, capped at the most problems one family (n) or one benchmark
        (benchmark_n; all its items: uncapped) gives a split. Capped at n alone, a grid with 2 problems a template
        decoded its 500 GSM8K items 2 at a time (runs/gsm's first real-base cell evaluated for over half an hour)."""
        most = max(self.n, self.benchmark_n or self.batch_size) if self.sources else self.n
        return min(self.batch_size, most)


ADVANTAGES = ("grpo", "dr_grpo")  # [rl] advantage: group-normalized, or Dr. GRPO's (not divided by the group's std)


def _check_arm_steps(section: str, arm) -> None:
    """The step axes every arm has: its own budgets (0: the SFT model itself), and the SFT budgets it starts from."""
    _check_bounds(section, arm, {"budgets": MAX_STEPS, "from_budgets": MAX_STEPS, "checkpoint_every": MAX_STEPS})
    if any(b < 0 for b in arm.budgets) or list(arm.budgets) != sorted(arm.budgets):
        raise ValueError(f"[{section}] budgets must be ascending steps >= 0 (0: the SFT model itself), got {list(arm.budgets)}")
    if arm.checkpoint_every < 0:
        raise ValueError(f"[{section}] checkpoint_every must be >= 0, got {arm.checkpoint_every}")
    if not 0 < arm.temperature:
        raise ValueError(f"[{section}] temperature must be > 0 (sampling; 0 would be greedy decoding), got {arm.temperature}")
    if not 0 < arm.top_p <= 1:
        raise ValueError(f"[{section}] top_p must lie in (0, 1], got {arm.top_p}")
    if not arm.lr > 0:
        raise ValueError(f"[{section}] lr must be > 0, got {arm.lr}")


def _check_config(section: str, arm) -> None:
    """The arm trainer's own checks of the settings (RLConfig's, RFTConfig's), each refusal naming the section's key:
    what the spec's checks above do not cover (a repeated budget, an unknown schedule) is refused here too, not in
    the middle of a run."""
    try:
        arm.config(0)
    except ValueError as error:
        raise ValueError(re.sub(r"^R[LF]T?Config\.", f"[{section}] ", str(error))) from None


@dataclass(frozen=True)
class RLSpec:
    """RL with verifiable rewards (GRPO) after SFT, as scaling.trainer.grpo.RLConfig takes it: from each of
    `from_budgets`' SFT models, an arm evaluated at each of `budgets` RL steps. Its prompts are the cell's own
    training prompts, never the evaluation set; its reward, the data's verifier."""

    from_budgets: tuple[int, ...]  # SFT budgets the arm starts from, each one of [train] budgets
    budgets: tuple[int, ...]  # the arm's step axis: RL steps at which it is evaluated (0: the SFT model itself)
    group_size: int = 8  # completions sampled per prompt; their rewards are compared within the group
    prompts_per_step: int = 8  # training prompts drawn per RL step (at most the cell's training examples)
    temperature: float = 1.0  # sampling temperature (> 0)
    top_p: float = 1.0  # nucleus sampling: the smallest set of tokens holding this probability (1: all)
    kl_coef: float = 0.0  # weight of the KL penalty to the SFT model (0: none)
    clip_eps: float = 0.2  # the ratio objective is clipped to [1 - clip_eps, 1 + clip_eps]
    advantage: str = "grpo"  # grpo (group-normalized) or dr_grpo (not divided by the group's std)
    lr: float = 1e-4  # AdamW learning rate of the RL updates
    warmup_steps: int = 0  # linear warmup of that rate
    process_credit: float = 0.0  # reward = answer correct + this x the verified share of the CoT
    max_new: int = 0  # tokens sampled per completion (0: as evaluation decodes, from the gold completions)
    updates_per_step: int = 1  # optimizer updates per batch of samples (the ratio differs from 1 only past the first)
    checkpoint_every: int = 0  # also checkpoint every this many RL steps (0: after each budget only)

    def __post_init__(self) -> None:
        _check_arm_steps("rl", self)
        _check_bounds("rl", self, {"group_size": MAX_ROWS, "prompts_per_step": MAX_ROWS, "warmup_steps": MAX_STEPS,
                                   "max_new": MAX_ROW_TOKENS, "updates_per_step": MAX_STEPS})
        if self.group_size < 2:
            raise ValueError(f"[rl] group_size must be >= 2 (advantages compare completions of a prompt), got {self.group_size}")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"[rl] advantage must be one of {', '.join(ADVANTAGES)}, got {self.advantage!r}")
        for name, minimum in (("prompts_per_step", 1), ("updates_per_step", 1), ("warmup_steps", 0), ("max_new", 0)):
            if getattr(self, name) < minimum:
                raise ValueError(f"[rl] {name} must be >= {minimum}, got {getattr(self, name)}")
        if self.kl_coef < 0 or self.clip_eps <= 0 or self.process_credit < 0:
            raise ValueError(f"[rl] need kl_coef >= 0, clip_eps > 0 and process_credit >= 0, got {self.kl_coef}, "
                             f"{self.clip_eps} and {self.process_credit}")
        _check_config("rl", self)

    @property
    def prompts_drawn(self) -> tuple[str, int]:
        """The key naming how many training prompts the arm draws at once, and its value."""
        return "prompts_per_step", self.prompts_per_step

    def config(self, seed: int):
        """The RL settings of a cell with this seed (scaling.trainer.grpo.RLConfig)."""
        from scaling.trainer.grpo import RLConfig

        return RLConfig(budgets=self.budgets, group_size=self.group_size, prompts_per_step=self.prompts_per_step,
                        temperature=self.temperature, top_p=self.top_p, kl_coef=self.kl_coef, clip_eps=self.clip_eps,
                        advantage=self.advantage, lr=self.lr, warmup_steps=self.warmup_steps,
                        process_credit=self.process_credit, max_new=self.max_new,
                        updates_per_step=self.updates_per_step, seed=seed, checkpoint_every=self.checkpoint_every)


@dataclass(frozen=True)
class RFTSpec:
    """Rejection-sampling fine-tuning after SFT, as scaling.trainer.rft.RFTConfig takes it: `samples` completions
    per training prompt from the SFT model at each of `from_budgets`, the verified-correct distinct ones kept and
    fine-tuned on, evaluated at each of `budgets` fine-tuning steps."""

    from_budgets: tuple[int, ...]  # SFT budgets the arm starts from, each one of [train] budgets
    budgets: tuple[int, ...]  # the arm's step axis: fine-tuning steps at which it is evaluated (0: the SFT model)
    samples: int = 8  # completions sampled per training prompt (k)
    prompts: int = 0  # training prompts sampled from (0: all of the cell's training examples)
    temperature: float = 1.0  # sampling temperature (> 0)
    top_p: float = 1.0  # nucleus sampling (1: all tokens)
    max_new: int = 0  # tokens sampled per completion (0: as evaluation decodes, from the gold completions)
    lr: float = 1e-4  # AdamW learning rate of the fine-tuning on the kept completions
    batch_size: int = 16  # kept completions per fine-tuning step
    warmup_steps: int = 0  # linear warmup of that rate
    schedule: str = "constant"  # learning-rate schedule of the fine-tuning (as [train] schedule; wsd: a decay
    # branched per budget)
    checkpoint_every: int = 0  # also checkpoint every this many fine-tuning steps (0: after each budget only)

    def __post_init__(self) -> None:
        _check_arm_steps("rft", self)
        _check_bounds("rft", self, {"samples": MAX_ROWS, "prompts": MAX_EXAMPLES, "batch_size": MAX_ROWS,
                                    "warmup_steps": MAX_STEPS, "max_new": MAX_ROW_TOKENS})
        for name, minimum in (("samples", 1), ("prompts", 0), ("batch_size", 1), ("warmup_steps", 0), ("max_new", 0)):
            if getattr(self, name) < minimum:
                raise ValueError(f"[rft] {name} must be >= {minimum}, got {getattr(self, name)}")
        _check_config("rft", self)

    @property
    def prompts_drawn(self) -> tuple[str, int]:
        """The key naming how many training prompts the arm draws at once, and its value."""
        return "prompts", self.prompts

    def config(self, seed: int):
        """The RFT settings of a cell with this seed (scaling.trainer.rft.RFTConfig)."""
        from scaling.trainer.rft import RFTConfig

        return RFTConfig(budgets=self.budgets, samples=self.samples, prompts=self.prompts,
                         temperature=self.temperature, top_p=self.top_p, max_new=self.max_new, lr=self.lr,
                         batch_size=self.batch_size, warmup_steps=self.warmup_steps, schedule=self.schedule, seed=seed,
                         checkpoint_every=self.checkpoint_every)


@dataclass(frozen=True)
class RaySpec:
    """Resources of each Ray task (one task per cell)."""

    address: str = ""  # an existing cluster's HOST:PORT ("": start a local one); --address overrides
    num_cpus: float = 1.0  # CPUs reserved per cell
    num_gpus: float = 0.0  # GPUs reserved per cell (fractions share one)
    max_retries: int = 3  # retries of a cell whose worker died

    def __post_init__(self) -> None:
        _check_bounds("run.ray", self, {"num_cpus": MAX_COUNT, "num_gpus": MAX_COUNT, "max_retries": MAX_COUNT})
        if self.num_cpus < 0 or self.num_gpus < 0 or self.max_retries < 0:
            raise ValueError("[run.ray] num_cpus, num_gpus and max_retries must be >= 0")


@dataclass(frozen=True)
class SlurmSpec:
    """SLURM array jobs through submitit (one array task per cell)."""

    partition: str = ""  # "" leaves it to the cluster's default
    timeout_min: int = 60  # wall time per array task; a cell that runs out is requeued from its checkpoint
    cpus_per_task: int = 4
    gpus_per_node: int = 0
    mem_gb: int = 16
    array_parallelism: int = 64  # array tasks running at once
    max_num_timeout: int = 10  # requeues after preemption or timeout

    def __post_init__(self) -> None:
        _check_bounds("run.slurm", self, {name: MAX_COUNT for name in ("timeout_min", "cpus_per_task", "gpus_per_node",
                                                                        "mem_gb", "array_parallelism", "max_num_timeout")})
        if min(self.timeout_min, self.cpus_per_task, self.mem_gb, self.array_parallelism) < 1 or min(self.gpus_per_node, self.max_num_timeout) < 0:
            raise ValueError("[run.slurm] timeout_min, cpus_per_task, mem_gb, array_parallelism must be >= 1 and "
                             "gpus_per_node, max_num_timeout >= 0")


@dataclass(frozen=True)
class DesignSpec:
    """Planning the grid from a pilot; read only by `scaling run --dry-run`, never part of a cell's id."""

    pilot: str = ""  # a pilot run folder (or grades table) whose spreads size this grid: the dry run prints the
    # minimum detectable differences at [axes] seed's count and [eval]'s items per family (scaling.power);
    # relative: to the spec's folder ("": no plan)
    alpha: float = 0.05  # two-sided significance level of the planned tests
    power: float = 0.8  # the chance of detecting the minimum detectable difference

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1 or not 0 < self.power < 1:
            raise ValueError(f"[design] alpha and power must lie in (0, 1), got {self.alpha} and {self.power}")

    def pilot_path(self, base_dir: Path) -> Path:
        """The pilot, resolved against the spec's folder."""
        return _resolved(self.pilot, base_dir)


LOGS = ("none", "tensorboard", "wandb")  # [run] log: where cells' curves also go


@dataclass(frozen=True)
class RunSpec:
    """How to execute the grid; never part of a cell's id, so changing it never changes results."""

    executor: str = "local"  # local, ray or slurm; --executor overrides
    workers: int = 1  # local: worker processes (1: in this process); --workers overrides
    heartbeat_s: float = 10.0  # how often a running cell's lock is refreshed
    stale_after_s: float = 120.0  # a lock not refreshed for this long belongs to a dead runner
    grace_s: float = 10.0  # from SIGTERM (a preemption) to the end of the process: the step under way and the
    # cell's checkpoint must end within it, or are abandoned; well under SLURM's default KillWait of 30 s
    save_models: bool = False  # keep each cell's final model in RUN/models/CELL_ID/, a model folder that
    # `scaling export-hf` turns into a Hugging Face checkpoint (checkpoints are otherwise deleted when a cell is done)
    log: str = "none"  # also write each cell's curves for TensorBoard ("tensorboard") or W&B ("wandb", offline
    # unless WANDB_MODE says otherwise) under RUN/logs/
    ray: RaySpec = field(default_factory=RaySpec)
    slurm: SlurmSpec = field(default_factory=SlurmSpec)

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"[run] executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.workers < 1:
            raise ValueError(f"[run] workers must be >= 1, got {self.workers}")
        _check_bounds("run", self, {"workers": MAX_WORKERS, "heartbeat_s": MAX_WAIT_S, "stale_after_s": MAX_WAIT_S,
                                    "grace_s": MAX_WAIT_S})
        if not 0 < self.heartbeat_s < self.stale_after_s:
            raise ValueError(f"[run] need 0 < heartbeat_s < stale_after_s, got {self.heartbeat_s} and {self.stale_after_s}")
        if not 0 < self.grace_s < math.inf:
            raise ValueError(f"[run] grace_s must be a number of seconds > 0, got {self.grace_s}")
        if self.log not in LOGS:
            raise ValueError(f"[run] log must be one of {', '.join(LOGS)}, got {self.log!r}")


@dataclass(frozen=True)
class GridSpec:
    name: str  # names the default run folder runs/NAME
    axes: AxesSpec
    data: DataSpec
    train: TrainSpec
    eval: EvalSpec = field(default_factory=EvalSpec)
    run: RunSpec = field(default_factory=RunSpec)
    design: DesignSpec = field(default_factory=DesignSpec)  # planning only: not in results_content
    rl: RLSpec | None = None  # the RL arm after SFT (None: no [rl] section)
    rft: RFTSpec | None = None  # the rejection-sampling fine-tuning arm after SFT (None: no [rft] section)
    base_dir: str = "."  # the spec file's folder: hf:PATH and [data] files are relative to it
    text: str = field(default="", repr=False)  # the TOML it was read from: a run folder's grid.toml, results' provenance

    def __post_init__(self) -> None:
        """The checks across sections; each section checked its own fields when it was made."""
        source = self.source
        if any(k > len(source.trained) for k in self.axes.diversity):
            raise ValueError(f"[axes] diversity must lie in 1..{len(source.trained)} (the number of [data] "
                             f"{source.trained_key}), got {list(self.axes.diversity)}")
        source.check_grid(self.eval.splits, self.axes.quality)
        if self.axes.adapter is not None and self.train.adapter is not None:
            raise ValueError("adapter is given in both [axes] and [train]: give it in one")
        if self.arms and any(a is not None for a in self.adapters):
            raise ValueError(f"[{next(iter(self.arms))}] arms after SFT train full models: not with LoRA adapters")
        for arm, section in self.arms.items():
            missing = [b for b in section.from_budgets if b not in self.train.budgets]
            if missing:
                raise ValueError(f"[{arm}] from_budgets: {missing[0]} is no SFT budget to start from ([train] budgets "
                                 f"are {list(self.train.budgets)})")
            key, drawn = section.prompts_drawn
            pool = min(self.data.examples_at(k) for k in self.axes.diversity)
            if drawn > pool:
                raise ValueError(f"[{arm}] {key} {drawn} is more than the {pool} training examples a cell draws its "
                                 f"prompts from ([data] examples; never the evaluation set)")

    @property
    def adapters(self) -> tuple[LoraConfig | None, ...]:
        """The values of the adapter axis: [axes] adapter's, or the one [train] gives (None: full fine-tuning)."""
        return self.axes.adapter if self.axes.adapter is not None else (self.train.adapter,)

    @property
    def arms(self) -> dict[str, RLSpec | RFTSpec]:
        """The arms after SFT the spec asks for, by name (scaling.schema.ARMS), in that order."""
        return {name: section for name, section in (("rl", self.rl), ("rft", self.rft)) if section is not None}

    @property
    def source(self) -> DataSource:
        """What the cells draw their data from, paths resolved; with [eval] sources, the benchmark splits added,
        decontaminated against every training text the grid's pools and seeds can draw."""
        source = self.data.data_source(Path(self.base_dir))
        if not self.eval.sources:
            return source
        pools = tuple((diversity, self.data.examples_at(diversity), quality)
                      for diversity in self.axes.diversity for quality in self.axes.quality)
        return BenchmarkSource(source, self.eval.sources, self.eval.benchmark_n, self.eval.seed, pools, self.axes.seed,
                               self.data.fold)  # benchmark texts folded as the training texts are

    @property
    def bases(self) -> dict[str, Base]:
        """The base of each value of the size axis."""
        return {size: parse_base(size, Path(self.base_dir)) for size in self.axes.size}

    @property
    def needs_spec_dir(self) -> bool:
        """Whether its bases or data name files relative to the spec's folder."""
        return self.source.needs_spec_dir or any(base.needs_spec_dir for base in self.bases.values())

    def results_content(self) -> dict:
        """Everything in the spec that determines results (not `name`, `run` or where the file lies)."""
        evaluation = dataclasses.asdict(self.eval)
        del evaluation["controls"]  # whether controls run beside the cells changes no cell's results
        for key in ("sources", "benchmark_n"):  # only where given: grids without benchmarks keep their cell ids
            if evaluation[key] == _default(EvalSpec, key):
                del evaluation[key]
        axes, train = dataclasses.asdict(self.axes), dataclasses.asdict(self.train)
        # A cell's adapter enters its own id (see `_cells`), never the spec's part: full fine-tuning cells keep the
        # ids they had before adapters existed, and [train] adapter = X gives the cells of [axes] adapter = [X].
        del axes["adapter"], train["adapter"]
        content = {"axes": axes, "data": self.data.results_content(Path(self.base_dir)), "train": train,
                   "eval": evaluation}
        # Only where given: a grid without arms keeps every cell id it had before they existed.
        return content | {arm: dataclasses.asdict(section) for arm, section in self.arms.items()}


@dataclass(frozen=True)
class Cell:
    """One base × one mixture × one seed, with its content hash."""

    size: str  # the base, as the size axis names it (see `base`)
    pretrain_tokens: int
    diversity: int
    quality: float
    cot: str
    seed: int
    cell_id: str
    base: Base  # what `size` names, paths resolved: ask it for the tokenizer, model, weights and measures
    control: str = ""  # a positive control: the out-of-distribution split whose own distribution it trains on (its
    # pool is that split's, its diversity and quality are not axes); "": a cell of the grid's hypercube
    adapter: LoraConfig | None = None  # LoRA adapters trained on the frozen base; None: full fine-tuning

    @property
    def axes(self) -> dict:
        """The cell's value on each of scaling.schema.AXES (the adapter as its label)."""
        return {"size": self.size, "pretrain_tokens": self.pretrain_tokens, "diversity": self.diversity,
                "quality": self.quality, "cot": self.cot, "adapter": adapter_label(self.adapter), "seed": self.seed}

    @property
    def label(self) -> str:
        lora = f" adapter={adapter_label(self.adapter)}" if self.adapter is not None else ""
        if self.control:
            return (f"control={self.control} size={self.size} pretrain_tokens={self.pretrain_tokens} cot={self.cot} "
                    f"seed={self.seed}{lora}")
        return " ".join(f"{name}={value}" for name, value in self.axes.items() if name != "adapter") + lora


def load_spec(path: Path) -> GridSpec:
    """The validated spec in the TOML file at path."""
    path = regular_file(path, "grid spec")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"grid spec {path} is unreadable ({type(error).__name__})") from None
    spec = parse_spec(text, source=str(path), base_dir=path.resolve().parent)
    # Checked here, not in parse_spec: a run folder's copy of the spec stays readable if the pilot moves.
    if spec.design.pilot and not spec.design.pilot_path(Path(spec.base_dir)).exists():
        raise UserError(f"{path}: [design] pilot {spec.design.pilot_path(Path(spec.base_dir))} does not exist")
    return spec


def parse_spec(text: str, source: str = "grid spec", base_dir: Path = Path(".")) -> GridSpec:
    """The validated spec in TOML text; any problem is a UserError that names it."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{source} is not valid TOML: {error}") from None
    table = dict(table)
    name = table.pop("name", None)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UserError(f"{source}: `name` must be a word of letters, digits, _ . - (it names runs/NAME), got {name!r}")
    evaluation = table.get("eval", {})
    splits_given = isinstance(evaluation, dict) and "splits" in evaluation
    adapters = {key: table[key].pop("adapter") for key in ("axes", "train")
                 if isinstance(table.get(key), dict) and "adapter" in table[key]}
    sections = {}
    for key, cls in (("axes", AxesSpec), ("data", DataSpec), ("train", TrainSpec), ("eval", EvalSpec), ("run", RunSpec),
                     ("design", DesignSpec)):
        sections[key] = typed_table(cls, table.pop(key, {}), f"[{key}]", source)
    if not splits_given:  # the splits the data makes (the synthetic default names splits only families make)
        data_splits = sections["data"].data_source(Path(base_dir)).default_splits
        sections["eval"] = dataclasses.replace(sections["eval"], splits=data_splits)
    named = sections["eval"]  # each benchmark of [eval] sources is a split, whether [eval] splits names it or not
    sections["eval"] = dataclasses.replace(named, splits=named.splits + tuple(s for s in named.sources
                                                                               if s not in named.splits))
    try:
        if len(adapters) == 2:
            raise ValueError("adapter is given in both [axes] and [train]: give it in one")
        if "train" in adapters:
            sections["train"] = dataclasses.replace(sections["train"],
                                                    adapter=parse_adapter(adapters["train"], "[train] adapter", source))
        if "axes" in adapters:
            raw = adapters["axes"] if isinstance(adapters["axes"], list) else [adapters["axes"]]
            sections["axes"] = dataclasses.replace(sections["axes"], adapter=tuple(
                parse_adapter(one, "[axes] adapter", source) for one in raw))
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None
    for key, cls in (("rl", RLSpec), ("rft", RFTSpec)):
        if key in table:
            sections[key] = typed_table(cls, table.pop(key), f"[{key}]", source)
    if table:
        raise UserError(f"{source}: unknown key {sorted(table)[0]!r} (known: name, axes, data, train, eval, run, design, "
                        f"rl, rft)")
    try:
        spec = GridSpec(name=name, base_dir=str(base_dir), text=text, **sections)
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None
    for base in spec.bases.values():
        base.check_files(source)
    try:
        check_data(spec)
    except UserError as error:
        raise UserError(f"{source}: {error}") from None
    return spec


def parse_adapter(raw, where: str, source: str) -> LoraConfig | None:
    """An adapter as a spec writes it: "full" (None: every weight trains) or a LoRA table of LoraConfig's keys."""
    if raw == FULL:
        return None
    if not isinstance(raw, dict):
        raise UserError(f'{source}: {where} must be "full" or a table like {{ rank = 8, alpha = 16 }}, got {raw!r}')
    try:
        return typed_table(LoraConfig, raw, where, source)
    except UserError as error:
        text = str(error)
        raise UserError(text if where in text else text.replace(f"{source}: ", f"{source}: {where}: ", 1)) from None


def check_data(spec: GridSpec) -> None:
    """Everything about a grid's data that can be known before any work: its files' rows, that each cell's mixture
    and each evaluation split can be drawn, and that every base's tokenizer can spell it."""
    pools = [(diversity, spec.data.examples_at(diversity), quality)
             for diversity in spec.axes.diversity for quality in spec.axes.quality]
    spec.source.check_files(spec.eval.splits, spec.eval.n, spec.eval.seed, pools, spec.axes.seed[0])
    for base in spec.bases.values():
        base.check_spells(spec.source)
    if spec.arms:
        check_rewardable(spec)


REWARD_SAMPLE = 32  # training examples whose own completions are graded to show the data can reward the arms


def check_rewardable(spec: GridSpec) -> None:
    """A UserError where the data's grader rewards none of a sample of its training examples' own completions: the
    arms' reward is that grader's answer_correct, so such data has no verifier to learn from."""
    a = spec.axes
    sample = spec.source.training_pool(a.diversity[0], min(REWARD_SAMPLE, spec.data.examples_at(a.diversity[0])),
                                       a.seed[0], 1.0, "full", frozenset())
    grader = spec.source.grader
    if not any(grader(example, example.completion).answer_correct for example in sample):
        arm = next(iter(spec.arms))
        raise UserError(f"[{arm}] the data has no verifier to reward it: its grader rewards none of its training "
                        f"examples' own answers (a dataset's rows need a reference answer its [data] answer reads)")




def train_config(spec: GridSpec, seed: int) -> TrainConfig:
    """The optimizer settings of a cell with this seed."""
    return spec.train.config(seed)


def expand(spec: GridSpec) -> list[Cell]:
    """Every cell of the grid, in axis order; each base takes the values of the pretrain axis it can."""
    return list(iter_cells(spec))


def iter_cells(spec: GridSpec) -> Iterator[Cell]:
    """The cells of `expand`, made one at a time: a caller that wants the first few never makes a million."""
    return _cells(spec, spec.axes.quality, spec.axes.seed)


def cell_shapes(spec: GridSpec) -> list[tuple[Cell, int]]:
    """The grid's cells that differ in more than quality and seed, each the first of its kind, with how many cells
    it stands for: what a cell's model, row length and step count (its cost) depend on, so a plan of a million
    cells is made from these few. A control stands for itself."""
    a = spec.axes
    return [(cell, 1 if cell.control else len(a.quality) * len(a.seed)) for cell in _cells(spec, a.quality[:1], a.seed[:1])]


def grid_size(spec: GridSpec) -> int:
    """How many cells `expand` makes, counted from the axes' sizes without making any."""
    a, bases = spec.axes, spec.bases
    pretrained = sum(len(bases[size].pretrain_axis(a.pretrain_tokens)) for size in a.size)
    controls = len(spec.source.control_splits(spec.eval.splits)) * len(a.cot) if spec.eval.controls else 0
    return pretrained * len(spec.adapters) * (len(a.diversity) * len(a.quality) * len(a.cot) * len(a.seed) + controls)


def _cells(spec: GridSpec, qualities: tuple[float, ...], seeds: tuple[int, ...]) -> Iterator[Cell]:
    """The cells at these values of the quality and seed axes (and every value of the others), in axis order,
    then a positive control per base, CoT style and controlled split: trained like the grid's cells (same
    examples, budgets and optimizer, the first seed) on the split's own distribution."""
    a, bases = spec.axes, spec.bases
    identify = cell_hasher(spec.results_content())
    for size in a.size:
        for pretrain in bases[size].pretrain_axis(a.pretrain_tokens):
            for diversity, quality, cot, adapter, seed in itertools.product(a.diversity, qualities, a.cot,
                                                                            spec.adapters, seeds):
                axes = {"size": size, "pretrain_tokens": pretrain, "diversity": diversity, "quality": quality,
                        "cot": cot, "seed": seed}
                yield Cell(**axes, cell_id=identify(axes | _adapter_id(adapter)), base=bases[size], adapter=adapter)
    if not spec.eval.controls:
        return
    for size in a.size:
        for pretrain in bases[size].pretrain_axis(a.pretrain_tokens):
            for cot in a.cot:
                for split in spec.source.control_splits(spec.eval.splits):
                    axes = {"size": size, "pretrain_tokens": pretrain, "diversity": max(a.diversity), "quality": 1.0,
                            "cot": cot, "seed": a.seed[0]}
                    for adapter in spec.adapters:
                        yield Cell(**axes, cell_id=identify(axes | {"control": split} | _adapter_id(adapter)),
                                   base=bases[size], control=split, adapter=adapter)


def _adapter_id(adapter: LoraConfig | None) -> dict:
    """What a cell's adapter adds to its hashed axes: nothing for full fine-tuning (its cells keep their ids)."""
    return {} if adapter is None else {"adapter": dataclasses.asdict(adapter)}


def cell_hasher(content: dict) -> Callable[[dict], str]:
    """`cell_id` of each cell's axes under one spec's content: the spec's part of the hashed text is encoded
    once, not once per cell (it dominated the expansion of large grids)."""
    spec = {k: v for k, v in content.items() if k != "axes"}
    rest = {"spec": spec, "data_version": DATA_VERSION} if DATA_VERSION > 1 else {"spec": spec}
    # The text json.dumps({"cell": ..., **rest}, sort_keys=True) makes: "cell" sorts before both other keys.
    tail = (", " + json.dumps(rest, sort_keys=True)[1:]).encode()

    def identify(axes: dict) -> str:
        # Hashed under the axes' first names, so that renaming an axis keeps every cell id (and run folder) valid.
        hashed = {LEGACY_AXES.get(name, name): value for name, value in axes.items()}
        return hashlib.sha256(b'{"cell": ' + json.dumps(hashed, sort_keys=True).encode() + tail).hexdigest()[:16]

    return identify


def grid_axes(spec: GridSpec) -> dict[str, list]:
    """The values of each hypercube axis (scaling.schema.AXES), in spec order."""
    a = spec.axes
    return {"size": list(a.size), "pretrain_tokens": list(a.pretrain_tokens), "diversity": list(a.diversity),
            "quality": list(a.quality), "cot": list(a.cot), "adapter": [adapter_label(x) for x in spec.adapters],
            "seed": list(a.seed)}
