"""A cell's arms after SFT ([rl], [rft]): from the SFT model at each chosen budget, RL with verifiable rewards
(scaling.trainer.grpo) or rejection-sampling fine-tuning (scaling.trainer.rft), evaluated on every split at each
of the arm's own budgets exactly as SFT's budgets are, with the compute each model graded cost, by phase.

Each (arm, SFT budget) is one phase of the cell after SFT, in the order of `arm_phases`; a checkpoint inside a
phase carries everything measured so far, so a killed cell resumes inside the arm it was in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx

from scaling.schema import METRICS
from scaling.trainer.checkpoint import latest_checkpoint, restore_checkpoint, save_checkpoint
from scaling.trainer.flops import PHASES
from scaling.trainer.model import abstract_model
from scaling.trainer.train import Stopped

SFT_MODELS = "sft_models"  # beside a cell's checkpoints: the SFT models the arms start from, one folder per budget


@dataclass(frozen=True)
class ArmPlan:
    """One arm of a cell: which, from which SFT budgets, with its trainer's config (RLConfig or RFTConfig)."""

    arm: str  # one of scaling.schema.ARMS
    from_budgets: tuple[int, ...]  # SFT budgets it starts from
    config: Any  # scaling.trainer.grpo.RLConfig or scaling.trainer.rft.RFTConfig

    @property
    def trainer(self) -> Trainer:
        return _trainers()[self.arm]()


@dataclass(frozen=True)
class Trainer:
    """What the cell needs of an arm's trainer module: its loop (yielding (arm_step, graphdef, params, tally) at each
    budget, and offering on_checkpoint(step, state, point)), how a checkpoint's point resumes it, and the shape of
    the state its checkpoints hold."""

    train: Callable
    resume: Callable  # (step, state, point as stored) -> the loop's resume argument
    state_template: Callable  # (model_cfg, config, abstract params) -> the abstract state its checkpoints hold


def _rl() -> Trainer:
    from scaling.trainer import grpo

    def template(model_cfg, cfg, params):  # the policy's (params, AdamW state), as rl_train checkpoints it
        return params, jax.eval_shape(grpo.rl_optimizer(cfg.grad_clip).init, params)

    return Trainer(grpo.rl_train, lambda step, state, tally: grpo.RLResume(step, state, grpo.RLTally(**tally)),
                   template)


def _rft() -> Trainer:
    from scaling.trainer import rft
    from scaling.trainer.train import Resume, optimizer_for

    def template(model_cfg, cfg, params):  # fine-tuning is `train`'s: its (params, AdamW state)
        return params, jax.eval_shape(optimizer_for(cfg.train_config()).init, params)

    return Trainer(rft.rft_train, Resume, template)


def _trainers() -> dict[str, Trainer]:
    return {"rl": _rl, "rft": _rft}


def arm_phases(arms: tuple[ArmPlan, ...]) -> list[tuple[ArmPlan, int]]:
    """The cell's phases after SFT, in the order they run: each arm from each of its SFT budgets."""
    return [(arm, sft_step) for arm in arms for sft_step in arm.from_budgets]


def arm_starts(arms: tuple[ArmPlan, ...]) -> set[int]:
    """The SFT budgets whose models some arm starts from: kept (and saved) as SFT reaches them."""
    return {sft_step for _, sft_step in arm_phases(arms)}


PHASE_SPAN = 2**40  # checkpoint ids a phase may use: more than any run writes


class CheckpointIds:
    """Checkpoint ids after SFT's: strictly increasing over the phases, and within a phase in the order written (an
    arm's loop may offer one step twice: at a checkpoint_every point and again once its budget is evaluated)."""

    def __init__(self, after: int):
        self.first = after + 1

    def next(self, phase: int, latest: int | None) -> int:
        return max(self.first + phase * PHASE_SPAN, (latest or 0) + 1)

    def phase_of(self, checkpoint: int) -> int | None:
        """The phase a checkpoint id belongs to, None for SFT's."""
        return None if checkpoint < self.first else (checkpoint - self.first) // PHASE_SPAN


class ArmStopped(Stopped):
    """A cell stopped inside an arm: its newest checkpoint is at the arm's step `saved_step` of `steps`, not at an
    SFT step, so what was saved is said in the arm's terms."""

    def __init__(self, saved_step: int | None, arm: str, sft_step: int, steps: int):
        super().__init__(saved_step)
        self.phase = f"{arm} from SFT step {sft_step}"  # which arm, from which SFT model
        self.steps = steps  # the arm's last budget


def keep_sft_model(checkpoints: Path | None, sft_step: int, params: nnx.State) -> None:
    """Save the SFT model an arm starts from, once: a resume past SFT reads it back (`sft_model`)."""
    if checkpoints is not None and latest_checkpoint(checkpoints / SFT_MODELS / str(sft_step)) is None:
        save_checkpoint(checkpoints / SFT_MODELS / str(sft_step), 0, params, {})


def sft_model(checkpoints: Path, sft_step: int, model_cfg) -> nnx.State:
    """The SFT model of a budget saved by `keep_sft_model`."""
    return restore_checkpoint(checkpoints / SFT_MODELS / str(sft_step), 0, abstract_model(model_cfg)[1])[0]


def phase_flops(sft_flops: tuple[float, ...], arm: str, tally) -> tuple[float, ...]:
    """The FLOPs by phase (PHASES) of an arm's model: its SFT model's, plus the arm's sampling and updates so far."""
    flops = list(sft_flops)
    flops[PHASES.index(f"{arm}_sampling")] += float(tally.sampling_flops)
    flops[PHASES.index(f"{arm}_update")] += float(tally.update_flops)
    return tuple(flops)


@dataclass
class ArmRecord:
    """What one phase measured so far, in the form a checkpoint's JSON holds (see scaling.grid.store.ArmResult)."""

    arm: str
    sft_step: int
    steps: list[int] = dataclasses.field(default_factory=list)
    metrics: dict = dataclasses.field(default_factory=dict)  # split -> metric -> values over steps
    flops_by_phase: list = dataclasses.field(default_factory=list)
    reward: list = dataclasses.field(default_factory=list)

    def add(self, step: int, scores: dict[str, dict[str, float]], flops: tuple[float, ...], reward: float) -> None:
        self.steps.append(step)
        for split, values in scores.items():
            for metric in METRICS:
                self.metrics.setdefault(split, {}).setdefault(metric, []).append(float(values[metric]))
        self.flops_by_phase.append(list(flops))
        self.reward.append(reward)


def mean_reward(tally) -> float:
    """RL's mean training reward so far (NaN before any step, and for RFT, which has none)."""
    reward = getattr(tally, "mean_reward", float("nan"))
    return float(reward) if np.isfinite(reward) else float("nan")


def point_state(point) -> int | dict:
    """What an arm's loop offers a checkpoint beside its step (RL's tally, fine-tuning's budgets done), as JSON."""
    if not dataclasses.is_dataclass(point):
        return int(point)
    return {k: v.item() if isinstance(v, np.generic | jax.Array) else v for k, v in dataclasses.asdict(point).items()}
