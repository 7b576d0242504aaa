"""`scaling baseline RUN`: each base of a grid evaluated before any SFT, on the grid's own evaluation set.

The paper's tables set a "base model" row beside the "+ SFT" rows. The grid's grader reads the answer
after `####`, a format only SFT teaches, so it would give every base 0 by construction; here answers are
read leniently (`scaling.tasks.lenient`), zero-shot. The problems are the grid's evaluation splits but
`train` (a cell's own SFT examples): the ones every cell is graded on, in the base's own tokenizer and
chat template. An untrained base writes longer answers than the grid's CoT, so its rows hold `ROOM`
times a split's longest sequence (prompt and generation together).

Written to RUN/baseline.parquet (`COLUMNS`), one row per base, split and example, atomically; greedy
decoding makes it deterministic, so a rerun rewrites the same table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from scaling.errors import UserError
from scaling.grid.folder import RunFolder
from scaling.grid.plan import cell_plan, load_or_pretrain_base
from scaling.grid.runner import read_run_spec, scratch_dir, use_compilation_cache
from scaling.grid.spec import Cell, GridSpec, expand
from scaling.grid.store import write_grades
from scaling.tasks.quality import COT_STYLES
from scaling.trainer.evaluate import grade_split
from scaling.trainer.model import abstract_model, init_model

BASELINE = "baseline.parquet"
ROOM = 2  # a row holds this many times its split's longest sequence: room for a base's longer answers
# Each example's, from its grade; completion: the text the base wrote, decoded, as it was graded.
GRADED = ("family", "phrasing", "key", "difficulty", "distance", "chance", "answer_correct", "completion", "generated_tokens")
COLUMNS = ("size", "pretrain_tokens", "split", *GRADED)  # baseline.parquet's


def base_cells(spec: GridSpec) -> list[Cell]:
    """One cell per distinct base (size, pretraining tokens), in grid order, to read the base's data from.

    Every cell of a grid is graded on the same problems; the CoT style only sets how long their rows are,
    so a cell of the longest style (`full` before `short` before `none`) is taken, then the first seed (whose
    random initialization stands for a base of 0 pretraining tokens).
    """
    chosen: dict[tuple[str, int], Cell] = {}
    for cell in (cell for cell in expand(spec) if not cell.control):
        key = (cell.size, cell.pretrain_tokens)
        if key not in chosen or COT_STYLES.index(cell.cot) < COT_STYLES.index(chosen[key].cot):
            chosen[key] = cell
    return list(chosen.values())


# Hears of each split graded: its rows (`COLUMNS`) and the seconds it took.
SplitHook = Callable[[list[dict], float], None]


def evaluate_base(spec: GridSpec, cell: Cell, bases: Path | None, on_split: SplitHook | None = None) -> list[dict]:
    """The base of `cell` graded on every evaluation split but `train` (`COLUMNS`); `bases` caches pretrained
    presets (see `load_or_pretrain_base`)."""
    plan = cell_plan(spec, cell, load_or_pretrain_base(spec, cell, bases))
    # A base of 0 pretraining tokens is the random initialization the cell's training starts from.
    params = plan.init_params if plan.init_params is not None else init_model(plan.model_cfg, plan.train_cfg.seed)[1]
    graphdef = abstract_model(plan.model_cfg)[0]
    grader = spec.source.zero_shot_grader
    rows: list[dict] = []
    for split, examples in plan.splits.items():
        if split == "train":
            continue
        started = time.perf_counter()
        length = ROOM * plan.eval_lengths[split]
        if plan.model_cfg.positions == "learned":  # a table of positions ends where it ends (GPT-2's 1024)
            length = max(plan.eval_lengths[split], min(length, plan.model_cfg.max_len))
        _, grades = grade_split(graphdef, params, examples, length, plan.eval_batch, plan.tokenizer, grader,
                                keep_text=True)
        done = [{"size": cell.size, "pretrain_tokens": cell.pretrain_tokens, "split": split,
                 **{column: grade[column] for column in GRADED}} for grade in grades]
        rows += done
        if on_split is not None:
            on_split(done, time.perf_counter() - started)
    return rows


def run_baseline(run_dir: str, on_split: SplitHook | None = None) -> pd.DataFrame:
    """Every base of the run folder's grid graded before SFT, written to RUN/baseline.parquet (replaced
    whole, and only once every base is graded)."""
    folder = RunFolder(run_dir)
    try:
        spec = read_run_spec(folder)
    except OSError as error:  # a grid.toml that cannot be read (permissions, a folder by that name)
        raise UserError(f"cannot read the run folder {folder.url} ({type(error).__name__}: "
                        f"{error.strerror or error})") from None
    use_compilation_cache()
    bases = scratch_dir(folder) / "bases"
    rows: list[dict] = []
    for cell in base_cells(spec):
        rows += evaluate_base(spec, cell, bases, on_split)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    data_sources = spec.source.provenance()
    if data_sources:  # Parquet metadata: the benchmark items evaluated, where from
        table.attrs = {"data_sources": json.dumps(data_sources, sort_keys=True)}
    write_grades(folder, BASELINE, table)
    return table


def baseline_summary(table: pd.DataFrame) -> str:
    """Per base and split: examples answered right of n, the accuracy, and the mean chance floor."""
    groups = table.groupby(["size", "pretrain_tokens", "split"], sort=False)
    lines = [(str(size), str(tokens), split, f"{int(g.answer_correct.sum())}/{len(g)}",
              f"{g.answer_correct.mean():.3f}", f"{g.chance.mean():.3f}")
             for (size, tokens, split), g in groups]
    header = ("size", "pretrain", "split", "correct", "accuracy", "chance")
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                     for row in [header, *lines])
