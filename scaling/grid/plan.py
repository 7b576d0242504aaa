"""From a grid cell to what its run needs: data, model and optimizer configs, and its base.

A cell's data is tokenized by its base's tokenizer: the character tokenizer for preset sizes, the
checkpoint's own (and its chat template) for hf:PATH sizes; sequence lengths follow from it.

Pretrained bases are shared by every cell with the same (size, pretraining tokens, seed) and cached
in the run's scratch folder, so a grid pretrains each base once however many mixtures it has.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from flax import nnx

from scaling.trainer.batches import sequence_length
from scaling.grid.cell import CellPlan
from scaling.trainer.checkpoint import latest_checkpoint, restore_checkpoint, save_checkpoint
from scaling.trainer.config import ModelConfig, preset
from scaling.errors import UserError
from scaling.staging import publish_once
from scaling.grid.spec import Cell, GridSpec, train_config
from scaling.trainer.model import abstract_model, init_model
from scaling.trainer.probe import measure_base
from scaling.trainer.packing import pack
from scaling.trainer.pretrain import pretrain
from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer
from scaling.tasks.corpus import CORPUS_VERSION
from scaling.tasks.dataset import AnswerGrader, DatasetSource, fingerprint
from scaling.tasks.dataset import evaluation_set as dataset_evaluation_set
from scaling.tasks.dataset import training_pool as dataset_training_pool
from scaling.tasks.diversity import diversity_stats
from scaling.tasks.grader import verify_example
from scaling.tasks.mixture import Example, evaluation_split, memorization_split, training_pool
from scaling.tasks.tokenizer import CHARACTERS, Tokenizer

LENGTH_QUANTUM = 32  # sequence lengths round up to this, so cells of a size mostly share one compiled step


@dataclass(frozen=True)
class CellData:
    pool: list[Example]  # the unique SFT examples, corruptions and CoT style applied
    splits: dict[str, list[Example]]  # evaluation examples by split
    length: int  # tokens that fit every sequence of this cell, in its tokenizer
    split_lengths: dict[str, int]  # tokens that fit every sequence of each split (rows of that split's evaluation)


def cell_tokenizer(cell: Cell) -> Tokenizer:
    """The tokenizer of a cell's base: an hf:PATH checkpoint's own, else the character tokenizer of presets."""
    if cell.base.is_checkpoint:
        return checkpoint_tokenizer(cell.base.checkpoint)
    return CHARACTERS


def cell_data(spec: GridSpec, cell: Cell, tokenizer: Tokenizer = CHARACTERS) -> CellData:
    """The SFT pool and evaluation splits of a cell, and their length in `tokenizer`'s tokens
    (deterministic in the spec, the cell's axes and the tokenizer): from the synthetic families, or from
    the user's dataset."""
    source = spec.dataset
    if source is not None:
        return _dataset_cell_data(source, fingerprint(source.path), spec.data.examples_at(cell.diversity), spec.eval, cell.diversity,
                                  cell.quality, cell.cot, cell.seed, tokenizer)
    return _cell_data(spec.data, spec.eval, cell.diversity, cell.quality, cell.cot, cell.seed, tokenizer)


@functools.lru_cache(maxsize=8)  # keyed on the tokenizer too: its content decides the length
def _cell_data(data, evaluation, diversity: int, quality: float, cot: str, seed: int, tokenizer: Tokenizer) -> CellData:
    try:
        pool = training_pool(data.families, diversity, data.examples_at(diversity), seed, quality, cot, data.phrasings or None)
        fixed = evaluation_set(data.families, data.ood_families, evaluation.splits, evaluation.n, evaluation.seed, cot)
        splits = {split: memorization_split(pool, evaluation.memorization_n) if split == "train" else fixed[split]
                  for split in evaluation.splits}
    except ValueError as error:  # e.g. more unique examples asked for than a family has
        raise UserError(f"cell data (diversity={diversity}, quality={quality}, cot={cot}, seed={seed}): {error}") from None
    return _measured(pool, splits, tokenizer)


@functools.lru_cache(maxsize=8)  # the file's fingerprint is part of the key: an edited file is read again
def _dataset_cell_data(source: DatasetSource, _fingerprint: str, examples: int, evaluation, diversity: int,
                       quality: float, cot: str, seed: int, tokenizer: Tokenizer) -> CellData:
    """A dataset cell's pool and splits: the evaluation rows are the grid's, and no training row repeats their problems."""
    fixed = dataset_evaluation_set(source, evaluation.splits, evaluation.n, evaluation.seed, cot)
    held_out = frozenset(example.key for rows in fixed.values() for example in rows)
    pool = dataset_training_pool(source, diversity, examples, seed, quality, cot, held_out)
    splits = {split: memorization_split(pool, evaluation.memorization_n) if split == "train" else fixed[split]
              for split in evaluation.splits}
    return _measured(pool, splits, tokenizer)


def _measured(pool: list[Example], splits: dict[str, list[Example]], tokenizer: Tokenizer) -> CellData:
    """A cell's data with the lengths its rows need in `tokenizer`'s tokens."""
    split_lengths = {split: _quantized(sequence_length(examples, tokenizer)) for split, examples in splits.items()}
    return CellData(pool, splits, max([_quantized(sequence_length(pool, tokenizer)), *split_lengths.values()]), split_lengths)


@functools.lru_cache(maxsize=8)
def evaluation_set(families: tuple[str, ...], ood_families: tuple[str, ...], splits: tuple[str, ...], n: int, seed: int,
                   cot: str) -> dict[str, list[Example]]:
    """A grid's evaluation problems of each split but `train`, in one CoT style: the same for all its cells."""
    return {split: evaluation_split(split, families, ood_families, n, seed, cot) for split in splits if split != "train"}


def _quantized(length: int) -> int:
    return -(-length // LENGTH_QUANTUM) * LENGTH_QUANTUM


def model_config(cell: Cell, length: int) -> ModelConfig:
    """The cell's model: a preset size at this length (in the character tokenizer's vocabulary, which its
    base is pretrained in), or an hf:PATH checkpoint's own configuration."""
    if not cell.base.is_checkpoint:
        return preset(cell.size, CHARACTERS.vocab_size, length)
    from scaling.hf import checkpoint_config  # jax-free until a spec names a checkpoint

    cfg = checkpoint_config(cell.base.checkpoint)[2]
    if cfg.positions == "learned" and length > cfg.max_len:
        raise UserError(f"[axes] size {cell.size!r}: the cell's sequences need {length} tokens, more than the "
                        f"checkpoint's {cfg.max_len} learned positions (lower [data] pack_length or the task lengths)")
    return cfg


def cell_plan(spec: GridSpec, cell: Cell, init_params: nnx.State | None) -> CellPlan:
    """Everything `scaling.grid.cell.run_cell` needs for this cell, starting from the base's parameters
    (see `load_or_pretrain_base`; None: a random initialization)."""
    tokenizer = cell_tokenizer(cell)
    data = cell_data(spec, cell, tokenizer)
    model_cfg = model_config(cell, max(data.length, spec.data.pack_length or data.length))
    if tokenizer.vocab_size > model_cfg.vocab_size:
        raise UserError(f"[axes] size {cell.size!r}: the tokenizer has {tokenizer.vocab_size} ids, the model only "
                        f"{model_cfg.vocab_size} embedding rows")
    pack_length = spec.data.pack_length or data.length
    try:
        rows = pack(data.pool, pack_length, tokenizer)
    except ValueError as error:  # an example longer than [data] pack_length
        raise UserError(f"[data] pack_length {pack_length}: {error}") from None
    return CellPlan(
        cell_id=cell.cell_id,
        axes=cell.axes,
        model_cfg=model_cfg,
        train_cfg=train_config(spec, cell.seed),
        train_data=rows,
        splits=data.splits,
        eval_lengths=data.split_lengths,
        eval_batch=min(spec.eval.batch_size, spec.eval.n),
        tokens_per_step=spec.train.batch_size * pack_length,
        pool_stats=diversity_stats(data.pool),
        init_params=init_params,
        tokenizer=tokenizer,
        grader=verify_example if spec.dataset is None else AnswerGrader(spec.dataset.extractor),
    )


BASE_SEED = 0  # a pretrained base is the same for every SFT seed: one base per size and budget, measured once
MEASURES = "measures.json"  # beside a cached base: its measured capability


def base_key(cell: Cell, spec: GridSpec) -> str:
    """A pretrained base's name in the cache: everything that decides its weights."""
    t = spec.train
    return (f"{cell.size}-tokens{cell.pretrain_tokens}-ctx{t.pretrain_context}-bs{t.pretrain_batch_size}"
            f"-lr{t.pretrain_lr:g}-corpus{CORPUS_VERSION}")


def load_or_pretrain_base(spec: GridSpec, cell: Cell, bases: Path | None) -> nnx.State | None:
    """The cell's base parameters: a checkpoint's, read; or a preset's, pretrained here on the corpus for
    the cell's pretrain_tokens and cached under `bases` (None: the preset starts from random init)."""
    if cell.base.is_checkpoint:
        from scaling.hf import read_hf_checkpoint

        # Read straight from the checkpoint (one tensor at a time, no copy on disk): conversion is fast,
        # and a copy in scratch would double the disk a large base takes.
        return read_hf_checkpoint(cell.base.checkpoint).params
    if cell.pretrain_tokens == 0:
        return None
    t = spec.train
    cfg = preset(cell.size, CHARACTERS.vocab_size, t.pretrain_context)
    if bases is None:
        return pretrain(cfg, cell.pretrain_tokens, BASE_SEED, t.pretrain_batch_size, t.pretrain_lr)
    folder = bases / base_key(cell, spec)
    like = abstract_model(cfg)[1]
    if latest_checkpoint(folder) is None:
        params = pretrain(cfg, cell.pretrain_tokens, BASE_SEED, t.pretrain_batch_size, t.pretrain_lr)
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


def measured_base(spec: GridSpec, cell: Cell, plan: CellPlan, bases: Path | None) -> dict[str, float]:
    """The capability of the base a cell starts from (`scaling.trainer.probe`), before SFT: read from
    beside a cached pretrained base, else measured now (a random init as the cell's training draws it,
    or a checkpoint through its own tokenizer)."""
    if not cell.base.is_checkpoint and cell.pretrain_tokens and bases is not None:
        cached = bases / base_key(cell, spec) / MEASURES
        if cached.is_file():
            return json.loads(cached.read_text())
    params = plan.init_params if plan.init_params is not None else init_model(plan.model_cfg, cell.seed)[1]
    if not cell.base.is_checkpoint or bases is None:
        return measure_base(plan.model_cfg, params, plan.tokenizer)
    # A checkpoint is measured once per grid, not once per cell (SmolLM2-135M takes about a minute), and
    # remeasured when its files change.
    folder = bases / checkpoint_key(cell.base.checkpoint)
    if (folder / MEASURES).is_file():
        return json.loads((folder / MEASURES).read_text())
    measures = measure_base(plan.model_cfg, params, plan.tokenizer)
    publish_once(folder, {MEASURES: json.dumps(measures).encode()})
    return measures


def checkpoint_key(checkpoint: Path) -> str:
    """A checkpoint's measurements' name in the bases cache: its resolved path and the name, size and
    modification time of its files (the file itself, for a GGUF file), and the corpus version."""
    checkpoint = Path(checkpoint).resolve()
    files = [checkpoint] if checkpoint.is_file() else sorted(p for p in checkpoint.iterdir() if p.is_file())
    identity = [str(checkpoint)] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]
    return f"checkpoint-{digest}-corpus{CORPUS_VERSION}"
