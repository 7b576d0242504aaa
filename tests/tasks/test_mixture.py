"""Pools and evaluation splits: problems keyed, an eighth of keys for evaluation, one evaluation set per grid."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling.tasks.families import get_family
from scaling.tasks.mixture import (CONTROLLED_SPLITS, SPLITS, _draw_unique, control_pool, evaluation_split,
                                   is_evaluation_key, memorization_split, sample, training_pool)
from scaling.tasks.registry import TASKS, get_task

FAMILIES = ("add", "reverse")


def test_pool_size_is_fixed_and_uses_the_first_k_families():
    for k in (1, 2):
        pool = training_pool(FAMILIES, k, 300, seed=0)
        assert len(pool) == 300
        assert {e.family for e in pool} == set(FAMILIES[:k])
        assert len({e.key for e in pool}) == 300  # distinct problems, not only distinct prompts


def test_pool_is_deterministic_in_its_seed():
    assert training_pool(FAMILIES, 2, 50, seed=3) == training_pool(FAMILIES, 2, 50, seed=3)
    assert training_pool(FAMILIES, 2, 50, seed=3) != training_pool(FAMILIES, 2, 50, seed=4)


def test_a_problem_key_ignores_phrasing_and_presentation():
    add, lookup, compare = (get_family(name) for name in ("add", "lookup", "compare"))
    fields = {"a": "47", "b": "38"}
    assert len({add.problem(fields, p).key for p in range(3)}) == 1 and len({add.problem(fields, p).prompt for p in range(3)}) == 3
    shuffled = {"bindings": "u=h, b=u, h=3", "query": "b"}
    assert lookup.key(shuffled) == lookup.key({"bindings": "b=u, h=3, u=h", "query": "b"})
    taller = {"facts": "Ann is taller than Bob.", "first": "Ann", "relation": "taller", "second": "Bob"}
    shorter = {"facts": "Bob is shorter than Ann.", "first": "Bob", "relation": "shorter", "second": "Ann"}
    assert compare.key(taller) == compare.key(shorter)
    assert compare.key(taller) != compare.key({**taller, "first": "Bob", "second": "Ann"})  # the opposite claim


grids = st.fixed_dictionaries({
    "families": st.lists(st.sampled_from(["add", "reverse", "sort", "lookup", "bool", "word", "mul", "count"]),
                         min_size=1, max_size=4, unique=True),
    "diversity": st.integers(1, 4), "examples": st.integers(20, 400), "quality": st.sampled_from([1.0, 0.5]),
    "cot": st.sampled_from(["full", "short", "none"]), "seed": st.integers(0, 10_000), "eval_seed": st.integers(0, 10_000),
})


@settings(max_examples=15, deadline=None, database=None, derandomize=True)
@given(grids)
def test_no_evaluation_problem_is_a_training_problem_of_any_cell(grid):
    families, diversity = tuple(grid["families"]), min(grid["diversity"], len(grid["families"]))
    pool = training_pool(families, diversity, grid["examples"], grid["seed"], grid["quality"], grid["cot"])
    trained = {e.key for e in pool}
    for split in ("id", "ood_length", "ood_phrasing", "ood_family", "ood_compose"):
        try:
            examples = evaluation_split(split, families, ("sum3", "sub"), 24, grid["eval_seed"], grid["cot"])
        except ValueError as error:  # no composition of these families
            assert split == "ood_compose" and "no families" in str(error)
            continue
        assert not {e.key for e in examples} & trained
        assert all(is_evaluation_key(e.key) for e in examples) and not any(is_evaluation_key(k) for k in trained)


def test_every_cell_of_a_grid_meets_the_same_evaluation_problems():
    first = evaluation_split("id", FAMILIES + ("sort",), ("sub",), 30, seed=5)
    assert first == evaluation_split("id", FAMILIES + ("sort",), ("sub",), 30, seed=5)  # not the cell's seed or diversity
    assert {e.family for e in first} == {"add", "reverse", "sort"}  # every family of the grid, trained or not
    short = evaluation_split("id", FAMILIES + ("sort",), ("sub",), 30, seed=5, cot="short")
    assert [e.key for e in short] == [e.key for e in first] and short[0].steps == first[0].steps[-1:]


def test_split_families_difficulties_and_phrasings():
    pool = training_pool(FAMILIES, 1, 200, seed=0)
    assert {e.family for e in evaluation_split("ood_family", FAMILIES, ("sub",), 20, 0)} == {"sub"}
    longer = evaluation_split("ood_length", FAMILIES, ("sub",), 20, 0)
    assert min(e.difficulty for e in longer if e.family == "add") > max(e.difficulty for e in pool)
    held = evaluation_split("ood_phrasing", FAMILIES, ("sub",), 20, 0)
    assert {e.phrasing for e in held if e.family == "add"} == {get_family("add").held_out_phrasing}
    assert get_family("add").held_out_phrasing not in {e.phrasing for e in training_pool(FAMILIES, 2, 300, seed=1)}


def test_the_memorization_split_is_the_pools_first_correct_items():
    pool = training_pool(FAMILIES, 2, 300, seed=0, quality=0.5)
    train = memorization_split(pool, 128)
    assert len(train) == 128 and not any(e.corrupted for e in train) and all(e.split == "train" for e in train)
    assert [e.key for e in train] == [e.key for e in pool if not e.corrupted][:128]


def test_ood_families_may_not_be_trained_on():
    with pytest.raises(ValueError, match="must not be in the SFT mixture"):
        evaluation_split("ood_family", FAMILIES, ("reverse",), 10, 0)


def test_the_command_lines_samples_never_overlap_whatever_their_sizes():
    train = sample("add", "train", 2000, seed=7)
    evaluation = sample("add", "id", 300, seed=7)
    assert not {e.key for e in train} & {e.key for e in evaluation}
    assert not {e.prompt for e in train} & {e.prompt for e in evaluation}


def test_impossible_requests_fail_instead_of_hanging():
    with pytest.raises(ValueError, match="diversity"):
        training_pool(FAMILIES, 3, 10, seed=0)
    # One-digit additions (a >= b): 55 problems, about a seventh of them held for evaluation.
    with pytest.raises(ValueError, match="fewer than 200 distinct training problems"):
        _draw_unique(get_family("add"), "train", (1, 1), 200, np.random.default_rng(0), (0, 1), evaluation=False)


def test_every_split_name_is_known():
    assert SPLITS == ("train", "id", "ood_length", "ood_family", "ood_compose", "ood_phrasing", "ood_rule")
    assert all(name in TASKS for name in ("sum3", "sub"))


def test_an_evaluation_split_holds_n_problems_of_each_family():
    examples = evaluation_split("id", ("add", "reverse", "sort"), (), 40, seed=0)
    assert {family: sum(e.family == family for e in examples) for family in ("add", "reverse", "sort")} == {
        "add": 40, "reverse": 40, "sort": 40}
    assert all(e.distance == 0 for e in examples)


def test_ood_length_measures_each_level_past_training_alike_and_says_how_far():
    for name in ("add", "reverse", "lookup"):
        family = get_family(name)
        examples = evaluation_split("ood_length", (name,), (), 60, seed=1)
        levels = family.ood_range[1] - family.ood_range[0] + 1
        assert levels >= 3, f"{name}: a ladder needs at least three levels"
        by_distance = {d: sum(e.distance == d for e in examples) for d in range(1, levels + 1)}
        assert sum(by_distance.values()) == 60 and max(by_distance.values()) - min(by_distance.values()) <= 1
        assert all(e.distance == e.difficulty - family.id_range[1] for e in examples)


@pytest.mark.parametrize("split", CONTROLLED_SPLITS)
def test_a_control_trains_on_its_splits_distribution_and_never_on_an_evaluation_problem(split):
    families, held_out = ("add", "reverse", "sort", "lookup"), ("sum3", "sub")
    pool = control_pool(split, families, held_out, 400, seed=5)
    evaluation = evaluation_split(split, families, held_out, 30, seed=0)
    assert len(pool) == 400 and len({e.key for e in pool}) == 400
    assert {e.family for e in pool} == {e.family for e in evaluation}  # the split's own families
    assert not any(is_evaluation_key(e.key) for e in pool) and not {e.key for e in pool} & {e.key for e in evaluation}
    if split == "ood_length":  # the whole ladder and the trained range it starts from
        for name in families:
            family, drawn = get_family(name), {e.difficulty for e in pool if e.family == name}
            assert drawn == set(range(family.id_range[0], family.ood_range[1] + 1)), name
    if split == "ood_phrasing":
        assert any(e.phrasing == get_family(e.family).held_out_phrasing for e in pool)
    assert control_pool(split, families, held_out, 400, seed=5) == pool


def test_the_rule_split_asks_each_family_that_has_a_variant_in_its_changed_rule():
    examples = evaluation_split("ood_rule", ("add", "reverse", "sort", "lookup", "bool"), (), 10, seed=0)
    variants = {e.family for e in examples}
    assert {get_task(name).variant_of for name in variants} >= {"add", "sort", "lookup", "reverse"}
    assert all(get_task(name).variant_of in ("add", "reverse", "sort", "lookup", "bool") for name in variants)
