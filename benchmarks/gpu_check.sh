#!/usr/bin/env bash
# GPU check, a few minutes on one NVIDIA GPU: (a) bf16 training tokens/s and MFU of an 85M-non-embedding-
# parameter decoder with XLA's and cuDNN's attention, and one attention layer four ways (XLA dense, cuDNN given
# the mask, cuDNN causal with the segments as mask, our blocked form), timed and checked against float32
# (benchmarks/gpu_check.py); (b) the ensemble ratio (benchmarks/bench_ensemble.py); (c) a slice of the GPU study
# grid through `scaling run`, timed end to end against its --dry-run estimate (benchmarks/bench_grid.py --grid gpu).
# Usage: benchmarks/gpu_check.sh [--smoke]   (--smoke: tiny model and few steps, to check it end to end on CPU)
# Runs under $PYTHON, else the project's .venv, else python3 (on a GPU machine: one whose jax sees CUDA).
# Last line: a JSON object {"check": "gpu", "device": ..., "train": {...}, "ensemble": {...}, "grid": {...}}.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

smoke=0
case "${1:-}" in
  --smoke) smoke=1 ;;
  "") ;;
  *) echo "usage: $0 [--smoke]" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== device"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
else
  echo "nvidia-smi: not found"
fi
"$PYTHON" -c 'import jax; d = jax.devices()[0]; print(f"jax {jax.__version__}: backend {jax.default_backend()}, {jax.device_count()} device(s), first: {d.device_kind}")' \
  | tee "$work/device.txt"
if [[ $smoke -eq 0 && "$("$PYTHON" -c 'import jax; print(jax.default_backend())')" != "gpu" ]]; then
  echo "warning: jax sees no GPU; the numbers below are for $(cat "$work/device.txt")" >&2
fi

echo "== (a) bf16 training throughput and MFU"
train_args=()
[[ $smoke -eq 1 ]] && train_args+=(--smoke)
"$PYTHON" benchmarks/gpu_check.py ${train_args[@]+"${train_args[@]}"} | tee "$work/train.txt"

# (b) and (c) may fail on a device without failing the check: their JSON is then missing from the summary.
echo "== (b) ensemble: vmapped versus sequential train steps"
if [[ $smoke -eq 1 ]]; then
  # Same benchmark, shrunk: its step counts are module constants that main() reads when it runs.
  "$PYTHON" -c 'import runpy; bench = runpy.run_path("benchmarks/bench_ensemble.py", run_name="bench_ensemble")
bench["main"].__globals__.update(STEPS=3, ROUNDS=1); bench["main"]()' | tee "$work/ensemble.txt" || echo "(b) failed"
else
  "$PYTHON" benchmarks/bench_ensemble.py | tee "$work/ensemble.txt" || echo "(b) failed"
fi

echo "== (c) a slice of the GPU study grid through scaling run, against its --dry-run estimate"
grid_args=(--grid gpu)
[[ $smoke -eq 1 ]] && grid_args+=(--smoke)
"$PYTHON" benchmarks/bench_grid.py "${grid_args[@]}" | tee "$work/grid.txt" || echo "(c) failed"

echo "== summary"
"$PYTHON" - "$work" "$smoke" <<'EOF'
import json
import pathlib
import sys

work, smoke = pathlib.Path(sys.argv[1]), sys.argv[2] == "1"


def last_json(name: str):
    """The last line of a step's output as JSON, or None where that step printed none (skipped)."""
    lines = (work / name).read_text().strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None


train, ensemble, grid = last_json("train.txt"), last_json("ensemble.txt"), last_json("grid.txt")
assert train is not None, "gpu_check.py printed no JSON line"
print(json.dumps({
    "check": "gpu",
    "smoke": smoke,
    "device": (work / "device.txt").read_text().strip(),
    "ratio": ensemble["ratio"] if ensemble else None,
    "train": {key: train[key] for key in ("device_kind", "backend", "headline", "tokens_per_s", "mfu", "peak_bf16_flops",
                                          "non_embedding_params", "total_params", "batch", "length", "flops_per_token")}
             | {f"{variant}_{key}": train["variants"][variant].get(key, train["variants"][variant].get("error"))
                for variant in ("bf16", "mixed", "bf16_cudnn", "mixed_cudnn") for key in ("tokens_per_s", "mfu")}
             | {"attention": train.get("attention")},
    "ensemble": None if ensemble is None else {key: ensemble.get(key) for key in (
        "ratio", "members", "vmapped_ms_per_step", "sequential_ms_per_step", "last_step_loss_gap", "device_kind")},
    "grid": None if grid is None else {key: grid.get(key) for key in (
        "cells", "seconds", "estimated_s", "cells_per_hour", "train_tokens_per_s")},
}))
EOF
