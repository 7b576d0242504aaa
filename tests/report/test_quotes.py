"""A paper's numbers are links to the table cells they come from, and a check finds every one that is not."""

import pandas as pd

from scaling.report.quotes import check_paper, quotes_of


def write(tmp_path, text: str):
    tables = tmp_path / "tables"
    tables.mkdir(exist_ok=True)
    pd.DataFrame({"split": ["id", "id", "ood_family"], "factor": [4, 16, 4], "gain": [4.123, -0.55, 0.049],
                  "share": [0.6667, 0.5, 1.0]}).to_csv(tables / "gains.csv", index=False)
    pd.DataFrame({"family": ["add"], "acc": [0.25]}).to_parquet(tables / "acc.parquet")
    paper = tmp_path / "paper.md"
    paper.write_text(text)
    return paper


def test_quotes_that_match_their_cells_pass(tmp_path):
    paper = write(tmp_path, '\n'.join([
        'The id gain at 4x was [4.1](tables/gains.csv "gain; split=id; factor=4") points',
        '([−0.6](tables/gains.csv "gain; split=id; factor=16") at 16x; [67%](tables/gains.csv "share; split=id; factor=4") of runs),',
        'add scored [0.25](tables/acc.parquet "acc; family=add"). Code is exempt: `jax 0.5.3`, and so is',
        '```', 'a block with 1.25 in it', '```', 'a figure link ![x](figures/a_1.5.png) and a count of 16 runs.']))
    assert len(quotes_of(paper)) == 4
    assert check_paper(paper) == []


def test_each_kind_of_mismatch_is_named(tmp_path):
    paper = write(tmp_path, '\n'.join([
        '[4.2](tables/gains.csv "gain; split=id; factor=4")',        # the value is 4.123
        '[0.05](tables/gains.csv "gain; split=id")',                 # two rows match
        '[1.0](tables/gains.csv "gain; split=train; factor=4")',     # no row matches
        '[0.3](tables/gains.csv "loss; split=id; factor=4")',        # no such column
        '[0.3](tables/none.csv "gain; split=id")',                   # no such file
        '[about](tables/gains.csv "gain; split=id; factor=4")',      # not a number
        'and a hand-typed 0.42 in the text.']))
    problems = check_paper(paper)
    assert len(problems) == 7, problems
    for expected in ("holds 4.123 at gain", "2 rows of gains.csv match", "0 rows of gains.csv match",
                     "has no column 'loss'", "none.csv does not exist", "not a number", "line 7: 0.42 is typed by hand"):
        assert any(expected in p for p in problems), (expected, problems)
