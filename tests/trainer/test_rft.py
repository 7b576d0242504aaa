"""Rejection-sampling fine-tuning after a real tiny SFT run: what is kept, that it is reproducible, that the
fine-tuning helps on the prompts it sampled, and that a resume mid-RFT is the uninterrupted run."""

import dataclasses

import jax
import numpy as np
import pytest

from scaling.tasks.grader import Grade, verify_example
from scaling.tasks.mixture import training_pool
from scaling.tasks.tokenizer import CHARACTERS
from scaling.trainer.batches import prompt_arrays, sequence_length, token_arrays
from scaling.trainer.config import ModelConfig, TrainConfig
from scaling.trainer.evaluate import answer_line_automaton, decode_budget, evaluate_split
from scaling.trainer.rft import RFTConfig, rejection_samples, rft_train, training_prompts
from scaling.trainer.sample import sample_cached
from scaling.trainer.train import Resume, Stopped, masked_loss, train

# `compare` answers yes or no: after 30 SFT steps the model answers about half its training prompts right, so a
# sample is often right and often wrong.
FAMILY, PROMPTS, SFT_STEPS = "compare", 32, 30


@pytest.fixture(scope="module")
def sft():
    """(model config, SFT params, graphdef, training prompts, row length) of a 30-step SFT run."""
    pool = training_pool((FAMILY,), 1, PROMPTS, seed=0)
    length = sequence_length(pool)
    cfg = ModelConfig(vocab_size=CHARACTERS.vocab_size, d_model=32, n_layers=2, n_heads=2, n_kv_heads=2, d_ff=64,
                      max_len=length + 16)
    sft_cfg = TrainConfig(budgets=(SFT_STEPS,), batch_size=16, lr=1e-2, warmup_steps=5, schedule="constant")
    [(_, graphdef, params)] = list(train(cfg, sft_cfg, token_arrays(pool, length)))
    return cfg, params, graphdef, pool, length


def test_kept_samples_are_exactly_the_distinct_ones_the_grader_verifies(sft):
    cfg, params, graphdef, pool, _ = sft
    # A low temperature, so that a prompt's right completions are often the same text.
    rft = RFTConfig(budgets=(0,), samples=8, temperature=0.2, sample_rows=64)  # 64 rows: one sampler call
    prompts = pool[:8]
    drawn = rejection_samples(cfg, rft, graphdef, params, prompts, CHARACTERS, verify_example)
    assert drawn.sampled == 64 and [len(c) for c in drawn.completions] == [8] * 8
    expected = []
    for example, completions in zip(prompts, drawn.completions):
        right = [text for text in completions if verify_example(example, text).answer_correct]
        expected += [(example.prompt, text) for text in dict.fromkeys(right)]  # distinct, first drawn first
    assert [(e.prompt, e.completion) for e in drawn.examples] == expected
    assert 0 < len(expected) < 64 and len(expected) < sum(
        verify_example(e, t).answer_correct for e, c in zip(prompts, drawn.completions) for t in c)  # duplicates dropped
    # The completions are the sampler's: its one call, keyed by (seed, 1), each row read up to end of sequence.
    rows = [example for example in prompts for _ in range(8)]
    span = max(len(CHARACTERS.prompt_ids(e)) for e in rows)
    max_new = decode_budget(max(len(CHARACTERS.completion_ids(e)) for e in prompts))
    tokens, lengths = prompt_arrays(rows, min(span + max_new, cfg.max_len), CHARACTERS)
    direct = sample_cached(params, tokens, lengths, graphdef, max_new, jax.random.fold_in(jax.random.key(0), 1), 0.2,
                           1.0, eos_id=CHARACTERS.eos_id, stop_VxS=answer_line_automaton(CHARACTERS), prompt_span=span)
    texts = []
    for row, end in enumerate(np.asarray(direct.lengths_B)):
        written = np.asarray(direct.tokens_BxT)[row, lengths[row]:end]
        texts.append(CHARACTERS.decode(written[:-1] if written[-1] == CHARACTERS.eos_id else written))
    assert [t for c in drawn.completions for t in c] == texts
    assert drawn.flops > 0 and not any(e.corrupted for e in drawn.examples)


def test_samples_are_reproducible_from_the_seed(sft):
    cfg, params, graphdef, pool, _ = sft
    rft = RFTConfig(budgets=(0,), samples=8, temperature=0.2, sample_rows=64)
    again = [rejection_samples(cfg, c, graphdef, params, pool[:8], CHARACTERS, verify_example)
             for c in (rft, rft, dataclasses.replace(rft, seed=1))]
    assert again[0] == again[1]
    assert again[0].completions != again[2].completions


def test_rft_raises_accuracy_on_its_training_prompts_and_the_kept_samples_likelihood(sft):
    cfg, params, graphdef, pool, length = sft
    rft = RFTConfig(budgets=(0, 60), samples=8, lr=3e-3, batch_size=16)
    yielded = {step: (g, p, tally) for step, g, p, tally in rft_train(cfg, rft, params, pool, CHARACTERS, verify_example)}
    assert list(yielded) == [0, 60]
    (g0, p0, before), (g1, p1, after) = yielded[0], yielded[60]
    assert before.kept == after.kept > 0 and before.sampled == after.sampled == 8 * PROMPTS and before.fine_tuned
    assert before.update_flops == 0 and after.update_flops > 0 and after.sampling_flops == before.sampling_flops > 0
    assert jax.tree.leaves(p0)[0] is jax.tree.leaves(params)[0]  # budget 0: the SFT model itself
    accuracy = [evaluate_split(g, p, pool, cfg.max_len, 64)["answer_acc"] for g, p in ((g0, p0), (g1, p1))]
    assert accuracy[1] > accuracy[0]  # measured: 0.47 -> 0.66 of the 32 prompts, greedy
    kept = rejection_samples(cfg, rft, graphdef, params, pool, CHARACTERS, verify_example).examples
    batch = token_arrays(list(kept), sequence_length(list(kept))).take(np.arange(len(kept)))
    losses = [float(masked_loss(p, batch, g)[0]) for g, p in ((g0, p0), (g1, p1))]
    assert losses[1] < 0.5 * losses[0]  # measured: 0.93 -> 0.33 nats per completion token


def test_a_resume_mid_rft_equals_the_uninterrupted_run(sft):
    cfg, params, _, pool, _ = sft
    rft = RFTConfig(budgets=(0, 8, 16), samples=2, prompts=16, lr=3e-3, batch_size=8, checkpoint_every=4)
    whole = {step: (jax.tree.leaves(p), tally) for step, _, p, tally in
             rft_train(cfg, rft, params, pool, CHARACTERS, verify_example)}
    saved, steps = [], iter(range(1000))
    with pytest.raises(Stopped):
        for _ in rft_train(cfg, rft, params, pool, CHARACTERS, verify_example,
                           on_checkpoint=lambda step, state, done: saved.append(Resume(step, state, done)),
                           should_stop=lambda: next(steps) == 10):  # asked after each step and budget 8: stops at step 10
            pass
    assert saved[-1].trunk_step == 10 and saved[-1].budgets_done == 1
    resumed = {step: (jax.tree.leaves(p), tally) for step, _, p, tally in
               rft_train(cfg, rft, params, pool, CHARACTERS, verify_example, resume=saved[-1])}
    assert list(resumed) == [16]  # budgets 0 and 8 were evaluated before the stop
    assert resumed[16][1] == whole[16][1]
    for a, b in zip(resumed[16][0], whole[16][0]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_with_nothing_kept_every_budget_is_the_sft_model(sft):
    cfg, params, _, pool, _ = sft
    rejects_all = lambda example, text: Grade(False, 0.0, False, 0)  # noqa: E731 a verifier nothing passes
    rft = RFTConfig(budgets=(0, 5), samples=8, temperature=0.2, sample_rows=64)
    yielded = list(rft_train(cfg, rft, params, pool[:8], CHARACTERS, rejects_all))
    assert [step for step, *_ in yielded] == [0, 5]
    assert all(p is params and not tally.fine_tuned and tally.update_flops == 0 for _, _, p, tally in yielded)


@pytest.mark.parametrize("change, named", [
    ({"budgets": ()}, "budgets must be strictly increasing"), ({"budgets": (5, 5)}, "budgets must be strictly increasing"),
    ({"samples": 0}, "samples must be >= 1"), ({"temperature": 0.0}, "temperature must be > 0"),
    ({"top_p": 1.5}, "top_p must lie in (0, 1]"), ({"lr": 0.0}, "lr must be > 0"),
    ({"schedule": "linear"}, "schedule must be one of"), ({"prompts": -1}, "prompts must be >= 0"),
])
def test_bad_settings_are_refused_by_name(change, named):
    with pytest.raises(ValueError, match=f"RFTConfig.{named}".replace("(", r"\(").replace(")", r"\)")):
        RFTConfig(**{"budgets": (0, 10), **change})


def test_more_prompts_than_the_pool_is_refused():
    pool = training_pool((FAMILY,), 1, 4, seed=0)
    with pytest.raises(ValueError, match="RFTConfig.prompts=5 is more than the 4 training prompts"):
        training_prompts(pool, RFTConfig(budgets=(0,), prompts=5))
