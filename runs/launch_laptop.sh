#!/usr/bin/env bash
# Run runs/example.toml on this machine, then collect its hypercube.
#   runs/launch_laptop.sh                  # WORKERS=4 OUT=runs/x runs/launch_laptop.sh to change either
# Cells run in WORKERS processes that share the run folder. Interrupt it at any point and run the same
# command again: finished cells are skipped and a cell cut short resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALING="${SCALING:-.venv/bin/scaling}"  # `make install` builds it
WORKERS="${WORKERS:-2}"  # each trains one cell at a time; more than the cores only adds contention
OUT="${OUT:-runs/example}"

"$SCALING" run runs/example.toml --out "$OUT" --executor local --workers "$WORKERS" "$@"
"$SCALING" collect "$OUT"
