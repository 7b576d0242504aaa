"""Helpers the run-layer tests share: reading a run's cell files and driving its runners."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import xarray as xr

from scaling.grid.locks import read_owner
from scaling.grid.folder import RunFolder
from scaling.grid.runner import checkpoints_dir, lock_file
from scaling.schema import METRICS

SCALING = [sys.executable, "-m", "scaling"]


def tiny_grid(name: str = "tiny", seeds: tuple[int, ...] = (0,), pretrain_tokens: tuple[int, ...] = (0, 20000),
              budgets: tuple[int, ...] = (8, 16, 32), checkpoint_every: int = 4, run: str = "") -> str:
    """The run-layer tests' grid: `add` on the tiny preset, a few seconds a cell, checkpointed often enough
    that a test can kill or signal a cell mid-run; `run` is extra TOML appended (a [run] table, say)."""
    listed = lambda values: "[" + ", ".join(map(str, values)) + "]"  # noqa: E731
    return f"""
name = "{name}"
[axes]
size = ["tiny"]
pretrain_tokens = {listed(pretrain_tokens)}
seed = {listed(seeds)}
[data]
families = ["add"]
ood_families = ["sub"]
examples = 200
[train]
budgets = {listed(budgets)}
batch_size = 8
checkpoint_every = {checkpoint_every}
[eval]
splits = ["train", "id", "ood_family"]
n = 16
memorization_n = 16
{run}"""


def write_spec(folder: Path, text: str) -> Path:
    path = folder / "grid.toml"
    path.write_text(text)
    return path


def cell_lines(output: str) -> dict[str, list[str]]:
    """The status each cell was reported with, by cell id, in the order reported."""
    statuses: dict[str, list[str]] = {}
    # Not anchored at line starts, nor at a word boundary: Ray's raylet prints its worker-died warning with no
    # newline before ours, and that warning may end in a letter ("...RPC error: Socket closedcell 20a4...").
    # The optional suffix is the console's timing, "(12 s)" or "(12 s, 3,400 tok/s)"; a failure's own
    # parentheses, "(state: FINISHED)", stay part of its status.
    for cell_id, status in re.findall(r"cell ([0-9a-f]{16}) (done|failed: .*?)(?: \(\d+ s(?:, [\d,]+ tok/s)?\))? size=", output):
        statuses.setdefault(cell_id, []).append(status)
    return statuses


def metrics_of(run: Path) -> dict[str, xr.Dataset]:
    out = {}
    for path in sorted((run / "cells").glob("*.nc")):
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            out[path.stem] = ds[[*METRICS, "memorization_step"]].load()
    return out


def attrs_of(run: Path, cell_id: str) -> dict:
    with xr.open_dataset(run / "cells" / f"{cell_id}.nc", engine="h5netcdf") as ds:
        return dict(ds.attrs)


def signal_owner(driver: subprocess.Popen, run: Path, sig: int, checkpointed: bool = True) -> tuple[str, int, int]:
    """Send sig to the process running the first cell seen (with a checkpoint, if checkpointed), mid-cell;
    returns that cell's id, the process's pid and the cell's newest checkpoint step (0: none yet)."""
    folder, deadline = RunFolder(run), time.monotonic() + 180
    while driver.poll() is None and time.monotonic() < deadline:
        for lock in (run / "locks").glob("*.lock"):
            cell_id = lock.stem
            steps = [int(p.name) for p in checkpoints_dir(folder, cell_id).glob("*") if p.name.isdigit()]
            owner = read_owner(folder, lock_file(cell_id))
            if owner is not None and (steps or not checkpointed) and not (run / "cells" / f"{cell_id}.nc").exists():
                os.kill(owner.pid, sig)
                return cell_id, owner.pid, max(steps, default=0)
        time.sleep(0.05)
    raise AssertionError(f"no cell was seen running (driver exit status {driver.poll()}; its output is below)")
