"""Measured diversity of a training pool, so fits can use diversity as a continuous axis."""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

from scaling.tasks.mixture import Example


def family_phrasing_entropy(pool: Sequence[Example]) -> float:
    """Shannon entropy, in bits, of the pool's (family, phrasing) distribution."""
    counts = Counter((e.family, e.phrasing) for e in pool)
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def distinct_ngram_ratio(texts: Sequence[str], n: int = 4) -> float:
    """Distinct character n-grams over all n-grams of the texts (1: nothing repeats)."""
    grams = [text[i : i + n] for text in texts for i in range(len(text) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def diversity_stats(pool: Sequence[Example]) -> dict[str, float]:
    """The pool's diversity statistics, by name."""
    return {
        "families": float(len({e.family for e in pool})),
        "family_phrasing_entropy": family_phrasing_entropy(pool),
        "distinct_4gram_ratio": distinct_ngram_ratio([e.prompt + "\n" + e.completion for e in pool], 4),
    }
