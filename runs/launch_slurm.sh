#!/usr/bin/env bash
# Run runs/example.toml as a SLURM job array from a login node, then collect its hypercube.
#   runs/launch_slurm.sh                  # OUT=/shared/runs/x runs/launch_slurm.sh for another folder
# One array task per cell, with [run.slurm]'s partition, time, CPUs, GPUs and memory; at most
# array_parallelism run at once. A preempted or timed-out task is requeued and resumes its cell from
# its last checkpoint. The jobs keep running if this script is stopped (run it in tmux or screen); once
# they are done (squeue), run it again to resume any cell they left unfinished. Logs: OUT/scratch/submitit.
# The compute nodes need this environment at the same path and OUT on a filesystem they share.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALING="${SCALING:-.venv/bin/scaling}"
OUT="${OUT:-runs/example}"

"$SCALING" run runs/example.toml --out "$OUT" --executor slurm "$@"
"$SCALING" collect "$OUT"
