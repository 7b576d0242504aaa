"""A full disk (ENOSPC) under every writer: the last good file, folder or checkpoint stays readable, the command
says so in one line (exit 1), and a grid records the cell failed and resumes on the rerun.

Each test runs on a real, small tmpfs where mounting is permitted, else on the fallback of
`disk_helpers.full_disk`; the line "full disk: tmpfs at ..." (or "injected fsync failure") in a test's
captured output says which.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from disk_helpers import full_disk
from runs_helpers import metrics_of, tiny_grid
from scaling.cli import main
from scaling.errors import DiskFull
from scaling.grid.folder import RunFolder
from scaling.grid.runner import cell_file, checkpoints_dir, lock_file, open_run, work_on_cells
from scaling.grid.spec import expand, load_spec
from scaling.grid.store import read_folder_cell, read_grades, write_dataset, write_grades
from scaling.results import CellStatus
from scaling.staging import TEMPORARY_PREFIX

FULL = "scaling: error: no space left on device writing "


def one_error_line(err: str) -> str:
    """The command's error line on stderr, checked to be its only one and its last, with no traceback."""
    errors = [line for line in err.splitlines() if line.startswith("scaling: error:")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and "Traceback" not in err, err
    return errors[0]


def no_temporaries(root: Path) -> None:
    left = [str(p) for p in root.rglob(f"{TEMPORARY_PREFIX}*") if p.name != "filler"]
    assert not left, f"temporaries left behind: {left}"


@pytest.mark.parametrize("mount", [True, False], ids=["tmpfs-where-permitted", "fallback"])
def test_full_disk_keeps_the_last_good_cell_file(tmp_path, mount):
    with full_disk(tmp_path / "disk", mount=mount) as disk:
        folder = RunFolder(disk.path / "run")
        earlier = xr.Dataset({"acc": ("step", np.arange(4.0))}, attrs={"status": "done"})
        write_dataset(folder, cell_file("a"), earlier)
        write_grades(folder, "cells/a.grades.parquet", pd.DataFrame({"correct": [True, False]}))
        folder.write_bytes_atomic("locks/a.progress", b'{"steps_done": 1}')
        disk.fill(leave=0)
        bigger = xr.Dataset({"acc": ("step", np.random.default_rng(0).random(300_000))})
        with pytest.raises(DiskFull) as raised:  # the old code raised the bare OSError
            write_dataset(folder, cell_file("a"), bigger)
        assert str(raised.value) == (f"no space left on device writing {folder.path(cell_file('a'))} (the earlier "
                                     f"file is unchanged); free space and rerun")
        with pytest.raises(DiskFull, match="grades.parquet \\(the earlier file is unchanged\\)"):
            write_grades(folder, "cells/a.grades.parquet", pd.DataFrame({"correct": np.ones(300_000, bool)}))
        with pytest.raises(DiskFull, match="a.progress \\(the earlier file is unchanged\\)"):
            folder.write_bytes_atomic("locks/a.progress", np.random.default_rng(1).bytes(1 << 20))
        with pytest.raises(DiskFull, match="b.nc \\(nothing was written there\\)"):
            write_dataset(folder, cell_file("b"), bigger)
        with xr.open_dataset(disk.path / "run" / cell_file("a"), engine="h5netcdf") as back:
            xr.testing.assert_identical(back.load(), earlier)
        assert read_grades(folder, "cells/a.grades.parquet")["correct"].tolist() == [True, False]
        assert folder.read_bytes("locks/a.progress") == b'{"steps_done": 1}'
        no_temporaries(disk.path)
        assert disk.listing() == ["run", "run/cells", "run/cells/a.grades.parquet", "run/cells/a.nc", "run/locks",
                                  "run/locks/a.progress"]


@pytest.fixture
def table(tmp_path) -> Path:
    tokens = np.geomspace(10, 10_000, 8)
    path = tmp_path / "table.csv"
    pd.DataFrame({"tokens": tokens, "loss": 1.5 + 4 * tokens ** -0.5}).to_csv(path, index=False)
    return path


def test_full_disk_keeps_the_last_good_fit_folder(tmp_path, table, capsys):
    fit = ["fit", str(table), "--law", "power", "--y", "loss", "--x", "x=tokens", "--method", "huber"]
    with full_disk(tmp_path / "disk") as disk:
        disk.need_real("a fit's netCDF and CSV files are written without a flush")
        out = disk.path / "fit"
        assert main([*fit, "--out", str(out)]) == 0
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        disk.fill(leave=0)
        capsys.readouterr()
        assert main([*fit, "--out", str(out), "--seed", "1"]) == 1  # the old code: exit 1 after a traceback
        assert one_error_line(capsys.readouterr().err) == (f"{FULL}{out} (the earlier folder is unchanged); free "
                                                           f"space and rerun")
        assert main(["fit", "--refresh", str(out)]) == 1  # the old code left .summary.csv.refresh behind
        assert one_error_line(capsys.readouterr().err).startswith(f"{FULL}{out}/summary.csv (the earlier file")
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        no_temporaries(disk.path)
        assert disk.listing() == ["fit", *(f"fit/{name}" for name in sorted(before))]


def test_full_disk_keeps_the_last_good_figures(tmp_path, table, capsys):
    with full_disk(tmp_path / "disk") as disk:
        disk.need_real("matplotlib writes its figures without a flush")
        assert main(["fit", str(table), "--law", "power", "--y", "loss", "--x", "x=tokens", "--method", "huber",
                     "--out", str(disk.path / "fits" / "power")]) == 0
        paper = disk.path / "paper"
        paper.mkdir()
        (paper / "figures.toml").write_text('[[figure]]\nname = "power_fit"\nkind = "law_fit"\nfit = "fits/power"\n')
        assert main(["figures", "--paper", str(paper)]) == 0
        before = {p.name: p.read_bytes() for p in (paper / "figures").iterdir()}
        disk.fill(leave=0)
        capsys.readouterr()
        assert main(["figures", "--paper", str(paper)]) == 1  # the old code: exit 1 after a traceback
        assert one_error_line(capsys.readouterr().err) == (f"{FULL}{paper / 'figures'} (the earlier folder is "
                                                           f"unchanged); free space and rerun")
        assert {p.name: p.read_bytes() for p in (paper / "figures").iterdir()} == before
        no_temporaries(disk.path)


SPEC = tiny_grid("t", seeds=(0,), pretrain_tokens=(0,), budgets=(16, 32), checkpoint_every=8)
FIRST = "24"  # the first checkpoint's id: trunk step 8 (checkpoint_every) × (2 budgets + 1)


@pytest.mark.slow
def test_full_disk_cell_is_recorded_failed_and_rerun_resumes(tmp_path, capsys):
    spec_file = tmp_path / "grid.toml"
    spec_file.write_text(SPEC)
    reference = tmp_path / "reference"
    assert main(["run", str(spec_file), "--out", str(reference)]) == 0
    with full_disk(tmp_path / "disk", size="8m") as disk:
        run = disk.path / "run"
        spec = load_spec(spec_file)
        folder, [cell] = open_run(spec, run), expand(spec)
        checkpoints = checkpoints_dir(folder, cell.cell_id)

        def fill_after_the_first_checkpoint(kind, cell, value) -> None:
            # A checkpoint of the tiny preset takes about 400 kB, a failed cell's file and grades about 25 kB.
            if kind == "step" and (checkpoints / FIRST).is_dir() and not disk.full:
                disk.fill(leave=200_000)

        [outcome] = work_on_cells(folder, spec, [cell], on_event=fill_after_the_first_checkpoint)
        status = outcome.status
        assert status.failed and status.reason.startswith(f"no space left on device writing checkpoint {checkpoints}/")
        assert status.reason.endswith("(the earlier checkpoints are unchanged); free space and rerun")
        recorded = read_folder_cell(folder, cell_file(cell.cell_id))
        assert CellStatus.parse(recorded.attrs["status"]) == status
        assert [p.name for p in checkpoints.iterdir()] == [FIRST]  # the last good one, no orbax temporary
        no_temporaries(disk.path)
        disk.free()
        capsys.readouterr()
        assert main(["run", str(spec_file), "--out", str(run), "--retry-failed"]) == 0
        got, want = metrics_of(run), metrics_of(reference)
        assert got.keys() == want.keys()
        for cell_id in want:
            xr.testing.assert_equal(got[cell_id], want[cell_id])

        disk.fill(leave=0)
        capsys.readouterr()
        assert main(["collect", str(run)]) == 1
        assert one_error_line(capsys.readouterr().err) == (f"{FULL}{run}/grades.parquet (nothing was written "
                                                           f"there); free space and rerun")
        no_temporaries(disk.path)


def test_full_disk_stops_the_runner_with_one_line_when_not_even_a_cell_file_fits(tmp_path, capsys):
    spec_file = tmp_path / "grid.toml"
    spec_file.write_text(SPEC)
    with full_disk(tmp_path / "disk") as disk:
        run = disk.path / "run"
        [cell] = expand(load_spec(spec_file))
        open_run(load_spec(spec_file), run)
        before = disk.listing()
        disk.fill(leave=0)
        capsys.readouterr()
        assert main(["run", str(spec_file), "--out", str(run)]) == 1  # the old code: a traceback
        assert one_error_line(capsys.readouterr().err) == (f"{FULL}{run}/{lock_file(cell.cell_id)} (nothing was "
                                                           f"written there); free space and rerun")
        assert set(disk.listing()) - set(before) <= {"run/locks"}  # an empty folder at most


def test_full_disk_stops_the_workers_with_one_line(tmp_path, capsys):
    """With --workers, each worker meets the full disk in its own process: it printed multiprocessing's traceback
    and the run ended with status 0, its cells not run; the parent now says it in the one line and stops them."""
    spec_file = tmp_path / "grid.toml"
    spec_file.write_text(tiny_grid("t", seeds=(0, 1), pretrain_tokens=(0,), budgets=(16,)))
    with full_disk(tmp_path / "disk") as disk:
        disk.need_real("the workers are other processes, which the fallback's injected fsync failure does not reach")
        run = disk.path / "run"
        open_run(load_spec(spec_file), run)
        before = disk.listing()
        disk.fill(leave=0)
        capsys.readouterr()
        assert main(["run", str(spec_file), "--out", str(run), "--workers", "2"]) == 1
        line = one_error_line(capsys.readouterr().err)
        assert line.startswith(f"{FULL}{run}/locks/") and line.endswith("(nothing was written there); free space and rerun")
        assert set(disk.listing()) - set(before) <= {"run/locks"}


def test_full_disk_stops_the_demo_with_one_line_and_leaves_nothing(tmp_path, capsys):
    with full_disk(tmp_path / "disk") as disk:
        disk.fill(leave=0)
        out = disk.path / "demo"
        assert main(["demo", "--out", str(out)]) == 1
        assert one_error_line(capsys.readouterr().err) == f"{FULL}{out} (nothing was written there); free space and rerun"
        assert disk.listing() == []


def test_full_disk_skips_a_running_cells_progress_file(tmp_path):
    from scaling.grid.plan import cell_plan
    from scaling.grid.runner import _reporter, progress_file

    spec_file = tmp_path / "grid.toml"
    spec_file.write_text(SPEC)
    spec = load_spec(spec_file)
    [cell] = expand(spec)
    with full_disk(tmp_path / "disk") as disk:
        folder = open_run(spec, disk.path / "run")
        disk.fill(leave=0)
        with _reporter(folder, spec, cell, cell_plan(spec, cell, None), lambda *_: None) as reporter:
            reporter.trained(1, 2.5)  # its first progress is published at once: the old code raised here
        assert not folder.exists(progress_file(cell.cell_id))
        no_temporaries(disk.path)
