"""The adapter axis of a grid: spec syntax, cell ids, a two-cell grid (full and LoRA) run, killed, resumed, collected."""

import subprocess
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from runs_helpers import SCALING, metrics_of, tiny_grid
from scaling.cli import main
from scaling.errors import UserError
from scaling.grid.spec import expand, grid_axes, load_spec, parse_spec
from scaling.results import open_results, results_table
from scaling.trainer.checkpoint import _manager
from scaling.trainer.config import LoraConfig
from tests.grid.test_runner import _kill_when

BASE = tiny_grid("lora", pretrain_tokens=(0,), budgets=(8, 16), checkpoint_every=2, run="[run]\nsave_models = true\n")
AXIS = BASE.replace("[axes]\n", '[axes]\nadapter = ["full", { rank = 4, alpha = 8 }]\n')


def test_the_axis_makes_a_cell_per_adapter_and_full_cells_keep_their_ids():
    before, after = expand(parse_spec(BASE)), expand(parse_spec(AXIS))
    assert len(after) == 2 * len(before)
    full = [c for c in after if c.adapter is None]
    assert [c.cell_id for c in full] == [c.cell_id for c in before]
    lora = [c for c in after if c.adapter is not None]
    assert lora[0].adapter == LoraConfig(rank=4, alpha=8) and lora[0].axes["adapter"] == "lora-r4-a8"
    assert lora[0].cell_id not in {c.cell_id for c in before}
    assert grid_axes(parse_spec(AXIS))["adapter"] == ["full", "lora-r4-a8"]
    # one adapter for every cell, in [train], is the one-value axis: the same cells
    one = parse_spec(BASE.replace("[train]\n", "[train]\nadapter = { rank = 4, alpha = 8 }\n"))
    assert [c.cell_id for c in expand(one)] == [c.cell_id for c in lora]
    assert [c.cell_id for c in expand(parse_spec(BASE.replace("[train]\n", '[train]\nadapter = "full"\n')))] == \
        [c.cell_id for c in before]


def test_committed_grids_keep_their_cell_ids():
    spec = load_spec(Path("runs/generalization.toml"))
    stored = set(pd.read_parquet("runs/generalization/grades.parquet", columns=["cell_id"]).cell_id)
    assert stored == {c.cell_id for c in expand(spec)}


def test_results_written_before_the_axis_read_as_full_fine_tuning():
    results = open_results("runs/generalization/results.nc")
    assert list(results.adapter.values) == ["full"]
    assert "adapter" in results["status"].dims
    assert set(results_table(results, "id").adapter) == {"full"}


@pytest.mark.parametrize("value, named", [
    ('"lora"', '"full" or a table'),
    ("{ rank = 0, alpha = 8 }", "rank must lie in 1..65536"),
    ('{ rank = 4, targets = ["q_proj"] }', "targets must be distinct names among query"),
    ("{ rank = 4, alpha = 8, scale = 2 }", "unknown key"),
    ('["full", "full"]', "distinct adapters"),
])
def test_bad_adapters_are_refused_in_one_line(value, named):
    with pytest.raises(UserError, match=named) as error:
        parse_spec(BASE.replace("[axes]\n", f"[axes]\nadapter = {value}\n"))
    assert "\n" not in str(error.value) and "adapter" in str(error.value)


def test_adapter_in_both_sections_is_refused():
    with pytest.raises(UserError, match="both"):
        parse_spec(AXIS.replace("[train]\n", '[train]\nadapter = "full"\n'))


def test_bad_adapter_exits_2_with_one_line(tmp_path, capsys):
    spec = tmp_path / "grid.toml"
    spec.write_text(BASE.replace("[axes]\n", "[axes]\nadapter = { rank = -1 }\n"))
    assert main(["run", str(spec), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rank" in err
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "grid.toml"
    path.write_text(AXIS)
    return path


@pytest.fixture(scope="module")
def reference(spec_file, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(["run", str(spec_file), "--out", str(run)]) == 0
    assert main(["collect", str(run)]) == 0
    return run


@pytest.mark.slow
def test_full_and_lora_cells_collect_into_an_adapter_dim(reference):
    results = open_results(reference / "results.nc")
    assert list(results.adapter.values) == ["full", "lora-r4-a8"]
    loss = results["loss"].sel(split="train", step=16)
    assert np.isfinite(loss.values).all()
    assert float(loss.sel(adapter="full").squeeze()) != float(loss.sel(adapter="lora-r4-a8").squeeze())
    grades = pd.read_parquet(reference / "grades.parquet")
    assert set(grades.adapter) == {"full", "lora-r4-a8"}
    lora_id = next(c.cell_id for c in expand(load_spec(reference / "grid.toml")) if c.adapter is not None)
    assert (reference / "models" / lora_id / "model.safetensors").is_file()  # a preset base's LoRA model: merged
    assert main(["export-hf", str(reference / "models" / lora_id), "--out", str(reference / "hf")]) == 0


@pytest.mark.slow
def test_a_lora_cell_killed_mid_run_resumes_to_the_same_results(spec_file, reference, tmp_path):
    run = tmp_path / "run"
    lora_id = next(c.cell_id for c in expand(load_spec(spec_file)) if c.adapter is not None)
    checkpoints = run / "scratch" / "checkpoints" / lora_id
    runner = subprocess.Popen([*SCALING, "run", str(spec_file), "--out", str(run)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    killed = _kill_when(runner, lambda: any(p.name.isdigit() for p in checkpoints.glob("*")))
    assert killed
    saved = sorted(int(p.name) for p in checkpoints.glob("*") if p.name.isdigit())
    with _manager(checkpoints) as manager:  # what the checkpoint holds: the adapter and its moments, no base weight
        leaves = [str(path) for path, _ in jax.tree_util.tree_flatten_with_path(
            manager.item_metadata(saved[-1])["state"].tree)[0]]
    assert any("lora_a" in leaf for leaf in leaves)
    assert not any("kernel" in leaf or "embedding" in leaf or "scale" in leaf for leaf in leaves)
    finish = subprocess.run([*SCALING, "run", str(spec_file), "--out", str(run)], capture_output=True, text=True,
                            timeout=600)
    assert finish.returncode == 0, finish.stderr
    got, want = metrics_of(run), metrics_of(reference)
    assert got.keys() == want.keys()
    for cell_id in want:
        xr.testing.assert_equal(got[cell_id], want[cell_id])
