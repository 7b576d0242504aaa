import json

import numpy as np
import pytest
from trained_bpe import train_bpe

from scaling.errors import UserError
from scaling.hf.tokenizer import (
    FILE_NAME,
    TextTokenizer,
    load_tokenizer,
    save_tokenizer,
    text_tokenizer,
)

TEXTS = [
    "what is 57 plus 68?\n7+8+0=15\n5+6+1=12\n#### 125",
    "sort the list 3 1 2\n#### 1 2 3",
    "the cat sat on the mat, the dog sat on the log",
    "héllo wörld, naïve café",
] * 10
SAMPLES = ["what is 12 plus 34?\n#### 46", "  two  spaces\tand a tab\n", "héllo 日本語 🙂 Ωmega", ""]


@pytest.fixture(scope="module")
def bpe():
    return train_bpe(TEXTS, vocab_size=300)


def test_training_is_deterministic():
    assert train_bpe(TEXTS, vocab_size=300).to_str() == train_bpe(TEXTS, vocab_size=300).to_str()


def test_special_tokens_come_first_and_merges_were_learned(bpe):
    wrapped = text_tokenizer(bpe)
    assert (wrapped.pad_id, wrapped.eos_id) == (0, 1)
    assert 258 < wrapped.vocab_size <= 300  # beyond 2 specials + 256 bytes: some merges exist
    assert len(wrapped.encode("the cat sat on the mat")) < len("the cat sat on the mat")


@pytest.mark.parametrize("text", SAMPLES)
def test_decode_inverts_encode_for_ascii_and_non_ascii_text(bpe, text):
    wrapped = text_tokenizer(bpe)
    assert wrapped.decode(wrapped.encode(text)) == text


def test_decode_stops_at_eos_and_skips_padding(bpe):
    wrapped = text_tokenizer(bpe)
    ids = [wrapped.pad_id, *wrapped.encode("ab"), wrapped.pad_id, *wrapped.encode("c"), wrapped.eos_id, *wrapped.encode("zz")]
    assert wrapped.decode(ids) == "abc"
    assert wrapped.decode(np.array(ids)) == "abc"


def test_save_load_round_trip_gives_identical_ids(bpe, tmp_path):
    written = save_tokenizer(bpe, tmp_path / "tok")  # not an existing folder, so the file itself
    loaded = load_tokenizer(written)
    assert loaded.to_str() == bpe.to_str()
    for text in SAMPLES:
        assert text_tokenizer(loaded).encode(text) == text_tokenizer(bpe).encode(text)
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]  # no temporary file left behind


def test_a_folder_means_the_tokenizer_json_inside_it(bpe, tmp_path):
    assert save_tokenizer(bpe, tmp_path) == tmp_path / FILE_NAME
    assert load_tokenizer(tmp_path).to_str() == bpe.to_str()
    json.loads((tmp_path / FILE_NAME).read_text())  # plain JSON a person can read


def test_saving_replaces_an_existing_file(bpe, tmp_path):
    target = tmp_path / FILE_NAME
    target.write_text("old")
    save_tokenizer(bpe, target)
    assert load_tokenizer(target).to_str() == bpe.to_str()


@pytest.mark.parametrize("content", ["", "{not json", '{"version": "1.0"}', "[1, 2, 3]"])
def test_a_malformed_file_is_a_user_error_naming_it(tmp_path, content):
    bad = tmp_path / FILE_NAME
    bad.write_text(content)
    with pytest.raises(UserError, match="tokenizer.json is malformed") as caught:
        load_tokenizer(bad)
    assert "\n" not in str(caught.value) and str(bad) in str(caught.value)


def test_a_missing_file_is_a_user_error_naming_it(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path / FILE_NAME} does not exist"):
        load_tokenizer(tmp_path)  # a folder without tokenizer.json


def test_wrapping_needs_the_named_special_tokens(bpe):
    with pytest.raises(UserError, match="no end-of-sequence token '</s>'"):
        text_tokenizer(bpe, eos_token="</s>")
    with pytest.raises(ValueError, match="eos_id"):
        TextTokenizer(bpe, pad_id=0, eos_id=10_000)


def test_bad_training_arguments_fail_by_name():
    with pytest.raises(ValueError, match="vocab_size must be >= 258"):
        train_bpe(TEXTS, vocab_size=100)
    with pytest.raises(TypeError, match="not one string"):
        train_bpe("one text", vocab_size=300)
    with pytest.raises(ValueError, match="special_tokens"):
        train_bpe(TEXTS, vocab_size=300, special_tokens=("<eos>", "<eos>"))
