"""`scaling run --executor slurm` through submitit's local executor (one subprocess per array task): the grid
completes, and a preempted job is requeued as the same cell and resumes it to the uninterrupted metrics."""

import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import xarray as xr
from submitit.core.utils import DelayedSubmission

from scaling.grid.executors.slurm import CLUSTER_ENV, CellTask
from scaling.grid.spec import expand, load_spec
from scaling.grid.locks import is_stale
from scaling.grid.folder import RunFolder
from scaling.grid.runner import lock_file
from runs_helpers import SCALING, attrs_of, cell_lines, metrics_of, signal_owner, tiny_grid, write_spec

pytestmark = pytest.mark.slow

TINY = tiny_grid()
# One cell of a few seconds, checkpointed every 4 of its 80 steps: time to signal it mid-cell. With a time
# limit this short, submitit takes any signal for the limit, which requeues only a Checkpointable.
LONG = tiny_grid("long", pretrain_tokens=(0,), budgets=(40, 80), run="[run.slurm]\ntimeout_min = 1\n")
LOCAL_JOBS = {**os.environ, CLUSTER_ENV: "local"}


def run_as_jobs(spec: Path, run: Path) -> subprocess.Popen:
    return subprocess.Popen([*SCALING, "run", str(spec), "--out", str(run), "--executor", "slurm"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=LOCAL_JOBS)


def test_grid_completes_as_local_jobs(tmp_path):
    spec, run = write_spec(tmp_path, TINY), tmp_path / "run"
    driver = run_as_jobs(spec, run)
    output, _ = driver.communicate(timeout=300)
    print(output)
    assert driver.returncode == 0
    assert re.search(r"submitted 2 cells as local jobs \d+, \d+; logs in .*submitit", output), output
    cells = [c.cell_id for c in expand(load_spec(spec))]
    assert sorted(p.stem for p in (run / "cells").glob("*.nc")) == sorted(cells)
    assert all(attrs_of(run, c)["status"] == "done" for c in cells)
    assert cell_lines(output) == {c: ["done"] for c in cells}
    assert not list((run / "locks").glob("*.lock"))


def test_checkpoint_resubmits_the_same_cell():
    task = CellTask()
    requeued = task.checkpoint("/runs/x", "0123456789abcdef", True)
    assert isinstance(requeued, DelayedSubmission)
    assert isinstance(requeued.function, CellTask)
    assert (requeued.args, requeued.kwargs) == (("/runs/x", "0123456789abcdef", True), {})
    # submitit pickles it into the job folder, for the requeued job to load
    again = pickle.loads(pickle.dumps(requeued))
    assert isinstance(again.function, CellTask) and again.args == requeued.args


def test_job_signalled_at_its_time_limit_is_requeued_and_resumes_to_the_uninterrupted_metrics(tmp_path):
    spec = write_spec(tmp_path, LONG)
    run, reference = tmp_path / "run", tmp_path / "reference"
    (cell,) = expand(load_spec(spec))
    driver = run_as_jobs(spec, run)
    try:
        # what SLURM sends before the time limit or a preemption (submitit's --signal)
        cell_id, pid, step = signal_owner(driver, run, signal.SIGUSR2)
    finally:
        output, _ = driver.communicate(timeout=300)
        print(output)  # pytest shows it when the test fails
    assert driver.returncode == 0
    assert cell_id == cell.cell_id and 0 < step < 80
    assert cell_lines(output) == {cell.cell_id: ["done"]}
    assert attrs_of(run, cell.cell_id)["worker"] != f"{socket.gethostname()}:{pid}"  # finished when requeued
    (log_file,) = (run / "scratch" / "submitit").glob("*_log.out")  # one job, run twice
    log = log_file.read_text()
    for line in ("this job is timed-out", "Calling checkpoint method", "Requeued job"):
        assert line in log, log

    local = subprocess.run([*SCALING, "run", str(spec), "--out", str(reference)], capture_output=True, text=True,
                           timeout=300)
    assert local.returncode == 0, local.stderr
    xr.testing.assert_equal(metrics_of(run)[cell.cell_id], metrics_of(reference)[cell.cell_id])


def test_job_killed_outright_fails_the_cell_and_leaves_it_to_a_rerun(tmp_path):
    spec, run = write_spec(tmp_path, LONG), tmp_path / "run"
    (cell,) = expand(load_spec(spec))
    driver = run_as_jobs(spec, run)
    try:
        signal_owner(driver, run, signal.SIGKILL, checkpointed=False)  # as the OOM killer or a lost node would
    finally:
        output, _ = driver.communicate(timeout=300)
        print(output)
    assert driver.returncode == 1
    (status,) = cell_lines(output)[cell.cell_id]
    assert re.fullmatch(r"failed: job \d+: no result \(state: \w+\)", status), status
    assert not (run / "cells" / f"{cell.cell_id}.nc").exists()
    assert is_stale(RunFolder(run), lock_file(cell.cell_id), stale_after_s=3600)  # a rerun takes it over at once


@pytest.mark.skipif(shutil.which("srun") is not None, reason="this machine has SLURM: the run would submit jobs")
def test_without_slurm_the_run_stops_before_submitting(tmp_path):
    spec, run = write_spec(tmp_path, TINY), tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != CLUSTER_ENV}
    result = subprocess.run([*SCALING, "run", str(spec), "--out", str(run), "--executor", "slurm"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "found no SLURM here" in lines[0]  # no banner or progress bar before it
    assert not run.exists()  # nothing written, grid.toml included
