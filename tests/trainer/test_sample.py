import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling.tasks import tokenizer
from scaling.trainer.decode import generate_greedy_cached
from scaling.trainer.model import init_model
from scaling.trainer.sample import draw, nucleus, sample_cached, sequence_logprobs

T = 24
B = 8  # one buffer shape throughout, so the sampler compiles once per model


@pytest.fixture
def model(tiny_model_cfg):
    # Sharpen the random model's logits (its tied output embedding scaled up) so sampled text is not uniform noise.
    model = nnx.merge(*init_model(tiny_model_cfg, seed=0))
    model.embed.embedding[...] = model.embed.embedding[...] * 4.0
    return nnx.split(model)


def _prompts(cfg, seed, lengths=None):
    """Random left-aligned prompts in a zero-padded BxT buffer (lengths 1..T/2 unless given)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T // 2, B).astype(np.int32) if lengths is None else np.asarray(lengths, np.int32)
    tokens = rng.integers(2, cfg.vocab_size, (B, T)).astype(np.int32)
    tokens[np.arange(T)[None, :] >= lengths[:, None]] = tokenizer.PAD
    return tokens, lengths


def _sample(model, tokens, lengths, seed=0, temperature=1.0, top_p=1.0, max_new=T, **kwargs):
    graphdef, params = model
    return sample_cached(params, tokens, lengths, graphdef=graphdef, max_new=max_new, key=jax.random.key(seed),
                         temperature=temperature, top_p=top_p, **kwargs)


def _generated(sampled, lengths):
    """Where each row's sampled tokens are: after its prompt, before its final length."""
    at_BxT = np.arange(T)[None, :]
    return (at_BxT >= np.asarray(lengths)[:, None]) & (at_BxT < np.asarray(sampled.lengths_B)[:, None])


@pytest.mark.parametrize("temperature", [0.0, 1e-4])
def test_sampling_at_temperature_zero_or_near_it_is_greedy_decoding(model, tiny_model_cfg, temperature):
    graphdef, params = model
    tokens, lengths = _prompts(tiny_model_cfg, seed=0)
    greedy = np.asarray(generate_greedy_cached(params, tokens, lengths, graphdef=graphdef, max_new=T))
    sampled = _sample(model, tokens, lengths, temperature=temperature)
    np.testing.assert_array_equal(sampled.tokens_BxT, greedy)
    assert (greedy != tokens).any()


def test_greedy_log_probabilities_are_those_of_the_logits_at_temperature_one(model, tiny_model_cfg):
    graphdef, params = model
    tokens, lengths = _prompts(tiny_model_cfg, seed=1)
    sampled = _sample(model, tokens, lengths, temperature=0.0)
    forced = np.asarray(sequence_logprobs(params, sampled.tokens_BxT, graphdef=graphdef))
    mask = _generated(sampled, lengths)
    np.testing.assert_allclose(np.asarray(sampled.logprobs_BxT)[mask], forced[mask], atol=1e-5)
    assert (np.asarray(sampled.logprobs_BxT)[mask] < 0).any()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_log_probabilities_equal_a_teacher_forced_pass(model, tiny_model_cfg, temperature):
    graphdef, params = model
    tokens, lengths = _prompts(tiny_model_cfg, seed=2)
    sampled = _sample(model, tokens, lengths, seed=3, temperature=temperature)
    forced = np.asarray(sequence_logprobs(params, sampled.tokens_BxT, graphdef=graphdef, temperature=temperature))
    mask = _generated(sampled, lengths)
    assert mask.sum() > B  # several tokens a row
    np.testing.assert_allclose(np.asarray(sampled.logprobs_BxT)[mask], forced[mask], atol=1e-5)
    assert (np.asarray(sampled.logprobs_BxT)[~mask] == 0).all()


def test_the_same_key_gives_the_same_samples_and_another_key_others(model, tiny_model_cfg):
    tokens, lengths = _prompts(tiny_model_cfg, seed=4)
    first, again, other = (_sample(model, tokens, lengths, seed=seed) for seed in (5, 5, 6))
    for field in ("tokens_BxT", "logprobs_BxT", "lengths_B"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    assert (np.asarray(first.tokens_BxT) != np.asarray(other.tokens_BxT)).any()


def test_a_nucleus_small_enough_keeps_only_the_argmax(model, tiny_model_cfg):
    graphdef, params = model
    tokens, lengths = _prompts(tiny_model_cfg, seed=7)
    greedy = np.asarray(generate_greedy_cached(params, tokens, lengths, graphdef=graphdef, max_new=T))
    sampled = _sample(model, tokens, lengths, seed=8, temperature=1.5, top_p=1e-6)
    np.testing.assert_array_equal(sampled.tokens_BxT, greedy)
    np.testing.assert_array_equal(sampled.logprobs_BxT, 0.0)  # the one token left has probability 1


def test_a_nucleus_samples_only_among_the_most_likely_tokens_holding_top_p(model, tiny_model_cfg):
    """Every token sampled with top_p = 0.5 lies in the nucleus the teacher-forced distribution gives its
    position, and its log-probability is renormalized over that nucleus."""
    graphdef, params = model
    tokens, lengths = _prompts(tiny_model_cfg, seed=9)
    sampled = _sample(model, tokens, lengths, seed=10, top_p=0.5)
    B_, T_ = sampled.tokens_BxT.shape
    positions, segments = jnp.broadcast_to(jnp.arange(T_), (B_, T_)), jnp.ones((B_, T_), jnp.int32)
    probs = np.asarray(jax.nn.softmax(nnx.merge(graphdef, params)(sampled.tokens_BxT, positions, segments), -1))
    mask = _generated(sampled, lengths)
    widths = []
    for row, at in zip(*np.nonzero(mask)):
        p = probs[row, at - 1]
        order = np.argsort(-p)
        before = np.cumsum(p[order]) - p[order]
        nucleus = order[before < 0.5]
        token = sampled.tokens_BxT[row, at]
        assert token in nucleus
        np.testing.assert_allclose(sampled.logprobs_BxT[row, at], np.log(p[token] / p[nucleus].sum()), atol=1e-4)
        widths.append(len(nucleus))
    assert max(widths) > 1  # not greedy in disguise


def test_g_samples_per_prompt_differ_and_are_reproducible(model, tiny_model_cfg):
    """Two prompts, each repeated G = 4 times: the samples of one prompt differ, and a rerun gives them again."""
    rng = np.random.default_rng(11)
    prompts = rng.integers(2, tiny_model_cfg.vocab_size, (2, T)).astype(np.int32)
    prompts[:, 5:] = tokenizer.PAD
    tokens, lengths = np.repeat(prompts, B // 2, axis=0), np.full(B, 5, np.int32)
    sampled, again = _sample(model, tokens, lengths, seed=12), _sample(model, tokens, lengths, seed=12)
    np.testing.assert_array_equal(sampled.tokens_BxT, again.tokens_BxT)
    for group in np.split(np.asarray(sampled.tokens_BxT), 2):
        assert len({row.tobytes() for row in group}) > 1
        assert (group[:, :5] == group[0, :5]).all()


def test_rows_stop_at_end_of_sequence_their_budget_or_the_automaton_as_greedy_rows_do(model, tiny_model_cfg):
    graphdef, params = model
    model_ = nnx.merge(graphdef, params)
    model_.embed.embedding[...] = model_.embed.embedding[...].at[tokenizer.EOS].multiply(2.0)  # EOS likely
    eos_prone = nnx.split(model_)
    tokens, lengths = _prompts(tiny_model_cfg, seed=13)
    budgets = np.arange(B, dtype=np.int32) % 4 + 3
    sampled = _sample(eos_prone, tokens, lengths, seed=14, max_new=budgets)
    out, final = np.asarray(sampled.tokens_BxT), np.asarray(sampled.lengths_B)
    ended = 0
    for row in range(B):
        new = out[row, lengths[row]:final[row]]
        assert 1 <= len(new) <= budgets[row]
        assert tokenizer.EOS not in new[:-1]
        ended += new[-1] == tokenizer.EOS
        assert len(new) == budgets[row] or new[-1] == tokenizer.EOS
        np.testing.assert_array_equal(out[row, :lengths[row]], tokens[row, :lengths[row]])
        assert (out[row, final[row]:] == tokenizer.PAD).all()
    assert 0 < ended < B  # both ways of ending happen
    assert int(sampled.decode_steps) == (final - lengths).max() - 1  # the prefill chose each row's first token

    stop = int(out[0, lengths[0]])  # the automaton finishes a row once it writes this token
    stop_VxS = np.tile(np.arange(2, dtype=np.int32), (tiny_model_cfg.vocab_size, 1))
    stop_VxS[stop, 0] = 1
    stopped = _sample(eos_prone, tokens, lengths, seed=14, max_new=budgets, stop_VxS=stop_VxS)
    assert int(stopped.lengths_B[0]) == lengths[0] + 1
    for row in range(B):
        new = list(np.asarray(stopped.tokens_BxT)[row, lengths[row]:int(stopped.lengths_B[row])])
        assert stop not in new[:-1]


def test_one_compilation_serves_every_temperature_top_p_budget_and_key(model, tiny_model_cfg):
    tokens, lengths = _prompts(tiny_model_cfg, seed=15)
    _sample(model, tokens, lengths)
    before = sample_cached._cache_size()
    for seed, temperature, top_p, max_new in ((1, 0.0, 1.0, 3), (2, 0.5, 0.9, T), (3, 2.0, 0.3, 5)):
        _sample(model, tokens, lengths, seed=seed, temperature=temperature, top_p=top_p, max_new=max_new)
    assert sample_cached._cache_size() == before


def test_a_nucleus_found_among_the_top_candidates_is_the_one_a_full_sort_finds():
    """Rows whose nucleus fits in the candidates (peaked) and batches where one row's does not (flat): the same
    tokens kept as when the whole vocabulary is sorted."""
    V = 512
    for seed, scale in ((0, 8.0), (1, 0.5), (2, 3.0)):
        scaled = jax.random.normal(jax.random.key(seed), (6, V)) * scale
        for top_p in (0.3, 0.8, 0.95):
            whole = np.asarray(nucleus(scaled, jnp.float32(top_p), candidates=V))
            for candidates in (4, 32):
                np.testing.assert_array_equal(nucleus(scaled, jnp.float32(top_p), candidates=candidates), whole)
    peaked = jax.random.normal(jax.random.key(0), (6, V)) * 8.0
    assert (np.isfinite(np.asarray(nucleus(peaked, jnp.float32(0.8), candidates=V))).sum(-1) < 32).all()


def test_draws_follow_the_distribution_and_never_leave_its_support():
    logprobs = jax.nn.log_softmax(jnp.array([[0.0, 1.0, -jnp.inf, 2.0, -jnp.inf]] * 4096))
    drawn = np.concatenate([np.asarray(draw(jax.random.key(k), logprobs)) for k in range(4)])
    frequencies = np.bincount(drawn, minlength=5) / len(drawn)
    np.testing.assert_allclose(frequencies, np.exp(np.asarray(logprobs[0])), atol=0.01)  # 16,384 draws: sd < 0.004
    assert frequencies[2] == frequencies[4] == 0
