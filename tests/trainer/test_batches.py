import numpy as np
import pytest
from checkpoint_folders import chatml_folder, plain_folder

from scaling.trainer.batches import prompt_arrays, sequence_ids, sequence_length, token_arrays
from scaling.tasks import tokenizer
from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer
from scaling.tasks.mixture import training_pool


@pytest.fixture
def examples():
    return training_pool(("add", "reverse"), 2, 6, seed=0)


def test_loss_is_on_completion_tokens_and_end_of_sequence_only(examples):
    length = sequence_length(examples)
    arrays = token_arrays(examples, length)
    for row, example in enumerate(examples):
        ids, prompt_len = sequence_ids(example)
        trained = arrays.targets[row][arrays.loss_mask[row] == 1]
        assert tokenizer.decode(trained) == example.completion
        assert trained[-1] == tokenizer.EOS and trained.size == len(ids) - prompt_len
        # Targets are the inputs shifted by one token.
        np.testing.assert_array_equal(arrays.inputs[row, 1 : len(ids) - 1], arrays.targets[row, : len(ids) - 2])


def test_padding_has_segment_zero_and_no_loss(examples):
    arrays = token_arrays(examples, sequence_length(examples) + 8)
    padding = arrays.segments == 0
    assert padding.any()
    assert (arrays.loss_mask[padding] == 0).all() and (arrays.inputs[padding] == tokenizer.PAD).all()


def test_sequence_length_fits_all_and_is_a_multiple_of_8(examples):
    length = sequence_length(examples)
    assert length % 8 == 0 and length >= max(len(sequence_ids(e)[0]) for e in examples)


def test_too_short_a_length_is_refused(examples):
    with pytest.raises(ValueError, match="tokens"):
        token_arrays(examples, 8)


def test_prompt_arrays_hold_the_prompt_and_its_length(examples):
    tokens, lengths = prompt_arrays(examples, 64)
    assert tokenizer.decode(tokens[0, : lengths[0]]) == examples[0].prompt + "\n"
    assert (tokens[0, lengths[0] :] == tokenizer.PAD).all()


def test_the_character_tokenizer_object_gives_the_module_functions_ids(examples):
    chars = tokenizer.CHARACTERS
    assert (chars.pad_id, chars.eos_id, chars.vocab_size) == (tokenizer.PAD, tokenizer.EOS, tokenizer.VOCAB_SIZE)
    for example in examples:
        expected = tokenizer.encode(example.prompt + "\n") + tokenizer.encode(example.completion) + [tokenizer.EOS]
        assert sequence_ids(example, chars) == sequence_ids(example) == (expected, len(example.prompt) + 1)
    assert chars == tokenizer.CharacterTokenizer() and hash(chars) == hash(tokenizer.CharacterTokenizer())


@pytest.mark.parametrize("folder", [chatml_folder, plain_folder])
def test_a_checkpoint_tokenizer_trains_on_its_answer_tokens_only(examples, tmp_path, folder):
    tok = checkpoint_tokenizer(folder(tmp_path))
    length = sequence_length(examples, tok)
    arrays = token_arrays(examples, length, tok)
    tokens, lengths = prompt_arrays(examples, length, tok)
    for row, example in enumerate(examples):
        prompt, completion = tok.prompt_ids(example), tok.completion_ids(example)
        trained = arrays.targets[row][arrays.loss_mask[row] == 1]
        assert trained.tolist() == completion and tok.decode(trained) == example.completion
        assert arrays.inputs[row, : len(prompt)].tolist() == prompt
        assert tokens[row, : lengths[row]].tolist() == prompt and (tokens[row, lengths[row] :] == tok.pad_id).all()
    padding = arrays.segments == 0
    assert padding.any() and (arrays.inputs[padding] == tok.pad_id).all() and (arrays.loss_mask[padding] == 0).all()
