"""Grid specs: a TOML file, validated before any work starts, expanded into content-addressed cells.

A spec names the axes whose Cartesian product is the set of cells, the SFT data, the optimizer and
the evaluation; `[run]` says how to execute and never changes a result, so it is not part of a
cell's id. Every problem is a UserError naming the section and key, so `scaling run` can print one
line and exit 2 before anything is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from scaling.trainer.config import PRESETS, TrainConfig
from scaling.errors import UserError
from scaling.schema import DATA_VERSION, LEGACY_AXES
from scaling.tasks.dataset import SPLITS as DATASET_SPLITS
from scaling.tasks.dataset import DatasetSource, fingerprint
from scaling.tasks.jsonl import AnswerExtractor
from scaling.tasks.mixture import SPLITS, split_families
from scaling.tasks.quality import COT_STYLES
from scaling.tasks.registry import TASKS
from scaling.typed_toml import typed_table

HF_PREFIX = "hf:"  # a size given as hf:PATH is a local Hugging Face checkpoint
EXECUTORS = ("local", "ray", "slurm")
MAX_SEED = 2**31  # seeds feed jax.random.key and numpy generators, which take at most 63 bits; 31 keep every use safe


@dataclass(frozen=True)
class AxesSpec:
    """The grid's axes: every combination is one cell."""

    size: tuple[str, ...]  # model size presets (see scaling.trainer.config.PRESETS), or "hf:PATH"
    pretrain_tokens: tuple[int, ...] = (0,)  # corpus tokens a preset base is pretrained on (0: random init)
    diversity: tuple[int, ...] = (1,)  # number of SFT families: the first k of [data] families
    quality: tuple[float, ...] = (1.0,)  # fraction of SFT examples whose CoT is correct
    cot: tuple[str, ...] = ("full",)  # CoT style: full, short or none
    seed: tuple[int, ...] = (0,)  # data, initialization and data-order seed

    def __post_init__(self) -> None:
        for size in self.size:
            if not parse_base(size, Path(".")).is_checkpoint and size not in PRESETS:
                raise ValueError(f"[axes] size {size!r} is neither a preset ({', '.join(PRESETS)}) nor hf:PATH")
        if any(t < 0 for t in self.pretrain_tokens):
            raise ValueError(f"[axes] pretrain_tokens must be >= 0, got {list(self.pretrain_tokens)}")
        if any(parse_base(s, Path(".")).is_checkpoint for s in self.size) and 0 not in self.pretrain_tokens:
            raise ValueError("[axes] pretrain_tokens must include 0 when a size is hf:PATH (a checkpoint is already pretrained)")
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


# The [data] keys of a user's dataset: left out of a synthetic grid's cell ids, which stay what they were.
DATASET_KEYS = ("source", "eval_source", "group_by", "groups", "ood_groups", "quality_field", "answer")
SYNTHETIC_KEYS = ("families", "ood_families", "phrasings")
EXAMPLES_PER = ("cell", "family")  # meaningless for a dataset, so not in its cell ids


@dataclass(frozen=True)
class DataSpec:
    """The SFT data shared by every cell: synthetic task families, or a user's JSONL dataset (`source`)."""

    families: tuple[str, ...] = ()  # ordered task families; diversity k trains on the first k
    ood_families: tuple[str, ...] = ()  # held out of every mixture: the ood_family split
    examples: int = 2000  # unique SFT examples per cell, whatever the diversity (examples_per = "cell")
    examples_per: str = "cell"  # "family": examples per trained family, so diversity k trains on k·examples
    phrasings: int = 0  # prompt phrasings per family (0: all of them)
    pack_length: int = 0  # tokens per packed training row (0: the cell's longest sequence)
    source: str = ""  # a JSONL file of your own SFT data in place of families (relative: to the spec's folder)
    eval_source: str = ""  # a JSONL file of evaluation rows ("": held back from source)
    group_by: str = "family"  # source: the field whose values play the part of families
    groups: tuple[str, ...] = ()  # source: ordered groups; diversity k trains on the first k
    ood_groups: tuple[str, ...] = ()  # source: groups held out of every mixture (the ood_family split)
    quality_field: str = ""  # source: a boolean field marking verified rows; quality q keeps that share verified
    answer: AnswerSpec = field(default_factory=AnswerSpec)  # source: how answers are read from completions

    def __post_init__(self) -> None:
        if self.source:
            self._check_dataset()
        else:
            self._check_families()
        if self.examples_per not in EXAMPLES_PER:
            raise ValueError(f"[data] examples_per must be one of {', '.join(EXAMPLES_PER)}, got {self.examples_per!r}")
        for name, minimum in (("examples", 1), ("phrasings", 0), ("pack_length", 0)):
            if getattr(self, name) < minimum:
                raise ValueError(f"[data] {name} must be >= {minimum}, got {getattr(self, name)}")

    def _check_families(self) -> None:
        given = [key for key in DATASET_KEYS if getattr(self, key) != _default(DataSpec, key)]
        if given:
            raise ValueError(f"[data] {given[0]} describes a dataset: give source = a JSONL file with it")
        if not self.families:
            raise ValueError("[data] families is required (or source = a JSONL file of your own data)")
        base_families = [name for name, task in TASKS.items() if task.kind != "composition"]
        for where, names in (("families", self.families), ("ood_families", self.ood_families)):
            unknown = [n for n in names if n not in base_families]
            if unknown:
                raise ValueError(f"[data] {where}: unknown family {unknown[0]!r} (see `scaling data families`)")
        if set(self.families) & set(self.ood_families):
            raise ValueError(f"[data] ood_families {sorted(set(self.families) & set(self.ood_families))} are also in families")

    def _check_dataset(self) -> None:
        given = [key for key in SYNTHETIC_KEYS if getattr(self, key)]
        if given:
            raise ValueError(f"[data] {given[0]} names synthetic tasks; with source, the groups of your data stand "
                             f"in their place (groups, ood_groups)")
        if not self.groups:
            raise ValueError(f"[data] groups is required with source: the values of {self.group_by!r} to train on, in order")
        if not self.group_by:
            raise ValueError("[data] group_by must name a field")
        if set(self.groups) & set(self.ood_groups):
            raise ValueError(f"[data] ood_groups {sorted(set(self.groups) & set(self.ood_groups))} are also in groups "
                             f"(a held-out group is never trained)")

    def examples_at(self, diversity: int) -> int:
        """Unique SFT examples of a cell at this diversity: fixed per cell (diversity not confounded with
        amount), or fixed per family (each family learned from as many examples whatever the diversity)."""
        return self.examples * (diversity if self.examples_per == "family" else 1)

    @property
    def trained(self) -> tuple[str, ...]:
        """The ordered families or groups a cell's diversity counts."""
        return self.groups if self.source else self.families

    def dataset(self, base_dir: Path) -> DatasetSource | None:
        """The user's dataset with its paths resolved against the spec's folder; None for synthetic families."""
        if not self.source:
            return None
        return DatasetSource(str(_resolved(self.source, base_dir)), self.groups, self.ood_groups, self.group_by,
                             self.quality_field, self.answer.extractor(),
                             str(_resolved(self.eval_source, base_dir)) if self.eval_source else "")

    def results_content(self, base_dir: Path) -> dict:
        """The [data] that determines results: a dataset's files by the fingerprint of their rows, never their
        paths (moving the file keeps its cells; editing it makes new ones)."""
        content = dataclasses.asdict(self)
        if self.examples_per == "cell":  # the default before the key existed: earlier grids keep their cell ids
            del content["examples_per"]
        if not self.source:
            return {k: v for k, v in content.items() if k not in DATASET_KEYS}
        content = {k: v for k, v in content.items() if k not in SYNTHETIC_KEYS}
        source = self.dataset(base_dir)
        content["source"] = fingerprint(source.path)
        content["eval_source"] = fingerprint(source.eval_path) if source.eval_path else ""
        return content


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

    def __post_init__(self) -> None:
        try:
            self.config(seed=0)
        except ValueError as error:
            raise ValueError(f"[train] {str(error).removeprefix('TrainConfig.')}") from None
        if self.checkpoint_every < 0:
            raise ValueError(f"[train] checkpoint_every must be >= 0, got {self.checkpoint_every}")
        for name in ("pretrain_batch_size", "pretrain_context"):
            if getattr(self, name) < 1:
                raise ValueError(f"[train] {name} must be >= 1, got {getattr(self, name)}")
        if not self.pretrain_lr > 0:
            raise ValueError(f"[train] pretrain_lr must be > 0, got {self.pretrain_lr}")

    def config(self, seed: int) -> TrainConfig:
        """The optimizer settings of a cell with this seed."""
        return TrainConfig(budgets=self.budgets, batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
                           weight_decay=self.weight_decay, grad_clip=self.grad_clip, seed=seed, schedule=self.schedule,
                           decay_fraction=self.decay_fraction, steps_axis=self.steps_axis)


@dataclass(frozen=True)
class EvalSpec:
    """What every cell is evaluated on at every budget."""

    splits: tuple[str, ...] = ("train", "id", "ood_length", "ood_family", "ood_phrasing")  # see tasks.mixture.SPLITS
    n: int = 256  # examples per evaluation split (the same problems for every cell)
    batch_size: int = 256  # examples decoded together (capped at n: decoding slows per row beyond ~64 on CPU)
    seed: int = 0  # draws the evaluation set, whatever the cells' seeds: every cell meets the same problems
    memorization_n: int = 128  # the train split: a cell's first correct training items, for its memorization step

    def __post_init__(self) -> None:
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown:
            raise ValueError(f"[eval] splits: unknown split {unknown[0]!r}; splits are {', '.join(SPLITS)}")
        if self.n < 1 or self.batch_size < 1 or self.memorization_n < 1:
            raise ValueError(f"[eval] n, batch_size and memorization_n must be >= 1, got {self.n}, {self.batch_size} "
                             f"and {self.memorization_n}")
        if not 0 <= self.seed < MAX_SEED:
            raise ValueError(f"[eval] seed must lie in 0..{MAX_SEED - 1}, got {self.seed}")


@dataclass(frozen=True)
class RaySpec:
    """Resources of each Ray task (one task per cell)."""

    address: str = ""  # an existing cluster's HOST:PORT ("": start a local one); --address overrides
    num_cpus: float = 1.0  # CPUs reserved per cell
    num_gpus: float = 0.0  # GPUs reserved per cell (fractions share one)
    max_retries: int = 3  # retries of a cell whose worker died

    def __post_init__(self) -> None:
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
        if min(self.timeout_min, self.cpus_per_task, self.mem_gb, self.array_parallelism) < 1 or min(self.gpus_per_node, self.max_num_timeout) < 0:
            raise ValueError("[run.slurm] timeout_min, cpus_per_task, mem_gb, array_parallelism must be >= 1 and "
                             "gpus_per_node, max_num_timeout >= 0")


LOGS = ("none", "tensorboard", "wandb")  # [run] log: where cells' curves also go


@dataclass(frozen=True)
class RunSpec:
    """How to execute the grid; never part of a cell's id, so changing it never changes results."""

    executor: str = "local"  # local, ray or slurm; --executor overrides
    workers: int = 1  # local: worker processes (1: in this process); --workers overrides
    heartbeat_s: float = 10.0  # how often a running cell's lock is refreshed
    stale_after_s: float = 120.0  # a lock not refreshed for this long belongs to a dead runner
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
        if not 0 < self.heartbeat_s < self.stale_after_s:
            raise ValueError(f"[run] need 0 < heartbeat_s < stale_after_s, got {self.heartbeat_s} and {self.stale_after_s}")
        if self.log not in LOGS:
            raise ValueError(f"[run] log must be one of {', '.join(LOGS)}, got {self.log!r}")


@dataclass(frozen=True)
class Base:
    """A cell's base model, as the spec's size axis names it: a size preset (trained here from random init,
    or pretrained on pretrain_tokens first), or a local Hugging Face checkpoint."""

    name: str  # as written on the size axis: a preset name, or hf:PATH
    checkpoint: Path | None = None  # the checkpoint folder, resolved against the spec's folder (None: a preset)

    @property
    def is_checkpoint(self) -> bool:
        return self.checkpoint is not None


def parse_base(size: str, base_dir: Path) -> Base:
    """The base a size names; a relative hf:PATH is relative to the spec's folder."""
    if not size.startswith(HF_PREFIX):
        return Base(size)
    path = Path(size.removeprefix(HF_PREFIX)).expanduser()
    return Base(size, path if path.is_absolute() else Path(base_dir) / path)


@dataclass(frozen=True)
class GridSpec:
    name: str  # names the default run folder runs/NAME
    axes: AxesSpec
    data: DataSpec
    train: TrainSpec
    eval: EvalSpec = field(default_factory=EvalSpec)
    run: RunSpec = field(default_factory=RunSpec)
    base_dir: str = "."  # the spec file's folder: hf:PATH is relative to it

    def __post_init__(self) -> None:
        """The checks across sections; each section checked its own fields when it was made."""
        axes, data = self.axes, self.data
        what = "groups" if data.source else "families"
        if any(k > len(data.trained) for k in axes.diversity):
            raise ValueError(f"[axes] diversity must lie in 1..{len(data.trained)} (the number of [data] {what}), "
                             f"got {list(axes.diversity)}")
        if data.source:
            self._check_dataset_axes()
            return
        for split in self.eval.splits:
            if split != "train":
                try:
                    split_families(split, data.families, data.ood_families)
                except ValueError as error:
                    raise ValueError(f"[eval] splits: {error}") from None

    def _check_dataset_axes(self) -> None:
        """What a dataset grid's axes and splits may ask of it (its rows are checked by `check_dataset`)."""
        unknown = [s for s in self.eval.splits if s not in DATASET_SPLITS]
        if unknown:
            raise ValueError(f"[eval] splits: split {unknown[0]!r} needs the synthetic families; a dataset makes the "
                             f"splits {', '.join(DATASET_SPLITS)}")
        if "ood_family" in self.eval.splits and not self.data.ood_groups:
            raise ValueError("[eval] splits: ood_family needs [data] ood_groups (groups held out of every mixture)")
        if not self.data.quality_field and any(q != 1.0 for q in self.axes.quality):
            raise ValueError(f"[axes] quality {[q for q in self.axes.quality if q != 1.0][0]:g} needs [data] quality_field "
                             f"(the boolean field that marks verified rows)")

    @property
    def dataset(self) -> DatasetSource | None:
        """The user's dataset the cells train on, paths resolved; None for the synthetic families."""
        return self.data.dataset(Path(self.base_dir))

    @property
    def bases(self) -> dict[str, Base]:
        """The base of each value of the size axis."""
        return {size: parse_base(size, Path(self.base_dir)) for size in self.axes.size}

    def results_content(self) -> dict:
        """Everything in the spec that determines results (not `name`, `run` or where the file lies)."""
        return {"axes": dataclasses.asdict(self.axes), "data": self.data.results_content(Path(self.base_dir)),
                "train": dataclasses.asdict(self.train), "eval": dataclasses.asdict(self.eval)}


@dataclass(frozen=True)
class Cell:
    """One base × one mixture × one seed, with its content hash."""

    size: str
    pretrain_tokens: int
    diversity: int
    quality: float
    cot: str
    seed: int
    cell_id: str
    base: Base  # what `size` names: a preset, or a checkpoint with its path resolved

    @property
    def axes(self) -> dict:
        """The cell's value on each of scaling.schema.AXES."""
        return {"size": self.size, "pretrain_tokens": self.pretrain_tokens, "diversity": self.diversity,
                "quality": self.quality, "cot": self.cot, "seed": self.seed}

    @property
    def label(self) -> str:
        return " ".join(f"{name}={value}" for name, value in self.axes.items())


def load_spec(path: Path) -> GridSpec:
    """The validated spec in the TOML file at path."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"grid spec {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"grid spec {path} is unreadable ({type(error).__name__})") from None
    return parse_spec(text, source=str(path), base_dir=path.resolve().parent)


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
    _default_dataset_splits(table)
    sections = {}
    for key, cls in (("axes", AxesSpec), ("data", DataSpec), ("train", TrainSpec), ("eval", EvalSpec), ("run", RunSpec)):
        sections[key] = typed_table(cls, table.pop(key, {}), f"[{key}]", source)
    if table:
        raise UserError(f"{source}: unknown key {sorted(table)[0]!r} (known: name, axes, data, train, eval, run)")
    try:
        spec = GridSpec(name=name, base_dir=str(base_dir), **sections)
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None
    for base in spec.bases.values():
        if base.is_checkpoint:
            _check_checkpoint(base, source)
    if spec.dataset is not None:
        try:
            check_dataset(spec)
        except UserError as error:
            raise UserError(f"{source}: {error}") from None
    return spec


def _default_dataset_splits(table: dict) -> None:
    """A dataset grid evaluates the splits a dataset makes unless [eval] splits says otherwise (the synthetic
    default names splits only families make)."""
    data, evaluation = table.get("data"), table.get("eval", {})
    if isinstance(data, dict) and data.get("source") and isinstance(evaluation, dict) and "splits" not in evaluation:
        splits = [s for s in DATASET_SPLITS if s != "ood_family" or data.get("ood_groups")]
        table["eval"] = {**evaluation, "splits": splits}


def check_dataset(spec: GridSpec) -> None:
    """Everything about a dataset grid's files that can be known before any work: every row of both files, that
    each cell's mixture and each evaluation split can be drawn, and that preset bases' characters can spell it."""
    from scaling.tasks.dataset import dataset_of, eval_dataset_of, evaluation_set, first_unencodable, training_pool
    from scaling.tasks.tokenizer import ALPHABET

    source = spec.dataset
    datasets = [dataset_of(source)] + ([eval_dataset_of(source)] if source.eval_path else [])
    try:
        evaluation = evaluation_set(source, spec.eval.splits, spec.eval.n, spec.eval.seed, "full")
    except ValueError as error:
        raise UserError(f"[eval] splits: {error}") from None
    held_out = frozenset(e.key for examples in evaluation.values() for e in examples)
    for diversity in spec.axes.diversity:
        for quality in spec.axes.quality:
            training_pool(source, diversity, spec.data.examples_at(diversity), spec.axes.seed[0], quality, "full", held_out)
    if any(not base.is_checkpoint for base in spec.bases.values()):
        for dataset in datasets:
            outside = first_unencodable(dataset, ALPHABET)
            if outside is not None:
                raise UserError(f"{dataset.path} line {outside[0]}: character {outside[1]!r} is not in the preset "
                                f"models' character vocabulary (use an hf:PATH base, whose tokenizer reads any text)")


def _check_checkpoint(base: Base, source: str) -> None:
    """Everything about a checkpoint base that can be known before any work: the folder (or GGUF file), its config,
    architecture and options, every tensor's name, shape and dtype (headers only), and its tokenizer."""
    path = base.checkpoint
    from scaling.hf.gguf import is_gguf  # no jax or transformers: only checks the name

    if is_gguf(path):
        if not path.is_file():
            raise UserError(f"{source}: [axes] size {base.name!r}: GGUF file {path} does not exist")
    elif not path.is_dir():
        raise UserError(f"{source}: [axes] size {base.name!r}: checkpoint folder {path} does not exist")
    elif not (path / "config.json").is_file():
        raise UserError(f"{source}: [axes] size {base.name!r}: {path} has no config.json (not a Hugging Face checkpoint)")
    from scaling.hf import check_hf_checkpoint  # jax and the model: only for specs that name a checkpoint
    from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer

    try:
        check_hf_checkpoint(path)
        checkpoint_tokenizer(path)
    except UserError as error:
        raise UserError(f"{source}: [axes] size {base.name!r}: {error}") from None


def train_config(spec: GridSpec, seed: int) -> TrainConfig:
    """The optimizer settings of a cell with this seed."""
    return spec.train.config(seed)


def expand(spec: GridSpec) -> list[Cell]:
    """Every cell of the grid, in axis order; preset sizes only take the pretrain axis (hf bases are pretrained)."""
    cells = []
    content = spec.results_content()
    a = spec.axes
    bases = spec.bases
    for size in a.size:
        for pretrain in a.pretrain_tokens:
            if bases[size].is_checkpoint and pretrain != 0:
                continue
            for diversity in a.diversity:
                for quality in a.quality:
                    for cot in a.cot:
                        for seed in a.seed:
                            axes = {"size": size, "pretrain_tokens": pretrain, "diversity": diversity,
                                    "quality": quality, "cot": cot, "seed": seed}
                            cells.append(Cell(**axes, cell_id=cell_id(axes, content), base=bases[size]))
    return cells


def cell_id(axes: dict, content: dict) -> str:
    """A content hash of a cell's axes, everything in the spec that determines its results, and the data
    version (how this code draws pools and evaluation sets from the spec)."""
    # Hashed under the axes' first names, so that renaming an axis keeps every cell id (and run folder) valid.
    hashed = {LEGACY_AXES.get(name, name): value for name, value in axes.items()}
    spec = {k: v for k, v in content.items() if k != "axes"}
    canonical = json.dumps({"cell": hashed, "spec": spec, "data_version": DATA_VERSION} if DATA_VERSION > 1
                           else {"cell": hashed, "spec": spec}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def grid_axes(spec: GridSpec) -> dict[str, list]:
    """The values of each hypercube axis (scaling.schema.AXES), in spec order."""
    a = spec.axes
    return {"size": list(a.size), "pretrain_tokens": list(a.pretrain_tokens), "diversity": list(a.diversity),
            "quality": list(a.quality), "cot": list(a.cot), "seed": list(a.seed)}
