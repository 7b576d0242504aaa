"""One cell of a grid: train one base on one mixture with one seed, evaluate every split at every
budget, and resume exactly from the last checkpoint after a crash or a kill."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

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
from scaling.grid.arms import (ArmPlan, ArmRecord, ArmStopped, CheckpointIds, arm_phases, arm_starts, keep_sft_model,
                               mean_reward, phase_flops, point_state, sft_model)
from scaling.grid.store import ArmResult, CellResult
from scaling.trainer.flops import PHASES
from scaling.tasks.grader import Grader, verify_example
from scaling.tasks.mixture import Example
from scaling.tasks.tokenizer import CHARACTERS, Tokenizer
from scaling.trainer.train import Resume, Stopped, TrainingDiverged, state_template, train


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
    prompts: tuple[Example, ...] = ()  # the cell's training examples: what the arms draw their prompts from
    arms: tuple[ArmPlan, ...] = ()  # the arms after SFT ([rl], [rft]); none: SFT only
    pretraining_flops: float = 0.0  # what making the base cost here (a preset pretrained on the corpus)

    def sft_flops(self, step: int) -> tuple[float, ...]:
        """The training FLOPs by phase (scaling.trainer.flops.PHASES) of the SFT model at `step`."""
        per_step = self.model_cfg.train_flops_per_token(self.train_data.inputs.shape[1]) * self.tokens_per_step
        return (self.pretraining_flops, per_step * step) + (0.0,) * (len(PHASES) - 2)


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
    """Train and evaluate one cell, then its arms after SFT (`plan.arms`); with `checkpoints`, continue from the
    latest one found there (written after each budget, SFT's or an arm's, and every `checkpoint_every` steps).

    `on_final` receives the parameters of the last SFT budget's model once it is evaluated (to keep it).
    Once `should_stop` says yes, the cell is checkpointed at the step it reached and `Stopped` is raised (see
    `train`): it did not fail, and resumes from there.
    """
    budgets = plan.train_cfg.budgets
    observer = observer or CellObserver()
    metrics = {split: {m: [] for m in METRICS} for split in plan.splits}
    steps: list[int] = []
    grades: list[dict] = []
    curve = LossCurve(curve_every(budgets[-1]))
    ids = CheckpointIds(_checkpoint_id(budgets[-1], len(budgets), len(budgets)))
    arms = _ArmsState()
    resume, wall_before = None, 0.0
    latest = latest_checkpoint(checkpoints) if checkpoints is not None else None
    if latest is not None:
        arms.phase = ids.phase_of(latest)
        if arms.phase is None:
            template = state_template(plan.model_cfg, plan.train_cfg)  # shapes only: the checkpoint holds the values
        else:
            arm, sft_step = arm_phases(plan.arms)[arms.phase]
            template = arm.trainer.state_template(plan.model_cfg, arm.config, abstract_model(plan.model_cfg)[1])
        state, extra = restore_checkpoint(checkpoints, latest, template)
        if arms.phase is None:
            resume = Resume(extra["trunk_step"], state, extra["budgets_done"])
        else:
            arms.resume_from(extra, state)
        metrics, steps, wall_before, grades = extra["metrics"], extra["steps"], extra["wall_seconds"], extra["grades"]
        if "curve" in extra:  # checkpoints written before curves were kept resume without the points so far
            curve = LossCurve.from_state(extra["curve"])
    started = time.perf_counter()

    def sft_state() -> dict:
        return {"metrics": metrics, "steps": steps, "grades": grades,
                "wall_seconds": wall_before + time.perf_counter() - started, "curve": curve.state()}

    def save(trunk_step: int, state, budgets_done: int) -> None:
        extra = {"trunk_step": trunk_step, "budgets_done": budgets_done, **sft_state()}
        save_checkpoint(checkpoints, _checkpoint_id(trunk_step, budgets_done, len(budgets)), state, extra)

    def step_done(steps_done: int, loss: float) -> None:
        if on_step is not None:
            on_step(steps_done, loss)
        observer.trained(steps_done, loss)

    status = DONE
    starts = arm_starts(plan.arms)
    try:
        if arms.phase is None:
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
                if step in starts:
                    arms.sft_models[step] = params
                    keep_sft_model(checkpoints, step, params)
                if on_final is not None and step == budgets[-1]:
                    on_final(params)
        _run_arms(plan, arms, ids, checkpoints, metrics, steps, grades, sft_state, should_stop)
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
        flops=tuple(plan.sft_flops(s)[1] for s in steps),
        wall_seconds=wall_before + time.perf_counter() - started,
        chance={split: float(np.mean([e.chance for e in examples])) for split, examples in plan.splits.items()},
        base=plan.base_measures,
        grades=tuple(grades),
        pool_stats=plan.pool_stats,
        status=status,
        curve=(tuple(curve.steps), tuple(curve.losses), tuple(curve.rates)),
        flops_by_phase=tuple(plan.sft_flops(s) for s in steps),
        arms=tuple(ArmResult(r.arm, r.sft_step, tuple(r.steps), r.metrics, tuple(map(tuple, r.flops_by_phase)),
                             tuple(r.reward)) for r in arms.done),
        arm_grades=tuple(arms.grades),
    )


class _ArmsState:
    """Where a cell stands after SFT: the phase under way (None: SFT's), what finished phases measured, and the
    SFT models the arms start from (kept in memory as SFT reaches them, read back from disk after a resume)."""

    def __init__(self):
        self.phase: int | None = None
        self.done: list[ArmRecord] = []  # finished phases' records
        self.current: ArmRecord | None = None  # the phase under way, resumed mid-arm
        self.grades: list[dict] = []
        self.resume = None  # the arm's (step, state, tally) to resume from
        self.sft_models: dict[int, nnx.State] = {}

    def resume_from(self, extra: dict, state) -> None:
        self.done = [ArmRecord(**record) for record in extra["arms_done"]]
        self.current = ArmRecord(**extra["arm_current"])
        self.grades = extra["arm_grades"]
        self.resume = (extra["arm_step"], state, extra["arm_point"])

    def state(self) -> dict:
        return {"arms_done": [vars(r) for r in self.done], "arm_current": vars(self.current), "arm_grades": self.grades}


def _run_arms(plan: CellPlan, arms: _ArmsState, ids: CheckpointIds, checkpoints: Path | None, metrics: dict,
              steps: list[int], grades: list[dict], sft_state: Callable[[], dict],
              should_stop: Callable[[], bool]) -> None:
    """Each arm from each of its SFT budgets, in `arm_phases` order, from the phase `arms` stands in; each arm step
    evaluated on every split like an SFT budget (step 0 is the SFT model itself: SFT's scores at its budget)."""
    first = arms.phase or 0
    for phase, (arm, sft_step) in enumerate(arm_phases(plan.arms)[first:], start=first):
        trainer, at = arm.trainer, steps.index(sft_step)
        resume = None
        if phase == arms.phase and arms.resume is not None:
            resume = trainer.resume(*arms.resume)
        else:
            arms.current = ArmRecord(arm.arm, sft_step)
        record = arms.current
        if sft_step not in arms.sft_models:
            arms.sft_models[sft_step] = sft_model(checkpoints, sft_step, plan.model_cfg)

        def save(arm_step: int, state, point, phase=phase) -> None:
            extra = {**sft_state(), **arms.state(), "arm_step": arm_step, "arm_point": point_state(point)}
            save_checkpoint(checkpoints, ids.next(phase, latest_checkpoint(checkpoints)), state, extra)

        arm_models = trainer.train(
            plan.model_cfg, arm.config, arms.sft_models[sft_step], list(plan.prompts), plan.tokenizer, plan.grader,
            resume=resume, on_checkpoint=save if checkpoints is not None else None, should_stop=should_stop)
        for arm_step, graphdef, params, tally in _arm_stops(arm_models, arm, sft_step):
            if arm_step == 0:  # the SFT model itself, graded already
                scores = {split: {m: metrics[split][m][at] for m in METRICS} for split in plan.splits}
                graded = {split: [{k: v for k, v in g.items() if k not in ("step", "split")} for g in grades
                                  if g["step"] == sft_step and g["split"] == split] for split in plan.splits}
            else:
                scores, graded = evaluate_splits(graphdef, params, plan.splits, plan.eval_lengths, plan.eval_batch,
                                                 plan.tokenizer, plan.grader)
            # Step 0 is the SFT model: what the arm has spent yet (RFT samples first) went into no model graded here.
            flops = phase_flops(plan.sft_flops(sft_step), arm.arm, tally) if arm_step else plan.sft_flops(sft_step)
            record.add(arm_step, scores, flops, mean_reward(tally))
            arms.grades += [{"arm": arm.arm, "sft_step": sft_step, "step": arm_step, "split": split, **_plain(grade)}
                            for split in plan.splits for grade in graded[split]]
        arms.done.append(record)
        arms.current, arms.resume = None, None


def _arm_stops(arm_models: Iterator, arm: ArmPlan, sft_step: int) -> Iterator:
    """An arm's loop, its `Stopped` said in the arm's terms (`ArmStopped`): which arm, and the arm's step."""
    try:
        yield from arm_models
    except Stopped as stopped:
        raise ArmStopped(stopped.saved_step, arm.arm, sft_step, arm.config.budgets[-1]) from None
