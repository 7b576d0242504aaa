"""Grid specs: validation names the problem, expansion is a pure function with content-hash ids."""

import dataclasses
import itertools
from pathlib import Path

import pytest

from scaling.errors import UserError
from scaling.grid.spec import EvalSpec, expand, grid_axes, load_spec, parse_spec

EXAMPLE = Path(__file__).parents[2] / "runs" / "example.toml"

MINIMAL = """
name = "t"
[axes]
size = ["tiny"]
[data]
families = ["add", "reverse"]
ood_families = ["sub"]
[train]
budgets = [4, 8]
"""


def test_the_issue_example_parses_and_expands_to_the_cartesian_product():
    spec = load_spec(EXAMPLE)
    cells = expand(spec)
    a = spec.axes
    assert len(cells) == len(a.size) * len(a.pretrain_tokens) * len(a.diversity) * len(a.quality) * len(a.cot) * len(a.seed)
    assert len({c.cell_id for c in cells}) == len(cells)
    assert {tuple(c.axes.values()) for c in cells} == set(itertools.product(*grid_axes(spec).values()))


def test_defaults_fill_what_the_spec_leaves_out():
    spec = parse_spec(MINIMAL)
    assert spec.axes.seed == (0,) and spec.axes.quality == (1.0,) and spec.train.schedule == "wsd"
    assert spec.run.executor == "local" and spec.eval.n == 256
    assert len(expand(spec)) == 1


def test_cell_ids_depend_on_results_not_on_how_or_where_it_runs():
    base = parse_spec(MINIMAL)
    ids = [c.cell_id for c in expand(base)]
    renamed = parse_spec(MINIMAL.replace('name = "t"', 'name = "other"') + "[run]\nworkers = 4\nexecutor = \"ray\"\n")
    assert [c.cell_id for c in expand(renamed)] == ids
    changed = parse_spec(MINIMAL.replace("budgets = [4, 8]", "budgets = [4, 16]"))
    assert not set(c.cell_id for c in expand(changed)) & set(ids)
    assert expand(base) == expand(parse_spec(MINIMAL))  # deterministic


def test_a_single_value_stands_for_a_one_element_axis():
    spec = parse_spec(MINIMAL.replace('size = ["tiny"]', 'size = "tiny"\nseed = 3'))
    assert spec.axes.size == ("tiny",) and spec.axes.seed == (3,)


@pytest.mark.parametrize("change, named", [
    (("[train]\n", "[train]\nfoo = 1\n"), "unknown key [train] 'foo'"),
    (('name = "t"', 'name = "t"\nextra = 1'), "unknown key 'extra'"),
    (("budgets = [4, 8]", "budgets = [-4, 8]"), "budgets"),
    (("budgets = [4, 8]", "budgets = [8, 4]"), "increasing"),
    (('families = ["add", "reverse"]', 'families = ["add", "nope"]'), "unknown family 'nope'"),
    (('ood_families = ["sub"]', 'ood_families = ["zzz"]'), "unknown family 'zzz'"),
    (('ood_families = ["sub"]', 'ood_families = ["add"]'), "also in families"),
    (('size = ["tiny"]', 'size = ["huge"]'), "size 'huge'"),
    (('size = ["tiny"]', 'size = ["tiny"]\ndiversity = [3]'), "diversity"),
    (('size = ["tiny"]', 'size = ["tiny"]\nquality = [1.5]'), "quality"),
    (('size = ["tiny"]', 'size = ["tiny"]\ncot = ["long"]'), "cot"),
    (('size = ["tiny"]', 'size = ["tiny"]\nseed = [0, 0]'), "twice"),
    (('size = ["tiny"]', 'size = ["tiny"]\npretrain_tokens = [-1]'), "pretrain_tokens"),
    (("budgets = [4, 8]", 'budgets = [4, 8]\nbatch_size = "32"'), "batch_size must be an integer"),
    (("budgets = [4, 8]", "budgets = [4, 8]\nlr = -1.0"), "lr"),
    (("budgets = [4, 8]", 'budgets = [4, 8]\nschedule = "linear"'), "schedule"),
    (("budgets = [4, 8]", "budgets = [4, 8]\n[eval]\nsplits = [\"id\", \"test\"]"), "unknown split 'test'"),
    (('ood_families = ["sub"]', 'ood_families = []\n[eval]\nsplits = ["id", "ood_family"]'), "ood_family"),
    (('families = ["add", "reverse"]', ""), "families is required"),
    (('ood_families = ["sub"]', 'ood_families = ["sub"]\nexamples_per = "run"'), "examples_per must be one of cell, family"),
    (('name = "t"', 'name = "a b"'), "name"),
    (("budgets = [4, 8]", 'budgets = [4, 8]\n[run]\nexecutor = "k8s"'), "executor"),
    (("budgets = [4, 8]", "budgets = [4, 8]\n[run.ray]\nbogus = 1"), "unknown key [run.ray] 'bogus'"),
    (("[axes]", "[axes"), "not valid TOML"),
])
def test_bad_specs_are_named_in_one_line(change, named):
    old, new = change
    assert old in MINIMAL
    with pytest.raises(UserError) as error:
        parse_spec(MINIMAL.replace(old, new), source="g.toml")
    message = str(error.value)
    assert named in message and "\n" not in message and message.startswith("g.toml")


def test_hf_bases_need_an_existing_checkpoint_folder(tmp_path):
    missing = MINIMAL.replace('size = ["tiny"]', 'size = ["hf:no/such/dir"]')
    with pytest.raises(UserError, match="does not exist"):
        parse_spec(missing, base_dir=tmp_path)
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        parse_spec(MINIMAL.replace('size = ["tiny"]', 'size = ["hf:ckpt"]'), base_dir=tmp_path)


def test_an_ood_compose_split_needs_a_composition_of_the_grids_families():
    spec = MINIMAL.replace("budgets = [4, 8]", 'budgets = [4, 8]\n[eval]\nsplits = ["ood_compose"]')
    with pytest.raises(UserError, match="ood_compose"):
        parse_spec(spec.replace('families = ["add", "reverse"]', 'families = ["add", "bool"]'))  # no composition
    ok = parse_spec(spec)  # add then reverse: every cell is evaluated on it, diversity 1 or 2
    assert ok.eval.splits == ("ood_compose",)


def test_results_content_leaves_out_name_and_run():
    spec = parse_spec(MINIMAL)
    assert set(spec.results_content()) == {"axes", "data", "train", "eval"}
    assert dataclasses.replace(spec, name="x").results_content() == spec.results_content()


def test_a_spec_that_names_no_held_out_families_gets_the_default_pair_and_every_split_its_families_make():
    spec = parse_spec(MINIMAL.replace('ood_families = ["sub"]\n', ""))
    assert spec.source.ood_families == ("sum3", "sub")
    assert spec.eval.splits == ("train", "id", "ood_length", "ood_family", "ood_phrasing", "ood_rule")
    trains_sub = parse_spec(MINIMAL.replace('ood_families = ["sub"]\n', "").replace('"reverse"]', '"reverse", "sub"]'))
    assert trains_sub.source.ood_families == ("sum3",)  # never a family the grid trains
    none_held = parse_spec(MINIMAL.replace('ood_families = ["sub"]', "ood_families = []"))
    assert "ood_family" not in none_held.eval.splits


def test_controls_add_one_cell_per_base_cot_and_split_and_leave_the_grids_cells_as_they_were():
    without = MINIMAL.replace('size = ["tiny"]', 'size = ["tiny", "xs"]\ndiversity = [1, 2]\ncot = ["full", "short"]\n'
                                                'seed = [3, 4]')
    plain = parse_spec(without + '[eval]\nsplits = ["train", "id", "ood_length", "ood_family", "ood_phrasing"]\n')
    controlled = parse_spec(without + '[eval]\nsplits = ["train", "id", "ood_length", "ood_family", "ood_phrasing"]\n'
                                      'controls = true\n')
    cells, with_controls = expand(plain), expand(controlled)
    controls = [c for c in with_controls if c.control]
    assert [c.cell_id for c in with_controls if not c.control] == [c.cell_id for c in cells]
    assert sorted((c.size, c.cot, c.control) for c in controls) == sorted(itertools.product(
        ["tiny", "xs"], ["full", "short"], ["ood_length", "ood_family", "ood_phrasing"]))
    assert all(c.seed == 3 and c.quality == 1.0 for c in controls)
    assert len({c.cell_id for c in with_controls}) == len(with_controls)
    assert all(c.label.startswith(f"control={c.control} ") for c in controls)


def test_grid_size_and_shapes_count_every_cell_expand_makes_and_iter_cells_makes_them_in_order():
    from scaling.grid.spec import cell_shapes, grid_size, iter_cells

    text = load_spec(EXAMPLE).text
    for spec in (load_spec(EXAMPLE), parse_spec(text.replace("n = 256", "n = 256\ncontrols = true"))):
        cells = expand(spec)
        assert grid_size(spec) == len(cells) == sum(count for _, count in cell_shapes(spec))
        assert [c.cell_id for c in iter_cells(spec)] == [c.cell_id for c in cells]
        # A shape is the first of the cells that differ from it only in quality and seed.
        assert all(cell in cells for cell, _ in cell_shapes(spec))
    assert any(c.control for c in cells)


# The numeric keys where a huge finite value is harmless, and why; every other is refused naming the key.
HARMLESS = {
    "phrasings": "a limit: more than a family has means all of them",
    "lr": "any finite rate is a rate (a huge one diverges, and the cell is recorded failed)",
    "pretrain_lr": "as lr", "weight_decay": "as lr", "grad_clip": "as lr",
}


def _numeric_keys():
    import typing

    from scaling.grid import spec as grid_spec

    sections = {"axes": grid_spec.AxesSpec, "data": grid_spec.DataSpec, "train": grid_spec.TrainSpec,
                "eval": grid_spec.EvalSpec, "run": grid_spec.RunSpec, "run.ray": grid_spec.RaySpec,
                "run.slurm": grid_spec.SlurmSpec,
                "design": grid_spec.DesignSpec}
    for section, cls in sections.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] in (int, float, tuple[int, ...], tuple[float, ...]):
                yield section, f.name, hints[f.name]


@pytest.mark.parametrize("section, key, kind", list(_numeric_keys()))
def test_a_huge_or_infinite_numeric_key_is_refused_naming_the_key(section, key, kind):
    huge = "1e309" if kind in (float, tuple[float, ...]) else str(10**30)
    value = f"[{huge}]" if kind in (tuple[int, ...], tuple[float, ...]) else huge
    lines = [line for line in MINIMAL.strip().splitlines() if not line.startswith(f"{key} =")]
    if f"[{section}]" not in lines:
        lines.append(f"[{section}]")
    lines.insert(lines.index(f"[{section}]") + 1, f"{key} = {value}")
    text = "\n".join(lines) + "\n"
    if key in HARMLESS and huge != "1e309":
        parse_spec(text)  # accepted: harmless
        return
    with pytest.raises(UserError) as refused:
        parse_spec(text)
    message = str(refused.value)
    assert f"] {key} " in message or f"{key} must" in message or f"{key}s " in message, message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("key, value, bound", [("[train] batch_size", "100000000000", "1,048,576"),
                                                ("[train] budgets", "[8, 10000000000]", "1,000,000,000"),
                                                ("[eval] n", "1000000", "100,000"),
                                                ("[data] pack_length", "2097152", "1,048,576")])
def test_an_impossible_size_is_refused_with_its_bound(key, value, bound):
    section, name = key.split()
    lines = [line for line in MINIMAL.strip().splitlines() if not line.startswith(f"{name} =")]
    if section not in lines:
        lines.append(section)
    lines.insert(lines.index(section) + 1, f"{name} = {value}")
    with pytest.raises(UserError, match=f"{key.replace('[', '.').replace(']', '.')} must be at most {bound}, got"):
        parse_spec("\n".join(lines) + "\n")


@pytest.mark.parametrize("key, value", [("workers", "1000000"), ("stale_after_s", "1e12"), ("grace_s", "1e12")])
def test_a_run_setting_beyond_what_its_timers_hold_is_refused(key, value):
    """A grace or staleness of 1e12 s was accepted, then overflowed the platform's time_t in the lock's or the
    grace period's timer thread: a traceback there, not a refusal here."""
    with pytest.raises(UserError, match=rf"\[run\] {key} must be at most"):
        parse_spec(MINIMAL + f"[run]\n{key} = {value}\n")


def test_a_benchmark_split_is_decoded_in_batches_of_its_own_size_not_of_the_problems_per_family():
    # Capped at [eval] n alone, runs/gsm (2 problems a template, 500 GSM8K items) decoded 2 rows at a time.
    assert EvalSpec(n=2, sources=("gsm8k",), benchmark_n=500).decode_batch == 256
    assert EvalSpec(n=2, sources=("gsm8k",), benchmark_n=100).decode_batch == 100
    assert EvalSpec(n=2, sources=("gsm8k",)).decode_batch == 256  # every item: as many as batch_size allows
    assert EvalSpec(n=2).decode_batch == 2  # no benchmark: the problems of a family, as before
    assert EvalSpec(n=64, batch_size=32).decode_batch == 32
