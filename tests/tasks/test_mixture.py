import numpy as np
import pytest

from scaling.tasks.families import get_family
from scaling.tasks.mixture import _draw_unique, evaluation_split, training_pool

FAMILIES = ("add", "reverse")


def test_pool_size_is_fixed_and_uses_the_first_k_families():
    for k in (1, 2):
        pool = training_pool(FAMILIES, k, 300, seed=0)
        assert len(pool) == 300
        assert {e.family for e in pool} == set(FAMILIES[:k])
        assert len({e.prompt for e in pool}) == 300


def test_pool_is_deterministic_in_its_seed():
    assert training_pool(FAMILIES, 2, 50, seed=3) == training_pool(FAMILIES, 2, 50, seed=3)
    assert training_pool(FAMILIES, 2, 50, seed=3) != training_pool(FAMILIES, 2, 50, seed=4)


@pytest.mark.parametrize("split", ["id", "ood_length", "ood_family"])
def test_evaluation_prompts_never_appear_in_the_training_pool(split):
    pool = training_pool(FAMILIES, 2, 500, seed=0)
    examples = evaluation_split(split, pool, FAMILIES, 2, ("sub",), 100, seed=0)
    assert len(examples) == 100
    assert not {e.prompt for e in examples} & {e.prompt for e in pool}
    assert all(e.split == split for e in examples)


def test_split_families_and_difficulties():
    pool = training_pool(FAMILIES, 1, 200, seed=0)
    assert {e.family for e in evaluation_split("ood_family", pool, FAMILIES, 1, ("sub",), 20, 0)} == {"sub"}
    assert {e.family for e in evaluation_split("id", pool, FAMILIES, 1, ("sub",), 20, 0)} == {"add"}
    longer = evaluation_split("ood_length", pool, FAMILIES, 1, ("sub",), 20, 0)
    assert min(e.difficulty for e in longer) > max(e.difficulty for e in pool)
    assert evaluation_split("train", pool, FAMILIES, 1, ("sub",), 20, 0) == pool[:20]


def test_ood_families_may_not_be_trained_on():
    pool = training_pool(FAMILIES, 2, 50, seed=0)
    with pytest.raises(ValueError, match="must not be in the SFT mixture"):
        evaluation_split("ood_family", pool, FAMILIES, 2, ("reverse",), 10, 0)


def test_impossible_requests_fail_instead_of_hanging():
    with pytest.raises(ValueError, match="diversity"):
        training_pool(FAMILIES, 3, 10, seed=0)
    # One-digit additions (a >= b) in three phrasings: 165 distinct prompts, not 200.
    with pytest.raises(ValueError, match="fewer than 200"):
        _draw_unique(get_family("add"), "id", (1, 1), 200, np.random.default_rng(0), exclude=set())
