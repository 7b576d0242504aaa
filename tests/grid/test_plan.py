"""A cell's data is tokenized by its base's tokenizer: lengths follow it, and caches keep tokenizers apart."""

import dataclasses
from pathlib import Path

from checkpoint_folders import chatml_folder

from scaling.trainer.batches import sequence_ids
from scaling.grid.bases import parse_base
from scaling.grid.spec import Cell, expand, parse_spec
from scaling.grid.plan import LENGTH_QUANTUM, cell_data, cell_plan
from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer
from scaling.tasks.tokenizer import CHARACTERS

SPEC = """
name = "t"
[axes]
size = ["tiny"]
[data]
families = ["add", "reverse"]
examples = 24
[train]
budgets = [2]
batch_size = 4
[eval]
splits = ["id"]
n = 4
"""


def _cell(size: str, spec_dir: Path = Path(".")) -> Cell:
    return Cell(size, 0, 2, 1.0, "full", 0, cell_id="c", base=parse_base(size, spec_dir))


def test_a_preset_cell_uses_characters_and_an_hf_cell_its_checkpoints_tokenizer(tmp_path):
    spec = dataclasses.replace(parse_spec(SPEC), base_dir=str(tmp_path))
    folder = chatml_folder(tmp_path / "ckpt")
    assert _cell("tiny").base.tokenizer() is CHARACTERS
    assert _cell("hf:ckpt", tmp_path).base.tokenizer() == checkpoint_tokenizer(folder)
    assert cell_plan(spec, _cell("tiny"), init_params=None).tokenizer is CHARACTERS


def test_cell_lengths_follow_the_tokenizer_and_the_cache_keeps_them_apart(tmp_path):
    spec, cell = parse_spec(SPEC), dataclasses.replace(_cell("tiny"), cot="none")  # short answers: the template shows
    chat = checkpoint_tokenizer(chatml_folder(tmp_path))
    for tokenizer in (CHARACTERS, chat, CHARACTERS):  # the second character call is served by the cache
        data = cell_data(spec, cell, tokenizer)
        longest = max(len(sequence_ids(e, tokenizer)[0]) for e in data.pool + data.splits["id"])
        # The smallest multiple of the quantum that every sequence fits in.
        assert data.length % LENGTH_QUANTUM == 0 and longest <= data.length < longest + LENGTH_QUANTUM
    assert cell_data(spec, cell, chat).length > cell_data(spec, cell).length  # the system turn is long


def test_examples_per_family_scales_the_pool_with_diversity_and_keeps_the_evaluation_set():
    per_cell = parse_spec(SPEC)
    per_family = parse_spec(SPEC.replace("examples = 24", 'examples = 24\nexamples_per = "family"'))
    one, two = (dataclasses.replace(_cell("tiny"), diversity=k) for k in (1, 2))
    assert [len(cell_data(per_cell, c).pool) for c in (one, two)] == [24, 24]  # amount fixed: each family's share shrinks
    assert [len(cell_data(per_family, c).pool) for c in (one, two)] == [24, 48]  # each family keeps its 24
    families = [e.family for e in cell_data(per_family, two).pool]
    assert families.count("add") == families.count("reverse") == 24
    assert cell_data(per_family, two).splits == cell_data(per_cell, two).splits  # the same problems graded
    # The default stays out of the cell id, so grids written before the key existed keep theirs.
    explicit = parse_spec(SPEC.replace("examples = 24", 'examples = 24\nexamples_per = "cell"'))
    assert explicit.results_content() == per_cell.results_content() != per_family.results_content()


def test_a_control_trains_on_its_split_and_never_changes_a_grid_cells_pool_or_evaluation_set():
    text = SPEC.replace('splits = ["id"]', 'splits = ["train", "id", "ood_length", "ood_family"]').replace(
        "n = 4", "n = 4\nmemorization_n = 4")
    plain, controlled = parse_spec(text), parse_spec(text + "controls = true\n")
    cell = expand(plain)[0]
    regular = [c for c in expand(controlled) if not c.control]
    assert regular == [cell]
    before, after = cell_data(plain, cell), cell_data(controlled, regular[0])
    assert before.pool == after.pool and before.splits == after.splits
    evaluated = {e.key for split, rows in after.splits.items() if split != "train" for e in rows}
    for control in (c for c in expand(controlled) if c.control):
        data = cell_data(controlled, control)
        assert not {e.key for e in data.pool} & evaluated  # a control never trains on an evaluation problem
        assert data.splits["id"] == before.splits["id"]  # the grid's one evaluation set
        assert {e.family for e in data.pool} == ({"sum3", "sub"} if control.control == "ood_family" else {"add", "reverse"})
        assert len(data.pool) == 24
