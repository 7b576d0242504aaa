"""`scaling run --executor ray` on a real Ray cluster on loopback: the grid completes, and a worker
killed mid-cell is retried and resumes its cell, ending with the metrics of an uninterrupted run."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import xarray as xr

from scaling.grid.spec import expand, load_spec
from scaling.grid.locks import is_stale
from scaling.grid.folder import RunFolder
from scaling.grid.runner import lock_file
from runs_helpers import SCALING, attrs_of, cell_lines, metrics_of, signal_owner, tiny_grid, write_spec

pytestmark = pytest.mark.slow

TINY = tiny_grid(seeds=(0, 1))
# Two cells of a few seconds each, checkpointed every 4 of their 80 steps: time to kill one mid-cell.
LONG = tiny_grid("long", seeds=(0, 1), pretrain_tokens=(0,), budgets=(40, 80))
RAY = Path(sys.executable).parent / "ray"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> tuple[str, dict]:
    """A two-CPU Ray head on loopback, with its own token; yields its address and the env that joins it."""
    temp = tmp_path_factory.mktemp("ray")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}  # never ~/.ray's token, shared by all
    log = temp / "head.log"
    # --block keeps the head in this process's hands: terminating it stops exactly this cluster's processes
    # (`ray stop` would stop every Ray cluster of this user on the machine).
    head = subprocess.Popen([str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", env
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        finally:
            try:
                os.killpg(head.pid, signal.SIGKILL)  # anything of its session that outlived it
            except ProcessLookupError:
                pass


def run_on_ray(spec: Path, run: Path, cluster) -> subprocess.Popen:
    address, env = cluster
    return subprocess.Popen([*SCALING, "run", str(spec), "--out", str(run), "--executor", "ray", "--address", address],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def test_grid_completes_on_a_cluster_and_collects(cluster, tmp_path):
    spec, run = write_spec(tmp_path, TINY), tmp_path / "run"
    driver = run_on_ray(spec, run, cluster)
    output, _ = driver.communicate(timeout=300)
    print(output)
    assert driver.returncode == 0
    cells = [c.cell_id for c in expand(load_spec(spec))]
    assert sorted(p.stem for p in (run / "cells").glob("*.nc")) == sorted(cells)
    assert all(attrs_of(run, c)["status"] == "done" for c in cells)
    assert cell_lines(output) == {c: ["done"] for c in cells}
    collect = subprocess.run([*SCALING, "collect", str(run)], capture_output=True, text=True, timeout=120)
    assert collect.returncode == 0, collect.stderr
    assert (run / "results.nc").is_file()


def test_killed_worker_is_retried_and_resumes_to_the_uninterrupted_metrics(cluster, tmp_path):
    spec = write_spec(tmp_path, LONG)
    run, reference = tmp_path / "run", tmp_path / "reference"
    driver = run_on_ray(spec, run, cluster)
    try:
        cell_id, pid, step = signal_owner(driver, run, signal.SIGKILL, checkpointed=True)
    finally:
        output, _ = driver.communicate(timeout=300)
        print(output)  # pytest shows it when the test fails
    assert driver.returncode == 0
    assert 0 < step < 80
    cells = [c.cell_id for c in expand(load_spec(spec))]
    assert cell_lines(output) == {c: ["done"] for c in cells}  # each cell computed once, none failed
    assert attrs_of(run, cell_id)["worker"] != f"{socket.gethostname()}:{pid}"  # finished by the retry
    assert not list((run / "locks").glob("*.lock"))

    local = subprocess.run([*SCALING, "run", str(spec), "--out", str(reference)], capture_output=True, text=True,
                           timeout=300)
    assert local.returncode == 0, local.stderr
    got, want = metrics_of(run), metrics_of(reference)
    assert got.keys() == want.keys() == set(cells)
    for cell in cells:
        xr.testing.assert_equal(got[cell], want[cell])  # values exactly; attrs hold times and workers


def test_worker_dying_past_its_retries_fails_the_cell_and_leaves_it_to_a_rerun(cluster, tmp_path):
    text = tiny_grid("long", pretrain_tokens=(0,), budgets=(40, 80), run="[run.ray]\nmax_retries = 0\n")
    spec, run = write_spec(tmp_path, text), tmp_path / "run"
    (cell,) = expand(load_spec(spec))
    driver = run_on_ray(spec, run, cluster)
    try:
        signal_owner(driver, run, signal.SIGKILL, checkpointed=False)
    finally:
        output, _ = driver.communicate(timeout=300)
        print(output)
    assert driver.returncode == 1
    (status,) = cell_lines(output)[cell.cell_id]
    assert status.startswith("failed: worker died: "), status
    assert not (run / "cells" / f"{cell.cell_id}.nc").exists()
    assert is_stale(RunFolder(run), lock_file(cell.cell_id), stale_after_s=3600)  # a rerun takes it over at once


def test_an_address_nothing_listens_at_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago, and closed again
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = write_spec(tmp_path, TINY)
    # The subprocess timeout only guards against a hang; that the message is ours shows the run never
    # reached Ray's own minutes of retrying.
    result = subprocess.run([*SCALING, "run", str(spec), "--out", str(tmp_path / "run"), "--executor", "ray",
                             "--address", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"scaling: error: cannot reach a Ray cluster at 127.0.0.1:{port} "
                                                  f"(Connection refused); start one with `ray start --head --port={port}`"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("address", ["notahost", "host:port", "http://h:1/x", "h:99999"])
def test_a_malformed_address_is_refused_before_anything_is_written(address, tmp_path):
    spec = write_spec(tmp_path, TINY)
    result = subprocess.run([*SCALING, "run", str(spec), "--out", str(tmp_path / "new"), "--executor", "ray",
                             "--address", address], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"scaling: error: --address {address!r} must be HOST:PORT "
                                                  "(or ray://HOST:PORT, or auto)"]
    assert not (tmp_path / "new").exists()


def test_sigterm_to_the_driver_stops_its_tasks_which_checkpoint_their_cells(cluster, tmp_path):
    """The driver cancels its tasks; each running one checkpoints its cell at the step it reached and releases
    its lock, and the driver exits 143; a rerun resumes to the uninterrupted metrics."""
    spec = write_spec(tmp_path, tiny_grid("long", pretrain_tokens=(0,), budgets=(40, 80)))
    run, reference = tmp_path / "run", tmp_path / "reference"
    (cell,) = expand(load_spec(spec))
    driver = run_on_ray(spec, run, cluster)
    checkpoints = run / "scratch" / "checkpoints" / cell.cell_id
    deadline = time.monotonic() + 180
    while not any(p.name.isdigit() for p in checkpoints.glob("*")):
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[0]
        time.sleep(0.05)
    driver.send_signal(signal.SIGTERM)
    output, _ = driver.communicate(timeout=120)
    print(output)
    assert driver.returncode == 143
    assert "scaling: stopped by SIGTERM: asked its 1 unfinished Ray tasks to stop" in output
    assert not list((run / "locks").glob("*.lock"))
    assert not (run / "cells" / f"{cell.cell_id}.nc").exists()

    for folder in (run, reference):
        finish = subprocess.run([*SCALING, "run", str(spec), "--out", str(folder)], capture_output=True, text=True,
                                timeout=300)
        assert finish.returncode == 0, finish.stderr
    xr.testing.assert_equal(metrics_of(run)[cell.cell_id], metrics_of(reference)[cell.cell_id])
