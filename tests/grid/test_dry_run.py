"""`scaling run --dry-run` plans grids of any size from their few shapes, estimates each cell's peak memory, and
refuses what `run` would refuse; a run folder's garbage data_version is one line in every command that reads it."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_refused, run_cli
from scaling.grid.estimate import SHOWN, describe_grid, machine_memory, peak_bytes
from scaling.grid.launch import MAX_CELLS
from scaling.grid.runner import VERSION, open_run
from scaling.grid.spec import iter_cells, load_spec, parse_spec
from scaling.schema import DATA_VERSION
from scaling.tasks.tokenizer import CHARACTERS
from scaling.trainer.config import preset

FAMILIES = ["add", "reverse", "bool", "word", "sort", "lookup", "mul", "lineq", "compare", "count"]


def million_cells() -> str:
    """A grid of 10 pretraining budgets x 10 diversities x 10 qualities x 1,000 seeds = 10^6 cells."""
    return f"""name = "million"
[axes]
size = ["tiny"]
pretrain_tokens = {[1000 * k for k in range(10)]}
diversity = {list(range(1, 11))}
quality = {[round(1 - k / 10, 1) for k in range(10)]}
seed = {list(range(1000))}
[data]
families = {FAMILIES}
examples = 64
[train]
budgets = [8]
batch_size = 4
[eval]
splits = ["id"]
n = 8
"""


SMALL = """name = "small"
[axes]
size = ["tiny", "xs"]
seed = [0, 1, 2]
[data]
families = ["add", "reverse"]
examples = 64
[train]
budgets = [8]
batch_size = 4
[eval]
splits = ["id"]
n = 8
"""


def test_dry_run_of_a_million_cells_summarizes(tmp_path):
    (tmp_path / "grid.toml").write_text(million_cells())
    # Its own process, with a generous limit: before, expanding and estimating cell by cell printed nothing for
    # minutes (the estimate alone took 20 ms a cell).
    result = subprocess.run([sys.executable, "-m", "scaling", "run", "grid.toml", "--dry-run"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600, env=os.environ | {"PYTHONPATH": os.getcwd()})
    lines = result.stdout.splitlines()
    first = [cell.cell_id for _, cell in zip(range(SHOWN), iter_cells(load_spec(tmp_path / "grid.toml")))]
    assert [line.split()[0] for line in lines[1:SHOWN + 1]] == first
    assert lines[SHOWN + 1] == f"... and {10**6 - SHOWN:,} more cells"
    assert lines[SHOWN + 2].startswith("1,000,000 cells, ") and "FLOPs, about" in lines[SHOWN + 2]
    # Then it says, as `run` would, that the grid is too big to run, with its count and how to shrink it.
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"scaling: error: grid million has 1,000,000 cells, more than the {MAX_CELLS:,} a run takes: give an axis fewer "
        "values ([axes] seed has 1,000) or split the grid into several specs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.toml"]


def test_a_grid_above_the_cap_is_refused_by_run_with_its_count(tmp_path):
    (tmp_path / "grid.toml").write_text(million_cells())
    assert_refused(["run", "grid.toml"], tmp_path, named="grid million has 1,000,000 cells")


def test_a_dry_run_totals_every_cell_it_does_not_list(tmp_path):
    spec = parse_spec(SMALL.replace("seed = [0, 1, 2]", f"seed = {list(range(SHOWN + 5))}"))
    lines = []
    estimates = describe_grid(spec, lines.append)
    assert sum(e.count for e in estimates) == 2 * (SHOWN + 5) and len(estimates) == 2  # one shape per size
    assert lines[SHOWN + 1] == "... and 30 more cells"
    flops = sum(e.flops * e.count for e in estimates)
    assert lines[SHOWN + 2].startswith(f"50 cells, {flops:.2e} FLOPs")


def test_a_huge_batch_is_estimated_without_allocating_it_and_warned_once_per_shape(tmp_path):
    # A million rows a step: timing the step at that batch asked numpy (at 10^11 rows) for 34.9 TiB. A separate
    # process whose address space is capped at 8 GiB shows that nothing near the batch's size is allocated.
    (tmp_path / "grid.toml").write_text(SMALL.replace("batch_size = 4", "batch_size = 1_000_000"))
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30)); "
    result = subprocess.run([sys.executable, "-c", limit + "from scaling.cli import main; raise SystemExit(main())",
                             "run", "grid.toml", "--dry-run"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env=os.environ | {"PYTHONPATH": os.getcwd()})
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    # Two shapes (tiny and xs) of three cells each: one line each, whatever the number of cells.
    assert [w.split(" need ")[0] for w in warnings] == ["warning: 3 cells of size tiny (batch 1000000)",
                                                        "warning: 3 cells of size xs (batch 1000000)"]
    assert all("more than the " in w and "lower [train] batch_size" in w for w in warnings)


def test_the_peak_memory_estimate_is_close_to_what_xla_allocates_for_a_tiny_step():
    from scaling.trainer.model import init_model
    from scaling.trainer.train import build_optimizer, train_step

    batch, row = 32, 128
    cfg = preset("tiny", CHARACTERS.vocab_size, row)
    graphdef, params = init_model(cfg, 0)
    optimizer = build_optimizer(0.1, 1.0)
    state = (params, optimizer.init(params))
    arrays = {"inputs": np.zeros((batch, row), np.int32), "targets": np.zeros((batch, row), np.int32),
              "loss_mask": np.ones((batch, row), np.float32), "segments": np.ones((batch, row), np.int32),
              "positions": np.tile(np.arange(row, dtype=np.int32), (batch, 1))}
    analysis = train_step.lower(state, arrays, graphdef=graphdef, optimizer=optimizer, lr=1e-3).compile().memory_analysis()
    measured = (analysis.argument_size_in_bytes + analysis.temp_size_in_bytes + analysis.output_size_in_bytes
                - analysis.alias_size_in_bytes)
    assert 0.8 < peak_bytes(cfg, batch, row, eval_batch=1, eval_length=1) / measured < 1.25


def test_the_machine_memory_is_this_machines():
    available, where = machine_memory()
    assert where == "this machine" and available == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _run_folder(tmp_path: Path) -> Path:
    """A run folder as `scaling run` starts it (grid.toml and data_version), no cell trained."""
    spec_file = tmp_path / "grid.toml"
    spec_file.write_text(SMALL)
    run = tmp_path / "run"
    open_run(load_spec(spec_file), run)
    return run


@pytest.mark.parametrize("command", ["status", "collect", "baseline"])
def test_garbage_data_version_is_one_line_naming_the_file(command, tmp_path):
    run = _run_folder(tmp_path)
    (run / VERSION).write_bytes(b"\x00garbage\xff\n" + b"x" * 10_000)
    line = assert_refused([command, "run"], tmp_path, named=f"{run / VERSION} should hold the data version")
    assert "holds '\\x00garbage" in line and len(line) < 300


def test_dry_run_refuses_a_run_folder_whose_grid_toml_was_tampered_with(tmp_path):
    run = _run_folder(tmp_path)
    (run / "grid.toml").write_text(SMALL.replace("n = 8", "n = 4"))
    assert_refused(["run", "grid.toml", "--out", "run"], tmp_path, named="holds another grid")  # as run refuses it
    assert_refused(["run", "grid.toml", "--out", "run", "--dry-run"], tmp_path, named="holds another grid")
    (run / "grid.toml").write_text(SMALL)
    (run / VERSION).write_text("1\n")
    assert_refused(["run", "grid.toml", "--out", "run", "--dry-run"], tmp_path, named="holds cells of data version 1")
    (run / VERSION).write_text(f"{DATA_VERSION}\n")
    assert run_cli(["run", "grid.toml", "--out", "run", "--dry-run"], tmp_path).code == 0  # its own folder: described
