"""`scaling run`, `status` and `collect` end to end: real training, real files, real killed processes."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from scaling.cli import main
from scaling.grid.spec import expand, load_spec
from scaling.results import open_results
from scaling.trainer.flops import PHASES
from runs_helpers import SCALING, attrs_of, metrics_of, tiny_grid

pytestmark = pytest.mark.slow

# Far above any stall of a loaded machine: a live runner's lock must never look stale to the other
# runner of a race (a killed runner's lock is taken over at once: its pid is gone).
SPEC = tiny_grid("t", seeds=(0, 1, 2), pretrain_tokens=(0,), budgets=(16, 32, 64), checkpoint_every=8,
                 run="[run]\nheartbeat_s = 0.5\nstale_after_s = 600.0\n")


def assert_same_results(run: Path, reference: Path) -> None:
    got, want = metrics_of(run), metrics_of(reference)
    assert got.keys() == want.keys()
    for cell_id in want:
        xr.testing.assert_equal(got[cell_id], want[cell_id])  # values exactly; attrs hold times and workers


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "grid.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def reference(spec_file, tmp_path_factory) -> Path:
    """The grid run once, uninterrupted, in this process."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(["run", str(spec_file), "--out", str(run)]) == 0
    return run


def test_run_writes_one_done_file_per_cell_and_collect_builds_the_hypercube(reference, spec_file, capsys):
    cells = expand(load_spec(spec_file))
    assert sorted(p.stem for p in (reference / "cells").glob("*.nc")) == sorted(c.cell_id for c in cells)
    assert not list((reference / "locks").glob("*.lock"))
    assert not list((reference / "scratch" / "checkpoints").glob("*/*"))  # finished cells drop their checkpoints
    capsys.readouterr()
    assert main(["status", str(reference)]) == 0
    assert capsys.readouterr().out.startswith("3 done · 0 running · 0 failed · 0 pending")
    assert main(["collect", str(reference)]) == 0
    cube = open_results(reference / "results.nc")
    assert dict(cube.sizes) == {"size": 1, "pretrain_tokens": 1, "diversity": 1, "quality": 1, "cot": 1, "adapter": 1,
                                "seed": 3,
                                "step": 3, "split": 3, "train_step": 64,  # budgets to 64 steps: a curve point per step
                                "phase": len(PHASES)}  # every cell's training FLOPs by phase (flops_by_phase)
    assert (cube.status == "done").all()
    for cell in cells:
        one = metrics_of(reference)[cell.cell_id]
        np.testing.assert_array_equal(cube.answer_acc.sel(seed=cell.seed).squeeze().values, one.answer_acc.values)
    assert "spec" in cube.attrs and "git_commit" in cube.attrs


def test_a_rerun_computes_nothing_and_leaves_finished_files_alone(reference, spec_file, capsys):
    before = {p: p.stat().st_mtime_ns for p in (reference / "cells").glob("*.nc")}
    assert main(["run", str(spec_file), "--out", str(reference)]) == 0
    assert "3 finished, 0 to run" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in (reference / "cells").glob("*.nc")} == before


def _runner(spec_file: Path, run: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*SCALING, "run", str(spec_file), "--out", str(run), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _kill_when(process: subprocess.Popen, ready, timeout: float = 120.0) -> bool:
    """SIGKILL the runner's whole process group once ready() holds; False if it finished first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the runner never reached the kill point"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return True


def test_kill_9_at_several_points_then_rerun_gives_identical_results_each_cell_once(spec_file, reference, tmp_path):
    run = tmp_path / "run"
    checkpoints = run / "scratch" / "checkpoints"

    def cells_done() -> int:
        return len(list((run / "cells").glob("*.nc")))

    def some_checkpoint_after(done: int):
        return lambda: cells_done() == done and any(p.name.isdigit() for p in checkpoints.glob("*/*"))

    kill_points = [some_checkpoint_after(0), lambda: cells_done() >= 1, some_checkpoint_after(cells_done() + 1)]
    killed = 0
    for ready in kill_points:
        killed += _kill_when(_runner(spec_file, run), ready)
    assert killed >= 2
    # A killed runner leaves its lock behind with a dead owner; the next runner takes it over at once.
    written = {p: p.stat().st_mtime_ns for p in (run / "cells").glob("*.nc")}
    finish = _runner(spec_file, run)
    out, err = finish.communicate(timeout=300)
    assert finish.returncode == 0, err
    assert all(p.stat().st_mtime_ns == t for p, t in written.items())  # finished cells were not computed again
    assert err.count(" done (") == 3 - len(written)
    assert_same_results(run, reference)


def test_two_runners_on_one_folder_compute_each_cell_once(spec_file, reference, tmp_path):
    run = tmp_path / "run"
    first, second = _runner(spec_file, run), _runner(spec_file, run)
    logs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, logs
    computed = [{line.split()[1] for line in err.splitlines() if line.startswith("cell ") and " done (" in line}
                for _, err in logs]
    assert not computed[0] & computed[1]
    assert computed[0] | computed[1] == {c.cell_id for c in expand(load_spec(spec_file))}
    assert_same_results(run, reference)


def test_worker_processes_give_the_same_results(spec_file, reference, tmp_path):
    run = tmp_path / "run"
    assert main(["run", str(spec_file), "--out", str(run), "--workers", "2"]) == 0
    assert_same_results(run, reference)


def test_an_fsspec_url_run_folder_takes_the_same_path(spec_file, reference, tmp_path, capsys):
    url = f"file://{tmp_path}/url-run"
    assert main(["run", str(spec_file), "--out", url]) == 0
    assert main(["collect", url]) == 0
    assert_same_results(tmp_path / "url-run", reference)
    assert open_results(tmp_path / "url-run" / "results.nc").sizes["seed"] == 3


def test_a_corrupt_cell_file_is_named_and_retry_failed_recomputes_it(reference, spec_file, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    victim = sorted((run / "cells").glob("*.nc"))[1]
    victim.write_bytes(victim.read_bytes()[:200])
    capsys.readouterr()
    for argv in (["collect", str(run)], ["run", str(spec_file), "--out", str(run)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert victim.name in err and len(err.strip().splitlines()) == 1
    assert main(["status", str(run)]) == 0
    assert "1 corrupt" in capsys.readouterr().out
    assert main(["run", str(spec_file), "--out", str(run), "--retry-failed"]) == 0
    assert_same_results(run, reference)


def test_failed_cells_are_recorded_with_their_reason_and_do_not_stop_the_grid(tmp_path, capsys):
    spec = tmp_path / "g.toml"
    # lr 1e9 makes every cell's loss NaN; the grid still runs every cell and records why each failed.
    spec.write_text(SPEC.replace("checkpoint_every = 8", "checkpoint_every = 8\nlr = 1e9\nwarmup_steps = 0")
                    .replace("seed = [0, 1, 2]", "seed = [0, 1]"))
    run = tmp_path / "run"
    assert main(["run", str(spec), "--out", str(run)]) == 1
    capsys.readouterr()
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("0 done · 0 running · 2 failed") and "loss became nan" in out
    assert main(["collect", str(run)]) == 0
    cube = open_results(run / "results.nc")
    assert all(str(s).startswith("failed: loss became nan") for s in cube.status.values.ravel())
    assert main(["run", str(spec), "--out", str(run)]) == 0  # failed cells count as finished...
    assert main(["run", str(spec), "--out", str(run), "--retry-failed"]) == 1  # ...until retried
    assert "Computed 2 cells" in capsys.readouterr().err


def test_dry_run_lists_cells_with_params_flops_and_time_and_writes_nothing(spec_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", str(spec_file), "--out", str(run), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for cell in expand(load_spec(spec_file)):
        assert cell.cell_id in out
    assert "3 cells" in out and "FLOPs" in out and not run.exists()


def _bad(tmp_path: Path, spec_text: str | None):
    spec = tmp_path / "bad.toml"
    if spec_text is not None:
        spec.write_text(spec_text)
    return spec


@pytest.mark.parametrize("case", [
    "missing spec", "malformed toml", "unknown key", "negative budget", "unknown family", "unknown size",
    "missing checkpoint", "out is a file", "unwritable output", "folder of another grid", "folder of other files",
    "zero workers", "unknown executor",
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, spec_file, reference, tmp_path, capsys):
    out = tmp_path / "out"
    argv_extra: list[str] = []
    text = SPEC
    if case == "missing spec":
        text = None
    elif case == "malformed toml":
        text = SPEC.replace("[axes]", "[axes")
    elif case == "unknown key":
        text = SPEC.replace("[train]", "[train]\nepochs = 3")
    elif case == "negative budget":
        text = SPEC.replace("[16, 32, 64]", "[-16, 32, 64]")
    elif case == "unknown family":
        text = SPEC.replace('["add"]', '["addition"]')
    elif case == "unknown size":
        text = SPEC.replace('"tiny"', '"gigantic"')
    elif case == "missing checkpoint":
        text = SPEC.replace('"tiny"', '"hf:/no/such/checkpoint"')
    elif case == "out is a file":
        out.write_text("mine")
    elif case == "unwritable output":
        (tmp_path / "file").write_text("mine")
        out = tmp_path / "file" / "run"
    elif case == "folder of another grid":
        out = tmp_path / "other"
        shutil.copytree(reference, out)
        text = SPEC.replace("n = 16", "n = 8")
    elif case == "folder of other files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "zero workers":
        argv_extra = ["--workers", "0"]
    elif case == "unknown executor":
        argv_extra = ["--executor", "k8s"]
    spec = _bad(tmp_path, text)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    assert main(["run", str(spec), "--out", str(out), *argv_extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scaling: error: ") and len(err.strip().splitlines()) == 1, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_status_and_collect_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    for command in ("status", "collect"):
        assert main([command, str(tmp_path)]) == 2
        assert "not a run folder" in capsys.readouterr().err


# A cell pretrained with 4,096 rows of 256 tokens a step asks XLA for about 9 GB at once (attention and logits of
# the whole batch); the same grid's cell without pretraining needs about 2.5 GB of address space in all.
OUT_OF_MEMORY_SPEC = tiny_grid("t", pretrain_tokens=(0, 1_100_000), budgets=(8,), run="[run]\nsave_models = false\n"
                               ).replace("[train]\n", "[train]\npretrain_batch_size = 4096\n")
ADDRESS_SPACE = 3584 << 20  # bytes: RLIMIT_AS of the runner, room for the small cell and not the big one


def test_out_of_memory_cell_is_recorded_failed_with_its_shape_and_the_grid_goes_on(tmp_path):
    spec_file = tmp_path / "grid.toml"
    spec_file.write_text(OUT_OF_MEMORY_SPEC)
    run = tmp_path / "run"
    # The runner limits its own address space before anything is imported: a real limit, as `ulimit -v` sets.
    limited = (f"import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE})); "
               f"sys.argv = ['scaling', *sys.argv[1:]]; runpy.run_module('scaling', run_name='__main__')")
    finished = subprocess.run([sys.executable, "-c", limited, "run", str(spec_file), "--out", str(run)],
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1, finished.stderr  # some cells failed
    statuses = {cell.pretrain_tokens: attrs_of(run, cell.cell_id)["status"] for cell in expand(load_spec(spec_file))}
    assert statuses[0] == "done"
    assert statuses[1_100_000].startswith("failed: out of memory (size=tiny (23,712 params), pretraining batch 4096 × "
                                          "256 tokens, batch 8, eval batch 16): JaxRuntimeError: RESOURCE_EXHAUSTED: "), statuses
