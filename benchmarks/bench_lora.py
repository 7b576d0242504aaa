"""LoRA fine-tuning step on a real base (SmolLM2-135M-Instruct): our LoRA step against our full fine-tuning step, and
against PEFT + torch on the same batch, side by side in one run.

Each side runs in its own subprocess on one fixed batch of the same random tokens, so its peak memory (max RSS, from
getrusage) is its own: "rss_mb" is the whole process's peak, "step_mb" what the steps added above the loaded model.
Time per step is the median of STEPS steps after WARMUP (compilation excluded). LoRA: rank 8, alpha 16, targets
query and value (q_proj, v_proj), dropout 0, AdamW on the adapters only, the same on both sides. Goals (issue 37):
our LoRA step >= 1.3x faster than our full step, and >= 1.0x PEFT + torch. Last line: a JSON object.

    python benchmarks/bench_lora.py [--batch 4] [--length 128] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_files import smollm2_path  # noqa: E402

RANK, ALPHA, TARGETS, HF_TARGETS = 8, 16.0, ("query", "value"), ["q_proj", "v_proj"]
WARMUP = 2


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def fixed_batch(vocab: int, batch: int, length: int):
    import numpy as np

    rng = np.random.default_rng(0)
    tokens = rng.integers(1, vocab, (batch, length + 1))
    return tokens[:, :-1], tokens[:, 1:]


def timed(step, steps: int) -> list[float]:
    """Seconds of each of `steps` calls of step() after WARMUP (step() must block until its work is done)."""
    for _ in range(WARMUP):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def ours(side: str, batch: int, length: int, steps: int) -> dict:
    import jax
    import numpy as np

    from scaling.hf import read_hf_checkpoint
    from scaling.trainer.attention import span_bucket
    from scaling.trainer.config import LoraConfig, TrainConfig
    from scaling.trainer.lora import init_adapter, lora_graph
    from scaling.trainer.model import abstract_model
    from scaling.trainer.train import bound_lora_step, bound_step, optimizer_for

    base = read_hf_checkpoint(smollm2_path())
    cfg = base.cfg
    inputs, targets = fixed_batch(cfg.vocab_size, batch, length)
    arrays = {"inputs": inputs, "targets": targets, "loss_mask": np.ones_like(inputs, np.float32),
              "positions": np.tile(np.arange(length), (batch, 1)), "segments": np.ones_like(inputs, np.int32)}
    arrays = {k: jax.device_put(v) for k, v in arrays.items()}
    span = span_bucket(length, length)
    loaded = peak_mb()
    if side == "full":
        optimizer = optimizer_for(TrainConfig(budgets=(1,)))
        step_fn = bound_step(abstract_model(cfg)[0], optimizer, span)
        params = jax.tree.map(jax.numpy.copy, base.params)
        state = [(params, optimizer.init(params))]

        def step():
            state[0], metrics = step_fn(state[0], arrays, 1e-4)
            metrics["loss"].block_until_ready()
    else:
        lora = LoraConfig(rank=RANK, alpha=ALPHA, targets=TARGETS)
        optimizer = optimizer_for(TrainConfig(budgets=(1,), adapter=lora))
        step_fn = bound_lora_step(lora_graph(cfg, lora)[0], optimizer, span)
        adapter = init_adapter(cfg, lora, 0)
        state = [(adapter, optimizer.init(adapter))]
        key = jax.random.key(0)

        def step():
            state[0], metrics = step_fn(state[0], base.params, arrays, 1e-4, key)
            metrics["loss"].block_until_ready()
    start = time.perf_counter()
    step()  # compiles
    compile_s = time.perf_counter() - start
    times = timed(step, steps)
    return {"compile_s": compile_s, "times": times, "loaded_mb": loaded, "rss_mb": peak_mb()}


def peft_torch(hf_dir: str, batch: int, length: int, steps: int) -> dict:
    import peft
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32)
    model = peft.get_peft_model(model, peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0,
                                                       target_modules=HF_TARGETS, task_type="CAUSAL_LM"))
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    inputs, targets = fixed_batch(model.config.vocab_size, batch, length)
    inputs, targets = torch.as_tensor(inputs), torch.as_tensor(targets)
    loaded = peak_mb()

    def step():
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    step()
    compile_s = time.perf_counter() - start
    times = timed(step, steps)
    return {"compile_s": compile_s, "times": times, "loaded_mb": loaded, "rss_mb": peak_mb(),
            "torch_threads": torch.get_num_threads()}


def run_side(side: str, args, hf_dir: str) -> dict:
    command = [sys.executable, __file__, "--side", side, "--batch", str(args.batch), "--length", str(args.length),
               "--steps", str(args.steps), "--hf-dir", hf_dir]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode:
        raise SystemExit(f"side {side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--side", choices=("full", "lora", "peft"))
    parser.add_argument("--hf-dir", default="")
    args = parser.parse_args()
    if args.side in ("full", "lora"):
        print(json.dumps(ours(args.side, args.batch, args.length, args.steps)))
        return
    if args.side == "peft":
        print(json.dumps(peft_torch(args.hf_dir, args.batch, args.length, args.steps)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        from scaling.hf import export_hf, import_hf

        hf_dir = str(export_hf(import_hf(smollm2_path(), Path(scratch) / "model"), Path(scratch) / "hf"))
        results = {side: run_side(side, args, hf_dir) for side in ("full", "lora", "peft")}
    tokens = args.batch * args.length
    print(f"SmolLM2-135M, one batch of {args.batch} x {args.length} tokens, LoRA r{RANK} a{ALPHA:g} on "
          f"{'+'.join(HF_TARGETS)}, median of {args.steps} steps after {WARMUP} warm-up; {os.cpu_count()} CPUs")
    print(f"{'side':<14}{'ms/step':>10}{'tok/s':>9}{'first step s':>14}{'rss MB':>9}{'step MB':>9}")
    for side, name in (("full", "ours full"), ("lora", "ours LoRA"), ("peft", "peft+torch")):
        r = results[side]
        r["ms"] = 1000 * statistics.median(r["times"])
        r["step_mb"] = r["rss_mb"] - r["loaded_mb"]
        print(f"{name:<14}{r['ms']:>10.0f}{tokens / r['ms'] * 1000:>9.0f}{r['compile_s']:>14.1f}{r['rss_mb']:>9.0f}"
              f"{r['step_mb']:>9.0f}")
    summary = {"batch": args.batch, "length": args.length,
               "lora_vs_full": results["full"]["ms"] / results["lora"]["ms"],
               "lora_vs_peft": results["peft"]["ms"] / results["lora"]["ms"],
               "rss_lora_vs_full": results["lora"]["rss_mb"] / results["full"]["rss_mb"],
               "rss_lora_vs_peft": results["lora"]["rss_mb"] / results["peft"]["rss_mb"],
               **{f"{side}_ms": results[side]["ms"] for side in results},
               **{f"{side}_rss_mb": results[side]["rss_mb"] for side in results}}
    print(f"speed: LoRA {summary['lora_vs_full']:.2f}x our full step (goal >= 1.3), "
          f"{summary['lora_vs_peft']:.2f}x peft+torch (goal >= 1.0)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
