import pytest

from scaling.tasks import tokenizer


def test_round_trip_of_task_text():
    text = "what is 12 plus 9?\n2+9+0=11\n#### 21"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_ids_are_stable():
    # Published ids must never move: checkpoints and cached data depend on them.
    assert tokenizer.encode("0a+\n") == [2, 12, 65, 87]
    assert (tokenizer.PAD, tokenizer.EOS) == (0, 1)


def test_decode_stops_at_end_of_sequence_and_skips_padding():
    ids = tokenizer.encode("ab") + [tokenizer.PAD, tokenizer.EOS] + tokenizer.encode("cd")
    assert tokenizer.decode(ids) == "ab"


def test_unknown_character_is_named():
    with pytest.raises(ValueError, match="'é'"):
        tokenizer.encode("café")
