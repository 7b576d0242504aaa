"""From a grid cell to what its run needs: data, model and optimizer configs, and its base.

A cell's data is drawn from the grid's data source (`scaling.tasks.source`) and tokenized by its
base's tokenizer (`scaling.grid.bases`): the character tokenizer for preset sizes, the checkpoint's
own (and its chat template) for hf:PATH sizes; sequence lengths follow from it.

Pretrained bases are shared by every cell with the same (size, pretraining tokens, seed) and cached
in the run's scratch folder, so a grid pretrains each base once however many mixtures it has.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from flax import nnx

from scaling.trainer.batches import sequence_length
from scaling.grid.arms import ArmPlan
from scaling.grid.cell import CellPlan
from scaling.errors import UserError
from scaling.grid.spec import Cell, GridSpec, train_config
from scaling.trainer.model import init_model
from scaling.trainer.probe import measure_base
from scaling.trainer.packing import pack
from scaling.tasks.diversity import diversity_stats
from scaling.tasks.mixture import Example, memorization_split
from scaling.tasks.source import DataSource
from scaling.tasks.tokenizer import CHARACTERS, Tokenizer

LENGTH_QUANTUM = 32  # sequence lengths round up to this, so cells of a size mostly share one compiled step


@dataclass(frozen=True)
class CellData:
    pool: list[Example]  # the unique SFT examples, corruptions and CoT style applied
    splits: dict[str, list[Example]]  # evaluation examples by split
    length: int  # tokens that fit every sequence of this cell, in its tokenizer
    split_lengths: dict[str, int]  # tokens that fit every sequence of each split (rows of that split's evaluation)


def cell_data(spec: GridSpec, cell: Cell, tokenizer: Tokenizer = CHARACTERS) -> CellData:
    """The SFT pool and evaluation splits of a cell, and their length in `tokenizer`'s tokens
    (deterministic in the spec, the cell's axes and the tokenizer)."""
    source = spec.source
    return _cell_data(source, json.dumps(source.drawn_content()), _examples(spec, cell), spec.eval, cell.diversity,
                      cell.quality, cell.cot, cell.seed, cell.control, tokenizer)


def _examples(spec: GridSpec, cell: Cell) -> int:
    """Unique SFT examples of a cell; a control's are the grid's per cell, or per family of its own pool."""
    if not cell.control:
        return spec.data.examples_at(cell.diversity)
    per_family = spec.data.examples_per == "family"
    return spec.data.examples * (len(spec.source.control_trained(cell.control)) if per_family else 1)


# Keyed on what the source's files hold (an edited file is read again) and on the tokenizer (its content decides
# the length).
@functools.lru_cache(maxsize=8)
def _cell_data(source: DataSource, _files: str, examples: int, evaluation, diversity: int, quality: float, cot: str,
               seed: int, control: str, tokenizer: Tokenizer) -> CellData:
    """A cell's pool and splits: the evaluation set is the grid's, and no training example repeats its problems."""
    try:
        fixed = source.evaluation_set(evaluation.splits, evaluation.n, evaluation.seed, cot)
        held_out = frozenset(example.key for rows in fixed.values() for example in rows)
        pool = (source.control_pool(control, examples, seed, cot, held_out) if control
                else source.training_pool(diversity, examples, seed, quality, cot, held_out))
    except ValueError as error:  # e.g. more unique examples asked for than a family has
        which = f"control={control}" if control else f"diversity={diversity}, quality={quality}"
        raise UserError(f"cell data ({which}, cot={cot}, seed={seed}): {error}") from None
    splits = {split: memorization_split(pool, evaluation.memorization_n) if split == "train" else fixed[split]
              for split in evaluation.splits}
    return _measured(pool, splits, tokenizer)


def _measured(pool: list[Example], splits: dict[str, list[Example]], tokenizer: Tokenizer) -> CellData:
    """A cell's data with the lengths its rows need in `tokenizer`'s tokens."""
    split_lengths = {split: _quantized(sequence_length(examples, tokenizer)) for split, examples in splits.items()}
    return CellData(pool, splits, max([_quantized(sequence_length(pool, tokenizer)), *split_lengths.values()]), split_lengths)


def _quantized(length: int) -> int:
    return -(-length // LENGTH_QUANTUM) * LENGTH_QUANTUM


def cell_plan(spec: GridSpec, cell: Cell, init_params: nnx.State | None) -> CellPlan:
    """Everything `scaling.grid.cell.run_cell` needs for this cell, starting from the base's parameters
    (see `load_or_pretrain_base`; None: a random initialization)."""
    tokenizer = cell.base.tokenizer()
    data = cell_data(spec, cell, tokenizer)
    model_cfg = cell.base.model_config(max(data.length, spec.data.pack_length or data.length))
    if tokenizer.vocab_size > model_cfg.vocab_size:
        raise UserError(f"[axes] size {cell.size!r}: the tokenizer has {tokenizer.vocab_size} ids, the model only "
                        f"{model_cfg.vocab_size} embedding rows")
    pack_length = spec.data.pack_length or data.length
    if cell.control:  # a control's own distribution (longer problems, chained families) may outgrow the grid's rows
        pack_length = max(pack_length, _quantized(sequence_length(data.pool, tokenizer)))
    try:
        rows = pack(data.pool, pack_length, tokenizer)
    except ValueError as error:  # an example longer than [data] pack_length
        raise UserError(f"[data] pack_length {pack_length}: {error}") from None
    return CellPlan(
        cell_id=cell.cell_id,
        axes=cell.axes,
        model_cfg=model_cfg,
        train_cfg=train_config(spec, cell.seed).replace(adapter=cell.adapter),
        train_data=rows,
        splits=data.splits,
        eval_lengths=data.split_lengths,
        eval_batch=spec.eval.decode_batch,
        tokens_per_step=spec.train.batch_size * pack_length,
        pool_stats=diversity_stats(data.pool),
        init_params=init_params,
        tokenizer=tokenizer,
        grader=spec.source.grader,
        prompts=tuple(data.pool),
        # A positive control measures a split's headroom under SFT: the arms compare with the grid's own cells.
        arms=() if cell.control else tuple(ArmPlan(name, section.from_budgets, section.config(cell.seed))
                                           for name, section in spec.arms.items()),
        pretraining_flops=cell.base.pretraining_flops(cell.pretrain_tokens, spec.train.pretraining),
    )


def load_or_pretrain_base(spec: GridSpec, cell: Cell, bases: Path | None) -> nnx.State | None:
    """The cell's base parameters (None: the random initialization its training draws); `bases` caches what is
    costly to make again (None: nothing is kept)."""
    return cell.base.initial_params(cell.pretrain_tokens, spec.train.pretraining, bases)


def measured_base(spec: GridSpec, cell: Cell, plan: CellPlan, bases: Path | None) -> dict[str, float]:
    """The capability of the base a cell starts from (`scaling.trainer.probe`), before SFT: read from the
    `bases` cache where the base keeps it, else measured now (a random init as the cell's training draws it)."""

    def measure() -> dict[str, float]:
        params = plan.init_params if plan.init_params is not None else init_model(plan.model_cfg, cell.seed)[1]
        return measure_base(plan.model_cfg, params, plan.tokenizer)

    return cell.base.measured(cell.pretrain_tokens, spec.train.pretraining, bases, measure)
