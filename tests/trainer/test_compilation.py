"""One compilation per distinct shape: cells of a grid that share a model and batch shape reuse the
compiled train step and the compiled generation, whatever their seed, data, budgets or schedule.

Counts are read from each jitted function's cache (`_cache_size()`: one entry per distinct signature
it has compiled for) before and after, so compilations by earlier tests in the process do not matter.
"""

import dataclasses

import pytest

from scaling.trainer.batches import sequence_length, token_arrays
from scaling.trainer.config import TrainConfig
from scaling.trainer.decode import generate_greedy_cached
from scaling.trainer.evaluate import evaluate_split, shape_bucket
from scaling.tasks.mixture import evaluation_split, training_pool
from scaling.trainer import train as train_module
from scaling.trainer.train import train

FAMILIES = ("add", "reverse")
# Batch sizes no other test uses, so the first cell below is the one that compiles its shapes.
BATCH_SIZE = 5
EVAL_N = 3
# Cells of one grid: seeds, diversity levels (different data), budgets, schedules, steps axes.
CELLS = (
    (1, TrainConfig(budgets=(2, 4), batch_size=BATCH_SIZE, warmup_steps=2, seed=0)),
    (2, TrainConfig(budgets=(3,), batch_size=BATCH_SIZE, warmup_steps=2, seed=1, schedule="cosine")),
    (1, TrainConfig(budgets=(1, 3), batch_size=BATCH_SIZE, warmup_steps=2, seed=2, schedule="constant")),
    (2, TrainConfig(budgets=(2, 3), batch_size=BATCH_SIZE, warmup_steps=2, seed=3, steps_axis="separate")),
)


@pytest.fixture(scope="module")
def grid_data():
    """Each diversity level's training arrays and `id` split, at one sequence length for the whole grid."""
    data = {}
    for diversity in (1, 2):
        pool = training_pool(FAMILIES, diversity, 40, seed=0)
        data[diversity] = (pool, evaluation_split("id", FAMILIES, (), EVAL_N, seed=0))
    length = sequence_length([e for pool, split in data.values() for e in pool + split])
    return {k: (token_arrays(pool, length), split) for k, (pool, split) in data.items()}, length


def _compilations() -> dict[str, int]:
    """Train steps compiled so far by training loops (every bound step's signatures) and generations compiled."""
    steps = sum(step._cache_size() for step in train_module._BOUND_STEPS.values())
    return {"train_step": steps, "generate": generate_greedy_cached._cache_size()}


def _run_cells(model_cfg, cells, grid_data) -> list[dict[str, int]]:
    """Train and evaluate each cell at every budget; the compilations each cell added, per function."""
    data, length = grid_data
    added = []
    for diversity, train_cfg in cells:
        arrays, split = data[diversity]
        before = _compilations()
        for _, graphdef, params in train(model_cfg, train_cfg, arrays):
            evaluate_split(graphdef, params, split, length, EVAL_N)
        after = _compilations()
        added.append({name: after[name] - before[name] for name in after})
    return added


def _generation_programs(length: int) -> int:
    """The most generation programs rows of at most `length` tokens can need: one per (buffer, prefill span) pair,
    both shape buckets no longer than `length` (evaluate._generations; a row resumed from its verified draft
    prefills a longer span, so the spans a cell meets depend on what its model gets right)."""
    buckets = {min(shape_bucket(n), length) for n in range(1, length + 1)}
    return len(buckets) * (len(buckets) + 1) // 2


@pytest.mark.slow  # each shape compiles a train step, a loss and a generation: seconds each on CPU
def test_a_grid_of_one_shape_compiles_once_and_a_second_shape_once_more(tiny_model_cfg, grid_data):
    length = grid_data[1]
    model_cfg = dataclasses.replace(tiny_model_cfg, max_len=length)
    added = _run_cells(model_cfg, CELLS, grid_data)
    assert added[0]["train_step"] == 1 and added[0]["generate"] >= 1, "the first cell compiles the step and generation"
    assert [a["train_step"] for a in added[1:]] == [0] * (len(CELLS) - 1), "later cells of the shape recompiled"
    # Generation compiles per shape bucket, never per budget, seed or schedule: at most one program per bucket pair.
    assert sum(a["generate"] for a in added) <= _generation_programs(length)

    deeper = dataclasses.replace(model_cfg, n_layers=3)
    added = _run_cells(deeper, CELLS[:2], grid_data)
    assert [a["train_step"] for a in added] == [1, 0] and sum(a["generate"] for a in added) <= _generation_programs(length)


@pytest.mark.slow
def test_learning_rate_and_warmup_sweeps_do_not_recompile(tiny_model_cfg, grid_data):
    length = grid_data[1]
    model_cfg = dataclasses.replace(tiny_model_cfg, max_len=length)
    first = CELLS[0]
    _run_cells(model_cfg, [first], grid_data)  # compiles this shape if no test has yet
    other_lr = (first[0], first[1].replace(lr=first[1].lr / 3, warmup_steps=5))
    assert _run_cells(model_cfg, [other_lr], grid_data) == [{"train_step": 0, "generate": 0}]
