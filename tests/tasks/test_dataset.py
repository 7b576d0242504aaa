"""A user's JSONL file as a grid's data: groups in place of families, a fixed held-back evaluation set that
no training row repeats, quality as the verified share, CoT styles, and an order-free fingerprint."""

import json
import random
from pathlib import Path

import pytest

from scaling.errors import UserError
from scaling.tasks.dataset import (
    DatasetSource,
    dataset_of,
    fingerprint,
    group_chance,
    normalized_prompt,
    styled_completion,
)
from scaling.tasks.grader import AnswerGrader
from scaling.tasks.jsonl import AnswerExtractor
from scaling.tasks.mixture import sample

GROUPS = ("add", "reverse", "sort")


def rows_of(families=(*GROUPS, "lookup"), n=120, quality=0.6) -> list[dict]:
    """Chat rows with a `category` and a `verified` field, from the synthetic tasks (corrupted CoT unverified)."""
    rows = []
    for family in families:
        for e in sample(family, "train", n, seed=5, quality=quality):
            rows.append({"messages": [{"role": "system", "content": "Solve it."}, {"role": "user", "content": e.prompt},
                                      {"role": "assistant", "content": e.completion}],
                         "category": family, "verified": not e.corrupted})
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def source_of(path: Path, **kw) -> DatasetSource:
    return DatasetSource(str(path), GROUPS, ("lookup",), "category", "verified", AnswerExtractor(), **kw)


def held_out_keys(evaluation) -> frozenset:
    return frozenset(e.key for examples in evaluation.values() for e in examples)


def test_the_evaluation_rows_are_the_grids_and_no_training_row_repeats_their_problems(tmp_path):
    rows = rows_of()
    # A near-copy of a row, its prompt in other case and spacing: one problem, so never on both sides.
    copy = json.loads(json.dumps(rows[0]))
    copy["messages"][1]["content"] = "  " + copy["messages"][1]["content"].upper() + " "
    source = source_of(write(tmp_path / "d.jsonl", [*rows, copy]))
    evaluation = source.evaluation_set(("train", "id", "ood_family"), 12, seed=0, cot="full")
    assert [len(evaluation[s]) for s in ("id", "ood_family")] == [12 * len(GROUPS), 12]  # n rows of each group
    assert {e.family for e in evaluation["id"]} == set(GROUPS) and {e.family for e in evaluation["ood_family"]} == {"lookup"}
    assert all(not e.corrupted for examples in evaluation.values() for e in examples)  # unverified rows never graded
    held = held_out_keys(evaluation)
    for diversity in (1, 3):
        for quality in (1.0, 0.6):
            for seed in (0, 1):
                pool = source.training_pool(diversity, 60, seed, quality, "full", held)
                assert len(pool) == 60 and not {e.key for e in pool} & held
                assert {e.family for e in pool} == set(GROUPS[:diversity])
    assert normalized_prompt(copy["messages"][1]["content"]) == normalized_prompt(rows[0]["messages"][1]["content"])
    # The evaluation set depends on the evaluation seed alone.
    assert source.evaluation_set(("id",), 12, seed=0, cot="full")["id"] == evaluation["id"]
    assert source.evaluation_set(("id",), 12, seed=1, cot="full")["id"] != evaluation["id"]


def test_quality_is_the_verified_share_of_each_group_and_lower_qualities_keep_a_prefix(tmp_path):
    source = source_of(write(tmp_path / "d.jsonl", rows_of()))
    held = held_out_keys(source.evaluation_set(("id",), 9, 0, "full"))
    by_quality = {q: source.training_pool(3, 60, 0, q, "full", held) for q in (1.0, 0.75, 0.5)}
    for quality, pool in by_quality.items():
        for group in GROUPS:
            rows = [e for e in pool if e.family == group]
            assert len(rows) == 20 and sum(not e.corrupted for e in rows) == round(quality * 20)
    verified = {q: {e.id for e in pool if not e.corrupted} for q, pool in by_quality.items()}
    assert verified[0.5] <= verified[0.75] <= verified[1.0]


def test_the_same_rows_in_another_order_are_the_same_data_and_an_edit_is_not(tmp_path):
    rows = rows_of()
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    a, b = write(tmp_path / "a.jsonl", rows), tmp_path / "b.jsonl"
    # Another key order and spacing in each line: the same rows.
    b.write_text("".join(json.dumps(dict(reversed(list(row.items()))), indent=None, separators=(", ", ": ")) + "\n"
                         for row in shuffled))
    assert fingerprint(a, "source") == fingerprint(b, "source")
    pools = []
    for path in (a, b):
        source = source_of(path)
        evaluation = source.evaluation_set(("id", "ood_family"), 12, 0, "full")
        pools.append((evaluation, source.training_pool(2, 40, 1, 0.75, "full", held_out_keys(evaluation))))
    assert pools[0] == pools[1]
    edited = json.loads(json.dumps(rows))
    edited[7]["verified"] = not edited[7]["verified"]
    assert fingerprint(write(tmp_path / "c.jsonl", edited), "source") != fingerprint(a, "source")


def test_cot_styles_keep_the_answer_where_the_extractor_finds_it(tmp_path):
    rows = [{"prompt": "2+3?", "completion": "Add them.\n2 plus 3 is 5.\nThe answer is [5].", "family": "g"},
            {"prompt": "1+1?", "completion": "One and one.\nThe answer is [2].", "family": "g"}]
    extractor = AnswerExtractor("regex", pattern=r"\[(\d+)\]")
    source = DatasetSource(str(write(tmp_path / "d.jsonl", rows)), ("g",), extractor=extractor)
    (row,) = [r for r in dataset_of(source).rows if r.record.prompt == "2+3?"]
    assert styled_completion(row, "full") == rows[0]["completion"]
    assert styled_completion(row, "short") == "2 plus 3 is 5.\nThe answer is [5]."
    assert styled_completion(row, "none") == "The answer is [5]."
    pool = source.training_pool(1, 2, 0, 1.0, "short", frozenset())
    assert {e.answer for e in pool} == {"5", "2"} and all(len(e.steps) == 1 for e in pool)
    grader = AnswerGrader(extractor)
    (five,) = [e for e in pool if e.answer == "5"]
    assert grader(five, "so... The answer is [5]").answer_correct
    wrong = grader(five, "The answer is [6]")
    assert not wrong.answer_correct and wrong.chain_correct is None and wrong.process_acc != wrong.process_acc  # NaN


def test_a_groups_chance_floor_is_the_share_of_its_most_common_answer(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"#### {a}", "family": "yesno"} for i, a in enumerate("yes yes yes no".split())]
    rows.append({"prompt": "q9", "completion": "#### no", "family": "yesno", "answer": "maybe"})  # the field wins
    source = DatasetSource(str(write(tmp_path / "d.jsonl", rows)), ("yesno",))
    assert group_chance(dataset_of(source), "yesno") == pytest.approx(3 / 5)
    (pool_row,) = [e for e in source.training_pool(1, 5, 0, 1.0, "full", frozenset()) if e.prompt == "q9"]
    assert pool_row.answer == "maybe" and pool_row.chance == pytest.approx(3 / 5)


def test_an_eval_file_takes_the_place_of_held_back_rows_and_training_never_repeats_its_problems(tmp_path):
    rows = rows_of(n=60)
    train = write(tmp_path / "train.jsonl", rows)
    # The eval file: some problems of the training file (which training must then leave out), and new ones.
    shared = [row for row in rows if row["verified"]][:6:2]
    new = [{"prompt": "reverse 1 2 3", "completion": "3\n3 2\n3 2 1\n#### 3 2 1", "category": "reverse"},
           {"prompt": "add 36, 21 and 1", "completion": "#### 58", "category": "lookup"}]
    evaluation_file = write(tmp_path / "eval.jsonl", [*shared, *new])
    source = source_of(train, eval_path=str(evaluation_file))
    evaluation = source.evaluation_set(("train", "id", "ood_family"), 5, seed=0, cot="full")
    assert len(evaluation["id"]) == len(shared) + 1 and len(evaluation["ood_family"]) == 1  # all its rows, whatever n
    held = held_out_keys(evaluation)
    pool = source.training_pool(3, 90, 0, 1.0, "full", held)
    assert not {e.key for e in pool} & held
    assert not {e.prompt for e in pool} & {e.prompt for e in evaluation["id"]}  # the training file holds them



def test_a_row_whose_completion_makes_the_answer_pattern_backtrack_is_refused_naming_its_line(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"steps\n#### {i}", "category": "add", "verified": True} for i in range(3)]
    rows[1]["completion"] = "-" * 60 + "!"  # (-|--)+$ backtracks without end on it; no probe text holds a "-"
    source = DatasetSource(str(write(tmp_path / "d.jsonl", rows)), ("add",), (), "category", "verified",
                           AnswerExtractor(mode="regex", pattern="(-|--)+$"))
    with pytest.raises(UserError, match=r"d.jsonl line 2: answer pattern '\(-\|--\)\+\$' took longer than 1 s on a "
                                        r"completion of 61 characters"):
        dataset_of(source)


def test_steps_as_the_quality_field_marks_rows_the_step_checker_faults_unverified(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"He has {i}*2=<<{i}*2={i * 2}>>{i * 2} apples\n#### {i * 2}",
             "category": "g"} for i in range(6)]
    rows += [{"prompt": f"w{i}", "completion": f"He has {i}*2=<<{i}*2={i * 2 + 1}>>{i * 2 + 1} apples\n#### {i * 2 + 1}",
              "category": "g"} for i in range(6)]
    rows.append({"prompt": "plain", "completion": "No arithmetic here.\n#### 3", "category": "g"})
    source = DatasetSource(str(write(tmp_path / "d.jsonl", rows)), ("g",), group_by="category", quality_field="@steps")
    verified = {row.record.prompt: row.verified for row in dataset_of(source).of("g")}
    assert verified == {**{f"q{i}": True for i in range(6)}, **{f"w{i}": False for i in range(6)}, "plain": True}
    pool = source.training_pool(1, 8, 0, 0.5, "full", frozenset())
    assert {e.prompt[0] for e in pool if e.corrupted} == {"w"} and sum(e.corrupted for e in pool) == 4
    no_steps = [{"prompt": f"p{i}", "completion": f"Just so.\n#### {i}", "category": "g"} for i in range(3)]
    with pytest.raises(UserError, match="no row of groups g has an arithmetic statement"):
        dataset_of(DatasetSource(str(write(tmp_path / "plain.jsonl", no_steps)), ("g",), group_by="category", quality_field="@steps"))
