import math

import pytest

from scaling.tasks.diversity import distinct_ngram_ratio, diversity_stats, family_phrasing_entropy
from scaling.tasks.mixture import training_pool


def test_entropy_grows_with_families_and_phrasings():
    one = training_pool(("add", "reverse"), 1, 600, seed=0, phrasings=1)
    assert family_phrasing_entropy(one) == 0.0
    two = training_pool(("add", "reverse"), 2, 600, seed=0, phrasings=1)
    assert family_phrasing_entropy(two) == pytest.approx(1.0)
    full = training_pool(("add", "reverse"), 2, 600, seed=0)  # every trained phrasing: all but the held-out one
    assert family_phrasing_entropy(full) == pytest.approx(1 + math.log2(2), abs=0.02)


def test_distinct_ngram_ratio():
    assert distinct_ngram_ratio(["abcd"], 4) == 1.0
    assert distinct_ngram_ratio(["aaaaaa"], 4) == pytest.approx(1 / 3)
    assert distinct_ngram_ratio([], 4) == 0.0


def test_stats_of_a_pool_are_named():
    stats = diversity_stats(training_pool(("add", "reverse"), 2, 100, seed=0))
    assert set(stats) == {"families", "family_phrasing_entropy", "distinct_4gram_ratio"} and stats["families"] == 2
