"""Importing a Hugging Face checkpoint: time and peak memory for a ~350M-parameter Llama.

A randomly initialized Llama (hidden 1024, 24 layers, 16 heads, MLP 2816, vocab 32000: 0.37B params)
is written as one float32 model.safetensors without ever holding the model (tensor shapes come from
transformers on the meta device). Each measurement then runs in a fresh process, which reports its own
peak resident memory (VmHWM): `read_hf_checkpoint` (what a grid cell does: parameters into memory) and
`import_hf` (convert to a model folder on disk). The process's baseline after importing JAX and Flax
is reported apart. Last line: a JSON object whose "ratio" is the read's peak RSS / checkpoint bytes
(goal <= 1.5: about one copy of the weights).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 1.5
LLAMA = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
             intermediate_size=2816, vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False)


def _peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def write_checkpoint(folder: Path) -> int:
    """A random float32 Llama checkpoint in `folder`, written one tensor at a time; its weight bytes."""
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import numpy as np
    import safetensors
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from scaling.hf.files import write_safetensors

    config = LlamaConfig(**LLAMA)
    with torch.device("meta"):  # shapes and names only: no memory, no init cost
        shapes = {name: tuple(t.shape) for name, t in LlamaForCausalLM(config).state_dict().items()}
    config.save_pretrained(folder)
    rng = np.random.default_rng(0)
    arrays = ((name, rng.standard_normal(shape, dtype=np.float32) * 0.02) for name, shape in shapes.items())
    write_safetensors(folder / "model.safetensors", shapes, arrays, {"format": "pt"})
    with safetensors.safe_open(folder / "model.safetensors", "numpy") as check:  # the reference reader agrees
        assert sorted(check.keys()) == sorted(shapes)
    return (folder / "model.safetensors").stat().st_size


def child(mode: str, checkpoint: Path, out: Path) -> dict:
    """Run one import in this (fresh) process; report its time and peak memory."""
    import jax

    from scaling.hf import import_hf, read_hf_checkpoint
    from scaling.trainer.model import count_params

    baseline = _rss()
    started = time.perf_counter()
    if mode == "read":
        model = read_hf_checkpoint(checkpoint)
        jax.block_until_ready(model.params)
        params = count_params(model.params)
    else:
        import_hf(checkpoint, out)
        params = None
    return {"seconds": round(time.perf_counter() - started, 2), "peak_rss": _peak_rss(), "baseline_rss": baseline,
            "params": params}


def _measure(mode: str, checkpoint: Path, out: Path) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", mode, str(checkpoint), str(out)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-hf-import-") as scratch:
        checkpoint = Path(scratch) / "llama"
        started = time.perf_counter()
        size = write_checkpoint(checkpoint)
        print(f"wrote a random {size / 1e9:.2f} GB float32 Llama checkpoint in {time.perf_counter() - started:.1f} s")
        read = _measure("read", checkpoint, Path(scratch) / "unused")
        folder = _measure("import", checkpoint, Path(scratch) / "folder")
    gib = 1 << 30
    for name, row in (("read_hf_checkpoint", read), ("import_hf", folder)):
        print(f"{name:>18}: {row['seconds']:6.2f} s   peak RSS {row['peak_rss'] / gib:5.2f} GiB "
              f"(baseline after imports {row['baseline_rss'] / gib:4.2f} GiB)   "
              f"peak / checkpoint {row['peak_rss'] / size:4.2f}")
    print(json.dumps({
        "benchmark": "hf_import",
        "ratio": round(read["peak_rss"] / size, 3),
        "goal": GOAL,
        "checkpoint_bytes": size,
        "params": read["params"],
        "read_seconds": read["seconds"],
        "read_peak_rss": read["peak_rss"],
        "import_seconds": folder["seconds"],
        "import_peak_rss": folder["peak_rss"],
        "import_ratio": round(folder["peak_rss"] / size, 3),
        "baseline_rss": read["baseline_rss"],
        "ratio_above_baseline": round((read["peak_rss"] - read["baseline_rss"]) / size, 3),
    }))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))))
    else:
        main()
