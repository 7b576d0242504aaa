"""A figure's or table's `where` in paper/figures.toml: a condition that selects no rows, or one a float cannot
hold, is one line naming the figure and the condition (exit 2), and nothing is written."""

from pathlib import Path

import pytest

from cli_helpers import assert_refused

REPOSITORY = Path(__file__).resolve().parents[2]
FAMILIES = ('[[figure]]\nname = "by_family"\nkind = "accuracy_by_family"\n'
            'families = "runs/generalization/families.parquet"\nwhere = "WHERE"\n')
CONDITION = ('[[figure]]\nname = "by_diversity"\nkind = "accuracy_by_condition"\nresults = "runs/reference/results.nc"\n'
             'x = "diversity"\nhue = "size"\nsplits = ["id"]\nsteps = [1024]\nwhere = "WHERE"\n')
# A good figure first, then the table: a table that fails must not leave the figures redrawn either.
GOOD = '[[figure]]\nname = "good"\nkind = "accuracy_by_family"\nfamilies = "runs/generalization/families.parquet"\n\n'
CONDITIONS = (GOOD + '[[table]]\nname = "by_run"\nkind = "conditions"\nresults = "runs/reference/results.nc"\n'
              'x = "diversity"\nhue = "run"\nsplits = ["id"]\nsteps = [1024]\nwhere = "WHERE"\n')
ROWS = (GOOD + '[[table]]\nname = "rows"\nkind = "accuracy_rows"\nsplits = { ID = "id" }\n'
        'rows = [{ label = "all", grades = "runs/reference/grades.parquet" },\n'
        '        { label = "picked", grades = "runs/reference/grades.parquet", where = "WHERE", step = 1024 }]\n')
TRANSFER = GOOD + '[[table]]\nname = "transfer"\nkind = "transfer"\ngrades = "runs/generalization/grades.parquet"\nwhere = "WHERE"\n'
SPECS = {"figure by_family": FAMILIES, "figure by_diversity": CONDITION, "table by_run": CONDITIONS,
         "table rows: row 2": ROWS, "table transfer": TRANSFER}


@pytest.fixture
def paper(tmp_path) -> Path:
    """A paper folder beside the committed runs, with earlier figures and tables that must survive a refusal: every
    file and folder in it unchanged (the folder itself held a staging folder for a moment)."""
    (tmp_path / "runs").symlink_to(REPOSITORY / "runs")
    for folder in ("figures", "tables"):
        (tmp_path / "paper" / folder).mkdir(parents=True)
        (tmp_path / "paper" / folder / "INDEX").write_text("Drawn by `scaling figures`; earlier\n")
    return tmp_path / "paper"


@pytest.mark.parametrize("named", SPECS)
@pytest.mark.parametrize("where", ["diversity in []", "diversity > 99"])
def test_figure_where_selecting_no_rows_is_one_line(paper, named, where):
    """It was a 30-line ValueError traceback (exit 1) for accuracy_by_family, "no budget 1024" for
    accuracy_by_condition, and an empty or "n/a" table written for conditions and accuracy_rows."""
    (paper / "figures.toml").write_text(SPECS[named].replace("WHERE", where))
    line = assert_refused(["figures", "--paper", str(paper)], paper)
    assert f"{named}: where {where!r} selects no rows" in line, line


@pytest.mark.parametrize("where, said", [
    ("diversity < 1e309", "has the number '1e309' at character 13"),
    ("2 ** 2 ** 2 ** 2 ** 2 ** 2 < step", "`2 ** 2 ** 2 ** 2 ** 2` at character 6 overflows"),
    ("diversity / 0 > 1", "`diversity / 0` at character 1 divides by zero"),
])
def test_figure_where_a_float_cannot_hold_is_one_line(paper, where, said):
    for named, spec in SPECS.items():
        (paper / "figures.toml").write_text(spec.replace("WHERE", where))
        line = assert_refused(["figures", "--paper", str(paper)], paper)
        assert f"{named}: where {where!r}" in line and said in line, line


def test_a_where_that_leaves_only_control_cells_is_one_line(paper):
    (paper / "figures.toml").write_text(FAMILIES.replace("WHERE", "control != ''"))
    line = assert_refused(["figures", "--paper", str(paper)], paper)
    assert "figure by_family: where \"control != ''\" selects no regular cells" in line, line
