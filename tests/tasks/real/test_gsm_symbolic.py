"""reasoning-gym's GSM-style templates as a data source, read from the real package: deterministic rows, evaluation
problems never trained on, nested diversity, chance floors, CoT styles, grading, refusals."""

import os
import re
import subprocess
import sys
from collections import Counter
from fractions import Fraction

import pytest

pytest.importorskip("reasoning_gym", reason="reasoning-gym is not installed (make install)")

from scaling.tasks.dataset import prompt_key  # noqa: E402
from scaling.tasks.steps import check_steps  # noqa: E402
from scaling.tasks.real.gsm_symbolic import (CHANCE_DRAWS, SPLITS, GsmSymbolicSource, broken_templates,  # noqa: E402
                                             distinct_problems, good_templates, gsm_symbolic_source, problem,
                                             template_chance)
from scaling.tasks.tokenizer import ALPHABET  # noqa: E402

SOURCE = gsm_symbolic_source(("0", "1", "52"), ("2",), "none")


def keys(examples) -> set[str]:
    return {e.key for e in examples}


def test_a_problem_is_the_same_in_every_process():
    first = problem("0", "train:0", 0, "none")
    assert first.question == ("Olivia can peel 4 carrots a minute and saute 40 carrots in 14 minutes. How long will it "
                              "take her to peel and saute 80 carrots?")
    assert first.answer == "48" and first.completion.endswith("#### 48") and first.key == prompt_key(first.question)
    # Another process, another hash seed: string seeds are hashed by SHA-512, not by hash().
    code = "from scaling.tasks.real.gsm_symbolic import problem; print(problem('0', 'train:0', 0, 'none').key)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env=os.environ | {"PYTHONHASHSEED": "12345", "PYTHONPATH": os.getcwd()})
    assert other.stdout.strip() == first.key


def test_the_default_groups_are_the_good_templates_in_a_fixed_shuffled_order_less_the_held_out_ones():
    order = good_templates()
    assert len(order) == 85 and order[:6] == ("27", "1", "3", "12", "64", "50")  # pinned: cells' mixtures follow it
    assert sorted(order, key=int) != list(order)  # shuffled, not index order
    source = gsm_symbolic_source((), ("1", "12"), "none")
    assert source.groups == tuple(t for t in order if t not in ("1", "12")) and source.ood_groups == ("1", "12")
    assert not set(order) & broken_templates() and len(broken_templates()) == 15


@pytest.mark.parametrize("groups, ood, message", [
    (("32",), (), "template 32 is one reasoning-gym marks as needing a fix"),
    (("0",), ("35",), "ood_groups: gsm_symbolic template 35 is one reasoning-gym marks as needing a fix"),
    (("100",), (), "unknown gsm_symbolic template '100'"),
    (("07",), (), "unknown gsm_symbolic template '07'"),
    (("zero",), (), "unknown gsm_symbolic template 'zero'"),
    (("0", "0"), (), "template '0' is named twice"),
    (("0", "1"), ("1",), "ood_groups ['1'] are also in groups"),
])
def test_bad_templates_are_refused_by_name(groups, ood, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        gsm_symbolic_source(groups, ood, "none")


def test_evaluation_rows_are_n_distinct_problems_per_template_and_no_training_pool_holds_one():
    evaluation = SOURCE.evaluation_set(SPLITS, 8, 0, "full")
    assert [len(evaluation[s]) for s in ("id", "ood_family")] == [24, 8]
    assert Counter(e.family for e in evaluation["id"]) == {"0": 8, "1": 8, "52": 8}
    held_out = keys(evaluation["id"]) | keys(evaluation["ood_family"])
    assert len(held_out) == 32
    assert SOURCE.evaluation_set(SPLITS, 8, 0, "full") == evaluation  # the same for every cell
    for diversity in (1, 2, 3):
        pool = SOURCE.training_pool(diversity, 150, 0, 1.0, "full", held_out)
        assert len(keys(pool)) == 150 and not keys(pool) & held_out
    control = SOURCE.control_pool("ood_family", 30, 0, "full", held_out)
    assert {e.family for e in control} == {"2"} and not keys(control) & held_out
    # Template 52 holds about 200 problems: left to itself its training stream meets the evaluation ones.
    assert keys(SOURCE.training_pool(3, 150, 0, 1.0, "full", frozenset())) & held_out


def test_diversity_k_trains_on_the_first_k_templates_and_smaller_shares_are_prefixes():
    one = SOURCE.training_pool(1, 12, 0, 1.0, "full", frozenset())
    two = SOURCE.training_pool(2, 12, 0, 1.0, "full", frozenset())
    assert {e.family for e in one} == {"0"} and Counter(e.family for e in two) == {"0": 6, "1": 6}
    assert keys(e for e in two if e.family == "0") <= keys(one)
    assert SOURCE.training_pool(2, 12, 1, 1.0, "full", frozenset()) != two  # the seed draws other problems
    assert [p.key for p in distinct_problems("0", "train:0", 5, "none")] == \
        [p.key for p in distinct_problems("0", "train:0", 9, "none")][:5]


def test_a_templates_chance_floor_is_the_share_of_its_most_common_answer():
    drawn = {p.key: p for p in (problem("13", "chance", i, "none") for i in range(CHANCE_DRAWS))}
    answers = Counter(Fraction(p.answer) for p in drawn.values())
    assert template_chance("13", "none") == max(answers.values()) / len(drawn) > 0.5  # few answers: a high floor
    assert template_chance("0", "none") < 0.05
    assert {e.chance for e in SOURCE.evaluation_set(("id",), 2, 0, "full")["id"] if e.family == "0"} == \
        {template_chance("0", "none")}


def test_cot_styles_keep_the_whole_solution_its_last_step_or_the_answer():
    full, short, none = (SOURCE.evaluation_set(("id",), 1, 0, cot)["id"][0] for cot in ("full", "short", "none"))
    answer = f"#### {full.answer}"
    lines = full.completion.split("\n")
    assert full.completion.endswith(answer) and len(full.steps) == len(lines) - 1 >= 2
    assert short.completion == f"{lines[-2].strip()}\n{answer}" and short.steps == (lines[-2].strip(),)
    assert none.completion == answer and none.steps == ()
    assert full.prompt == short.prompt == none.prompt and "Give the result" not in full.prompt  # no instruction added


def test_the_grader_reads_the_number_after_the_marker_and_zero_shot_reads_leniently():
    example = SOURCE.evaluation_set(("id",), 1, 0, "full")["id"][0]
    strict, lenient = SOURCE.grader, SOURCE.zero_shot_grader
    n = int(example.answer)
    assert strict(example, example.completion).answer_correct
    assert strict(example, f"so it is\n#### {n}.0").answer_correct  # numbers compared as numbers
    assert strict(example, f"#### {n:,}").answer_correct
    assert not strict(example, f"#### {n + 1}").answer_correct
    assert not strict(example, f"The answer is {n}.").answer_correct  # strict: after SFT the marker is the format
    assert not strict(example, "#### many").answer_correct
    assert lenient(example, f"The answer is {n}.").answer_correct
    assert not lenient(example, f"The answer is {n + 1}.").answer_correct


def test_decimal_answers_grade_as_numbers():
    # Template 25 writes "#### 16.0" where reasoning-gym's answer is "16".
    drawn = distinct_problems("25", "train:0", 1, "none")[0]
    assert drawn.completion.endswith(".0") and "." not in drawn.answer
    source = gsm_symbolic_source(("25",), (), "none")
    example = source.training_pool(1, 1, 0, 1.0, "full", frozenset())[0]
    assert source.grader(example, example.completion).answer_correct


def test_the_grid_asks_only_what_it_can_give():
    SOURCE.check_grid(("train", "id", "ood_family"), (1.0, 0.5))
    with pytest.raises(ValueError, match="split 'ood_length' needs the synthetic families"):
        SOURCE.check_grid(("train", "ood_length"), (1.0,))
    with pytest.raises(ValueError, match="ood_family needs"):
        gsm_symbolic_source(("0",), (), "none").check_grid(("ood_family",), (1.0,))
    assert gsm_symbolic_source(("0",), (), "none").default_splits == ("train", "id")
    assert SOURCE.control_splits(("train", "id", "ood_family")) == ("ood_family",) and SOURCE.control_trained("x") == ("2",)


def test_too_few_distinct_problems_is_said_with_the_template():
    with pytest.raises(ValueError, match="template 52 gives [0-9]+ distinct problems in 6200 draws, fewer than the 300"):
        distinct_problems("52", "eval:0", 300, "none")


def test_the_fold_applies_to_every_text_and_the_spelling_check_finds_what_is_left():
    assert gsm_symbolic_source(("9",), (), "none").first_unencodable(ALPHABET)[2] in "$€£"
    folded = gsm_symbolic_source(("9",), (), "ascii")
    assert folded.first_unencodable(ALPHABET) is None
    pool = folded.training_pool(1, 20, 0, 1.0, "full", frozenset())
    assert all(set(e.prompt + e.completion) <= set(ALPHABET) for e in pool)


def test_drawn_content_and_provenance_name_the_package_version_and_templates():
    content = SOURCE.drawn_content()
    assert content["source"] == {"name": "gsm_symbolic", "package": "reasoning-gym", "version": "0.1.25"}
    assert content["groups"] == ["0", "1", "52"] and content["fold"] == "none"
    provenance = SOURCE.provenance()
    assert provenance["licence"] == "Apache-2.0" and provenance["templates"] == ["0", "1", "52"]
    assert provenance["held_out_templates"] == ["2"]


def test_training_texts_are_every_row_a_cell_can_draw():
    held_out = keys(e for rows in SOURCE.evaluation_set(SPLITS, 4, 0, "full").values() for e in rows)
    texts = set(SOURCE.training_texts([(1, 10, 1.0), (3, 12, 1.0)], [0, 1], control_n=5, held_out=held_out))
    for seed in (0, 1):
        for diversity, n in ((1, 10), (3, 12)):
            for cot in ("full", "short", "none"):
                for e in SOURCE.training_pool(diversity, n, seed, 1.0, cot, held_out):
                    assert e.prompt in {t.split("\n")[0] for t in texts}
                    assert any(t.startswith(e.prompt + "\n") and t.endswith(e.completion) for t in texts)
    control = SOURCE.control_pool("ood_family", 5, 0, "full", held_out)
    assert {f"{e.prompt}\n{e.completion}" for e in control} <= texts
    assert isinstance(SOURCE, GsmSymbolicSource) and len(texts) == len(set(texts))


def test_quality_puts_one_arithmetic_error_into_the_rest_and_lower_qualities_keep_a_prefix_of_correct_rows():
    source = gsm_symbolic_source(("0", "1"), (), "none")
    whole = source.training_pool(2, 16, 0, 1.0, "full", frozenset())
    half = source.training_pool(2, 16, 0, 0.5, "full", frozenset())
    assert not any(e.corrupted for e in whole) and sum(e.corrupted for e in half) == 8
    assert keys(whole) == keys(half)  # the same problems, half of them with a wrong step
    as_written = {e.key: e for e in whole}
    for example in half:
        if not example.corrupted:
            assert example == as_written[example.key]
            continue
        check = check_steps(example.completion)
        assert not check.verified and check.statements[check.first_wrong].line == example.corrupted_step
        assert example.answer == as_written[example.key].answer  # the error is in the chain, not the answer
        assert check_steps(as_written[example.key].completion).verified
    quarter = source.training_pool(2, 16, 0, 0.25, "full", frozenset())
    assert {e.key for e in quarter if not e.corrupted} < {e.key for e in half if not e.corrupted}
    assert source.training_pool(2, 16, 0, 0.5, "full", frozenset()) == half  # seeded by the cell's seed and the row
