import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling.trainer.model import init_model, logits, partial_rotary, rotary


def _run(cfg, tokens, segments=None, positions=None):
    graphdef, params = init_model(cfg, seed=0)
    B, T = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(T), (B, T)) if positions is None else positions
    segments = jnp.ones((B, T), jnp.int32) if segments is None else segments
    return np.asarray(logits(params, tokens, positions, segments, graphdef=graphdef))


def _tokens(cfg, shape, seed=0):
    return jax.random.randint(jax.random.key(seed), shape, 2, cfg.vocab_size)


def test_logits_shape(tiny_model_cfg):
    assert _run(tiny_model_cfg, _tokens(tiny_model_cfg, (3, 10))).shape == (3, 10, tiny_model_cfg.vocab_size)


def test_causal_a_later_token_never_changes_earlier_logits(tiny_model_cfg):
    tokens = _tokens(tiny_model_cfg, (1, 12))
    changed = tokens.at[0, 7].set((tokens[0, 7] + 1) % tiny_model_cfg.vocab_size)
    before, after = _run(tiny_model_cfg, tokens), _run(tiny_model_cfg, changed)
    np.testing.assert_allclose(before[0, :7], after[0, :7], atol=1e-6)
    assert not np.allclose(before[0, 7:], after[0, 7:])


def test_packed_segments_with_position_resets_equal_separate_sequences(tiny_model_cfg):
    first, second = _tokens(tiny_model_cfg, (1, 5), 1), _tokens(tiny_model_cfg, (1, 7), 2)
    packed = jnp.concatenate([first, second], axis=1)
    segments = jnp.array([[1] * 5 + [2] * 7])
    positions = jnp.array([list(range(5)) + list(range(7))])
    logits = _run(tiny_model_cfg, packed, segments, positions)
    np.testing.assert_allclose(logits[0, :5], _run(tiny_model_cfg, first)[0], atol=1e-5)
    np.testing.assert_allclose(logits[0, 5:], _run(tiny_model_cfg, second)[0], atol=1e-5)


def test_padding_is_invisible(tiny_model_cfg):
    tokens = _tokens(tiny_model_cfg, (1, 6))
    padded = jnp.concatenate([jnp.zeros((1, 3), jnp.int32), tokens], axis=1)
    segments = jnp.array([[0] * 3 + [1] * 6])
    positions = jnp.array([[0] * 3 + list(range(6))])
    np.testing.assert_allclose(_run(tiny_model_cfg, padded, segments, positions)[0, 3:], _run(tiny_model_cfg, tokens)[0], atol=1e-5)


def test_untied_embeddings_add_an_output_projection(tiny_model_cfg):
    untied = dataclasses.replace(tiny_model_cfg, tie_embeddings=False)
    _, params = init_model(untied, seed=0)
    assert sum(x.size for x in jax.tree.leaves(params)) == untied.total_params
    assert _run(untied, _tokens(untied, (2, 4))).shape == (2, 4, untied.vocab_size)


def test_rotary_preserves_norms_and_makes_scores_relative():
    x = jax.random.normal(jax.random.key(0), (1, 1, 1, 8))
    y = jax.random.normal(jax.random.key(1), (1, 1, 1, 8))
    at = lambda v, p: rotary(v, jnp.array([[p]]), 10_000.0)  # noqa: E731
    np.testing.assert_allclose(jnp.linalg.norm(at(x, 5)), jnp.linalg.norm(x), rtol=1e-5)
    np.testing.assert_allclose((at(x, 3) * at(y, 1)).sum(), (at(x, 12) * at(y, 10)).sum(), rtol=1e-4)


def test_bfloat16_compute_keeps_float32_parameters_and_close_logits(tiny_model_cfg):
    bf16 = dataclasses.replace(tiny_model_cfg, compute_dtype="bfloat16")
    _, params = init_model(bf16, seed=0)
    assert {x.dtype for x in jax.tree.leaves(params)} == {np.dtype("float32")}
    tokens = _tokens(bf16, (2, 8))
    low, full = _run(bf16, tokens), _run(tiny_model_cfg, tokens)
    assert low.dtype == jnp.dtype("bfloat16")
    np.testing.assert_allclose(low.astype(np.float32), full, atol=0.1)


GEMMA3 = dict(mlp="geglu_tanh", qk_norm=True, norm_scale_offset=1.0, sandwich_norms=True, scale_embeddings=True,
              head_width=24, rope_local_theta=50.0, attention_scale_width=20)


# The options imported checkpoints need, each combination a family's (see scaling.hf.architectures).
OPTIONS = {
    "neox": dict(norm="layer", norm_eps=1e-5, mlp="gelu", rotary_fraction=0.5, qkv_bias=True, out_bias=True,
                 mlp_bias=True, parallel_residual=True, n_kv_heads=2, tie_embeddings=False),
    "gpt2": dict(norm="layer", mlp="gelu_tanh", positions="learned", qkv_bias=True, out_bias=True, mlp_bias=True,
                 n_kv_heads=2),
    "qwen2_wide_heads": dict(qkv_bias=True, head_width=12, norm_eps=1e-5),
    "qwen3": dict(qk_norm=True, head_width=16, tie_embeddings=False),
    # Windows of 3 on rows of 10: the sliding layer's reach is cut in prefill, decode and packed rows.
    "gemma3": dict(GEMMA3, layer_types=("sliding_attention", "full_attention"), sliding_window=3),
    "gemma3_all_sliding": dict(GEMMA3, layer_types=("sliding_attention",) * 2, sliding_window=1, tie_embeddings=False),
}


@pytest.mark.parametrize("name", OPTIONS)
def test_options_keep_decode_exact_and_packing_invisible(tiny_model_cfg, name):
    cfg = dataclasses.replace(tiny_model_cfg, **OPTIONS[name])
    graphdef, params = init_model(cfg, seed=0)
    model = nnx.merge(graphdef, params)
    full = _tokens(cfg, (2, 10))
    expected = _run(cfg, full)
    # A padded prefill of the first 6 tokens, then one token per step against the cache.
    prompt = full.at[:, 6:].set(0)
    _, cache = model.prefill(prompt, jnp.broadcast_to(jnp.arange(10), (2, 10)), jnp.ones((2, 10), jnp.int32))
    for at in range(6, 10):
        step, cache = model.decode(full[:, at:at + 1], jnp.full((2, 1), at), cache)
        np.testing.assert_allclose(step[:, 0], expected[:, at], atol=1e-5)
    test_packed_segments_with_position_resets_equal_separate_sequences(cfg)


def test_partial_rotary_turns_the_leading_dims_only():
    x = jax.random.normal(jax.random.key(0), (1, 3, 2, 8))
    positions = jnp.array([[0, 4, 9]])
    turned = partial_rotary(x, positions, 100.0, rotary_dim=4)
    np.testing.assert_array_equal(turned[..., 4:], x[..., 4:])
    np.testing.assert_allclose(turned[..., :4], rotary(x[..., :4], positions, 100.0), atol=1e-6)
    np.testing.assert_array_equal(partial_rotary(x, positions, 100.0, rotary_dim=8), rotary(x, positions, 100.0))


@pytest.mark.parametrize("parallel", [True, False])
def test_parallel_residual_feeds_the_mlp_the_block_input(tiny_model_cfg, parallel):
    cfg = dataclasses.replace(tiny_model_cfg, **{**OPTIONS["neox"], "parallel_residual": parallel})
    block = nnx.merge(*init_model(cfg, seed=0)).blocks[0]
    x = jax.random.normal(jax.random.key(1), (1, 5, cfg.d_model))
    positions, segments = jnp.arange(5)[None], jnp.ones((1, 5), jnp.int32)
    attended = block.attention(block.attention_norm(x), positions, segments)
    mlp_input = x if parallel else x + attended
    np.testing.assert_allclose(block(x, positions, segments), x + attended + block.mlp(block.mlp_norm(mlp_input)), atol=1e-5)


def test_learned_positions_are_a_table_added_to_the_embeddings(tiny_model_cfg):
    cfg = dataclasses.replace(tiny_model_cfg, **OPTIONS["gpt2"])
    model = nnx.merge(*init_model(cfg, seed=0))
    assert model.position_embed.embedding.shape == (cfg.max_len, cfg.d_model)
    tokens = _tokens(cfg, (1, 4))
    np.testing.assert_allclose(model._embed(tokens, jnp.array([[0, 1, 2, 7]])),
                               model.embed(tokens) + model.position_embed.embedding[...][jnp.array([0, 1, 2, 7])], atol=1e-6)


def test_a_gemma3_model_trains_with_its_sliding_window_and_every_norm_learns(tiny_model_cfg):
    """A few steps of the trainer on a Gemma 3-shaped model whose window (4) is shorter than its rows: the loss
    falls, and every norm scale (offset ones start at 0) gets a gradient."""
    from scaling.tasks.mixture import training_pool
    from scaling.trainer.batches import sequence_length, token_arrays
    from scaling.trainer.config import TrainConfig
    from scaling.trainer.train import train

    cfg = dataclasses.replace(tiny_model_cfg, **GEMMA3, layer_types=("sliding_attention", "full_attention"),
                              sliding_window=4)
    pool = training_pool(("add",), 1, 32, seed=0)
    data = token_arrays(pool, sequence_length(pool))
    assert data.inputs.shape[1] > 4 * cfg.sliding_window
    losses = {}
    (_, _, trained), = train(cfg, TrainConfig(budgets=(12,), batch_size=8, lr=1e-2, warmup_steps=2), data,
                             on_step=lambda step, loss: losses.__setitem__(step, loss))
    assert np.isfinite(list(losses.values())).all() and losses[12] < losses[1]
    initial = dict(nnx.to_flat_state(init_model(cfg, seed=0)[1]))
    for path, value in nnx.to_flat_state(trained):
        if path[-1] == "scale":
            assert not np.array_equal(np.asarray(value[...]), np.asarray(initial[path][...])), path


@pytest.mark.parametrize("changes, message", [
    (dict(layer_types=("sliding_attention",), sliding_window=4), "has 1 entries for 2 layers"),
    (dict(layer_types=("sliding_attention", "local"), sliding_window=4), "got 'local'"),
    (dict(layer_types=("sliding_attention", "full_attention")), "sliding_window must be >= 1"),
    (dict(sliding_window=4), "sliding_window must be >= 1"),
    (dict(norm="layer", qk_norm=True), "need norm"),
    (dict(mlp="geglu"), "mlp must be one of"),
])
def test_gemma3_and_qwen3_options_are_validated(tiny_model_cfg, changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(tiny_model_cfg, **changes)


def test_layer_types_read_back_from_json_are_the_same_config(tiny_model_cfg):
    import json

    cfg = dataclasses.replace(tiny_model_cfg, **GEMMA3, layer_types=("sliding_attention", "full_attention"),
                              sliding_window=4)
    assert type(cfg)(**json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg  # a JSON list becomes the tuple
    assert (cfg.window(0), cfg.window(1), cfg.layer_theta(0), cfg.layer_theta(1)) == (4, None, 50.0, cfg.rope_theta)
    assert cfg.attention_scale == 20 ** -0.5
    # Attention scores: the sliding layer's reach stops at its window (4 keys), the full layer's at the context.
    unwindowed = dataclasses.replace(cfg, layer_types=(), sliding_window=0)
    scores = 6.0 * cfg.n_heads * cfg.head_dim
    assert unwindowed.train_flops_per_token(32) - cfg.train_flops_per_token(32) == scores * (32 - 4)
