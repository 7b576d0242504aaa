import numpy as np
import pytest

from scaling.errors import UserError
from scaling.schema import AXES, METRICS
from scaling.grid.store import CellResult, cell_dataset, hypercube, memorization_step, open_results, read_cell, write_atomic

AXIS_VALUES = {"size": ["tiny", "xs"], "pretrain": [0], "diversity": [1, 2], "quality": [1.0], "cot": ["full"], "seed": [0]}
ATTRS = {"spec": "[demo]", "git_commit": "abc"}


def _result(size, diversity, status="done"):
    steps, splits = (10, 20), ("train", "id")
    metrics = {s: {m: [0.5 + i * 0.5 if m == "answer_acc" and s == "train" else 0.1 * (i + 1) for i in range(2)] for m in METRICS} for s in splits}
    axes = {"size": size, "pretrain": 0, "diversity": diversity, "quality": 1.0, "cot": "full", "seed": 0}
    return CellResult(f"{size}{diversity}", axes, steps, splits, metrics, params=100 if size == "tiny" else 400,
                      flops=(1e6, 2e6), wall_seconds=1.5, pool_stats={"family_phrasing_entropy": float(diversity)},
                      status=status)


def test_cell_file_round_trip(tmp_path):
    path = tmp_path / "cells" / "a.nc"
    write_atomic(cell_dataset(_result("tiny", 1), ATTRS), path)
    ds = read_cell(path)
    assert ds["loss"].dims == ("step", "split")
    assert float(ds["memorization_step"]) == 20.0
    assert ds.attrs["spec"] == "[demo]" and ds.attrs["axis_size"] == "tiny"
    assert [p.name for p in path.parent.iterdir()] == ["a.nc"]  # no temporary file left behind


def test_hypercube_is_dense_with_nan_and_status_for_missing_cells(tmp_path):
    cells = [cell_dataset(_result("tiny", 1), ATTRS), cell_dataset(_result("xs", 2, "failed: loss became nan at step 20"), ATTRS)]
    write_atomic(hypercube(cells, AXIS_VALUES, ATTRS), tmp_path / "results.nc")
    cube = open_results(tmp_path / "results.nc")
    assert cube["loss"].dims == (*AXES, "step", "split")
    assert list(cube.step.values) == [10, 20] and list(cube.split.values) == ["train", "id"]
    assert cube["status"].sel(size="tiny", diversity=1).item() == "done"
    assert cube["status"].sel(size="tiny", diversity=2).item() == "missing"
    assert cube["status"].sel(size="xs", diversity=2).item().startswith("failed")
    assert np.isnan(cube["loss"].sel(size="tiny", diversity=2)).all()
    assert float(cube["loss"].sel(size="tiny", diversity=1, step=20, split="id").item()) == pytest.approx(0.2)
    assert list(cube["params"].values) == [100, 400]
    assert cube["flops"].dims == ("size", "step")
    assert cube.attrs["git_commit"] == "abc"
    assert float(cube["family_phrasing_entropy"].sel(size="xs", diversity=2).item()) == 2.0
    assert np.isnan(cube["distinct_4gram_ratio"]).all()  # not measured for these cells


def test_a_cell_off_the_grid_is_named():
    with pytest.raises(UserError, match="size='xl'"):
        hypercube([cell_dataset(_result("xl", 1), ATTRS)], AXIS_VALUES, ATTRS)


def test_corrupt_and_missing_files_are_user_errors(tmp_path):
    truncated = tmp_path / "cell.nc"
    write_atomic(cell_dataset(_result("tiny", 1), ATTRS), truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(UserError, match="cell.nc is unreadable"):
        read_cell(truncated)
    with pytest.raises(UserError, match="does not exist"):
        open_results(tmp_path / "nothing.nc")


def test_memorization_step_is_the_first_budget_at_full_train_accuracy():
    assert memorization_step([10, 20, 40], [0.5, 1.0, 1.0]) == 20
    assert np.isnan(memorization_step([10, 20], [0.5, 0.9]))
