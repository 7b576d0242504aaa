#!/usr/bin/env bash
# Run runs/example.toml on a Ray cluster, one Ray task per cell ([run.ray] in the spec sets its resources).
#   runs/launch_ray.sh head           on the head node: start Ray there, run the grid, collect it
#   runs/launch_ray.sh worker HEAD    on each other node, while the head runs: add it to the cluster
#   runs/launch_ray.sh run HOST:PORT  from any machine that reaches a running cluster: run the grid, collect it
# Every node needs this environment at the same path, and OUT must be a folder on a filesystem all nodes
# share (or an fsspec URL such as s3://bucket/run). Run it again to resume; stop Ray with `ray stop`.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALING="${SCALING:-.venv/bin/scaling}"
RAY="${RAY:-.venv/bin/ray}"
PORT="${PORT:-6379}"
OUT="${OUT:-runs/example}"
# `ray start` turns token authentication on when a token exists; Ray then sends the token only to clusters
# we ask it to, so every node and driver sets this. A shared home gives them all ~/.ray/auth_token;
# otherwise copy it, or export RAY_AUTH_TOKEN.
export RAY_AUTH_MODE=token

run_grid() {
  "$SCALING" run runs/example.toml --out "$OUT" --executor ray --address "$1"
  "$SCALING" collect "$OUT"
}

case "${1:-}" in
  head)
    "$RAY" get-auth-token --generate >/dev/null  # creates ~/.ray/auth_token if there is none
    "$RAY" start --head --port="$PORT" --disable-usage-stats
    run_grid "127.0.0.1:$PORT"
    ;;
  worker)
    "$RAY" start --address="${2:?usage: $0 worker HEAD_HOST}:$PORT" --disable-usage-stats
    ;;
  run)
    run_grid "${2:?usage: $0 run HOST:PORT}"
    ;;
  *)
    echo "usage: $0 head | worker HEAD_HOST | run HOST:PORT" >&2
    exit 2
    ;;
esac
