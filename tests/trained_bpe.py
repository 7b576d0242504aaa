"""A small byte-level BPE trained offline on texts in memory: the Hugging Face tokenizer the tests build
their checkpoint folders and tokenizer tests from (the package itself only loads tokenizers from disk)."""

from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ("<pad>", "<eos>")  # ids 0 and 1 of a trained BPE, as in the character tokenizer


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    min_frequency: int = 2,
) -> Tokenizer:
    """A byte-level BPE trained on texts; the same texts give the same tokenizer (identical `to_str()`).

    Special tokens take ids 0, 1, ... in order, then the 256 byte symbols, then the merges, so any
    text encodes without an unknown token. There is no normalizer and no prefix space, which makes
    `decode(encode(text)) == text` exact for any string.
    """
    if isinstance(texts, str):
        raise TypeError("train_bpe texts must be an iterable of strings, not one string")
    if len(set(special_tokens)) != len(special_tokens) or not all(special_tokens):
        raise ValueError(f"train_bpe special_tokens must be distinct and non-empty, got {list(special_tokens)}")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    smallest = len(alphabet) + len(special_tokens)
    if vocab_size < smallest:
        raise ValueError(f"train_bpe vocab_size must be >= {smallest} (256 bytes + special tokens), got {vocab_size}")
    if min_frequency < 1:
        raise ValueError(f"train_bpe min_frequency must be >= 1, got {min_frequency}")
    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False: a leading space would be invented on encode and kept on decode.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=alphabet,  # every byte, seen in texts or not
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer
