import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from greedy_reference import generate_greedy_full

from scaling.trainer.decode import decode_step, generate_greedy_cached, prefill
from scaling.trainer.model import init_model, logits
from scaling.tasks import tokenizer

T = 24
B = 16  # one batch shape throughout, so each generator compiles once per model and max_new


@pytest.fixture(params=["tied", "untied", "gemma3_sliding"])
def model_cfg(request, tiny_model_cfg):
    """The tiny grouped-query model (n_kv_heads=1), with and without an output projection, and with Gemma 3's
    parts: a sliding layer whose window (5) is far shorter than the rows (T = 24), then a full one."""
    if request.param == "gemma3_sliding":
        return dataclasses.replace(tiny_model_cfg, mlp="geglu_tanh", qk_norm=True, norm_scale_offset=1.0,
                                   sandwich_norms=True, scale_embeddings=True, head_width=16,
                                   layer_types=("sliding_attention", "full_attention"), sliding_window=5,
                                   rope_local_theta=100.0, attention_scale_width=12)
    return dataclasses.replace(tiny_model_cfg, tie_embeddings=request.param == "tied")


def _prompts(cfg, seed, lengths=None):
    """Random left-aligned prompts of random lengths 1..T in a zero-padded BxT buffer."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, B).astype(np.int32) if lengths is None else np.asarray(lengths, np.int32)
    tokens = rng.integers(2, cfg.vocab_size, (B, T)).astype(np.int32)
    tokens[np.arange(T)[None, :] >= lengths[:, None]] = tokenizer.PAD
    return tokens, lengths


def _eos_prone(graphdef, params, factor=4.0):
    """The same model with its end-of-sequence output row scaled up, so rows stop after a few tokens."""
    model = nnx.merge(graphdef, params)
    if model.lm_head is None:
        model.embed.embedding[...] = model.embed.embedding[...].at[tokenizer.EOS].multiply(factor)
    else:
        model.lm_head.kernel[...] = model.lm_head.kernel[...].at[:, tokenizer.EOS].multiply(factor)
    return nnx.split(model)


def _both(graphdef, params, tokens, lengths, max_new):
    ours = generate_greedy_cached(params, tokens, lengths, graphdef=graphdef, max_new=max_new)
    full = generate_greedy_full(params, tokens, lengths, graphdef=graphdef, max_new=max_new)
    return np.asarray(ours), np.asarray(full)


def test_prefill_logits_equal_the_full_forward(model_cfg):
    graphdef, params = init_model(model_cfg, seed=0)
    tokens, _ = _prompts(model_cfg, seed=0)
    positions, segments = jnp.broadcast_to(jnp.arange(T), (B, T)), jnp.ones((B, T), jnp.int32)
    prefill_logits, cache = prefill(params, tokens, graphdef=graphdef)
    np.testing.assert_allclose(prefill_logits, logits(params, tokens, positions, segments, graphdef=graphdef), atol=1e-5)
    assert len(cache) == model_cfg.n_layers
    assert cache[0].k_BxTxKxDh.shape == (B, T, model_cfg.n_kv_heads, model_cfg.head_dim)


def test_decode_steps_equal_the_full_forward_at_each_position(model_cfg):
    """Feed the rest of a known sequence one token per step after a padded prefill: the cache is right."""
    graphdef, params = init_model(model_cfg, seed=0)
    full_tokens, _ = _prompts(model_cfg, seed=1, lengths=[T] * B)
    lengths = np.arange(B) % 12 + 1
    prompts = np.where(np.arange(T)[None, :] < lengths[:, None], full_tokens, tokenizer.PAD)
    positions, segments = jnp.broadcast_to(jnp.arange(T), (B, T)), jnp.ones((B, T), jnp.int32)
    expected = np.asarray(logits(params, full_tokens, positions, segments, graphdef=graphdef))
    _, cache = prefill(params, prompts, graphdef=graphdef)
    rows = np.arange(B)
    for step in range(T - lengths.max()):
        at = lengths + step
        step_logits, cache = decode_step(params, full_tokens[rows, at], jnp.asarray(at), cache, graphdef=graphdef)
        np.testing.assert_allclose(step_logits, expected[rows, at], atol=1e-5)


def test_cached_generation_equals_full_forward_generation(model_cfg):
    graphdef, params = init_model(model_cfg, seed=0)
    for seed in range(3):
        tokens, lengths = _prompts(model_cfg, seed)
        ours, full = _both(graphdef, params, tokens, lengths, max_new=T)
        np.testing.assert_array_equal(ours, full)


def test_rows_that_end_early_or_fill_the_buffer_match(model_cfg):
    graphdef, params = _eos_prone(*init_model(model_cfg, seed=0))
    tokens, lengths = _prompts(model_cfg, seed=3)
    lengths[:3] = [T, T - 1, T - 2]  # full from the start, and one or two tokens from full
    tokens, lengths = _prompts(model_cfg, seed=3, lengths=lengths)
    ours, full = _both(graphdef, params, tokens, lengths, max_new=T)
    np.testing.assert_array_equal(ours, full)
    np.testing.assert_array_equal(ours[0], tokens[0])  # a full row is left as it was
    ended = [(row[n:] == tokenizer.EOS).any() for row, n in zip(ours, lengths)]
    filled = [row[-1] != tokenizer.PAD and not e for row, e in zip(ours, ended)]
    # The scaled-up EOS row makes both outcomes common; guard that this test exercises them.
    assert 0 < sum(ended) < len(ours) and sum(filled[1:]) > 0
    for row, n, e in zip(ours, lengths, ended):
        if e:
            stop = n + int(np.argmax(row[n:] == tokenizer.EOS))
            assert (row[stop + 1 :] == tokenizer.PAD).all()


def test_max_new_caps_the_appended_tokens(model_cfg):
    graphdef, params = init_model(model_cfg, seed=0)
    tokens, lengths = _prompts(model_cfg, seed=4)
    three = np.asarray(generate_greedy_cached(params, tokens, lengths, graphdef=graphdef, max_new=3))
    # Greedy decoding is deterministic, so a capped run is the uncapped one cut after 3 new tokens.
    uncapped, _ = _both(graphdef, params, tokens, lengths, max_new=T)
    cut = np.where(np.arange(T)[None, :] < lengths[:, None] + 3, uncapped, tokenizer.PAD)
    np.testing.assert_array_equal(three, cut)
    assert (lengths + 3 < T).any() and (uncapped != cut).any()  # some row would have gone on


def test_max_new_zero_returns_the_prompts(tiny_model_cfg):
    graphdef, params = init_model(tiny_model_cfg, seed=0)
    tokens, lengths = _prompts(tiny_model_cfg, seed=5)
    np.testing.assert_array_equal(generate_greedy_cached(params, tokens, lengths, graphdef=graphdef, max_new=0), tokens)


def test_compiles_once_per_shape(tiny_model_cfg):
    graphdef, params = init_model(tiny_model_cfg, seed=0)
    _, other_params = init_model(tiny_model_cfg, seed=1)
    before = generate_greedy_cached._cache_size()
    for p, seed in ((params, 6), (other_params, 7)):
        tokens, lengths = _prompts(tiny_model_cfg, seed)
        generate_greedy_cached(p, tokens, lengths, graphdef=graphdef, max_new=T)
    assert generate_greedy_cached._cache_size() - before <= 1


def test_per_row_budgets_cut_each_row_after_its_own_budget(model_cfg):
    graphdef, params = init_model(model_cfg, seed=0)
    tokens, lengths = _prompts(model_cfg, seed=8)
    budgets = np.arange(B, dtype=np.int32) % 5  # 0..4 new tokens, 0 included
    ours, full = _both(graphdef, params, tokens, lengths, max_new=budgets)
    np.testing.assert_array_equal(ours, full)
    uncapped, _ = _both(graphdef, params, tokens, lengths, max_new=T)
    cut = np.where(np.arange(T)[None, :] < (lengths + budgets)[:, None], uncapped, tokenizer.PAD)
    np.testing.assert_array_equal(ours, cut)
    assert ((lengths + budgets < T) & (budgets < 4)).any() and (uncapped != cut).any()  # some row would have gone on


def _stop_after(token: int, vocab_size: int) -> np.ndarray:
    """A two-state stop automaton that finishes a row once it writes `token`."""
    stop_VxS = np.tile(np.arange(2, dtype=np.int32), (vocab_size, 1))
    stop_VxS[token, 0] = 1
    return stop_VxS


def test_a_stop_automaton_finishes_a_row_after_the_token_that_drives_it_to_its_last_state(model_cfg):
    graphdef, params = init_model(model_cfg, seed=0)
    tokens, lengths = _prompts(model_cfg, seed=9, lengths=[4] * B)
    uncapped, _ = _both(graphdef, params, tokens, lengths, max_new=T)
    token = int(uncapped[0, 6])  # row 0's third new token: the stop fires there at the latest
    stop_VxS = _stop_after(token, model_cfg.vocab_size)
    ours = np.asarray(generate_greedy_cached(params, tokens, lengths, graphdef=graphdef, max_new=T, stop_VxS=stop_VxS))
    full = np.asarray(generate_greedy_full(params, tokens, lengths, graphdef=graphdef, max_new=T, stop_VxS=stop_VxS))
    np.testing.assert_array_equal(ours, full)
    stopped = 0
    for row, n in zip(range(B), lengths):
        new = list(uncapped[row, n:])
        end = n + new.index(token) + 1 if token in new else T
        np.testing.assert_array_equal(ours[row, :end], uncapped[row, :end])
        assert (ours[row, end:] == tokenizer.PAD).all()
        stopped += end < T
    assert stopped >= 1 and (ours != uncapped).any()


def test_a_row_resumed_with_its_automatons_state_ends_where_the_whole_decode_ends(model_cfg):
    """An automaton that finishes a row after three tokens: a prompt holding the first of them, started in state
    1, gets two more; started in state 0, three."""
    graphdef, params = init_model(model_cfg, seed=0)
    tokens, lengths = _prompts(model_cfg, seed=13, lengths=[4] * B)
    count_VxS = np.tile(np.minimum(np.arange(4, dtype=np.int32) + 1, 3), (model_cfg.vocab_size, 1))
    no_eos = -1  # rows end by the automaton alone
    whole = np.asarray(generate_greedy_cached(params, tokens, lengths, graphdef=graphdef, max_new=T, eos_id=no_eos,
                                              stop_VxS=count_VxS))
    assert (whole[:, 7:] == tokenizer.PAD).all()
    begun = whole.copy()
    begun[:, 5:] = tokenizer.PAD
    resumed = [np.asarray(generate_greedy_cached(params, begun, lengths + 1, graphdef=graphdef, max_new=T, eos_id=no_eos,
                                                 stop_VxS=count_VxS, states_B=np.full(B, state, np.int32)))
               for state in (1, 0)]
    np.testing.assert_array_equal(resumed[0], whole)
    assert (resumed[1][:, 7] != tokenizer.PAD).any()


def test_budgets_and_automata_share_one_compilation_per_shape(tiny_model_cfg):
    graphdef, params = init_model(tiny_model_cfg, seed=0)
    tokens, lengths = _prompts(tiny_model_cfg, seed=10)
    generate_greedy_cached(params, tokens, lengths, graphdef=graphdef, max_new=np.full(B, 3, np.int32),
                           stop_VxS=_stop_after(5, tiny_model_cfg.vocab_size))
    before = generate_greedy_cached._cache_size()
    for seed, token in ((11, 7), (12, 9)):
        budgets = np.random.default_rng(seed).integers(0, T, B).astype(np.int32)
        generate_greedy_cached(params, tokens, lengths, graphdef=graphdef, max_new=budgets,
                               stop_VxS=_stop_after(token, tiny_model_cfg.vocab_size))
    assert generate_greedy_cached._cache_size() == before


def test_a_prefill_over_the_prompts_span_generates_what_a_prefill_over_the_whole_buffer_does(model_cfg):
    graphdef, params = init_model(model_cfg, seed=0)
    tokens, lengths = _prompts(model_cfg, seed=13, lengths=np.arange(B) % 9 + 1)
    whole = np.asarray(generate_greedy_cached(params, tokens, lengths, graphdef=graphdef, max_new=T))
    for span in (9, 12):
        spanned = generate_greedy_cached(params, tokens, lengths, graphdef=graphdef, max_new=T, prompt_span=span)
        np.testing.assert_array_equal(np.asarray(spanned), whole)
