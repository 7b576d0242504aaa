"""Grid throughput: a fixed small grid, run end to end through `scaling run`.

`--grid reference` (the default): four cells of `runs/reference.toml` (tiny and xs × diversity 1 and 4,
quality 1, seed 0, budgets 32 … 512). The ratio is against the same grid timed before the speed work of
issue 14 (BEFORE_S below: measured 2026-12-02 on the 2-core CPU machine, nothing else running).
`--grid gpu`: six cells of `runs/study-gpu.toml` (sizes s, m, l × diversity 1 and 4, no pretraining, seed 0,
budgets 64 … 1024, all six splits at 256 problems), for a machine with a GPU. The ratio is the time
`scaling run --dry-run` estimates for it over the time it took: how far to trust that estimate there.
(`--smoke` shrinks either to tiny cells, to check the script on a CPU.)

Cells are trained, evaluated and written by the real runner in a fresh run folder, in a subprocess with a
cold compilation cache, with the spec's own `[run] workers` (or --workers). Reports cells per hour and
training tokens per second. Last line: a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import tomli_w

from scaling.grid.spec import expand, parse_spec

BEFORE_S = 148.0  # seconds for this grid, workers = 1, at commit fd1bf76 (before issue 14); 130 s with workers = 2
GRID = """
name = "bench-grid"
[axes]
size = ["tiny", "xs"]
pretrain_tokens = [0]
diversity = [1, 4]
quality = [1.0]
cot = ["full"]
seed = [0]
[data]
families = ["add", "reverse", "sort", "lookup"]
ood_families = ["sub"]
examples = 2000
pack_length = 144
[train]
budgets = [32, 64, 128, 256, 512]
batch_size = 11
lr = 3e-3
schedule = "wsd"
[eval]
splits = ["train", "id", "ood_length", "ood_family"]
n = 64
"""
STUDY_GPU = Path(__file__).resolve().parents[1] / "runs" / "study-gpu.toml"


def grid_text(grid: str, smoke: bool) -> str:
    """The spec to run: GRID, or six cells of the GPU study at its own settings; `smoke` shrinks either."""
    spec = tomllib.loads(GRID if grid == "reference" else STUDY_GPU.read_text())
    if grid == "gpu":
        spec["name"] = "bench-grid-gpu"
        spec["axes"] |= {"pretrain_tokens": [0], "diversity": [1, 4], "seed": [0]}
        spec["train"]["budgets"] = [64, 256, 1024]
    if smoke:
        spec["axes"]["size"] = ["tiny"]
        spec["train"]["budgets"] = [8, 16]
        spec["eval"]["n"] = 8
    return tomli_w.dumps(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="local worker processes [default: the spec's]")
    parser.add_argument("--keep", default=None, help="also copy the run folder here (to compare results)")
    parser.add_argument("--grid", choices=("reference", "gpu"), default="reference", help="which grid [reference]")
    parser.add_argument("--smoke", action="store_true", help="tiny cells and budgets: checks the script on a CPU")
    args = parser.parse_args()
    text = grid_text(args.grid, args.smoke)
    spec = parse_spec(text)
    cells = expand(spec)
    estimated_s = None
    if args.grid == "gpu":
        # Timed in this process, so keep jax from taking most of the GPU's memory away from the runner's.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        from scaling.grid.estimate import estimate_cells
        from scaling.grid.spec import cell_shapes

        estimated_s = sum(e.seconds * e.count for e in estimate_cells(spec, cell_shapes(spec)))
    tokens = sum(spec.train.config(0).total_steps * spec.train.batch_size * spec.data.pack_length for _ in cells)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "grid.toml"
        path.write_text(text)
        env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
        env["SCALING_CACHE"] = str(Path(scratch) / "cache")  # a cold persistent compilation cache too
        command = [sys.executable, "-m", "scaling", "run", str(path), "--out", str(Path(scratch) / "run")]
        if args.workers:
            command += ["--workers", str(args.workers)]
        started = time.perf_counter()
        finished = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if finished.returncode != 0:
            sys.exit(f"scaling run failed (exit {finished.returncode}):\n{finished.stderr[-3000:]}")
        seconds = time.perf_counter() - started
        if args.keep:
            shutil.copytree(Path(scratch) / "run", args.keep, ignore=shutil.ignore_patterns("scratch", "locks"))
    per_hour = len(cells) * 3600 / seconds
    print(f"{len(cells)} cells in {seconds:.0f} s: {per_hour:.0f} cells per hour, {tokens / seconds:,.0f} training tokens/s")
    if args.grid == "gpu":
        ratio = estimated_s / seconds
        print(f"--dry-run estimated {estimated_s:.0f} s: {ratio:.2f}x the time it took")
    else:
        ratio = None if args.smoke else BEFORE_S / seconds
        if ratio:
            print(f"before issue 14: {BEFORE_S:.0f} s; now {ratio:.2f}x as many cells per hour")
    print(json.dumps({"benchmark": "grid", "grid": args.grid, "smoke": args.smoke, "ratio": ratio, "seconds": seconds,
                      "cells": len(cells), "cells_per_hour": per_hour, "train_tokens_per_s": tokens / seconds,
                      "before_s": BEFORE_S if args.grid == "reference" else None, "estimated_s": estimated_s,
                      "workers": args.workers}))


if __name__ == "__main__":
    main()
