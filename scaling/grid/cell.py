"""One cell of a grid: train one base on one mixture with one seed, evaluate every split at every
budget, and resume exactly from the last checkpoint after a crash or a kill."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from flax import nnx

from scaling.trainer.batches import TokenArrays
from scaling.trainer.checkpoint import latest_checkpoint, restore_checkpoint, save_checkpoint
from scaling.trainer.config import ModelConfig, TrainConfig
from scaling.trainer.curve import LossCurve, curve_every
from scaling.trainer.evaluate import evaluate_splits
from scaling.trainer.model import abstract_model
from scaling.results import DONE, CellStatus
from scaling.schema import METRICS
from scaling.grid.store import CellResult
from scaling.tasks.grader import Grader, verify_example
from scaling.tasks.mixture import Example
from scaling.tasks.tokenizer import CHARACTERS, Tokenizer
from scaling.trainer.train import Resume, TrainingDiverged, optimizer_for, train


@dataclass(frozen=True)
class CellPlan:
    """Everything a cell trains and evaluates on."""

    cell_id: str  # content hash of everything that determines the results
    axes: dict  # the cell's value on each grid axis
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    train_data: TokenArrays  # the SFT rows (packed or one example per row)
    splits: dict[str, list[Example]]  # evaluation examples by split
    eval_lengths: dict[str, int]  # each split's row length: its longest sequence, rounded up (see evaluate_splits)
    eval_batch: int  # evaluation rows decoded together
    tokens_per_step: int  # tokens processed per optimizer step, for FLOPs
    pool_stats: dict = field(default_factory=dict)  # measured diversity of the SFT pool
    base_measures: dict = field(default_factory=dict)  # the base's measured capability (schema.BASE_MEASURES)
    init_params: nnx.State | None = None  # a pretrained base; None: random initialization
    tokenizer: Tokenizer = CHARACTERS  # what made train_data and tokenizes the splits: the base model's own
    grader: Grader = verify_example  # grades generated completions: the families' verifiers, or a dataset's extractor


class CellObserver:
    """What a running cell tells whoever watches it (a progress display, a log); each method does nothing
    here. Called in the cell's process, between steps: keep them quick."""

    def trained(self, steps_done: int, loss: float) -> None:
        """An optimizer step finished (reported one step late); `steps_done` counts every step of the cell."""

    def evaluating(self, budget: int) -> None:
        """The model of `budget` is trained and is being evaluated."""

    def evaluated(self, budget: int, scores: dict[str, dict[str, float]], curve: LossCurve) -> None:
        """`budget`'s scores per split and metric, and the training curve up to here (settled)."""


def _plain(grade: dict) -> dict:
    """A grade with plain Python values: it goes into a checkpoint's JSON and must read back the same."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in grade.items()}


def _checkpoint_id(trunk_step: int, budgets_done: int, n_budgets: int) -> int:
    """Strictly increasing over a run, as checkpoints must be."""
    return trunk_step * (n_budgets + 1) + budgets_done


def run_cell(
    plan: CellPlan,
    checkpoints: Path | None = None,
    on_step: Callable[[int, float], None] | None = None,
    on_final: Callable[[nnx.State], None] | None = None,
    observer: CellObserver | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> CellResult:
    """Train and evaluate one cell; with `checkpoints`, continue from the latest one found there (written after
    each budget, and every `plan.train_cfg.checkpoint_every` trunk steps).

    `on_final` receives the parameters of the last budget's model once it is evaluated (to keep it).
    Once `should_stop` says yes, the cell is checkpointed at the step it reached and `Stopped` is raised (see
    `train`): it did not fail, and resumes from there.
    """
    budgets = plan.train_cfg.budgets
    observer = observer or CellObserver()
    metrics = {split: {m: [] for m in METRICS} for split in plan.splits}
    steps: list[int] = []
    grades: list[dict] = []
    curve = LossCurve(curve_every(budgets[-1]))
    resume, wall_before = None, 0.0
    if checkpoints is not None and (latest := latest_checkpoint(checkpoints)) is not None:
        params = abstract_model(plan.model_cfg)[1]  # shapes only: the checkpoint holds the values
        template = (params, jax.eval_shape(optimizer_for(plan.train_cfg).init, params))
        state, extra = restore_checkpoint(checkpoints, latest, template)
        resume = Resume(extra["trunk_step"], state, extra["budgets_done"])
        metrics, steps, wall_before, grades = extra["metrics"], extra["steps"], extra["wall_seconds"], extra["grades"]
        if "curve" in extra:  # checkpoints written before curves were kept resume without the points so far
            curve = LossCurve.from_state(extra["curve"])
    started = time.perf_counter()

    def save(trunk_step: int, state, budgets_done: int) -> None:
        extra = {"trunk_step": trunk_step, "budgets_done": budgets_done, "metrics": metrics, "steps": steps,
                 "grades": grades, "wall_seconds": wall_before + time.perf_counter() - started, "curve": curve.state()}
        save_checkpoint(checkpoints, _checkpoint_id(trunk_step, budgets_done, len(budgets)), state, extra)

    def step_done(steps_done: int, loss: float) -> None:
        if on_step is not None:
            on_step(steps_done, loss)
        observer.trained(steps_done, loss)

    status = DONE
    try:
        for step, graphdef, params in train(
            plan.model_cfg, plan.train_cfg, plan.train_data, on_step=step_done, init_params=plan.init_params,
            resume=resume, on_checkpoint=save if checkpoints is not None else None, curve=curve,
            should_stop=should_stop,
        ):
            steps.append(step)
            observer.evaluating(step)
            scores, graded = evaluate_splits(graphdef, params, plan.splits, plan.eval_lengths, plan.eval_batch,
                                             plan.tokenizer, plan.grader)
            for split in plan.splits:
                for metric, value in scores[split].items():
                    metrics[split][metric].append(value)
                grades += [{"step": step, "split": split, **_plain(grade)} for grade in graded[split]]
            observer.evaluated(step, {split: {m: metrics[split][m][-1] for m in METRICS} for split in plan.splits}, curve)
            if on_final is not None and step == budgets[-1]:
                on_final(params)
    except TrainingDiverged as diverged:
        status = CellStatus("failed", str(diverged))
    curve.settle()
    return CellResult(
        cell_id=plan.cell_id,
        axes=plan.axes,
        steps=tuple(steps),
        splits=tuple(plan.splits),
        metrics=metrics,
        params=plan.model_cfg.non_embedding_params,
        flops=tuple(plan.model_cfg.train_flops_per_token(plan.train_data.inputs.shape[1]) * plan.tokens_per_step * s for s in steps),
        wall_seconds=wall_before + time.perf_counter() - started,
        chance={split: float(np.mean([e.chance for e in examples])) for split, examples in plan.splits.items()},
        base=plan.base_measures,
        grades=tuple(grades),
        pool_stats=plan.pool_stats,
        status=status,
        curve=(tuple(curve.steps), tuple(curve.losses), tuple(curve.rates)),
    )
