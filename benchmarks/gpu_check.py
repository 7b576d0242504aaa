"""bf16 training throughput and model FLOPs utilization (MFU) of a GPT-2-small-sized decoder, on packed SFT rows.

The model is d_model 768, 12 layers, 12 heads, SwiGLU width 2048 over the task vocabulary: 85M
non-embedding parameters, the body of GPT-2 small (its "125M" counts a 50k-token embedding; ours
holds 88 tokens). Steps are `scaling.trainer.train.train_step` itself, on batches already on the device.

Precision: `ModelConfig(compute_dtype="bfloat16")` makes every layer compute in bf16 (rotary keeps
its input's dtype); RMSNorm normalizes in f32 and the loss's log-softmax is f32. Two precisions:
  bf16   the params tree cast to bfloat16 with jax.tree.map, so AdamW's moments are bf16 too;
  mixed  float32 params and optimizer state, bf16 compute (each kernel is cast where it is used);
each with the model's two attention choices on a GPU (`SCALING_GPU_ATTENTION`): cuDNN's flash attention
(the default; `_cudnn` variants) and XLA's dense form. Before them, one attention layer alone, four
ways, timed and checked against float32 (`attention_variants`).

MFU = ModelConfig.train_flops_per_token(T) x tokens/s / the device's dense bf16 peak (PEAK_BF16, by
device_kind; "unknown" elsewhere). Tokens are all B x T positions a step computes; the real
(non-padding) share is reported beside them. Last line: a JSON object.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling.trainer.config import ModelConfig, TrainConfig
from scaling.trainer.model import init_model
from scaling.trainer.packing import pack, packing_efficiency
from scaling.tasks import tokenizer
from scaling.tasks.mixture import training_pool
from scaling.trainer.train import optimizer_for, train_step

# Dense (no sparsity) bf16 peak FLOP/s by a substring of jax's device_kind; first match wins, so the
# more specific names come first. Vendor datasheet figures (SXM parts unless named).
PEAK_BF16 = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),  # also matches GH200
    ("H800", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
)

# (name, params dtype, SCALING_GPU_ATTENTION): the attention choice matters only on a GPU, in half precision.
VARIANTS = (("bf16", jnp.bfloat16, "xla"), ("mixed", jnp.float32, "xla"), ("bf16_cudnn", jnp.bfloat16, "cudnn"),
            ("mixed_cudnn", jnp.float32, "cudnn"))

# (d_model, n_layers, n_heads, d_ff, length, batch, timed steps, rounds, pool examples)
FULL = (768, 12, 12, 2048, 1024, 32, 20, 3, 8000)
SMOKE = (32, 2, 2, 80, 128, 4, 3, 1, 400)


def peak_bf16(device_kind: str) -> float | None:
    for name, flops in PEAK_BF16:
        if name.lower() in device_kind.lower():
            return flops
    return None


def bf16_model(cfg: ModelConfig, params_dtype) -> tuple[nnx.GraphDef, nnx.State]:
    """The model with bf16 compute in every layer, its params in params_dtype."""
    graphdef, params = init_model(dataclasses.replace(cfg, compute_dtype="bfloat16"), seed=0)
    return graphdef, jax.tree.map(lambda p: p.astype(params_dtype), params)


def matmul_dtypes(graphdef, state, batch, optimizer) -> dict[str, int]:
    """Matrix products of the lowered step by operand dtypes (a check that the bf16 casts took)."""
    text = train_step.lower(state, batch, graphdef=graphdef, optimizer=optimizer, lr=3e-4).as_text()
    counts: collections.Counter = collections.Counter()
    for line in text.splitlines():
        if "stablehlo.dot_general" in line:
            operands = line.rsplit(" : (", 1)[1].split(") -> ")[0]
            counts[" x ".join(re.findall(r"tensor<(?:[0-9?]+x)*([a-z][a-z0-9]*)>", operands))] += 1
    return dict(counts)


def measure(cfg: ModelConfig, params_dtype, batches: list[dict], steps: int, rounds: int) -> dict:
    """Seconds per step (best of `rounds` runs of `steps` steps, after two compiling/warming steps)."""
    graphdef, params = bf16_model(cfg, params_dtype)
    optimizer = optimizer_for(TrainConfig(budgets=(1,)))
    state = (params, optimizer.init(params))
    dtypes = matmul_dtypes(graphdef, state, batches[0], optimizer)
    started = time.perf_counter()
    for i in range(2):
        state, metrics = train_step(state, batches[i % len(batches)], graphdef=graphdef, optimizer=optimizer, lr=3e-4)
    warm_loss = float(metrics["loss"])  # also waits for the warm-up
    warmup_s = time.perf_counter() - started
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(steps):
            state, metrics = train_step(state, batches[i % len(batches)], graphdef=graphdef, optimizer=optimizer, lr=3e-4)
        jax.block_until_ready(metrics)  # one sync per round: steps queue back to back on the device
        times.append((time.perf_counter() - started) / steps)
    last_loss = float(metrics["loss"])
    assert np.isfinite(last_loss), f"loss became {last_loss}"
    return {"step_s": min(times), "rounds_step_s": times, "warmup_s": warmup_s, "matmul_operand_dtypes": dtypes,
            "loss_after_warmup": warm_loss, "loss_last": last_loss}


def attention_variants(batch: int, length: int, heads: int, head_dim: int, rounds: int) -> dict:
    """Forward and backward of one attention layer on packed causal rows (3 examples and a padded tail a row),
    bf16, ms; and each form's relative L2 error (output and q/k/v gradients, the worst) against float32 XLA:
      xla_dense     jax's XLA form, every score computed then masked (the model's form on other accelerators,
                    in float32, or with SCALING_GPU_ATTENTION=xla);
      cudnn_mask    cuDNN's fused kernel given the whole mask (causal included) as a mask;
      cudnn_causal  `attention.cudnn_attention`: causal as cuDNN's mask type (skips blocks above the diagonal),
                    segments as the mask (the model's default on a GPU in half precision);
      blocked       our blocked XLA form (the CPU fallback where the fused kernel cannot be built)."""
    from scaling.trainer.attention import attention_mask, blocked_attention, cudnn_attention

    keys = jax.random.split(jax.random.key(0), 4)
    q, k, v = (jax.random.normal(key, (batch, length, heads, head_dim), jnp.float32) for key in keys[:3])
    cotangent = jax.random.normal(keys[3], (batch, length, heads, head_dim), jnp.float32)
    # Segment ids 1, 2, 3 over 30%, 25%, 30% of each row, then 15% padding (id 0).
    bounds = np.cumsum([0.30, 0.25, 0.30]) * length
    segments = jnp.asarray(np.where(np.arange(length) < bounds[0], 1, np.where(
        np.arange(length) < bounds[1], 2, np.where(np.arange(length) < bounds[2], 3, 0))), jnp.int32)[None].repeat(batch, 0)
    mask = attention_mask(segments)
    forms = {
        "xla_dense": lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla"),
        "cudnn_mask": lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn"),
        "cudnn_causal": lambda q, k, v: cudnn_attention(q, k, v, segments),
        "blocked": lambda q, k, v: blocked_attention(q, k, v, mask, span=length),
    }

    def output_and_grads(form, dtype):
        def loss(q, k, v):
            out = form(q, k, v)
            return (out.astype(jnp.float32) * cotangent).sum(), out.astype(jnp.float32)
        return jax.jit(lambda q, k, v: jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(
            *(x.astype(dtype) for x in (q, k, v))))

    reference_grads, reference_out = output_and_grads(forms["xla_dense"], jnp.float32)(q, k, v)
    reference = (reference_out, *reference_grads)
    timings, errors = {}, {}
    for name, form in forms.items():
        step = output_and_grads(form, jnp.bfloat16)
        try:
            grads, out = jax.block_until_ready(step(q, k, v))
        except Exception as error:  # noqa: BLE001 - an unsupported form is a result, not a failure of the check
            timings[name] = f"unavailable: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
            continue
        # Padding positions' outputs are never read by the loss; compare the real positions only.
        real = (segments != 0)[:, :, None, None]
        errors[name] = max(float(jnp.linalg.norm(jnp.where(real, a.astype(jnp.float32) - b, 0))
                                 / jnp.linalg.norm(jnp.where(real, b, 0)))
                           for a, b in zip((out, *grads), reference))
        times = []
        for _ in range(max(3, rounds * 3)):
            started = time.perf_counter()
            jax.block_until_ready(step(q, k, v))
            times.append(time.perf_counter() - started)
        timings[name] = round(1e3 * min(times), 3)
    return {"ms": timings, "relative_error": {name: round(e, 5) for name, e in errors.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, few steps: checks the script end to end on CPU")
    args = parser.parse_args()
    d_model, n_layers, n_heads, d_ff, length, batch, steps, rounds, n_pool = SMOKE if args.smoke else FULL

    cfg = ModelConfig(vocab_size=tokenizer.VOCAB_SIZE, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                      n_kv_heads=n_heads, d_ff=d_ff, max_len=length)
    arrays = pack(training_pool(("add", "reverse"), 2, n_pool, seed=0), length)
    n_batches = max(1, min(8, len(arrays) // batch))
    rows = np.arange(n_batches * batch) % len(arrays)
    batches = [jax.device_put(arrays.take(rows[i * batch:(i + 1) * batch])) for i in range(n_batches)]

    device = jax.devices()[0]
    peak = peak_bf16(device.device_kind)
    flops_per_token = cfg.train_flops_per_token(length)
    tokens_per_step = batch * length
    real_share = packing_efficiency(arrays)
    print(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}; "
          f"dense bf16 peak {'unknown' if peak is None else f'{peak / 1e12:.0f} TFLOP/s'}")
    print(f"model: d_model {d_model}, {n_layers} layers, {n_heads} heads, d_ff {d_ff}, vocab {cfg.vocab_size}: "
          f"{cfg.non_embedding_params / 1e6:.2f}M non-embedding params, {cfg.total_params / 1e6:.2f}M in all")
    print(f"batch {batch} x {length} packed tokens ({real_share:.1%} real), {n_batches} distinct batches; "
          f"{flops_per_token:.4g} FLOP per token (6N + 6LTD)")

    attention = attention_variants(batch, length, n_heads, d_model // n_heads, rounds)
    print(f"attention fwd+bwd, one layer, bf16: {attention}")

    variants = {}
    for name, params_dtype, gpu_attention in VARIANTS:
        # The model reads SCALING_GPU_ATTENTION when the step is traced: a fresh trace for each variant.
        os.environ["SCALING_GPU_ATTENTION"] = gpu_attention
        jax.clear_caches()
        try:
            row = measure(cfg, params_dtype, batches, steps, rounds)
        except Exception as error:  # noqa: BLE001 - a variant this device cannot run is a result
            variants[name] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
            print(f"{name:>10}: unavailable: {variants[name]['error']}")
            continue
        tokens_per_s = tokens_per_step / row["step_s"]
        achieved = flops_per_token * tokens_per_s
        row.update({
            "tokens_per_s": tokens_per_s,
            "real_tokens_per_s": tokens_per_s * real_share,
            "achieved_tflops": achieved / 1e12,
            "mfu": "unknown" if peak is None else achieved / peak,
        })
        variants[name] = row
        mfu = "unknown" if peak is None else f"{row['mfu']:.1%}"
        print(f"{name:>10}: {row['step_s'] * 1e3:8.2f} ms/step  {tokens_per_s:12,.0f} tokens/s  "
              f"{row['achieved_tflops']:8.2f} TFLOP/s  MFU {mfu}  (first steps {row['warmup_s']:.1f} s; "
              f"loss {row['loss_after_warmup']:.3f} -> {row['loss_last']:.3f}; matmul operands {row['matmul_operand_dtypes']})")

    # The headline is what the model does by default: cuDNN's attention in bf16, where this device ran it.
    headline = "bf16_cudnn" if "step_s" in variants["bf16_cudnn"] else "bf16"
    print(json.dumps({
        "check": "train_bf16",
        "attention": attention,
        "smoke": args.smoke,
        "device_kind": device.device_kind,
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "peak_bf16_flops": peak if peak is not None else "unknown",
        "headline": headline,
        "tokens_per_s": round(variants[headline]["tokens_per_s"], 1),
        "mfu": round(variants[headline]["mfu"], 4) if peak is not None else "unknown",
        "non_embedding_params": cfg.non_embedding_params,
        "total_params": cfg.total_params,
        "batch": batch,
        "length": length,
        "real_token_share": round(real_share, 4),
        "flops_per_token": flops_per_token,
        "flops_formula": "ModelConfig.train_flops_per_token(length) = 6N + 6*L*T*D (N non-embedding)",
        "variants": {name: {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
                     for name, row in variants.items()},
    }))


if __name__ == "__main__":
    main()
