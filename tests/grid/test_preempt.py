"""`scaling run` stopped by SIGTERM (a preemption): each cell is checkpointed at the step it reached, its lock
released, the process ends with 143, and a rerun resumes to the uninterrupted run's numbers. Real signals on
real runner processes, real training."""

import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings, strategies as st

from scaling.cli import main
from scaling.errors import UserError
from scaling.grid.folder import RunFolder
from scaling.grid.runner import checkpoints_dir
from scaling.grid.spec import expand, load_spec, parse_spec
from runs_helpers import SCALING, metrics_of, tiny_grid, write_spec

pytestmark = pytest.mark.slow

BUDGETS = (8, 16)
SPEC = tiny_grid("preempt", pretrain_tokens=(0,), budgets=BUDGETS, checkpoint_every=4,
                 run="[run]\nheartbeat_s = 0.5\n")
STOPPED = re.compile(rf"scaling: stopped by SIGTERM: cell ([0-9a-f]{{16}}) checkpointed at step (\d+) of "
                     rf"{BUDGETS[-1]}; rerun to resume")


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    return write_spec(tmp_path_factory.mktemp("spec"), SPEC)


@pytest.fixture(scope="module")
def reference(spec_file, tmp_path_factory) -> Path:
    """The grid run once, uninterrupted, in this process."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(["run", str(spec_file), "--out", str(run)]) == 0
    return run


def _runner(spec: Path, run: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*SCALING, "run", str(spec), "--out", str(run), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(ready, process: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Whether ready() came to hold while the process ran (False: it ended first)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the runner never got there"
        time.sleep(0.05)
    return True


def _locks(run: Path) -> list[Path]:
    return list((run / "locks").glob("*.lock"))


def _newest_trunk_step(run: Path, cell_id: str) -> int:
    """The trunk step of a cell's newest complete checkpoint (its id is trunk_step * (budgets + 1) + budgets_done)."""
    ids = [int(p.name) for p in checkpoints_dir(RunFolder(run), cell_id).iterdir() if p.name.isdigit()]
    return max(ids) // (len(BUDGETS) + 1)


def _assert_stopped_cleanly(run: Path, returncode: int, err: str) -> set[str]:
    """A SIGTERMed runner exited 143 with its locks released, one line per stopped cell naming the step its
    newest checkpoint holds, and no cell file for a stopped cell (it did not fail); the ids of the cells stopped."""
    assert returncode == 143, err
    assert not _locks(run)
    stopped = {}
    for line in err.splitlines():
        if line.startswith("scaling: stopped by SIGTERM: cell "):
            match = STOPPED.fullmatch(line)
            assert match, line
            stopped[match.group(1)] = int(match.group(2))
    assert stopped, err
    for cell_id, step in stopped.items():
        assert not (run / "cells" / f"{cell_id}.nc").exists()
        assert 0 < step <= BUDGETS[-1] and _newest_trunk_step(run, cell_id) == step
    return set(stopped)


def _assert_same_cells(run: Path, reference: Path) -> None:
    got, want = metrics_of(run), metrics_of(reference)
    for cell_id in got.keys() & want.keys():
        xr.testing.assert_equal(got[cell_id], want[cell_id])  # values exactly; attrs hold times and workers
    assert got.keys() & want.keys()


@pytest.mark.parametrize("value", ["0", "-1.0", "inf", "nan", '"10 s"'])
def test_a_grace_period_that_is_not_a_positive_number_of_seconds_is_named_in_one_line(value):
    with pytest.raises(UserError) as error:
        parse_spec(SPEC.replace("heartbeat_s = 0.5", f"heartbeat_s = 0.5\ngrace_s = {value}"), source="g.toml")
    assert "grace_s" in str(error.value) and "\n" not in str(error.value)
    assert parse_spec(SPEC).run.grace_s == 10.0  # the default: well under SLURM's KillWait of 30 s


@settings(max_examples=3, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(delay=st.floats(0.0, 6.0))
def test_sigterm_checkpoints_and_resumes_bit_exactly(delay, spec_file, reference):
    """Whenever in a cell's work SIGTERM comes (delay: seconds after its lock was taken), the rerun ends with the
    numbers of a run never stopped."""
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        runner = _runner(spec_file, run)
        if _wait_for(lambda: bool(_locks(run)), runner):
            time.sleep(delay)
            runner.send_signal(signal.SIGTERM)
        _, err = runner.communicate(timeout=120)
        if "scaling: terminated (SIGTERM)" in err.splitlines():  # its cells were done; it came as the command ended
            assert runner.returncode == 143 and not _locks(run) and "stopped by" not in err, err
        elif runner.returncode != 0:  # 0: it finished before the signal came
            _assert_stopped_cleanly(run, runner.returncode, err)
        assert main(["run", str(spec_file), "--out", str(run)]) == 0
        _assert_same_cells(run, reference)


def test_a_step_that_outlasts_grace_s_is_abandoned_and_the_process_still_exits(tmp_path):
    """grace_s far shorter than any step: the timer releases the lock and ends the process mid-step."""
    spec = write_spec(tmp_path, SPEC.replace("heartbeat_s = 0.5", "heartbeat_s = 0.5\ngrace_s = 0.001"))
    run = tmp_path / "run"
    (cell,) = expand(load_spec(spec))
    runner = _runner(spec, run)
    assert _wait_for(lambda: any(p.name.isdigit() for p in checkpoints_dir(RunFolder(run), cell.cell_id).glob("*")),
                     runner)
    saved = _newest_trunk_step(run, cell.cell_id)
    runner.send_signal(signal.SIGTERM)
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 143, err
    assert "scaling: stopped by SIGTERM: abandoned the step under way after grace_s = 0.001 s" in err, err
    assert not _locks(run) and not (run / "cells" / f"{cell.cell_id}.nc").exists()
    assert _newest_trunk_step(run, cell.cell_id) >= saved  # the checkpoints before stay


def test_sigterm_to_the_parent_stops_worker_processes_which_checkpoint_their_cells(spec_file, reference, tmp_path):
    """--workers 2: the parent forwards SIGTERM to its workers, waits for them, and exits 143 too."""
    spec = write_spec(tmp_path, SPEC.replace("seed = [0]", "seed = [0, 1]"))  # its seed-0 cell is the reference's
    run = tmp_path / "run"
    runner = _runner(spec, run, "--workers", "2")
    cells = [c.cell_id for c in expand(load_spec(spec))]
    both_training = lambda: all(  # noqa: E731
        any(p.name.isdigit() for p in checkpoints_dir(RunFolder(run), c).glob("*")) for c in cells)
    assert _wait_for(both_training, runner)
    runner.send_signal(signal.SIGTERM)  # to the parent alone, as `kill PID` does
    _, err = runner.communicate(timeout=60)
    finished = {p.stem for p in (run / "cells").glob("*.nc")}
    assert _assert_stopped_cleanly(run, runner.returncode, err) == set(cells) - finished
    assert main(["run", str(spec), "--out", str(run)]) == 0  # in this process: it has the reference's compilations
    _assert_same_cells(run, reference)
