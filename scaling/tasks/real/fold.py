"""Folding real text into the character tokenizer's alphabet (`[data] fold = "ascii"`), so a preset base can spell it.

Real problems are written with currency symbols, typographic quotes and dashes, `×` and `÷`, bullets and odd
spaces; the preset models spell only `scaling.tasks.tokenizer.ALPHABET`. The fold rewrites each character
outside it by what it means: typographic quotes and dashes to their ASCII forms, `×` `÷` `−` `·` to `* / - *`,
vulgar fractions to `3/4`, any space to a space and zero-width characters to nothing, accented letters to
their base letters, currency symbols dropped (`$2.50` reads `2.50`). Whatever else lies outside is dropped.

Numbers never change: no digit is made or lost except that a vulgar fraction is written out (`2½` reads
`2 1/2`), superscripts and other digit-like signs that are not decimal digits are dropped (`m²` reads `m`),
and where a dropped character stood between two digits a space takes its place so the numbers stay apart.
"""

from __future__ import annotations

import functools
import unicodedata

from scaling.tasks.tokenizer import ALPHABET

FOLDS = ("none", "ascii")  # the values of [data] fold: texts as written, or folded into the alphabet

_KEPT = frozenset(ALPHABET)
# Characters whose meaning has an ASCII spelling that NFKD does not give.
_REPLACEMENTS = {
    **dict.fromkeys("‘’‚‛′`´", "'"),
    **dict.fromkeys("“”„‟″«»", '"'),
    **dict.fromkeys("‐‑‒–—―−⁃", "-"),
    **dict.fromkeys("×·∙⋅✕", "*"),
    **dict.fromkeys("÷∕⁄", "/"),
    **dict.fromkeys("•◦▪‣", "-"),
    "&": "and", "@": "at", "^": "**", "\t": " ", "\u2028": "\n", "\u2029": "\n", "\x0b": "\n", "\x0c": "\n",
    "\x85": "\n",
}


def fold_text(text: str, fold: str) -> str:
    """`text` as `fold` writes it: unchanged ("none"), or inside the character tokenizer's alphabet ("ascii")."""
    if fold not in FOLDS:
        raise ValueError(f"unknown fold {fold!r}; folds are {', '.join(FOLDS)}")
    if fold == "none" or _KEPT.issuperset(text):
        return text
    out: list[str] = []
    dropped_after_digit = False  # a character was dropped right after a digit: a digit next must not join it
    for char in text:
        spelled = _spelling(char)
        if not spelled:
            dropped_after_digit = dropped_after_digit or (bool(out) and out[-1][-1:].isdigit())
            continue
        if (dropped_after_digit or _is_fraction(char)) and spelled[0].isdigit() and out and out[-1][-1:].isdigit():
            out.append(" ")  # two numbers stay apart: "2½" is "2 1/2", never "21/2"
        out.append(spelled)
        dropped_after_digit = False
    return "".join(out)


def _is_fraction(char: str) -> bool:
    return unicodedata.decomposition(char).startswith("<fraction>")


@functools.lru_cache(maxsize=4096)
def _spelling(char: str) -> str:
    """What one character becomes: itself inside the alphabet, else its ASCII meaning, else "" (dropped)."""
    if char in _KEPT:
        return char
    if char in _REPLACEMENTS:
        return _REPLACEMENTS[char]
    category = unicodedata.category(char)
    if category == "Nd":  # a decimal digit of another script or width: the same digit
        return str(unicodedata.decimal(char))
    if _is_fraction(char):  # "¾": its digits around a slash
        return "".join(_spelling(part) for part in unicodedata.normalize("NFKD", char))
    if category == "Zs":  # every kind of space, non-breaking included
        return " "
    if category in ("Sc", "Cf", "Cc", "No"):  # currency, zero-width and control characters, superscripts
        return ""
    decomposed = unicodedata.normalize("NFKD", char)  # "é" is "e" and a combining accent, "…" is "..."
    kept = "".join(part for part in decomposed if part in _KEPT)
    return "" if any(part.isdigit() for part in kept) else kept
