"""`scaling baseline RUN` end to end: each base of a real tiny grid graded before SFT on the grid's own
evaluation set, a checkpoint base through its chat template, and a folder that is not a run refused."""

import os
from pathlib import Path

import pandas as pd
import pytest
from checkpoint_folders import chatml_folder
from cli_helpers import assert_refused, run_cli
from runs_helpers import tiny_grid

from scaling.grid.baseline import BASELINE, COLUMNS, ROOM, base_cells
from scaling.grid.plan import cell_data
from scaling.grid.runner import open_run
from scaling.grid.spec import parse_spec
from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer

N = 8  # examples a split


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny grid of two bases (random init and 20k pretraining tokens), two seeds, run for two steps."""
    root = tmp_path_factory.mktemp("grid")
    (root / "grid.toml").write_text(tiny_grid("b", seeds=(0, 1), budgets=(2,)).replace("n = 16", f"n = {N}"))
    assert run_cli(["run", str(root / "grid.toml"), "--out", str(root / "run")], root).code == 0
    return root / "run"


@pytest.mark.slow
def test_baseline_grades_each_base_on_the_grids_evaluation_set_and_reruns_the_same(run):
    first = run_cli(["baseline", str(run)], run)
    assert first.code == 0, first
    table = pd.read_parquet(run / BASELINE)
    assert tuple(table.columns) == COLUMNS
    # One row per base, split (every one but train) and example; two seeds share their base.
    assert table.groupby(["size", "pretrain_tokens", "split"]).size().to_dict() == {
        ("tiny", tokens, split): N for tokens in (0, 20000) for split in ("id", "ood_family")}
    grades = pd.concat(pd.read_parquet(path) for path in (run / "cells").glob("*.grades.parquet"))
    for (_, split), rows in table.groupby(["pretrain_tokens", "split"]):
        assert sorted(rows.key) == sorted(set(grades[grades.split == split].key))  # the problems every cell is graded on
    assert table.completion.map(type).eq(str).all() and (table.generated_tokens > 0).all()
    assert table.chance.between(0, 1).all() and table.answer_correct.dtype == bool
    summary = first.out.splitlines()
    assert summary[0].split() == ["size", "pretrain", "split", "correct", "accuracy", "chance"]
    assert len(summary) == 1 + 4 + 1 and f"/{N}" in summary[1] and summary[-1].endswith(BASELINE)
    assert first.err.count("baseline: tiny") == 4  # a progress line per base and split; --quiet drops them

    quiet = run_cli(["baseline", str(run), "--quiet"], run)
    assert quiet.code == 0 and quiet.err == "" and quiet.out == first.out
    pd.testing.assert_frame_equal(pd.read_parquet(run / BASELINE), table)  # greedy, so the same table again


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random Qwen2 checkpoint with a ChatML tokenizer (as tests/hf/test_hf_grid.py builds it)."""
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    import transformers

    folder = chatml_folder(tmp_path_factory.mktemp("checkpoint") / "base")
    config = transformers.Qwen2Config(vocab_size=checkpoint_tokenizer(folder).vocab_size, hidden_size=32,
                                      intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
                                      bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


HF_SPEC = """
name = "hf"
[axes]
size = ["hf:base"]
quality = [1.0, 0.5]
[data]
families = ["add"]
ood_families = ["sum3"]
examples = 32
[train]
budgets = [2]
batch_size = 2
[eval]
splits = ["train", "id"]
n = 4
memorization_n = 4
"""


def test_a_checkpoint_base_is_graded_through_its_own_tokenizer_and_chat_template(checkpoint):
    root = checkpoint.parent
    spec = parse_spec(HF_SPEC, base_dir=root)
    open_run(spec, root / "run")  # a run folder as `scaling run` starts it; no cell needs to run
    result = run_cli(["baseline", str(root / "run"), "--quiet"], root)
    assert result.code == 0, result
    table = pd.read_parquet(root / "run" / BASELINE)
    assert set(table["size"]) == {"hf:base"} and set(table.split) == {"id"} and len(table) == 4  # one base, two mixtures

    chat = checkpoint_tokenizer(checkpoint)
    [cell] = base_cells(spec)
    data = cell_data(spec, cell, chat)
    assert list(table.key) == [e.key for e in data.splits["id"]]
    # Rows were the template's prompt (its system turn and headers, counted in the checkpoint's tokens) and
    # the rest of ROOM times the split's length: a base that never ends its turn fills them.
    room = [ROOM * data.split_lengths["id"] - len(chat.prompt_ids(e)) for e in data.splits["id"]]
    assert all(0 < g <= r for g, r in zip(table.generated_tokens, room)) and list(table.generated_tokens) != [1] * 4
    assert any(g == r for g, r in zip(table.generated_tokens, room))


def test_a_folder_that_is_not_a_run_is_refused_in_one_line(tmp_path):
    assert "not a run folder" in assert_refused(["baseline", "nosuch"], tmp_path, named="nosuch")
    (tmp_path / "empty").mkdir()
    assert_refused(["baseline", "empty"], tmp_path, named="empty")
    (tmp_path / "file").write_text("not a folder")
    assert_refused(["baseline", "file"], tmp_path, named="file")
