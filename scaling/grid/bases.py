"""The base a cell starts from: a size preset, or a Hugging Face checkpoint (a folder or GGUF file).

A grid's `size` axis names bases (the axis keeps its first name: it is in results files and cell
ids): a preset name (see `scaling.trainer.config.PRESETS`), trained here from random init or
pretrained on the corpus first, or `hf:PATH`, a local checkpoint (relative to the spec's folder).
`parse_base` is the one place that tells them apart; everything else asks the base. A later kind
(a LoRA adapter on a checkpoint) is one more subclass.

Heavy imports (jax, the hf package) wait inside the methods that need them, so reading a spec stays fast.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from scaling.errors import UserError
from scaling.staging import publish_once
from scaling.tasks.corpus import CORPUS_VERSION
from scaling.tasks.tokenizer import ALPHABET, CHARACTERS, Tokenizer
from scaling.trainer.config import PRESETS, LoraConfig, ModelConfig, preset

if TYPE_CHECKING:
    from flax import nnx

    from scaling.tasks.source import DataSource

HF_PREFIX = "hf:"  # a size given as hf:PATH is a local Hugging Face checkpoint
BASE_SEED = 0  # a pretrained base is the same for every SFT seed: one base per size and budget, measured once
MEASURES = "measures.json"  # beside a cached base: its measured capability
Measure = Callable[[], dict]  # measures the base's capability now (`scaling.trainer.probe.measure_base`)


@dataclass(frozen=True)
class Pretraining:
    """How a preset base is pretrained on the corpus (the [train] pretrain_* keys)."""

    context: int  # pretraining row length in tokens
    batch_size: int  # pretraining rows per step
    lr: float  # pretraining peak learning rate (cosine schedule)


@dataclass(frozen=True)
class StepTime:
    """What a cell's time is estimated from: seconds = fixed + FLOPs · per_flop."""

    fixed: float  # seconds whatever the FLOPs (compiling the step)
    per_flop: float  # seconds per FLOP of a train step at this shape


class Base(ABC):
    """A cell's base model, as one value of the size axis names it."""

    name: str  # as written on the size axis

    @abstractmethod
    def check_pretrain_tokens(self, pretrain_tokens: tuple[int, ...]) -> None:
        """ValueError where the grid's pretrain_tokens axis cannot apply to this base."""

    @abstractmethod
    def pretrain_axis(self, pretrain_tokens: tuple[int, ...]) -> tuple[int, ...]:
        """The values of the grid's pretrain_tokens axis this base takes (each one a cell)."""

    @abstractmethod
    def check_files(self, source: str) -> None:
        """UserError (prefixed with `source`) for anything about its files that can be known before any work."""

    @abstractmethod
    def check_spells(self, data: DataSource) -> None:
        """UserError where the data holds text its tokenizer cannot spell."""

    @property
    @abstractmethod
    def needs_spec_dir(self) -> bool:
        """Whether it names files relative to the spec's folder (a run folder then records that folder)."""

    @property
    @abstractmethod
    def params_known_upfront(self) -> int:
        """Its non-embedding parameter count where known without reading any file (0 otherwise): what a cell
        that failed before building its model records."""

    @abstractmethod
    def tokenizer(self) -> Tokenizer:
        """Its tokenizer, with its chat template where it has one: what tokenizes its cells' data."""

    @abstractmethod
    def model_config(self, length: int) -> ModelConfig:
        """Its model for sequences of `length` tokens; a UserError where it cannot take them."""

    @abstractmethod
    def initial_params(self, pretrain_tokens: int, pretraining: Pretraining, cache: Path | None) -> nnx.State | None:
        """The parameters SFT starts from (None: a random initialization, drawn by the cell's seed); `cache`
        keeps what is costly to make again (None: keep nothing)."""

    def pretraining_flops(self, pretrain_tokens: int, pretraining: Pretraining) -> float:
        """Training FLOPs spent here making its initial parameters (scaling.trainer.flops' `pretraining` phase): none
        for a random init, nor for a checkpoint, whose own pretraining this grid did not spend."""
        return 0.0

    @abstractmethod
    def measured(self, pretrain_tokens: int, pretraining: Pretraining, cache: Path | None, measure: Measure) -> dict:
        """Its capability before SFT (schema.BASE_MEASURES): read from `cache` where it was kept, else `measure()`."""

    @abstractmethod
    def step_time(self, cfg: ModelConfig, row: int, longest_row: int, batch: int) -> StepTime:
        """How long its train step takes on this machine, for `scaling run --dry-run` (see scaling.grid.estimate);
        `longest_row`: the longest row of any cell of this base."""

    @abstractmethod
    def save_model(self, out: Path, cfg: ModelConfig, params, source: str, adapter: LoraConfig | None = None) -> Path:
        """Write a model fine-tuned from it as a model folder at `out` (what `scaling export-hf` reads); with the
        `adapter` it was trained with, what its base's kind keeps of LoRA's model."""


@dataclass(frozen=True)
class PresetBase(Base):
    """A size preset in the character tokenizer's vocabulary: random init, or pretrained here on the corpus."""

    name: str  # a key of scaling.trainer.config.PRESETS

    def __post_init__(self) -> None:
        if self.name not in PRESETS:
            raise ValueError(f"[axes] size {self.name!r} is neither a preset ({', '.join(PRESETS)}) nor hf:PATH")

    def check_pretrain_tokens(self, pretrain_tokens: tuple[int, ...]) -> None:
        pass  # a preset takes any budget

    def pretrain_axis(self, pretrain_tokens: tuple[int, ...]) -> tuple[int, ...]:
        return pretrain_tokens

    def check_files(self, source: str) -> None:
        pass  # a preset has none

    def check_spells(self, data: DataSource) -> None:
        outside = data.first_unencodable(ALPHABET)
        if outside is not None:
            path, line, character = outside
            raise UserError(f"{path} line {line}: character {character!r} is not in the preset models' character "
                            f"vocabulary (use an hf:PATH base, whose tokenizer reads any text)")

    @property
    def needs_spec_dir(self) -> bool:
        return False

    @property
    def params_known_upfront(self) -> int:
        return preset(self.name, 1, 1).non_embedding_params  # independent of vocabulary and length

    def tokenizer(self) -> Tokenizer:
        return CHARACTERS

    def model_config(self, length: int) -> ModelConfig:
        # In the character tokenizer's vocabulary, which a preset is pretrained in.
        return preset(self.name, CHARACTERS.vocab_size, length)

    def cache_key(self, pretrain_tokens: int, pretraining: Pretraining) -> str:
        """A pretrained base's name in the cache: everything that decides its weights."""
        p = pretraining
        return (f"{self.name}-tokens{pretrain_tokens}-ctx{p.context}-bs{p.batch_size}"
                f"-lr{p.lr:g}-corpus{CORPUS_VERSION}")

    def initial_params(self, pretrain_tokens: int, pretraining: Pretraining, cache: Path | None) -> nnx.State | None:
        """Pretrained on the corpus for `pretrain_tokens` and cached under `cache` (0 tokens: None, random init)."""
        from scaling.trainer.checkpoint import latest_checkpoint, restore_checkpoint, save_checkpoint
        from scaling.trainer.model import abstract_model
        from scaling.trainer.pretrain import pretrain
        from scaling.trainer.probe import measure_base

        if pretrain_tokens == 0:
            return None
        p = pretraining
        cfg = preset(self.name, CHARACTERS.vocab_size, p.context)
        if cache is None:
            return pretrain(cfg, pretrain_tokens, BASE_SEED, p.batch_size, p.lr)
        folder = cache / self.cache_key(pretrain_tokens, pretraining)
        like = abstract_model(cfg)[1]
        if latest_checkpoint(folder) is None:
            params = pretrain(cfg, pretrain_tokens, BASE_SEED, p.batch_size, p.lr)
            measures = json.dumps(measure_base(cfg, params, CHARACTERS)).encode()

            def fill(aside: Path) -> None:
                save_checkpoint(aside, 0, params, {"key": folder.name})
                (aside / MEASURES).write_bytes(measures)

            # Published whole, once: two workers pretraining the same base both succeed, and the second simply
            # finds the first's (identical, since pretraining is deterministic) base there.
            publish_once(folder, fill)
            return params
        params, _ = restore_checkpoint(folder, latest_checkpoint(folder), like)
        return params

    def pretraining_flops(self, pretrain_tokens: int, pretraining: Pretraining) -> float:
        """The optimizer steps `scaling.trainer.pretrain.pretrain` takes over `pretrain_tokens`, each a batch of full
        rows of its context."""
        from scaling.trainer.flops import training_flops

        p = pretraining
        steps = pretrain_tokens // (p.batch_size * p.context)
        return steps * training_flops(preset(self.name, CHARACTERS.vocab_size, p.context), p.batch_size, p.context)

    def measured(self, pretrain_tokens: int, pretraining: Pretraining, cache: Path | None, measure: Measure) -> dict:
        """A pretrained base's measures are kept beside it; a random init is the cell's own, measured each time."""
        if pretrain_tokens and cache is not None:
            cached = cache / self.cache_key(pretrain_tokens, pretraining) / MEASURES
            if cached.is_file():
                return json.loads(cached.read_text())
        return measure()

    def step_time(self, cfg: ModelConfig, row: int, longest_row: int, batch: int) -> StepTime:
        from scaling.grid.timing import preset_seconds_per_flop

        return StepTime(0.0, preset_seconds_per_flop(self.name, longest_row, batch))

    def save_model(self, out: Path, cfg: ModelConfig, params, source: str, adapter: LoraConfig | None = None) -> Path:
        from scaling.hf import fine_tuned_model, save_model_folder

        # A preset's base lives in a run's scratch cache, nothing an adapter could refer to for good: LoRA's model
        # is kept merged, as a full model folder.
        if adapter is not None:
            from scaling.trainer.lora import merged_params

            params = merged_params(params, adapter)
        # A preset never came from Hugging Face: it has no checkpoint to keep the kind of, nor tokenizer files.
        return save_model_folder(out, fine_tuned_model(cfg, params, None), None, source=source)


@dataclass(frozen=True)
class CheckpointBase(Base):
    """A local Hugging Face checkpoint folder or GGUF file: already pretrained, with its own tokenizer and template."""

    name: str  # hf:PATH as written on the size axis
    checkpoint: Path  # the folder or file, resolved against the spec's folder

    def check_pretrain_tokens(self, pretrain_tokens: tuple[int, ...]) -> None:
        if 0 not in pretrain_tokens:
            raise ValueError("[axes] pretrain_tokens must include 0 when a size is hf:PATH (a checkpoint is already "
                             "pretrained)")

    def pretrain_axis(self, pretrain_tokens: tuple[int, ...]) -> tuple[int, ...]:
        return (0,)  # a checkpoint is pretrained already: the axis's other values are not its cells

    def check_files(self, source: str) -> None:
        """The folder (or GGUF file), its config, architecture and options, every tensor's name, shape and dtype
        (headers only), and its tokenizer."""
        path = self.checkpoint
        from scaling.hf.gguf import is_gguf  # no jax or transformers: only checks the name

        if is_gguf(path):
            if not path.exists():  # one that is there but is no regular file is named by its reader, below
                raise UserError(f"{source}: [axes] size {self.name!r}: GGUF file {path} does not exist")
        elif not path.is_dir():
            from scaling.hf.files import checkpoint_folder

            try:
                checkpoint_folder(path)
            except UserError as error:  # missing, or a file: saying which
                raise UserError(f"{source}: [axes] size {self.name!r}: {error}") from None
        elif not (path / "config.json").is_file():
            raise UserError(f"{source}: [axes] size {self.name!r}: {path} has no config.json (not a Hugging Face "
                            f"checkpoint)")
        from scaling.hf import check_hf_checkpoint  # jax and the model: only for specs that name a checkpoint
        from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer

        try:
            check_hf_checkpoint(path)
            checkpoint_tokenizer(path)
        except UserError as error:
            raise UserError(f"{source}: [axes] size {self.name!r}: {error}") from None

    def check_spells(self, data: DataSource) -> None:
        pass  # its tokenizer reads any text

    @property
    def needs_spec_dir(self) -> bool:
        return True

    @property
    def params_known_upfront(self) -> int:
        return 0  # its files may be what failed: not read again to record a failure

    def tokenizer(self) -> Tokenizer:
        from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer

        return checkpoint_tokenizer(self.checkpoint)

    def model_config(self, length: int) -> ModelConfig:
        """The checkpoint's own configuration, whatever the length its positions allow."""
        from scaling.hf import checkpoint_config  # jax-free until a spec names a checkpoint

        cfg = checkpoint_config(self.checkpoint)[2]
        if cfg.positions == "learned" and length > cfg.max_len:
            raise UserError(f"[axes] size {self.name!r}: the cell's sequences need {length} tokens, more than the "
                            f"checkpoint's {cfg.max_len} learned positions (lower [data] pack_length or the task lengths)")
        return cfg

    def initial_params(self, pretrain_tokens: int, pretraining: Pretraining, cache: Path | None) -> nnx.State | None:
        from scaling.hf import read_hf_checkpoint

        # Read straight from the checkpoint (one tensor at a time, no copy on disk): conversion is fast,
        # and a copy in the cache would double the disk a large base takes.
        return read_hf_checkpoint(self.checkpoint).params

    def measured(self, pretrain_tokens: int, pretraining: Pretraining, cache: Path | None, measure: Measure) -> dict:
        # Measured once per grid, not once per cell (SmolLM2-135M takes about a minute), and remeasured when
        # its files change.
        if cache is None:
            return measure()
        folder = cache / checkpoint_key(self.checkpoint)
        if (folder / MEASURES).is_file():
            return json.loads((folder / MEASURES).read_text())
        measures = measure()
        publish_once(folder, {MEASURES: json.dumps(measures).encode()})
        return measures

    def step_time(self, cfg: ModelConfig, row: int, longest_row: int, batch: int) -> StepTime:
        """Timed in its own shape, compilation included (cut-down timings missed SmolLM2-135M's compilation by 3x)."""
        from scaling.grid.timing import time_step, timed_batch

        first, per_step = time_step(cfg, row, timed_batch(batch))
        return StepTime(first, per_step / (cfg.train_flops_per_token(row) * timed_batch(batch) * row))

    def save_model(self, out: Path, cfg: ModelConfig, params, source: str, adapter: LoraConfig | None = None) -> Path:
        from scaling.hf import fine_tuned_model, save_model_folder

        if adapter is not None:  # the adapters alone, in PEFT's format, beside a reference to this checkpoint
            from scaling.hf import checkpoint_config
            from scaling.hf.adapter import save_adapter_folder

            hf, arch, _ = checkpoint_config(self.checkpoint)
            return save_adapter_folder(out, cfg, adapter, params, arch.name, hf, self.checkpoint, source=source)

        # It keeps the checkpoint's architecture, config.json and tokenizer: it exports as a checkpoint of that kind.
        return save_model_folder(out, fine_tuned_model(cfg, params, self.checkpoint), self.checkpoint, source=source)


def checkpoint_key(checkpoint: Path) -> str:
    """A checkpoint's measurements' name in the bases cache: its resolved path and the name, size and
    modification time of its files (the file itself, for a GGUF file), and the corpus version."""
    checkpoint = Path(checkpoint).resolve()
    files = [checkpoint] if checkpoint.is_file() else sorted(p for p in checkpoint.iterdir() if p.is_file())
    identity = [str(checkpoint)] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]
    return f"checkpoint-{digest}-corpus{CORPUS_VERSION}"


def parse_base(size: str, base_dir: Path) -> Base:
    """The base a value of the size axis names; a relative hf:PATH is relative to the spec's folder (`base_dir`).
    ValueError for a name that is neither a preset nor hf:PATH."""
    if not size.startswith(HF_PREFIX):
        return PresetBase(size)
    path = Path(size.removeprefix(HF_PREFIX)).expanduser()
    return CheckpointBase(size, path if path.is_absolute() else Path(base_dir) / path)
