import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from checkpoint_folders import llama3_folder
from hypothesis import strategies as st

from scaling.trainer.batches import sequence_ids, sequence_length, token_arrays
from scaling.trainer.model import init_model, logits
from scaling.trainer.packing import pack, packing_efficiency, placements
from scaling.tasks import tokenizer
from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer
from scaling.tasks.mixture import training_pool
from scaling.trainer.train import masked_loss

FIELDS = ("inputs", "targets", "loss_mask")


@pytest.fixture(scope="module")
def examples():
    return training_pool(("add", "reverse"), 2, 40, seed=0)


def _sizes(examples):
    return np.array([len(sequence_ids(e)[0]) - 1 for e in examples])


def _segments_of(arrays):
    """Every packed example as (row, start, stop), read back from the segment ids alone."""
    spans = []
    for row, segments in enumerate(arrays.segments):
        for segment in np.unique(segments[segments > 0]):
            where = np.flatnonzero(segments == segment)
            assert np.array_equal(where, np.arange(where[0], where[-1] + 1)), "a segment is not contiguous"
            spans.append((row, where[0], where[-1] + 1))
    return spans


def test_every_example_is_packed_once_with_its_unpacked_tokens_targets_and_loss(examples):
    length = 2 * sequence_length(examples)
    packed, alone = pack(examples, length), token_arrays(examples, length)
    sizes = _sizes(examples)
    rows, offsets, _ = placements(sizes, length)
    for i, (row, offset, size) in enumerate(zip(rows, offsets, sizes)):
        for field in FIELDS:
            np.testing.assert_array_equal(getattr(packed, field)[row, offset : offset + size], getattr(alone, field)[i, :size])
    # Read back from the segments alone, the packed examples are the unpacked ones, as a multiset.
    read_back = sorted(tuple(tuple(getattr(packed, f)[r, a:b].tolist()) for f in FIELDS) for r, a, b in _segments_of(packed))
    expected = sorted(tuple(tuple(getattr(alone, f)[i, :s].tolist()) for f in FIELDS) for i, s in enumerate(sizes))
    assert read_back == expected
    assert (packed.segments != 0).sum() == sizes.sum()


def test_a_checkpoint_tokenizers_examples_pack_with_their_own_tokens_and_padding(examples, tmp_path):
    tok = checkpoint_tokenizer(llama3_folder(tmp_path))
    length = 2 * sequence_length(examples, tok)
    packed, alone = pack(examples, length, tok), token_arrays(examples, length, tok)
    sizes = np.array([len(sequence_ids(e, tok)[0]) - 1 for e in examples])
    rows, offsets, _ = placements(sizes, length)
    for i, (row, offset, size) in enumerate(zip(rows, offsets, sizes)):
        for field in FIELDS:
            packed_part = getattr(packed, field)[row, offset : offset + size]
            np.testing.assert_array_equal(packed_part, getattr(alone, field)[i, :size])
    padding = packed.segments == 0
    assert padding.any() and (packed.inputs[padding] == tok.pad_id).all() and (packed.loss_mask[padding] == 0).all()


def test_segments_count_up_from_one_and_positions_restart_at_each_example(examples):
    packed = pack(examples, 2 * sequence_length(examples))
    assert (packed.segments.max(axis=1) >= 2).any(), "the test needs rows holding several examples"
    for segments, positions in zip(packed.segments, packed.positions):
        real = segments[segments > 0]
        assert (segments[: real.size] > 0).all(), "padding only after the row's examples"
        np.testing.assert_array_equal(np.unique(real), np.arange(1, real.max() + 1))
        assert (np.diff(real) >= 0).all()
        for segment in np.unique(real):
            np.testing.assert_array_equal(positions[segments == segment], np.arange((segments == segment).sum()))


def test_targets_never_cross_from_one_example_into_the_next(examples):
    packed = pack(examples, 2 * sequence_length(examples))
    for row, start, stop in _segments_of(packed):
        assert packed.targets[row, stop - 1] == tokenizer.EOS and packed.loss_mask[row, stop - 1] == 1
        np.testing.assert_array_equal(packed.inputs[row, start + 1 : stop], packed.targets[row, start : stop - 1])
        assert tokenizer.EOS not in packed.inputs[row, start:stop]
    padding = packed.segments == 0
    assert (packed.inputs[padding] == tokenizer.PAD).all() and (packed.loss_mask[padding] == 0).all()


def test_packed_logits_equal_each_example_run_alone(tiny_model_cfg, examples):
    examples = examples[:12]
    length = 2 * sequence_length(examples)
    cfg = dataclasses.replace(tiny_model_cfg, max_len=length)
    graphdef, params = init_model(cfg, seed=0)
    packed, alone = pack(examples, length), token_arrays(examples, length)
    run = lambda a: np.asarray(logits(params, jnp.asarray(a.inputs), jnp.asarray(a.positions), jnp.asarray(a.segments), graphdef=graphdef))  # noqa: E731
    packed_logits, alone_logits = run(packed), run(alone)
    sizes = _sizes(examples)
    rows, offsets, _ = placements(sizes, length)
    assert len(packed) < len(examples)
    for i, (row, offset, size) in enumerate(zip(rows, offsets, sizes)):
        np.testing.assert_allclose(packed_logits[row, offset : offset + size], alone_logits[i, :size], atol=1e-5)


def test_packed_loss_is_the_token_weighted_mean_of_unpacked_losses(tiny_model_cfg, examples):
    length = 2 * sequence_length(examples)
    graphdef, params = init_model(dataclasses.replace(tiny_model_cfg, max_len=length), seed=0)
    packed, alone = pack(examples, length), token_arrays(examples, length)
    loss_fn = jax.jit(masked_loss, static_argnames="graphdef")
    loss_of = lambda batch: float(loss_fn(params, batch, graphdef=graphdef)[0])  # noqa: E731
    losses = np.array([loss_of(alone.take(np.array([i]))) for i in range(len(alone))])
    weights = alone.loss_mask.sum(axis=1)
    everything = np.arange(len(packed))
    np.testing.assert_allclose(loss_of(packed.take(everything)), (losses * weights).sum() / weights.sum(), rtol=1e-5)


def test_packing_is_more_efficient_than_one_example_per_row():
    pool = training_pool(("add", "reverse"), 2, 500, seed=0)
    length = sequence_length(pool)
    packed, unpacked = packing_efficiency(pack(pool, length)), packing_efficiency(token_arrays(pool, length))
    assert packed > 1.2 * unpacked
    # Rows of twice the longest example leave room to pair long examples with short ones.
    assert packing_efficiency(pack(pool, 2 * length)) > 0.95


def test_same_examples_same_packing(examples):
    first, second = pack(examples, 128), pack(list(examples), 128)
    for field in ("inputs", "targets", "loss_mask", "positions", "segments"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))


def test_an_example_longer_than_a_row_is_refused_by_id(examples):
    longest = max(examples, key=lambda e: len(sequence_ids(e)[0]))
    with pytest.raises(ValueError, match=longest.id):
        pack(examples, len(sequence_ids(longest)[0]) - 2)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 32), min_size=1, max_size=200), st.integers(32, 64))
def test_placements_fit_back_to_back_and_leave_at_most_one_row_half_empty(sizes, length):
    sizes = np.array(sizes)
    rows, offsets, segments = placements(sizes, length)
    assert (offsets + sizes <= length).all()
    for row in np.unique(rows):
        held = np.flatnonzero(rows == row)
        by_offset = held[np.argsort(offsets[held])]
        ends = offsets[by_offset] + sizes[by_offset]
        np.testing.assert_array_equal(offsets[by_offset], np.r_[0, ends[:-1]])  # back to back from 0
        np.testing.assert_array_equal(segments[by_offset], np.arange(1, held.size + 1))
    np.testing.assert_array_equal(np.unique(rows), np.arange(rows.max() + 1))
    # Any-fit packing never leaves two rows at most half full: the later one's items fit the earlier.
    used = np.bincount(rows, weights=sizes)
    assert (used <= length / 2).sum() <= 1
