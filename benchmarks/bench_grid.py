"""Grid throughput: a fixed subset of the reference grid, run end to end through `scaling run`.

Four cells of `runs/reference.toml` (tiny and xs × diversity 1 and 4, quality 1, seed 0, budgets 32 … 512),
trained, evaluated and written by the real runner in a fresh run folder, in a subprocess with a cold
compilation cache, with the spec's own `[run] workers` (or --workers). Reports cells per hour and
training tokens per second. The ratio is against the same grid timed before the speed work of issue 14
(BEFORE_S below: measured 2026-12-02 on the 2-core CPU machine, nothing else running).
Last line: a JSON object.
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
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="local worker processes [default: the spec's]")
    parser.add_argument("--keep", default=None, help="also copy the run folder here (to compare results)")
    args = parser.parse_args()
    spec = parse_spec(GRID)
    cells = expand(spec)
    tokens = sum(spec.train.config(0).total_steps * spec.train.batch_size * spec.data.pack_length for _ in cells)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "grid.toml"
        path.write_text(GRID)
        env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
        env["SCALING_CACHE"] = str(Path(scratch) / "cache")  # a cold persistent compilation cache too
        command = [sys.executable, "-m", "scaling", "run", str(path), "--out", str(Path(scratch) / "run")]
        if args.workers:
            command += ["--workers", str(args.workers)]
        started = time.perf_counter()
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        if args.keep:
            shutil.copytree(Path(scratch) / "run", args.keep, ignore=shutil.ignore_patterns("scratch", "locks"))
    per_hour = len(cells) * 3600 / seconds
    print(f"{len(cells)} cells in {seconds:.0f} s: {per_hour:.0f} cells per hour, {tokens / seconds:,.0f} training tokens/s")
    ratio = BEFORE_S / seconds if BEFORE_S else None
    if ratio:
        print(f"before issue 14: {BEFORE_S:.0f} s; now {ratio:.2f}x as many cells per hour")
    print(json.dumps({"benchmark": "grid", "ratio": ratio, "seconds": seconds, "cells": len(cells),
                      "cells_per_hour": per_hour, "train_tokens_per_s": tokens / seconds, "before_s": BEFORE_S,
                      "workers": args.workers}))


if __name__ == "__main__":
    main()
