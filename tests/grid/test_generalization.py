"""What a grid measures about generalization, end to end on a tiny grid: one evaluation set for every
cell, per-example grades and per-family metrics beside the hypercube, chance, memorization, measured
base capability, and run folders of the earlier data version refused in one line."""

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.errors import UserError
from scaling.grid.collect import FAMILIES, GRADES
from scaling.grid.folder import RunFolder
from scaling.grid.runner import VERSION, read_run_spec
from scaling.grid.spec import expand, parse_spec
from scaling.results import open_results
from scaling.schema import GRADE_COLUMNS
from scaling.tasks.mixture import is_evaluation_key

pytestmark = pytest.mark.slow

GRID = """
name = "gen"
[axes]
size = ["tiny"]
pretrain_tokens = [0, 60000]
diversity = [1, 2]
[data]
families = ["add", "reverse"]
ood_families = ["sum3", "sub"]
examples = 200
[train]
budgets = [8, 16]
batch_size = 8
[eval]
splits = ["train", "id", "ood_family", "ood_phrasing"]
n = 12
memorization_n = 20
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generalization")
    (folder / "grid.toml").write_text(GRID)
    assert main(["run", str(folder / "grid.toml"), "--out", str(folder / "run")]) == 0
    assert main(["collect", str(folder / "run")]) == 0
    return folder / "run"


def test_every_cell_is_graded_on_the_same_problems_none_of_them_trained(run):
    grades = pd.read_parquet(run / GRADES)
    assert list(grades.columns) == ["cell_id", "size", "pretrain_tokens", "diversity", "quality", "cot", "adapter", "seed", "control",
                                    "step", "split", "trained", *GRADE_COLUMNS, "flops"]
    held = grades[grades["split"] != "train"]
    per_cell = held.groupby("cell_id")["key"].apply(frozenset)
    assert per_cell.nunique() == 1 and len(per_cell) == 4  # one evaluation set for all four cells
    assert all(is_evaluation_key(key) for key in held["key"]) and not any(is_evaluation_key(k) for k in grades[grades.split == "train"]["key"])
    # The id split holds reverse in every cell: trained at diversity 2, not at diversity 1.
    reverse = held[(held.split == "id") & (held.family == "reverse")]
    assert set(zip(reverse.diversity, reverse.trained)) == {(1, False), (2, True)}


def test_the_family_table_aggregates_the_grades_and_carries_chance(run):
    grades, families = pd.read_parquet(run / GRADES), pd.read_parquet(run / FAMILIES)
    one = families[(families.split == "ood_family") & (families.family == "sum3")].iloc[0]
    rows = grades[(grades.cell_id == one.cell_id) & (grades.step == one.step) & (grades.split == "ood_family")
                  & (grades.family == "sum3")]
    assert one.n == len(rows) == 12 and one.answer_acc == rows.answer_correct.mean()  # [eval] n of each family
    assert one.chance == pytest.approx(rows.chance.mean()) and 0 < one.chance < 0.05
    assert set(families.split) == {"train", "id", "ood_family", "ood_phrasing"}


def test_the_hypercube_carries_chance_memorization_and_measured_bases(run):
    results = open_results(run / "results.nc")
    assert {"chain_acc", "chance", "steps_past_memorization", "base_loss", "base_probe_acc"} <= set(results.data_vars)
    chance = results["chance"].sel(split="ood_family").values
    assert np.allclose(chance, chance.flat[0])  # the same problems in every cell
    base_loss = results["base_loss"].isel(size=0, diversity=0, quality=0, cot=0, adapter=0, seed=0)
    assert float(base_loss.sel(pretrain_tokens=60000)) < float(base_loss.sel(pretrain_tokens=0)) - 0.3  # pretraining shows
    assert float(results["base_probe_acc"].max()) <= 1.0
    past = results["steps_past_memorization"]
    assert past.dims[-1] == "step" and (np.isnan(past) | (past >= 0)).all()


def test_a_folder_of_the_earlier_data_version_is_refused_in_one_line(run, tmp_path, capsys):
    old = tmp_path / "old"
    old.mkdir()
    (old / "grid.toml").write_text(GRID)
    (old / "cells").mkdir()
    (old / "cells" / "0123456789abcdef.nc").write_bytes(b"a cell of version 1")
    for argv in (["collect", str(old)], ["status", str(old)], ["run", str(run.parent / "grid.toml"), "--out", str(old)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "holds cells of data version 1" in err[0], err
    assert (run / VERSION).read_text().strip() == "3"
    with pytest.raises(UserError, match="data version 1"):
        read_run_spec(RunFolder(old))


def test_cell_ids_change_with_the_data_version():
    """A cell drawn the new way is a new cell: nothing computed by the old drawing is taken for it."""
    from scaling.grid import spec as spec_module

    cells = expand(parse_spec(GRID))
    spec_module.DATA_VERSION, kept = 1, spec_module.DATA_VERSION
    try:
        older = expand(parse_spec(GRID))
    finally:
        spec_module.DATA_VERSION = kept
    assert not {c.cell_id for c in cells} & {c.cell_id for c in older}
