"""Positive controls end to end: cells trained on each out-of-distribution split's own distribution, run and
resumed like any cell, named in status, kept out of the hypercube, and their accuracy carried as each split's
headroom beside chance, on the synthetic tasks and on a user's dataset."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from cli_helpers import assert_refused, run_cli
from test_dataset_grid import SPEC as DATASET_SPEC, rows, write_grid

from scaling.cli import main
from scaling.grid.collect import FAMILIES, GRADES
from scaling.grid.spec import expand, load_spec

pytestmark = pytest.mark.slow

GRID = """
name = "controls"
[axes]
size = ["tiny"]
diversity = [1, 2]
[data]
families = ["add", "reverse"]
examples = 120
[train]
budgets = [8, 16]
batch_size = 8
warmup_steps = 2
[eval]
splits = ["train", "id", "ood_length", "ood_family", "ood_rule"]
n = 6
memorization_n = 8
controls = true
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("controls")
    (folder / "grid.toml").write_text(GRID)
    assert main(["run", str(folder / "grid.toml"), "--out", str(folder / "run")]) == 0
    assert main(["collect", str(folder / "run")]) == 0
    return folder / "run"


def test_each_controlled_split_gets_a_control_cell_that_status_names(run, capsys):
    cells = expand(load_spec(run.parent / "grid.toml"))
    assert sorted(c.control for c in cells if c.control) == ["ood_family", "ood_length", "ood_rule"]
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "5 done" in out and "(of 5 cells, 3 of them positive controls)" in out


def test_controls_carry_headroom_beside_chance_and_stay_out_of_the_hypercube(run):
    grades, families = pd.read_parquet(run / GRADES), pd.read_parquet(run / FAMILIES)
    assert set(grades.control) == {"", "ood_length", "ood_family", "ood_rule"}
    controls = grades[grades.control != ""]
    assert {"sum3", "sub"} <= set(controls[controls.control == "ood_family"].family[lambda f: controls.trained])
    regular = families[families.control == ""]
    ood = regular[regular.split.isin(["ood_length", "ood_family", "ood_rule"])]
    assert ood.headroom.notna().all() and regular[regular.split == "id"].headroom.isna().all()
    one = ood.iloc[0]
    source = families[(families.control == one.split) & (families.split == one.split) & (families.family == one.family)
                      & (families.step == one.step)]
    assert len(source) == 1 and one.headroom == source.answer_acc.item()
    results = xr.open_dataset(run / "results.nc")
    assert results.sizes["diversity"] == 2 and results.sizes["seed"] == 1  # the two grid cells, no control among them
    lengths = grades[(grades.split == "ood_length")]
    assert set(lengths.distance) == {1, 2, 3} and (grades[grades.split != "ood_length"].distance == 0).all()


def test_a_dataset_grid_trains_its_held_out_groups_as_the_ood_family_control(tmp_path):
    spec = DATASET_SPEC.replace("memorization_n = 8", "memorization_n = 8\ncontrols = true").replace(
        "quality = [1.0, 0.5]", "quality = [1.0]").replace("diversity = [1, 2]", "diversity = [2]")
    write_grid(tmp_path, rows(), spec)
    assert run_cli(["run", "spec.toml", "--out", "run"], tmp_path).code == 0
    assert run_cli(["collect", "run"], tmp_path).code == 0
    families = pd.read_parquet(tmp_path / "run" / FAMILIES)
    assert set(families.control) == {"", "ood_family"}
    held = families[(families.control == "") & (families.split == "ood_family")]
    assert len(held) and held.headroom.notna().all() and np.isfinite(held.headroom).all()


def test_a_dataset_grid_refuses_the_splits_a_dataset_cannot_make_in_one_line(tmp_path):
    spec = DATASET_SPEC.replace("n = 12", 'n = 12\nsplits = ["id", "ood_rule"]\ncontrols = true')
    write_grid(tmp_path, rows(), spec)
    assert_refused(["run", "spec.toml", "--out", "run"], tmp_path, named="split 'ood_rule' needs the synthetic families")
