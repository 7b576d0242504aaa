"""Rule variants: the changed rule is stated in every prompt, and the variant's own verifier grades by it: the
base family's answer (the unchanged rule) is wrong, and so is a corrupted step."""

import numpy as np
import pytest

from scaling.tasks.families import DEFAULT_ORDER, FAMILIES, RULE_VARIANTS, completion_text
from scaling.tasks.grader import grade
from scaling.tasks.registry import TASKS

VARIANTS = {variant.name: variant for variant in RULE_VARIANTS.values()}
# A word of the rule every phrasing of the variant states.
RULE_WORDS = {
    "add_base8": ("base 8",),
    "sort_desc": ("descending", "largest to smallest"),
    "reverse_pairs": ("pair",),
    "lookup_arrow": ("x->y", "arrow"),
    "count_not": ("other than", "not", "differ"),
}

# The share of drawn problems whose answer the base rule gives too, at most: add_base8 always carries somewhere;
# a count of the target equals the count of the rest in some even-length lists.
AGREEMENT = {"add_base8": 0.0, "sort_desc": 0.05, "reverse_pairs": 0.1, "count_not": 0.25}

# variant, prompt, (right steps, right answer), (the base rule's steps, its answer), (a corrupted chain, its answer)
HAND_MADE = [
    ("add_base8", "add 35 and 27 in base 8",
     (("5+7+0=14", "3+2+1=6"), "64"),
     (("5+7+0=12", "3+2+1=6"), "62"),
     (("5+7+0=14", "3+2+1=7"), "74")),
    ("add_base8", "in base 8, 777+1=?",
     (("7+1+0=10", "7+0+1=10", "7+0+1=10"), "1000"),
     (("7+1+0=8", "7+0+0=7", "7+0+0=7"), "778"),
     (("7+1+0=10", "7+0+1=11", "7+0+1=10"), "1010")),
    ("sort_desc", "sort 3 1 2 1 descending",
     (("3", "3 2", "3 2 1", "3 2 1 1"), "3 2 1 1"),
     (("1", "1 1", "1 1 2", "1 1 2 3"), "1 1 2 3"),
     (("3", "3 1", "3 1 2", "3 1 2 1"), "3 1 2 1")),
    ("reverse_pairs", "reverse the pairs of 1 2 3 4 5, keeping each pair in order",
     (("5", "5 3", "5 3 4", "5 3 4 1", "5 3 4 1 2"), "5 3 4 1 2"),
     (("5", "5 4", "5 4 3", "5 4 3 2", "5 4 3 2 1"), "5 4 3 2 1"),
     (("5", "5 3", "5 3 3", "5 3 3 1", "5 3 3 1 2"), "5 3 3 1 2")),
    ("reverse_pairs", "write the pairs of 6 8 backwards, each pair unchanged",
     (("6", "6 8"), "6 8"),
     (("8", "8 6"), "8 6"),
     (("6", "6 9"), "6 9")),
    ("lookup_arrow", "7->c, c->a, a->b, 4->d (x->y gives y the value of x); what is a?",
     (("1:a=c", "2:c=7"), "7"),
     (("1:a=b",), "b"),  # the unchanged rule reads `a->b` as a takes b
     (("1:a=c", "2:c=4"), "4")),
    ("count_not", "how many items of 7 1 7 are not 7?",
     (("1:7 no 0", "2:1 yes 1", "3:7 no 1"), "1"),
     (("1:7 yes 1", "2:1 no 1", "3:7 yes 2"), "2"),
     (("1:7 no 0", "2:1 yes 2", "3:7 no 2"), "2")),
]


def test_the_four_families_of_the_generalization_grid_have_a_variant_that_is_never_trained_by_default():
    assert {"add", "sort", "lookup", "reverse"} <= set(RULE_VARIANTS)
    for base, variant in RULE_VARIANTS.items():
        assert variant.variant_of == base and FAMILIES[base].variant_of == ""
        assert variant.name in TASKS and variant.name not in FAMILIES and variant.name not in DEFAULT_ORDER
        assert variant.id_range == FAMILIES[base].id_range and variant.kind == FAMILIES[base].kind


@pytest.mark.parametrize("name, prompt, right, base_rule, corrupted", HAND_MADE)
def test_the_variants_verifier_grades_by_the_changed_rule(name, prompt, right, base_rule, corrupted):
    graded = grade(name, prompt, completion_text(*right))
    assert graded.answer_correct and graded.chain_correct and graded.process_acc == 1.0
    for steps, answer in (base_rule, corrupted):
        graded = grade(name, prompt, completion_text(steps, answer))
        assert not graded.answer_correct and not graded.chain_correct and graded.process_acc < 1.0


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_phrasing_states_the_rule_and_no_prompt_passes_for_the_base_familys(name):
    variant, base = VARIANTS[name], FAMILIES[VARIANTS[name].variant_of]
    assert len(variant.phrasings) >= 3
    assert all(any(word in phrasing for word in RULE_WORDS[name]) for phrasing in variant.phrasings)
    rng = np.random.default_rng(0)
    for _ in range(50):
        problem = variant.draw(rng, variant.id_range[1])
        with pytest.raises(ValueError):
            base.parse(problem.prompt)
        with pytest.raises(ValueError):
            variant.parse(base.draw(rng, base.id_range[1]).prompt)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_prompts_parse_back_to_their_problem_and_gold_chains_verify(name):
    variant, rng = VARIANTS[name], np.random.default_rng(1)
    phrasings = set()
    for difficulty in [*range(variant.id_range[0], variant.ood_range[1] + 1)] * 60:
        problem = variant.draw(rng, difficulty)
        assert variant.solve(problem.prompt) == problem
        assert all(variant.step_ok(problem.fields, problem.steps[:i], s) for i, s in enumerate(problem.steps))
        phrasings.add(problem.phrasing)
    assert phrasings == set(range(len(variant.phrasings)))


@pytest.mark.parametrize("name", sorted(set(VARIANTS) - {"lookup_arrow"}))  # lookup cannot read arrows at all
def test_the_base_rule_rarely_gives_the_variants_answer(name):
    """The base family's procedure run on the variant's problems agrees with the variant's answer only by
    accident (equal items, columns that never reach 8), so the variant measures the changed rule."""
    variant, base, rng = VARIANTS[name], FAMILIES[VARIANTS[name].variant_of], np.random.default_rng(2)
    agree = []
    for _ in range(1000):
        problem = variant.draw(rng, int(rng.integers(variant.id_range[0], variant.id_range[1] + 1)))
        agree.append(base.problem(problem.fields, 0).answer == problem.answer)
    assert np.mean(agree) <= AGREEMENT[name], np.mean(agree)
