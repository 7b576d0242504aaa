"""The article's table with its arms: `+ SFT + RL` and `+ SFT + RFT` rows read from a run's arm_grades.parquet, and
the "training compute (relative)" column, only where a table asks for it (small hand-made grades)."""

from pathlib import Path

import pandas as pd
import pytest

from scaling.errors import UserError
from scaling.report.claims import accuracy_rows, training_flops
from scaling.report.paper import make_table, read_table_specs

SFT_FLOPS, RL_FLOPS, RFT_FLOPS = 4.0e12, 1.0e12, 0.5e12


def _grades(cells: dict[str, list[bool]], step: int, flops: dict[str, float], **columns) -> pd.DataFrame:
    """Per-example grades of some cells at a step on the id split, each cell's model trained with its FLOPs."""
    rows = [{"cell_id": cell, "step": step, "split": "id", "family": "add", "phrasing": 0, "key": f"add:{i}",
             "answer_correct": correct, "chance": 0.1, "flops": flops[cell], **columns}
            for cell, answers in cells.items() for i, correct in enumerate(answers)]
    return pd.DataFrame(rows)


@pytest.fixture
def run(tmp_path) -> Path:
    """A run folder: SFT grades at steps 32 and 64, and its arms' grades from SFT step 64 (RL 0 and 100 steps, RFT 50)."""
    folder = tmp_path / "runs" / "arms"
    folder.mkdir(parents=True)
    sft = {"a": SFT_FLOPS, "b": SFT_FLOPS * 1.5}  # two seeds whose SFT cost differs (say, longer rows)
    pd.concat([_grades({"a": [True, False, False, False], "b": [False, False, True, False]}, 32,
                       {c: f / 2 for c, f in sft.items()}),
               _grades({"a": [True, True, False, False], "b": [True, False, True, False]}, 64, sft)]
              ).to_parquet(folder / "grades.parquet")
    arms = [_grades({"a": [True, True, False, False], "b": [True, False, True, False]}, 0, sft, arm="rl", sft_step=64),
            _grades({"a": [True, True, True, False], "b": [True, True, True, True]}, 100,
                    {c: f + RL_FLOPS for c, f in sft.items()}, arm="rl", sft_step=64),
            _grades({"a": [True, True, True, False], "b": [True, False, True, True]}, 50,
                    {c: f + RFT_FLOPS for c, f in sft.items()}, arm="rft", sft_step=64)]
    pd.concat(arms).to_parquet(folder / "arm_grades.parquet")
    (tmp_path / "paper").mkdir()
    return tmp_path


ROWS = ('rows = [\n'
        '  { label = "+ SFT", grades = "runs/arms/grades.parquet", step = 64 },\n'
        '  { label = "+ SFT + RL", grades = "runs/arms/arm_grades.parquet", arm = "rl", sft_step = 64, step = 100 },\n'
        '  { label = "+ SFT + RFT", grades = "runs/arms/arm_grades.parquet", arm = "rft", sft_step = 64, step = 50 },\n'
        ']\n')
TABLE = '[[table]]\nname = "arms"\nkind = "accuracy_rows"\nsplits = { ID = "id" }\n'


def _table(root: Path, spec: str) -> pd.DataFrame:
    """The table as `scaling figures` computes it from paper/figures.toml (the spec read and checked, then made)."""
    (root / "paper" / "figures.toml").write_text(spec)
    [table] = read_table_specs(root / "paper")
    return make_table(table).set_index("row")


def test_arm_rows_count_each_arms_grades_and_compute_is_relative_to_the_sft_row(run):
    table = _table(run, TABLE + 'relative_compute = "+ SFT"\n' + ROWS)
    assert list(table.index) == ["+ SFT", "+ SFT + RL", "+ SFT + RFT"]
    assert table.loc["+ SFT", "ID_k"] == 4 and table.loc["+ SFT + RL", "ID_k"] == 7 and table.loc["+ SFT + RFT", "ID_k"] == 6
    assert (table["ID_n"] == 8).all() and (table["runs"] == 2).all()
    # Each row's FLOPs: the mean over its two models; the SFT row's is the unit.
    sft = (SFT_FLOPS + 1.5 * SFT_FLOPS) / 2
    assert table.loc["+ SFT", "flops"] == pytest.approx(sft) and table.loc["+ SFT", "compute"] == 1.0
    assert table.loc["+ SFT + RL", "compute"] == pytest.approx((sft + RL_FLOPS) / sft)
    assert table.loc["+ SFT + RFT", "compute"] == pytest.approx((sft + RFT_FLOPS) / sft)
    assert list(table.columns[:3]) == ["runs", "flops", "compute"]


def test_without_relative_compute_the_table_has_no_compute_column(run):
    table = _table(run, TABLE + ROWS)
    assert "flops" not in table and "compute" not in table
    assert table.loc["+ SFT + RL", "ID_k"] == 7  # the same rows otherwise


def test_a_base_row_without_flops_has_no_relative_compute():
    base = pd.DataFrame({"split": ["id"] * 2, "answer_correct": [True, False], "chance": [0.1, 0.1]})
    tuned = _grades({"a": [True, True]}, 8, {"a": 2.0e9})
    table = accuracy_rows([("base", base), ("+ SFT", tuned)], {"ID": "id"}, relative_to="+ SFT").set_index("row")
    assert pd.isna(table.loc["base", "compute"]) and table.loc["+ SFT", "compute"] == 1.0
    # A model is counted once however many examples it graded: a cell's grades at two steps are two models.
    two_steps = pd.concat([tuned, _grades({"a": [True, True, True]}, 16, {"a": 4.0e9})])
    assert training_flops(two_steps) == pytest.approx(3.0e9)


def test_bad_arm_rows_are_refused_in_one_line(run):
    good = TABLE + 'relative_compute = "+ SFT"\n' + ROWS
    for change, named in ((('relative_compute = "+ SFT"', 'relative_compute = "SFT"'),
                           "relative_compute must be the label of a row, got 'SFT'"),
                          (('arm = "rft"', 'arm = "ppo"'), "row 3: arm must be one of rl, rft, got 'ppo'"),
                          (('arm = "rft", sft_step = 64', 'arm = "rft", sft_step = 32'), "row 3: no grades of sft_step 32"),
                          (('step = 64 }', 'step = 64, arm = "rl" }'), "row 1: arm is given but its grades have no arm")):
        assert change[0] in good
        with pytest.raises(UserError) as refused:  # the CLI prints it as its one line, exit 2
            _table(run, good.replace(*change))
        assert named in str(refused.value) and "\n" not in str(refused.value), refused.value
