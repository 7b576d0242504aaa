"""A deterministic character-level tokenizer for the synthetic tasks: small vocabulary, stable ids."""

from __future__ import annotations

import numpy as np

PAD, EOS = 0, 1
# Ids never change once published: new characters may only be appended.
_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ +-*/=%<>()[],.:;?!#'\"_\n"
_ID_OF = {c: i + 2 for i, c in enumerate(_CHARS)}
VOCAB_SIZE = len(_CHARS) + 2


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
