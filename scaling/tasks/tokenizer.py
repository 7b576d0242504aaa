"""The tokenizer interface of the data path, and its first implementation: a deterministic
character-level tokenizer for the synthetic tasks (small vocabulary, stable ids).

A `Tokenizer` turns text into ids and back, and says how an example becomes a training sequence:
`prompt_ids(example)` is what the model is given, `completion_ids(example)` what it learns to emit
after it, ending with `eos_id`. Batches, packing, evaluation and cell plans take one explicitly; a
Hugging Face checkpoint brings its own (`scaling.hf.checkpoint_tokenizer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

if TYPE_CHECKING:
    from scaling.tasks.mixture import Example

PAD, EOS = 0, 1
# Ids never change once published: new characters may only be appended.
_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ +-*/=%<>()[],.:;?!#'\"_\n"
ALPHABET = _CHARS  # every character the character tokenizer spells
_ID_OF = {c: i + 2 for i, c in enumerate(_CHARS)}
VOCAB_SIZE = len(_CHARS) + 2
PROMPT_END = "\n"  # separates the prompt from the completion when no chat template formats them


class Tokenizer(Protocol):
    """What the data path needs of a tokenizer. Implementations are immutable and hashable by content
    (plans cache cell data per tokenizer) and picklable (plans travel to worker processes)."""

    @property
    def pad_id(self) -> int:  # fills batches past the real tokens; decode skips it
        ...

    @property
    def eos_id(self) -> int:  # ends every completion; generation and decode stop at it
        ...

    @property
    def vocab_size(self) -> int:  # one more than the largest id: the embedding rows a model needs at least
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of text, with no special tokens added."""
        ...

    def decode(self, ids) -> str:
        """Text of ids, stopping at the first `eos_id` and skipping padding and special tokens."""
        ...

    def prompt_ids(self, example: Example) -> list[int]:
        """The ids the model is given for an example: its prompt, formatted for this tokenizer's model."""
        ...

    def completion_ids(self, example: Example) -> list[int]:
        """The ids the model learns to emit after `prompt_ids`: the completion, ending with `eos_id`."""
        ...


def encode(text: str) -> list[int]:
    """Token ids of text, one per character (no special tokens added)."""
    try:
        return [_ID_OF[c] for c in text]
    except KeyError as missing:
        raise ValueError(f"character {missing.args[0]!r} is not in the task vocabulary") from None


def decode(ids) -> str:
    """Text of ids, stopping at the first end-of-sequence token and skipping padding."""
    chars = []
    for i in np.asarray(ids).tolist():
        if i == EOS:
            break
        if i >= 2:
            chars.append(_CHARS[i - 2])
    return "".join(chars)


@dataclass(frozen=True)
class CharacterTokenizer:
    """The character tokenizer as a `Tokenizer`: prompt, newline, completion, end of sequence.

    It has no fields, so every instance is equal (and hashes alike), including one unpickled in
    another process.
    """

    pad_id: ClassVar[int] = PAD
    eos_id: ClassVar[int] = EOS
    vocab_size: ClassVar[int] = VOCAB_SIZE

    def encode(self, text: str) -> list[int]:
        return encode(text)

    def decode(self, ids) -> str:
        return decode(ids)

    def prompt_ids(self, example: Example) -> list[int]:
        return encode(example.prompt + PROMPT_END)

    def completion_ids(self, example: Example) -> list[int]:
        return encode(example.completion) + [EOS]


CHARACTERS = CharacterTokenizer()  # the tokenizer of preset models, pretrained here from scratch
