"""Every task has enough evaluation problems: 512 distinct ones in its ID range (a family, a rule variant, a
one- or two-hop composition), and 128 at each of at least three difficulty levels above it (the distance
ladder of ood_length: +1, +2, +3)."""

import numpy as np
import pytest

from scaling.tasks.families.base import LADDER_RUNGS
from scaling.tasks.mixture import MAX_REJECTIONS_IN_A_ROW, is_evaluation_key
from scaling.tasks.registry import TASKS

IN_ID_RANGE = 512
PER_RUNG = 128


def _evaluation_problems(name: str, difficulties: tuple[int, int], wanted: int) -> int:
    """Distinct evaluation-share problems among real draws, found as the evaluation sampler finds them (it gives
    up after MAX_REJECTIONS_IN_A_ROW draws without a new one), up to `wanted`. Fields and keys only: the
    problem's steps do not change its key, and skipping them keeps this test fast."""
    task, rng, keys, rejected_in_a_row = TASKS[name], np.random.default_rng(0), set(), 0
    while len(keys) < wanted and rejected_in_a_row < MAX_REJECTIONS_IN_A_ROW:
        key = task.key(task.draw_fields(rng, int(rng.integers(difficulties[0], difficulties[1] + 1))))
        if is_evaluation_key(key) and key not in keys:
            keys.add(key)
            rejected_in_a_row = 0
        else:
            rejected_in_a_row += 1
    return len(keys)


@pytest.mark.parametrize("name", list(TASKS))
def test_the_id_range_holds_512_evaluation_problems(name):
    assert _evaluation_problems(name, TASKS[name].id_range, IN_ID_RANGE) == IN_ID_RANGE


@pytest.mark.parametrize("name", list(TASKS))
def test_each_rung_above_the_id_range_holds_128_evaluation_problems(name):
    task = TASKS[name]
    rungs = range(task.ood_range[0], task.ood_range[1] + 1)
    assert task.ood_range[0] == task.id_range[1] + 1 and len(rungs) >= LADDER_RUNGS
    assert [task.distance(d) for d in rungs] == list(range(1, len(rungs) + 1))
    for difficulty in rungs:
        assert _evaluation_problems(name, (difficulty, difficulty), PER_RUNG) == PER_RUNG, difficulty


@pytest.mark.parametrize("name", ["add", "sum3", "lookup_arrow", "add_then_reverse_then_dedupe"])
def test_distance_is_zero_inside_the_id_range(name):
    task = TASKS[name]
    assert {task.distance(d) for d in range(task.id_range[0], task.id_range[1] + 1)} == {0}
