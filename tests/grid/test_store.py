import os
import stat

import numpy as np
import pytest

from scaling.errors import UserError
from scaling.grid.folder import RunFolder
from scaling.grid.store import CellResult, cell_dataset, hypercube, memorization_step, read_folder_cell, write_dataset
from scaling.results import DONE, CellStatus, open_results
from scaling.schema import AXES, METRICS

AXIS_VALUES = {"size": ["tiny", "xs"], "pretrain_tokens": [0], "diversity": [1, 2], "quality": [1.0], "cot": ["full"], "seed": [0]}
ATTRS = {"spec": "[demo]", "git_commit": "abc"}


def _result(size, diversity, status=DONE):
    steps, splits = (10, 20), ("train", "id")
    metrics = {s: {m: [0.5 + i * 0.5 if m == "answer_acc" and s == "train" else 0.1 * (i + 1) for i in range(2)] for m in METRICS} for s in splits}
    axes = {"size": size, "pretrain_tokens": 0, "diversity": diversity, "quality": 1.0, "cot": "full", "seed": 0}
    return CellResult(f"{size}{diversity}", axes, steps, splits, metrics, params=100 if size == "tiny" else 400,
                      flops=(1e6, 2e6), wall_seconds=1.5, pool_stats={"family_phrasing_entropy": float(diversity)},
                      status=status)


def test_cell_file_round_trip(tmp_path):
    path = tmp_path / "cells" / "a.nc"
    write_dataset(RunFolder(tmp_path), "cells/a.nc", cell_dataset(_result("tiny", 1), ATTRS))
    ds = read_folder_cell(RunFolder(tmp_path), "cells/a.nc")
    assert ds["loss"].dims == ("step", "split")
    assert float(ds["memorization_step"]) == 20.0
    assert ds.attrs["spec"] == "[demo]" and ds.attrs["axis_size"] == "tiny"
    assert [p.name for p in path.parent.iterdir()] == ["a.nc"]  # no temporary file left behind


def test_hypercube_is_dense_with_nan_and_status_for_missing_cells(tmp_path):
    cells = [cell_dataset(_result("tiny", 1), ATTRS), cell_dataset(_result("xs", 2, CellStatus("failed", "loss became nan at step 20")), ATTRS)]
    write_dataset(RunFolder(tmp_path), "results.nc", hypercube(cells, AXIS_VALUES, ATTRS))
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


def test_files_in_a_shared_run_folder_are_readable_by_its_other_users(tmp_path):
    previous = os.umask(0o002)  # a group-shared cluster folder
    try:
        write_dataset(RunFolder(tmp_path), "cells/a.nc", cell_dataset(_result("tiny", 1), ATTRS))
        write_dataset(RunFolder(tmp_path), "results.nc", hypercube([cell_dataset(_result("tiny", 1), ATTRS)], AXIS_VALUES, ATTRS))
    finally:
        os.umask(previous)
    for path in (tmp_path / "cells" / "a.nc", tmp_path / "results.nc"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o664, oct(path.stat().st_mode)  # not a private 0o600


def test_a_cell_file_written_under_the_old_axis_name_is_still_placed(tmp_path):
    old = cell_dataset(_result("tiny", 1), ATTRS)
    old.attrs["axis_pretrain"] = old.attrs.pop("axis_pretrain_tokens")
    cube = hypercube([old], AXIS_VALUES, ATTRS)
    assert cube["status"].sel(size="tiny", diversity=1).item() == "done"


def test_corrupt_and_missing_files_are_user_errors(tmp_path):
    folder = RunFolder(tmp_path)
    write_dataset(folder, "cells/cell.nc", cell_dataset(_result("tiny", 1), ATTRS))
    truncated = tmp_path / "cells" / "cell.nc"
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(UserError, match="cell.nc is unreadable"):
        read_folder_cell(folder, "cells/cell.nc")
    with pytest.raises(UserError, match="does not exist"):
        open_results(tmp_path / "nothing.nc")


def test_memorization_step_is_the_first_budget_at_full_train_accuracy():
    assert memorization_step([10, 20, 40], [0.5, 1.0, 1.0]) == 20
    assert np.isnan(memorization_step([10, 20], [0.5, 0.9]))


def test_a_cell_file_whose_status_is_no_end_is_corrupt(tmp_path):
    folder = RunFolder(tmp_path)
    cell = cell_dataset(_result("tiny", 1), ATTRS)
    for stored in ("finished", "skipped: running elsewhere"):
        write_dataset(folder, "cells/cell.nc", cell.assign_attrs(status=stored))
        with pytest.raises(UserError, match=f"cell.nc is corrupt: its status '{stored}' is neither done nor failed"):
            read_folder_cell(folder, "cells/cell.nc")
