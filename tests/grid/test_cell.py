"""A cell killed at any point resumes from its last checkpoint and ends with identical metrics."""

import dataclasses

import pytest

from scaling.trainer.batches import sequence_length, token_arrays
from scaling.grid.cell import CellPlan, run_cell
from scaling.trainer.checkpoint import latest_checkpoint
from scaling.trainer.config import TrainConfig
from scaling.tasks.mixture import evaluation_split, memorization_split, training_pool


class Killed(Exception):
    """Stands in for SIGKILL: raised from inside training, nothing after it runs."""


@pytest.fixture(scope="module")
def plan(request):
    from scaling.trainer.config import ModelConfig
    from scaling.tasks import tokenizer

    pool = training_pool(("add",), 1, 64, seed=0)
    splits = {"train": memorization_split(pool, 4), "id": evaluation_split("id", ("add",), ("sub",), 4, 0)}
    length = sequence_length(pool + sum(splits.values(), []))
    model_cfg = ModelConfig(vocab_size=tokenizer.VOCAB_SIZE, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32, max_len=length)
    return CellPlan("c0", {"size": "t"}, model_cfg, TrainConfig(budgets=(6, 12, 24), batch_size=8, warmup_steps=2),
                    token_arrays(pool, length), splits, {split: length for split in splits}, 4, 8 * length)


def _checkpointed_every(plan: CellPlan, steps: int) -> CellPlan:
    return dataclasses.replace(plan, train_cfg=plan.train_cfg.replace(checkpoint_every=steps))


def _killed_at(step_to_die: int):
    def on_step(step: int, loss: float) -> None:
        if step == step_to_die:
            raise Killed

    return on_step


@pytest.mark.parametrize("die_at, checkpointed", [(3, False), (11, True), (20, True)])
def test_resumed_cell_ends_with_the_metrics_of_an_uninterrupted_one(plan, tmp_path, die_at, checkpointed):
    uninterrupted = run_cell(plan)
    with pytest.raises(Killed):
        run_cell(_checkpointed_every(plan, 4), checkpoints=tmp_path, on_step=_killed_at(die_at))
    assert (latest_checkpoint(tmp_path) is not None) == checkpointed  # killed before the first: starts over
    resumed = run_cell(_checkpointed_every(plan, 4), checkpoints=tmp_path)
    assert resumed.steps == uninterrupted.steps == (6, 12, 24)
    assert resumed.metrics == uninterrupted.metrics  # exact, float for float
    assert resumed.curve == uninterrupted.curve  # the training curve too, windows cut by the kill included


def test_the_training_curve_follows_the_last_budgets_trajectory_between_budgets(plan):
    steps, losses, rates = run_cell(plan).curve
    assert steps == tuple(range(1, 25))  # 24 steps, a point each (at most CURVE_POINTS points)
    assert all(loss > 0 for loss in losses) and losses[-1] < losses[0]
    # wsd: warmup over 2 steps, constant, then the last budget's decay from 19.2 -> step 20 on towards 0.
    assert rates[0] == pytest.approx(plan.train_cfg.lr / 2) and rates[10] == pytest.approx(plan.train_cfg.lr)
    assert rates[-1] < 0.25 * plan.train_cfg.lr


def test_a_finished_cell_reruns_from_its_last_checkpoint_without_training(plan, tmp_path):
    first = run_cell(_checkpointed_every(plan, 4), checkpoints=tmp_path)
    steps_run = []
    again = run_cell(plan, checkpoints=tmp_path, on_step=lambda step, loss: steps_run.append(step))
    assert again.metrics == first.metrics and steps_run == []
