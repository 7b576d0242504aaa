"""Steps-axis compute: one warmup-stable-decay run with an annealed branch per budget versus a fresh run
per budget (wsd, and cosine for reference), for 7 doubling budgets on the `tiny` preset.

Steps are counted twice, by `TrainConfig.total_steps` and by the `on_step` callback, and must agree.
Every method is timed over its whole `train` generator (evaluation runs after the clock stops) after a
shared compiling warm-up. Each budget's held-out loss (teacher-forced, completion tokens of an `id`
split) is shown side by side: wsd branches and wsd separate runs pass through the same states and
must agree exactly; cosine runs follow another schedule and differ.
Last line: a JSON object whose "ratio" is separate-run steps / branch steps (above 1: branches are cheaper).
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np

from scaling.trainer.batches import sequence_length, token_arrays
from scaling.trainer.config import TrainConfig, preset
from scaling.tasks import tokenizer
from scaling.tasks.mixture import evaluation_split, training_pool
from scaling.trainer.train import masked_loss, train

FAMILIES = ("add", "reverse")
BUDGETS = tuple(8 * 2**i for i in range(7))  # 8 ... 512
BATCH_SIZE = 16
WARMUP = 8  # the smallest budget, so that every budget leaves warmup
EVAL_N = 256
GOAL = 1.6
METHODS = {  # name: (schedule, steps_axis)
    "wsd branches": ("wsd", "branches"),
    "wsd separate": ("wsd", "separate"),
    "cosine separate": ("cosine", "separate"),
}

held_out_loss = jax.jit(masked_loss, static_argnames=("graphdef",))


def run(model_cfg, train_cfg: TrainConfig, data) -> dict:
    """Train through every budget; the steps counted by `on_step`, the wall time, and the params per budget."""
    reported = []
    yielded = {}
    started = time.perf_counter()
    for budget, graphdef, params in train(model_cfg, train_cfg, data, on_step=lambda n, loss: reported.append(n)):
        yielded[budget] = params
    jax.block_until_ready(yielded)
    seconds = time.perf_counter() - started
    assert reported == list(range(1, len(reported) + 1)), "on_step must count every step once, in order"
    return {"graphdef": graphdef, "params": yielded, "steps_run": len(reported), "seconds": seconds}


def main() -> None:
    pool = training_pool(FAMILIES, 2, 2000, seed=0)
    held_out = evaluation_split("id", FAMILIES, (), EVAL_N, seed=0)
    length = sequence_length(pool + held_out)
    data = token_arrays(pool, length)
    eval_batch = token_arrays(held_out, length).take(np.arange(EVAL_N))  # one batch: its mean is the split's
    model_cfg = preset("tiny", tokenizer.VOCAB_SIZE, length)
    base = TrainConfig(budgets=BUDGETS, batch_size=BATCH_SIZE, warmup_steps=WARMUP)

    # Every method shares one compiled step (the schedule factor is traced); compile it before any clock runs.
    list(train(model_cfg, base.replace(budgets=(2,)), data))

    results = {}
    for name, (schedule, steps_axis) in METHODS.items():
        cfg = base.replace(schedule=schedule, steps_axis=steps_axis)
        result = run(model_cfg, cfg, data)
        assert result["steps_run"] == cfg.total_steps, f"{name}: ran {result['steps_run']}, config says {cfg.total_steps}"
        result["total_steps"] = cfg.total_steps
        result["losses"] = {
            b: float(held_out_loss(p, eval_batch, graphdef=result["graphdef"])[0]) for b, p in result["params"].items()
        }
        results[name] = result

    branches, separate, cosine = (results[name] for name in METHODS)
    gaps = [abs(branches["losses"][b] - separate["losses"][b]) for b in BUDGETS]
    step_ratio = separate["total_steps"] / branches["total_steps"]
    wall_ratio = separate["seconds"] / branches["seconds"]

    print(f"tiny ({model_cfg.total_params} params), batch {BATCH_SIZE}x{length}, warmup {WARMUP}, "
          f"budgets {list(BUDGETS)}, on {jax.devices()[0].device_kind}")
    print(f"held-out loss ({EVAL_N} `id` examples, teacher-forced, completion tokens):")
    print(f"{'budget':>7} {'wsd branches':>13} {'wsd separate':>13} {'|gap|':>9} {'cosine separate':>16}")
    for b, gap in zip(BUDGETS, gaps):
        print(f"{b:7d} {branches['losses'][b]:13.5f} {separate['losses'][b]:13.5f} {gap:9.1e} {cosine['losses'][b]:16.5f}")
    print(f"{'method':>16} {'total_steps':>12} {'steps run':>10} {'wall s':>8} {'ms/step':>8}")
    for name, r in results.items():
        ms_per_step = r["seconds"] * 1e3 / r["steps_run"]
        print(f"{name:>16} {r['total_steps']:12d} {r['steps_run']:10d} {r['seconds']:8.2f} {ms_per_step:8.2f}")
    print(f"ratio separate / branches: steps {step_ratio:.3f} (goal >= {GOAL}), wall time {wall_ratio:.3f}")
    print(json.dumps({
        "benchmark": "steps_axis",
        "ratio": round(step_ratio, 3),
        "goal": GOAL,
        "wall_ratio": round(wall_ratio, 3),
        "budgets": list(BUDGETS),
        "steps": {name: r["total_steps"] for name, r in results.items()},
        "steps_run": {name: r["steps_run"] for name, r in results.items()},
        "wall_s": {name: round(r["seconds"], 3) for name, r in results.items()},
        "held_out_loss": {name: [round(r["losses"][b], 6) for b in BUDGETS] for name, r in results.items()},
        "max_branch_separate_loss_gap": max(gaps),
        "batch": BATCH_SIZE,
        "length": length,
        "timing": "one run per method after a shared compiling warm-up; evaluation outside the clock",
        "device_kind": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
    }))


if __name__ == "__main__":
    main()
