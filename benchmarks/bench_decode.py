"""Greedy generation time: the key/value-cached `generate_greedy_cached` versus the full-forward
`generate_greedy_full` (tests/greedy_reference.py) that reruns the whole BxT buffer for every new token, on
identical models and prompts.

Both implement one contract and run every row every step until all rows are done, so their work is equal
only if they run equally many steps: the end-of-sequence embedding is zeroed (its logit is then exactly 0
while others spread around 0, so it practically never wins the argmax), and the run checks that both
produced the same tokens with no end of sequence, i.e. both ran all max_new steps.
Last line: a JSON object whose "ratio" is full-forward time / cached time (above 1: caching is faster).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from scaling.trainer.batches import prompt_arrays, sequence_length
from scaling.trainer.config import preset
from scaling.trainer.decode import generate_greedy_cached
from scaling.trainer.model import init_model
from scaling.tasks import tokenizer
from scaling.tasks.mixture import training_pool

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from greedy_reference import generate_greedy_full  # noqa: E402  (the tests' reference decoder)

BATCH = 64
REPS = 3
GOAL = 5.0


def _model_without_eos(length: int):
    """The xs preset at random init, with end of sequence made (practically) never the argmax."""
    graphdef, params = init_model(preset("xs", tokenizer.VOCAB_SIZE, length), seed=0)
    model = nnx.merge(graphdef, params)
    assert model.lm_head is None, "xs ties its embeddings; zeroing the output row needs the tied case"
    model.embed.embedding[...] = model.embed.embedding[...].at[tokenizer.EOS].set(0.0)
    return nnx.split(model)


def _seconds(generate, params, tokens, lengths, graphdef, max_new) -> tuple[list[float], np.ndarray]:
    """Wall times of REPS calls after a compiling warm-up call, and the generated buffer."""
    out = jax.block_until_ready(generate(params, tokens, lengths, graphdef=graphdef, max_new=max_new))
    times = []
    for _ in range(REPS):
        started = time.perf_counter()
        jax.block_until_ready(generate(params, tokens, lengths, graphdef=graphdef, max_new=max_new))
        times.append(time.perf_counter() - started)
    return times, np.asarray(out)


def compare(examples, length: int, max_new: int) -> dict:
    """Time both generators on one BATCHxlength prompt buffer, max_new steps each."""
    graphdef, params = _model_without_eos(length)
    tokens, lengths = prompt_arrays(examples, length)
    cached, cached_out = _seconds(generate_greedy_cached, params, tokens, lengths, graphdef, max_new)
    full, full_out = _seconds(generate_greedy_full, params, tokens, lengths, graphdef, max_new)
    assert (cached_out == full_out).all(), "cached and full-forward generation disagree"
    assert max_new <= length - lengths.min(), "max_new must leave the shortest prompt room to run every step"
    generated = np.arange(length)[None, :] >= lengths[:, None]
    assert not (cached_out[generated] == tokenizer.EOS).any(), "an end of sequence cut the loop short"
    new_tokens = int(np.minimum(lengths + max_new, length).sum() - lengths.sum())
    cached_s, full_s = min(cached), min(full)
    return {
        "T": length,
        "max_new": max_new,
        "new_tokens": new_tokens,
        "cached_s": round(cached_s, 4),
        "full_s": round(full_s, 4),
        "ratio": round(full_s / cached_s, 2),
        "cached_runs_s": [round(t, 4) for t in cached],
        "full_runs_s": [round(t, 4) for t in full],
    }


def _report(name: str, row: dict) -> None:
    print(
        f"{name:>8}: T={row['T']:3d} max_new={row['max_new']:3d} ({row['new_tokens']} tokens)   "
        f"cached {row['cached_s'] * 1e3:8.1f} ms   full forward {row['full_s'] * 1e3:8.1f} ms   "
        f"ratio {row['ratio']:.2f}"
    )


def main() -> None:
    pool = training_pool(("add", "reverse"), 2, 200, seed=0)
    examples, length = pool[:BATCH], sequence_length(pool)
    _, lengths = prompt_arrays(examples, length)
    rows = {"natural": compare(examples, length, max_new=int(length - lengths.min()))}
    _report("natural", rows["natural"])
    headline = "natural"
    if rows["natural"]["ratio"] < GOAL:
        # Caching saves a factor that grows with T; a longer context shows where it pays off.
        rows["long"] = compare(examples, 256, max_new=200)
        _report("long", rows["long"])
        headline = "long"
    print(json.dumps({
        "benchmark": "decode",
        "ratio": rows[headline]["ratio"],
        "headline": headline,
        "cached_s": rows[headline]["cached_s"],
        "full_s": rows[headline]["full_s"],
        "batch": BATCH,
        "reps": REPS,
        "timing": "min of reps after a compiling warm-up",
        "backend": jax.default_backend(),
        "by_setting": rows,
    }))


if __name__ == "__main__":
    main()
