import pytest

from scaling.tasks import tokenizer
from scaling.tasks.corpus import corpus
from scaling.tasks.families import ANSWER_MARK
from scaling.tasks.mixture import training_pool


def test_corpus_size_determinism_and_alphabet():
    text = corpus(20_000, seed=0)
    assert sum(map(len, text)) >= 20_000
    assert text == corpus(20_000, seed=0) and text != corpus(20_000, seed=1)
    for document in text:
        tokenizer.encode(document)  # raises on a character outside the task vocabulary


def test_corpus_holds_no_task_formatted_pairs():
    text = "\n".join(corpus(50_000, seed=0))
    assert ANSWER_MARK.strip() not in text
    prompts = {e.prompt for e in training_pool(("add", "sub", "reverse"), 3, 300, seed=0)}
    assert not any(prompt in text for prompt in prompts if len(prompt) > 8)


def test_negative_size_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        corpus(-1, seed=0)
