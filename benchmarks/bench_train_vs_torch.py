"""SFT training throughput on CPU: our jitted step (and packing) versus plain PyTorch with transformers' Llama.

(a) Equal shapes: the `xs` model as `transformers.LlamaForCausalLM` under torch AdamW, against our
    `train_step`, on identical padded batches; "step_ratio" is torch ms/step / ours.
(b) Useful tokens: ours on packed rows against torch with the usual dynamic-padding collator (each
    random batch of 32 padded to its own longest example), at similar tokens per step; "ratio" is
    our non-padding tokens per second / torch's (goal >= 2).
(c) Both again with our step data-parallel over the machine's cores (one XLA CPU device per core, the
    batch split between them, `scaling.trainer.parallel`). "dp_step_ratio" and "dp_ratio" are (a) and
    (b) with that step (each device its own rows under `shard_map`, the attention kernel included).
Set SCALING_FUSED_ATTENTION=0 to measure our side with XLA's blocked attention instead of the kernel.
Steps are timed in alternating rounds (ours, torch, ours, ...) and the median round counts, so a
burst of load on a shared machine hits both sides alike. Last line: a JSON object.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from scaling.trainer.batches import TokenArrays, sequence_length, token_arrays
from scaling.trainer.config import ModelConfig, TrainConfig, preset
from scaling.trainer.model import init_model
from scaling.trainer.packing import pack, packing_efficiency
from scaling.trainer.parallel import data_mesh, data_parallel_train_step, replicate, shard_batch
from scaling.tasks import tokenizer
from scaling.tasks.mixture import training_pool
from scaling.trainer.attention import span_bucket
from scaling.trainer.train import batch_indices, bound_step, optimizer_for

BATCH = 32  # sequences per torch step, and per step of ours at equal shapes
ROW_LENGTH = 256  # tokens per packed row; the longest example of the mixture needs 182
ROUNDS, STEPS_PER_ROUND, WARMUP = 3, 15, 3  # 45 timed steps per side and setting
FIELDS = ("inputs", "targets", "loss_mask", "positions", "segments")


def torch_model(cfg: ModelConfig) -> LlamaForCausalLM:
    """Our architecture in transformers: RMSNorm, rotary, SwiGLU, grouped-query attention, no biases."""
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_embeddings, rms_norm_eps=1e-6,
        max_position_embeddings=max(cfg.max_len, ROW_LENGTH), attention_bias=False, mlp_bias=False, hidden_act="silu",
    ))


def torch_optimizer(model: torch.nn.Module, train_cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW as ours: betas 0.9/0.95, decoupled decay on matrices only (not norms)."""
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    vectors = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": matrices, "weight_decay": train_cfg.weight_decay}, {"params": vectors, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=train_cfg.lr, betas=(0.9, 0.95), eps=1e-8)


def torch_step(model: LlamaForCausalLM, optimizer: torch.optim.AdamW, batch: dict) -> torch.Tensor:
    """Our loss (completion tokens only, targets pre-shifted), backward, clip at 1.0, AdamW."""
    logits_BxTxV = model(input_ids=batch["inputs"], attention_mask=batch["segments"] > 0).logits
    losses = torch.nn.functional.cross_entropy(logits_BxTxV.flatten(0, 1).float(), batch["targets"].flatten(), reduction="none")
    weights = batch["loss_mask"].flatten()
    loss = (losses * weights).sum() / weights.sum().clamp(min=1.0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss.detach()


class Ours:
    """The training loop's own step: static arguments bound once, attention reaching as far as the rows'
    longest example needs (see scaling.trainer.train.bound_step)."""

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, arrays: TokenArrays):
        graphdef, params = init_model(model_cfg, seed=0)
        optimizer, self.lr = optimizer_for(train_cfg), train_cfg.lr
        self.step = bound_step(graphdef, optimizer, span_bucket(arrays.span, arrays.inputs.shape[1]))
        self.state = (params, optimizer.init(params))

    def run(self, batches: list[dict]) -> None:
        metrics = None
        for batch in batches:
            self.state, metrics = self.step(self.state, batch, self.lr)
        jax.block_until_ready(metrics)  # the one sync point: steps dispatch asynchronously


class OursDataParallel:
    """The same step with the batch split across one CPU device per core and the state replicated."""

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig):
        graphdef, params = init_model(model_cfg, seed=0)
        self.graphdef, self.optimizer, self.lr = graphdef, optimizer_for(train_cfg), train_cfg.lr
        self.mesh = data_mesh()
        self.state = replicate((params, self.optimizer.init(params)), self.mesh)

    def shard(self, batches: list[dict]) -> list[dict]:
        return [shard_batch(batch, self.mesh) for batch in batches]

    def run(self, batches: list[dict]) -> None:
        metrics = None
        for batch in batches:
            self.state, metrics = data_parallel_train_step(self.state, batch, self.graphdef, self.optimizer, self.lr, self.mesh)
        jax.block_until_ready(metrics)


class Torch:
    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig):
        self.model = torch_model(model_cfg)
        self.optimizer = torch_optimizer(self.model, train_cfg)

    def run(self, batches: list[dict]) -> None:
        for batch in batches:
            torch_step(self.model, self.optimizer, batch)


def to_jax(batch: dict) -> dict:
    return {name: jax.device_put(value) for name, value in batch.items()}


def to_torch(batch: dict) -> dict:
    """Int64 token ids, as a torch collator gives them (cross-entropy needs int64 targets)."""
    widen = lambda v: v.astype(np.int64) if v.dtype == np.int32 else np.ascontiguousarray(v)  # noqa: E731
    return {name: torch.from_numpy(widen(value)) for name, value in batch.items()}


def time_side_by_side(ours: Ours, ours_batches: list[dict], theirs: Torch, their_batches: list[dict]) -> tuple[float, float]:
    """Seconds per step of each, the median over alternating rounds, after a warm-up (ours compiles)."""
    ours.run(ours_batches[:WARMUP])
    theirs.run(their_batches[:WARMUP])
    ours_times, their_times = [], []
    for r in range(ROUNDS):
        chunk = slice(WARMUP + r * STEPS_PER_ROUND, WARMUP + (r + 1) * STEPS_PER_ROUND)
        for side, batches, times in ((ours, ours_batches, ours_times), (theirs, their_batches, their_times)):
            started = time.perf_counter()
            side.run(batches[chunk])
            times.append((time.perf_counter() - started) / STEPS_PER_ROUND)
    return float(np.median(ours_times)), float(np.median(their_times))


def dynamic_padding_batches(data: TokenArrays, n: int) -> list[dict]:
    """Random batches of BATCH examples, each cut to its own longest example (pad-to-longest collator)."""
    order = np.random.default_rng(0).permutation(len(data))
    batches = []
    for step in range(n):
        batch = data.take(order[np.arange(step * BATCH, (step + 1) * BATCH) % len(data)])
        longest = int((batch["segments"] > 0).sum(axis=1).max())
        batches.append({name: value[:, :longest] for name, value in batch.items()})
    return batches


def packed_batches(packed: TokenArrays, rows: int, n: int) -> list[dict]:
    """Random batches of `rows` packed rows."""
    order = np.random.default_rng(0).permutation(len(packed))
    return [packed.take(order[np.arange(step * rows, (step + 1) * rows) % len(packed)]) for step in range(n)]


def useful(batches: list[dict]) -> tuple[float, float, float]:
    """Mean non-padding tokens, loss-bearing tokens and total tokens per timed step."""
    timed = batches[WARMUP:]
    mean = lambda count: round(float(np.mean([count(b) for b in timed])), 1)  # noqa: E731
    return mean(lambda b: (b["segments"] > 0).sum()), mean(lambda b: b["loss_mask"].sum()), mean(lambda b: b["segments"].size)


def main() -> None:
    pool = training_pool(("add", "reverse", "word", "sort"), 4, 4000, seed=0)
    length = sequence_length(pool)
    model_cfg = preset("xs", tokenizer.VOCAB_SIZE, max(length, ROW_LENGTH))
    train_cfg = TrainConfig(budgets=(1,), batch_size=BATCH)
    n_steps = WARMUP + ROUNDS * STEPS_PER_ROUND
    print(f"model xs: {model_cfg}\ntorch {torch.__version__} threads={torch.get_num_threads()}, jax {jax.__version__} "
          f"on {jax.devices()[0].platform}; {len(pool)} examples, padded length {length}")

    # (a) Identical padded batches, fixed shape BATCH x length.
    data = token_arrays(pool, length)
    padded = [data.take(batch_indices(len(data), BATCH, step, 0)) for step in range(n_steps)]
    ours_a, torch_a = time_side_by_side(Ours(model_cfg, train_cfg, data), [to_jax(b) for b in padded],
                                        Torch(model_cfg, train_cfg), [to_torch(b) for b in padded])

    # (b) Useful tokens per second: our packed rows against torch's dynamic padding, similar tokens per step.
    dynamic = dynamic_padding_batches(data, n_steps)
    packed = pack(pool, ROW_LENGTH)
    rows = round(useful(dynamic)[2] / ROW_LENGTH)
    packed_steps = packed_batches(packed, rows, n_steps)
    ours_b, torch_b = time_side_by_side(Ours(model_cfg, train_cfg, packed), [to_jax(b) for b in packed_steps],
                                        Torch(model_cfg, train_cfg), [to_torch(b) for b in dynamic])
    (ours_real, ours_loss, ours_total), (torch_real, torch_loss, torch_total) = useful(packed_steps), useful(dynamic)

    # (c) (a) and (b) again with our step split across the cores (packed rows a multiple of the devices).
    devices = jax.device_count()
    parallel = OursDataParallel(model_cfg, train_cfg)
    dp_a, torch_dp_a = time_side_by_side(parallel, parallel.shard(padded), Torch(model_cfg, train_cfg), [to_torch(b) for b in padded])
    dp_rows = devices * max(1, round(useful(dynamic)[2] / ROW_LENGTH / devices))
    dp_steps = packed_batches(packed, dp_rows, n_steps)
    parallel = OursDataParallel(model_cfg, train_cfg)
    dp_b, torch_dp_b = time_side_by_side(parallel, parallel.shard(dp_steps), Torch(model_cfg, train_cfg), [to_torch(b) for b in dynamic])
    dp_real = useful(dp_steps)[0]

    result = {
        "benchmark": "train_vs_torch",
        "ratio": round((ours_real / ours_b) / (torch_real / torch_b), 3),
        "step_ratio": round(torch_a / ours_a, 3),
        "loss_token_ratio": round((ours_loss / ours_b) / (torch_loss / torch_b), 3),
        "equal_shapes": {"batch": BATCH, "length": length, "ours_ms": round(ours_a * 1e3, 2), "torch_ms": round(torch_a * 1e3, 2)},
        "useful_tokens": {
            "ours": {"rows": rows, "row_length": ROW_LENGTH, "ms": round(ours_b * 1e3, 2), "tokens_per_step": ours_total,
                     "real_per_step": ours_real, "loss_per_step": ours_loss, "real_tok_s": round(ours_real / ours_b),
                     "loss_tok_s": round(ours_loss / ours_b), "pool_efficiency": round(packing_efficiency(packed), 4)},
            "torch": {"batch": BATCH, "ms": round(torch_b * 1e3, 2), "tokens_per_step": torch_total,
                      "real_per_step": torch_real, "loss_per_step": torch_loss, "real_tok_s": round(torch_real / torch_b),
                      "loss_tok_s": round(torch_loss / torch_b), "efficiency": round(torch_real / torch_total, 4)},
        },
        "data_parallel": {"devices": devices, "rows": dp_rows, "equal_shapes_ms": round(dp_a * 1e3, 2),
                          "torch_ms": round(torch_dp_a * 1e3, 2), "packed_ms": round(dp_b * 1e3, 2),
                          "real_tok_s": round(dp_real / dp_b), "torch_real_tok_s": round(torch_real / torch_dp_b)},
        "dp_step_ratio": round(torch_dp_a / dp_a, 3),
        "dp_ratio": round((dp_real / dp_b) / (torch_real / torch_dp_b), 3),
        "steps_timed": ROUNDS * STEPS_PER_ROUND,
    }
    u = result["useful_tokens"]
    print(f"\n(a) equal shapes, {BATCH} x {length} padded rows")
    print(f"    {'':<28}{'ms/step':>10}")
    print(f"    {'ours (jax.jit train_step)':<28}{ours_a * 1e3:>10.2f}")
    print(f"    {'torch LlamaForCausalLM':<28}{torch_a * 1e3:>10.2f}")
    print(f"    step_ratio (torch / ours) = {result['step_ratio']:.2f}")
    print(f"\n(b) useful tokens per second on the SFT mixture")
    header = f"    {'':<34}{'ms/step':>9}{'tokens/step':>13}{'real/step':>11}{'real tok/s':>12}{'loss tok/s':>12}{'efficiency':>12}"
    print(header)
    for name, side, efficiency in ((f"ours packed {rows} x {ROW_LENGTH}", u["ours"], ours_real / ours_total),
                                   (f"torch dynamic padding, batch {BATCH}", u["torch"], torch_real / torch_total)):
        print(f"    {name:<34}{side['ms']:>9.2f}{side['tokens_per_step']:>13.0f}{side['real_per_step']:>11.0f}"
              f"{side['real_tok_s']:>12,}{side['loss_tok_s']:>12,}{efficiency:>12.3f}")
    print(f"    ratio (ours / torch, real tokens/s) = {result['ratio']:.2f}   (loss tokens/s: {result['loss_token_ratio']:.2f})")
    d = result["data_parallel"]
    print(f"\n(c) ours data-parallel over {devices} CPU devices (one per core)")
    print(f"    equal shapes: ours {d['equal_shapes_ms']:.2f} ms, torch {d['torch_ms']:.2f} ms: dp_step_ratio = {result['dp_step_ratio']:.2f}")
    print(f"    packed {dp_rows} x {ROW_LENGTH}: ours {d['real_tok_s']:,} real tok/s, torch {d['torch_real_tok_s']:,}: "
          f"dp_ratio = {result['dp_ratio']:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    # One CPU device per core for (c), set before jax starts its backend (lazily, at first use); (a) and (b) run
    # on the first. Here, not at import: bench_real_base imports this module's helpers.
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={os.cpu_count()}"
    main()
