"""A grid on `[data] source = "gsm_symbolic"`: the `xs` preset spells folded real problems end to end through
`scaling run` and `collect`; bad sources, folds and templates refused in one line before any work; grids that
never name a fold keep their cell ids."""

import pytest
import xarray as xr
import pandas as pd
from cli_helpers import assert_refused, run_cli

from scaling.grid.spec import expand, is_source_name, parse_spec

pytest.importorskip("reasoning_gym", reason="reasoning-gym is not installed (make install)")

SPEC = """
name = "gsm-tiny"
[axes]
size = ["xs"]
diversity = [1, 2]
[data]
source = "gsm_symbolic"
groups = ["0", "9"]
ood_groups = ["2"]
examples = 6
fold = "ascii"
[train]
budgets = [2, 4]
batch_size = 4
warmup_steps = 1
[eval]
n = 2
memorization_n = 2
"""

FAMILIES = """
name = "fam"
[axes]
size = ["tiny"]
[data]
families = ["add"]
examples = 8
[train]
budgets = [4]
"""


@pytest.mark.slow
def test_a_tiny_gsm_symbolic_grid_runs_and_collects_every_split(tmp_path):
    (tmp_path / "grid.toml").write_text(SPEC)
    dry = run_cli(["run", "grid.toml", "--dry-run"], tmp_path)
    assert dry.code == 0 and "2 cells" in dry.out and not (tmp_path / "run").exists(), dry
    ran = run_cli(["run", "grid.toml", "--out", "run"], tmp_path)
    assert ran.code == 0, ran
    assert run_cli(["collect", "run"], tmp_path).code == 0
    with xr.open_dataset(tmp_path / "run" / "results.nc", engine="h5netcdf") as cube:
        assert list(cube.split.values) == ["train", "id", "ood_family"]
        assert list(cube.diversity.values) == [1, 2] and list(cube.step.values) == [2, 4]
        answer = cube.answer_acc.values
        assert ((answer >= 0) & (answer <= 1)).all()
        assert (cube.chance.values > 0).all() and (cube.chance.values < 1).all()  # each template's floor
    families = pd.read_parquet(tmp_path / "run" / "families.parquet")
    assert set(families[families.split == "id"].family) == {"0", "9"}
    assert set(families[families.split == "ood_family"].family) == {"2"}
    one = families[(families.diversity == 1) & (families.split == "id")]
    assert one.groupby("family").trained.all().to_dict() == {"0": True, "9": False}


def test_without_the_fold_a_preset_base_cannot_spell_currency_and_is_told_to_fold(tmp_path):
    (tmp_path / "grid.toml").write_text(SPEC.replace('fold = "ascii"\n', ""))
    line = assert_refused(["run", "grid.toml", "--out", "run"], tmp_path)
    assert 'gsm_symbolic template 9 ([data] fold = "ascii" folds it)' in line and "not in the preset models'" in line


@pytest.mark.parametrize("old, new, message", [
    ('source = "gsm_symbolic"', 'source = "gsm_symbolc"',
     "[data] source: unknown source 'gsm_symbolc': named sources are gsm_symbolic; otherwise give a JSONL file "
     "(a file named like a word: ./gsm_symbolc)"),
    ('fold = "ascii"', 'fold = "latin1"', "[data] fold must be one of none, ascii, got 'latin1'"),
    ('groups = ["0", "9"]', 'groups = ["0", "32"]', "[data] groups: gsm_symbolic template 32 is one reasoning-gym marks "
                                                    "as needing a fix (tasks_need_fix)"),
    ('groups = ["0", "9"]', 'groups = ["0", "100"]', "unknown gsm_symbolic template '100'"),
    ('fold = "ascii"', 'fold = "ascii"\nfamilies = ["add"]', "[data] families names synthetic tasks; source = "
                                                             "'gsm_symbolic' trains on its own groups"),
    ('fold = "ascii"', 'fold = "ascii"\ngroup_by = "x"', "[data] group_by describes a JSONL file"),
    ('fold = "ascii"', 'fold = "ascii"\nquality_field = "ok"', "[data] quality_field describes a JSONL file"),
    ('fold = "ascii"', 'fold = "ascii"\neval_source = "e.jsonl"', "[data] eval_source describes a JSONL file"),
    ('diversity = [1, 2]', 'diversity = [1, 3]', "[axes] diversity must lie in 1..2 (the number of [data] groups)"),
])
def test_bad_gsm_symbolic_specs_are_refused_in_one_line(tmp_path, old, new, message):
    assert old in SPEC
    (tmp_path / "grid.toml").write_text(SPEC.replace(old, new))
    assert_refused(["run", "grid.toml", "--out", "run"], tmp_path, named=message)


def test_a_template_with_too_few_problems_is_refused_before_any_work(tmp_path):
    # Template 52 holds about 200 distinct problems: 600 examples at diversity 2 ask 300 of it.
    (tmp_path / "grid.toml").write_text(SPEC.replace('groups = ["0", "9"]', 'groups = ["0", "52"]')
                                        .replace("examples = 6", "examples = 600"))
    assert_refused(["run", "grid.toml", "--out", "run"], tmp_path,
                   named="[data] examples = 600 at diversity 2: gsm_symbolic template 52 gives")


def test_a_fold_is_refused_where_it_would_do_nothing(tmp_path):
    (tmp_path / "fold.toml").write_text(FAMILIES.replace("examples = 8", 'examples = 8\nfold = "ascii"'))
    assert_refused(["run", "fold.toml", "--out", "run"], tmp_path,
                   named="[data] fold applies to a named source (gsm_symbolic)")


def test_a_file_named_like_a_word_is_written_as_a_path():
    assert is_source_name("gsm_symbolic") and is_source_name("data")
    assert not any(is_source_name(s) for s in ("./gsm_symbolic", "data.jsonl", "/tmp/x", "sub/data"))


def test_grids_that_name_no_fold_keep_their_cell_ids_and_a_fold_is_part_of_gsm_ids():
    plain = parse_spec(FAMILIES)
    written = parse_spec(FAMILIES.replace("examples = 8", 'examples = 8\nfold = "none"'))
    assert [c.cell_id for c in expand(plain)] == [c.cell_id for c in expand(written)]
    assert "fold" not in plain.results_content()["data"]
    folded, unfolded = parse_spec(SPEC), parse_spec(SPEC.replace('groups = ["0", "9"]', 'groups = ["0", "1"]'))
    as_written = parse_spec(SPEC.replace('groups = ["0", "9"]', 'groups = ["0", "1"]').replace('fold = "ascii"', ""))
    assert {c.cell_id for c in expand(unfolded)}.isdisjoint(c.cell_id for c in expand(as_written))
    content = folded.results_content()["data"]
    assert content["fold"] == "ascii" and content["source"]["version"] == "0.1.25" and content["groups"] == ["0", "9"]
    assert folded.source.trained == ("0", "9") and folded.eval.splits == ("train", "id", "ood_family")
