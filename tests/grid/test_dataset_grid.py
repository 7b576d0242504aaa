"""A grid over a user's own JSONL data: groups where families were, end to end through `scaling run` and
`collect`; cell ids that follow the rows' content (not their order or the file's place); bad datasets
refused in one line before any work."""

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from cli_helpers import assert_refused, run_cli

from scaling.grid.spec import expand, load_spec
from scaling.tasks.mixture import sample

SPEC = """
name = "own"
[axes]
size = ["tiny"]
diversity = [1, 2]
quality = [1.0, 0.5]
[data]
source = "data.jsonl"
group_by = "category"
groups = ["add", "reverse"]
ood_groups = ["lookup"]
quality_field = "verified"
examples = 48
[train]
budgets = [8, 16]
batch_size = 8
warmup_steps = 2
[eval]
n = 12
memorization_n = 8
"""


def rows(n: int = 100) -> list[dict]:
    """Rows as a user might have them: chat messages, a category, a verified flag (the synthetic tasks'
    corrupted CoT unverified), and a few hand-written rows in another style."""
    out = []
    for family in ("add", "reverse", "lookup"):
        for e in sample(family, "train", n, seed=2, quality=0.6):
            out.append({"messages": [{"role": "user", "content": e.prompt}, {"role": "assistant", "content": e.completion}],
                        "category": family, "verified": not e.corrupted})
    out += [{"prompt": f"What is {a} plus {b}? Think step by step.", "completion": f"{a} and {b} make {a + b}.\n#### {a + b}",
             "category": "add", "verified": True} for a, b in [(12, 30), (7, 8), (41, 1)]]
    return out


def write_grid(folder: Path, data: list[dict] | bytes, spec: str = SPEC) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    payload = data if isinstance(data, bytes) else "".join(json.dumps(row) + "\n" for row in data).encode()
    (folder / "data.jsonl").write_bytes(payload)
    (folder / "spec.toml").write_text(spec)
    return folder / "spec.toml"


def test_a_grid_trains_on_a_jsonl_dataset_and_its_results_name_the_groups(tmp_path):
    write_grid(tmp_path, rows())
    ran = run_cli(["run", "spec.toml", "--out", "run"], tmp_path)
    assert ran.code == 0, ran
    assert run_cli(["collect", "run"], tmp_path).code == 0
    families = pd.read_parquet(tmp_path / "run" / "families.parquet")
    assert set(families.family) == {"add", "reverse", "lookup"}
    assert set(families[families.split == "ood_family"].family) == {"lookup"}
    one = families[(families.diversity == 1) & (families.split == "id")]
    assert one.groupby("family").trained.all().to_dict() == {"add": True, "reverse": False}
    with xr.open_dataset(tmp_path / "run" / "results.nc", engine="h5netcdf") as cube:
        assert list(cube.split.values) == ["train", "id", "ood_family"]
        answer = cube.answer_acc.values
        assert np.isfinite(answer).all() and ((answer >= 0) & (answer <= 1)).all()
        assert np.isnan(cube.process_acc.values).all()  # steps of a user's data are never verified: undefined, not 0
        assert (cube.chance.sel(split="ood_family").values > 0).all()  # the most common lookup answer's share
    status = run_cli(["status", "run"], tmp_path)  # a later command finds the data beside the spec, not the run
    assert status.code == 0 and "4 done" in status.out, status


def test_cell_ids_follow_the_rows_content_not_their_order_or_the_files_place(tmp_path):
    data = rows()
    ids = [c.cell_id for c in expand(load_spec(write_grid(tmp_path / "a", data)))]
    shuffled = data[:]
    random.Random(1).shuffle(shuffled)
    assert [c.cell_id for c in expand(load_spec(write_grid(tmp_path / "b", shuffled)))] == ids
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "moved")
    assert [c.cell_id for c in expand(load_spec(tmp_path / "elsewhere" / "moved" / "spec.toml"))] == ids
    edited = json.loads(json.dumps(data))
    edited[-1]["completion"] = edited[-1]["completion"].replace("####", "so\n####")
    assert not set(c.cell_id for c in expand(load_spec(write_grid(tmp_path / "c", edited)))) & set(ids)


def _without_category(data):
    del data[2]["category"]
    return data


def _with_bad_byte(data):
    lines = [json.dumps(row).encode() for row in data]
    lines.insert(4, b'{"prompt": "caf\xe9", "completion": "#### 1", "category": "add", "verified": true}')
    return b"\n".join(lines) + b"\n"


def _with_string_flag(data):
    data[5]["verified"] = "yes"
    return data


def _with_accent(data):
    data[0]["messages"][0]["content"] += " (café)"
    return data


@pytest.mark.parametrize("change_rows, change_spec, named", [
    (_without_category, None, 'line 3: no "category" field'),
    (None, ('groups = ["add", "reverse"]', 'groups = ["add", "reverse", "mul"]'), "group 'mul' has no rows"),
    (None, ('ood_groups = ["lookup"]', 'ood_groups = ["lookup", "add"]'), "are also in groups"),
    (None, ('quality_field = "verified"', 'quality_field = "verified"\nanswer = { mode = "regex", pattern = "ANSWER=(\\\\d+)" }'),
     "no row of groups add, reverse, lookup has an answer"),
    (_with_bad_byte, None, "line 5: not UTF-8"),
    (_with_string_flag, None, 'line 6: "verified" (the [data] quality_field) must be true or false'),
    (_with_accent, None, "line 1: character 'é' is not in the preset models' character vocabulary"),
    (None, ('quality_field = "verified"\n', ""), "[axes] quality 0.5 needs [data] quality_field"),
    (None, ("memorization_n = 8", 'memorization_n = 8\nsplits = ["id", "ood_length"]'), "split 'ood_length' needs the synthetic"),
    (None, ("examples = 48", "examples = 4000"), "needs 4000 verified training rows of group 'add'"),
    (None, ('source = "data.jsonl"', 'source = "data.jsonl"\nfamilies = ["add"]'), "[data] families names synthetic tasks"),
    (None, ('source = "data.jsonl"', 'source = "nowhere.jsonl"'), "nowhere.jsonl does not exist"),
    (None, ('quality_field = "verified"', 'quality_field = "verified"\nanswer = { mode = "regex", pattern = "(a|aa)+$" }'),
     "[data] answer: answer pattern '(a|aa)+$' took longer than 1 s on a probe text"),
])
def test_a_bad_dataset_is_refused_in_one_line_before_any_work(tmp_path, change_rows, change_spec, named):
    data = change_rows(rows()) if change_rows else rows()
    spec = SPEC.replace(*change_spec) if change_spec else SPEC
    assert spec != SPEC or change_rows
    write_grid(tmp_path, data, spec)
    assert_refused(["run", "spec.toml", "--out", "run"], tmp_path, named=named)


def test_the_committed_example_is_what_its_script_writes_and_its_results_are_its_cells():
    runs = Path(__file__).parents[2] / "runs"
    import importlib.util

    script = importlib.util.spec_from_file_location("make_own_cot", runs / "data" / "make_own_cot.py")
    module = importlib.util.module_from_spec(script)
    script.loader.exec_module(module)
    assert (runs / "data" / "own_cot.jsonl").read_text() == "".join(json.dumps(row) + "\n" for row in module.rows())
    cells = expand(load_spec(runs / "own-data.toml"))
    families = pd.read_parquet(runs / "own-data" / "families.parquet")
    assert set(families.cell_id) == {c.cell_id for c in cells}
    assert set(families.family) == {"add", "reverse", "sort", "sum3"}
