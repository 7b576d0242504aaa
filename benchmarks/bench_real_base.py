"""Fine-tuning the real SmolLM2-135M-Instruct base on CPU: our jitted step against transformers + torch AdamW.

Both sides load the same GGUF file (ours through `scaling.hf`, theirs through transformers' own GGUF loader)
and take identical SFT batches: chat-formatted task examples in SmolLM2's tokenizer, packed into ROWS rows
of ROW_LENGTH tokens (their causal mask is the plain one, so torch sees whole rows; the work per step is the
same). Steps are timed in alternating rounds and the median round counts. Reports tokens/s for each, the
ratio (ours / torch), and the process's peak memory after our side alone (a cell's footprint: weights,
AdamW state and activations in float32). Last line: a JSON object. Needs `make install` (the wheel).
"""

from __future__ import annotations

import json
import resource
import time

import jax
import numpy as np
import torch
import transformers
from bench_train_vs_torch import to_jax, to_torch, torch_optimizer, torch_step

from scaling.hf import read_hf_checkpoint
from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer
from scaling.tasks.mixture import training_pool
from scaling.trainer.attention import span_bucket
from scaling.trainer.config import TrainConfig
from scaling.trainer.model import init_model
from scaling.trainer.packing import pack
from scaling.trainer.train import bound_step, optimizer_for
from real_files import smollm2_path

ROWS, ROW_LENGTH = 2, 256  # tokens per step: 512, a small SFT batch that a 2-core machine steps in seconds
ROUNDS, STEPS_PER_ROUND, WARMUP = 3, 2, 1



def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def main() -> None:
    path = smollm2_path()
    tokenizer = checkpoint_tokenizer(path)
    pool = training_pool(("add", "reverse", "sort", "lookup"), 4, 400, seed=0)
    packed = pack(pool, ROW_LENGTH, tokenizer)
    n_steps = WARMUP + ROUNDS * STEPS_PER_ROUND
    batches = [packed.take(np.arange(step * ROWS, (step + 1) * ROWS) % len(packed)) for step in range(n_steps)]
    train_cfg = TrainConfig(budgets=(1,), batch_size=ROWS, lr=1e-4)

    model = read_hf_checkpoint(path)
    optimizer = optimizer_for(train_cfg)
    step = bound_step(init_model(model.cfg, 0)[0], optimizer, span_bucket(packed.span, ROW_LENGTH))
    state = [(model.params, optimizer.init(model.params))]

    def ours(chunk: list[dict]) -> None:
        metrics = None
        for batch in chunk:
            state[0], metrics = step(state[0], batch, train_cfg.lr)
        jax.block_until_ready(metrics)

    ours_batches = [to_jax(b) for b in batches]
    started = time.perf_counter()
    ours(ours_batches[:WARMUP])
    compile_s = time.perf_counter() - started
    ours(ours_batches[WARMUP:WARMUP + 1])
    ours_peak = peak_rss_gib()

    theirs = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    theirs.train()
    torch_opt = torch_optimizer(theirs, train_cfg)
    torch_batches = [to_torch(b) for b in batches]

    def torch_side(chunk: list[dict]) -> None:
        for batch in chunk:
            torch_step(theirs, torch_opt, batch)

    torch_side(torch_batches[:WARMUP])
    ours_times, torch_times = [], []
    for r in range(ROUNDS):
        chunk = slice(WARMUP + r * STEPS_PER_ROUND, WARMUP + (r + 1) * STEPS_PER_ROUND)
        for side, side_batches, times in ((ours, ours_batches, ours_times), (torch_side, torch_batches, torch_times)):
            started = time.perf_counter()
            side(side_batches[chunk])
            times.append((time.perf_counter() - started) / STEPS_PER_ROUND)
    ours_s, torch_s = float(np.median(ours_times)), float(np.median(torch_times))
    tokens = ROWS * ROW_LENGTH
    real = float(np.mean([(b["segments"] > 0).sum() for b in batches]))
    result = {
        "benchmark": "real_base",
        "model": f"SmolLM2-135M-Instruct ({model.cfg.total_params / 1e6:.1f}M params, float32)",
        "rows": ROWS, "row_length": ROW_LENGTH, "real_tokens_per_step": real,
        "ours_s_per_step": round(ours_s, 2), "torch_s_per_step": round(torch_s, 2),
        "ours_tok_s": round(tokens / ours_s, 1), "torch_tok_s": round(tokens / torch_s, 1),
        "ratio": round(torch_s / ours_s, 3), "ours_compile_s": round(compile_s, 1),
        "ours_peak_rss_gib": round(ours_peak, 2), "threads": torch.get_num_threads(),
    }
    print(f"SmolLM2-135M-Instruct SFT step, {ROWS} x {ROW_LENGTH} tokens ({real:.0f} real), median of {ROUNDS} rounds")
    print(f"    ours  {ours_s:7.2f} s/step {tokens / ours_s:8.1f} tok/s   (first step with compilation: {compile_s:.0f} s)")
    print(f"    torch {torch_s:7.2f} s/step {tokens / torch_s:8.1f} tok/s")
    print(f"    ratio (ours tokens/s / torch's) = {result['ratio']:.2f}; peak memory, ours alone: {ours_peak:.2f} GiB")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
