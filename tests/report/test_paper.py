"""`scaling figures`: every figure of paper/figures.toml drawn from run and fit files, all or nothing."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.report.figures import backtest_panels, returns_rows

# Figures draw whatever a fit wrote; convergence is the fit tests' business.
QUICK = ["--chains", "2", "--samples", "200", "--warmup", "200", "--allow-unconverged"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A repository root with a table, a power-law fit of each of its two tasks (with a holdout) and a paper spec."""
    root = tmp_path_factory.mktemp("project")
    rng = np.random.default_rng(1)
    step = np.repeat(np.geomspace(16, 4096, 9), 2)
    rows = [{"step": s, "loss": v, "task": task}
            for task, floor in (("a", 1.0), ("b", 1.4))
            for s, v in zip(step, (floor + 3.0 * step ** -0.4) * np.exp(rng.normal(0, 0.01, step.size)))]
    pd.DataFrame(rows).to_csv(root / "losses.csv", index=False)
    fit = root / "fits" / "power"
    assert main(["fit", str(root / "losses.csv"), "--law", "power", "--y", "loss", "--x", "x=step", "--by", "task",
                 "--holdout", "step > 2000", "--out", str(fit), *QUICK]) == 0
    (root / "paper").mkdir()
    (root / "paper" / "figures.toml").write_text(
        '[[figure]]\nname = "power_fit"\nkind = "law_fit"\nfit = "fits/power"\n\n'
        '[[figure]]\nname = "power_backtest"\nkind = "backtest"\nfit = "fits/power"\n\n'
        '[[figure]]\nname = "power_returns"\nkind = "returns"\nfit = "fits/power"\n')
    return root


def test_figures_draws_every_listed_figure_as_png_and_pdf(project, capsys):
    assert main(["figures", "--paper", str(project / "paper")]) == 0
    figures = project / "paper" / "figures"
    drawn = sorted(p.name for p in figures.iterdir() if p.suffix)
    assert drawn == [f"power_{kind}.{suffix}" for kind in ("backtest", "fit", "returns") for suffix in ("pdf", "png")]
    assert all((figures / name).stat().st_size > 1000 for name in drawn)
    assert "drew power_fit" in capsys.readouterr().out
    index = (figures / "INDEX").read_text().splitlines()
    assert "power_fit.png/.pdf: law_fit (fit=fits/power)" in index
    assert main(["figures", "--paper", str(project / "paper")]) == 0  # its own earlier output is replaced


def test_a_figures_folder_holding_someone_elses_files_is_left_alone(project, tmp_path, capsys):
    paper = tmp_path / "paper"
    paper.mkdir()
    (paper / "figures.toml").write_text((project / "paper" / "figures.toml").read_text().replace('"fits/', f'"{project}/fits/'))
    (paper / "figures").mkdir()
    (paper / "figures" / "sketch.png").write_bytes(b"drawn by hand")
    assert main(["figures", "--paper", str(paper)]) == 2
    assert "was not written by `scaling figures`" in capsys.readouterr().err
    assert [p.name for p in (paper / "figures").iterdir()] == ["sketch.png"]


@pytest.mark.parametrize("spec, named", [
    ('[[figure]]\nname = "x"\nkind = "pie"\nfit = "fits/power"\n', "pie"),
    ('[[figure]]\nname = "x"\nkind = "returns"\nfit = "fits/nothing"\n', "does not exist"),
    ('[[figure]]\nname = "x"\nkind = "returns"\n', "'fit'"),
    ('[[figure]]\nname = "x"\nkind = "returns"\nfit = "fits/power"\ncolour = "red"\n', "colour"),
    ('[[figure]]\nname = "x"\nkind = "returns"\nfit = "fits/power"\n[[figure]]\nname = "x"\nkind = "backtest"\nfit = "fits/power"\n', "twice"),
    ('[[figure]\n', "TOML"),
    ('[[figure]]\nname = "x"\nkind = "returns"\nfit = "fits/power"\n[[table]]\nname = "t"\nkind = "pie"\n', "kind 'pie'"),
    ('[[figure]]\nname = "x"\nkind = "returns"\nfit = "fits/power"\n[[table]]\nname = "t"\nkind = "conditions"\n'
     'results = "runs/none.nc"\nx = "diversity"\nhue = "size"\nsplits = ["id"]\nsteps = [8]\n', "none.nc does not exist"),
])
def test_a_bad_paper_spec_exits_2_and_keeps_the_earlier_figures(spec, named, project, tmp_path, capsys):
    paper = tmp_path / "paper"
    paper.mkdir()
    (paper / "figures.toml").write_text(spec.replace('"fits/', f'"{project}/fits/'))
    (paper / "figures").mkdir()
    (paper / "figures" / "old.png").write_bytes(b"earlier figure")
    assert main(["figures", "--paper", str(paper)]) == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in paper.iterdir()) == ["figures", "figures.toml"]
    assert (paper / "figures" / "old.png").read_bytes() == b"earlier figure"


def test_the_papers_figures_redraw_from_the_committed_runs_and_fits(tmp_path, capsys):
    """paper/figures.toml against the committed runs (results and per-family tables) and fits, read, not rewritten:
    the committed figures are what `make paper` draws."""
    repository = Path(__file__).resolve().parents[2]
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "figures.toml").write_bytes((repository / "paper" / "figures.toml").read_bytes())
    for folder in ("runs", "fits"):
        (tmp_path / folder).symlink_to(repository / folder)
    assert main(["figures", "--paper", str(tmp_path / "paper")]) == 0
    drawn = {p.name for p in (tmp_path / "paper" / "figures").iterdir()}
    assert {"reference_sft_fit.png", "reference_sft_returns.pdf", "reference_accuracy_by_split.png",
            "generalization_by_family_div1.png", "generalization_by_family_div4.pdf"} <= drawn
    # `make paper` draws exactly the committed figures: byte for byte (no dates in the files), and no more or fewer.
    committed = repository / "paper" / "figures"
    assert drawn == {p.name for p in committed.iterdir()}
    differ = [name for name in sorted(drawn) if (tmp_path / "paper" / "figures" / name).read_bytes() != (committed / name).read_bytes()]
    assert not differ, f"committed figures differ from what `make paper` draws: {differ} (run `make paper`)"
    for folder in ("figures", "tables"):  # tables: the CSV files the paper quotes
        ours, theirs = tmp_path / "paper" / folder, repository / "paper" / folder
        assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
        differ = [p.name for p in ours.iterdir() if p.read_bytes() != (theirs / p.name).read_bytes()]
        assert not differ, f"committed {folder} differ from what `make paper` writes: {differ} (run `make paper`)"


def test_condition_and_post_memorization_figures_pool_runs_and_name_what_they_lack(tmp_path, capsys):
    repository = Path(__file__).resolve().parents[2]
    (tmp_path / "runs").symlink_to(repository / "runs")
    paper = tmp_path / "paper"
    paper.mkdir()
    spec = ('[[figure]]\nname = "by_diversity"\nkind = "accuracy_by_condition"\n'
            'results = ["runs/reference/results.nc", "runs/generalization/results.nc"]\n'
            'x = "diversity"\nhue = ["size", "pretrain_tokens"]\nsplits = ["id", "ood_length"]\nsteps = [256, 1024]\n'
            '\n[[figure]]\nname = "past_memorization"\nkind = "post_memorization"\nresults = "runs/reference/results.nc"\n'
            'splits = ["id"]\nfactors = [2]\nby = ["size", "diversity"]\n')
    (paper / "figures.toml").write_text(spec)
    assert main(["figures", "--paper", str(paper)]) == 0
    assert {p.name for p in (paper / "figures").iterdir()} == {"by_diversity.png", "by_diversity.pdf", "INDEX",
                                                               "past_memorization.png", "past_memorization.pdf"}
    assert "results=['runs/reference/results.nc', 'runs/generalization/results.nc']" in (paper / "figures" / "INDEX").read_text()
    for change, named in ((("steps = [256, 1024]", "steps = [256, 4096]"), "no budget 4096"),
                          (('"ood_length"]', '"ood_compose"]'), "has no split 'ood_compose'"),
                          (("steps = [256, 1024]", 'steps = "last"'), "steps must be a list of budgets"),
                          (("factors = [2]", "factors = [0]"), "factors must be a list of whole multiples")):
        (paper / "figures.toml").write_text(spec.replace(*change))
        assert main(["figures", "--paper", str(paper)]) == 2
        err = capsys.readouterr().err
        assert named in err and len(err.strip().splitlines()) == 1, err


def test_an_accuracy_rows_table_reads_per_example_grades_row_by_row(tmp_path, capsys):
    repository = Path(__file__).resolve().parents[2]
    (tmp_path / "runs").symlink_to(repository / "runs")
    paper = tmp_path / "paper"
    paper.mkdir()
    spec = ('[[figure]]\nname = "f"\nkind = "accuracy_by_condition"\nresults = "runs/reference/results.nc"\n'
            'x = "diversity"\nhue = "run"\nsplits = ["id"]\nsteps = [1024]\nwhere = "quality == 0.5"\n'
            '\n[[table]]\nname = "by_run"\nkind = "conditions"\nresults = ["runs/reference/results.nc", "runs/generalization/results.nc"]\n'
            'x = "diversity"\nhue = "run"\nsplits = ["id"]\nsteps = [1024]\nwhere = "pretrain_tokens == 0"\n'
            '\n[[table]]\nname = "rows"\nkind = "accuracy_rows"\nsplits = { ID = "id", OOD = "ood_family" }\n'
            'rows = [{ label = "add alone", grades = "runs/reference/grades.parquet", where = "diversity == 1", step = 1024 },\n'
            '        { label = "four families", grades = "runs/reference/grades.parquet", where = "diversity == 4", step = 1024 }]\n')
    (paper / "figures.toml").write_text(spec)
    assert main(["figures", "--paper", str(paper)]) == 0
    table = pd.read_csv(paper / "tables" / "rows.csv").set_index("row")
    grades = pd.read_parquet(repository / "runs" / "reference" / "grades.parquet")
    one = grades[(grades.diversity == 1) & (grades.step == 1024) & (grades.split == "id")]
    assert table.loc["add alone", "ID_n"] == len(one) and table.loc["add alone", "ID_k"] == one.answer_correct.sum()
    assert table.loc["add alone", "runs"] == one.cell_id.nunique()
    assert (table["ID_lo"] <= table["ID_acc"]).all() and (table["ID_acc"] <= table["ID_hi"]).all()
    assert (table["ID_interval"] == "runs and items").all()  # 8 runs a row on one evaluation set
    assert "grades': 'runs/reference/grades.parquet'" in (paper / "tables" / "INDEX").read_text()  # relative: same bytes anywhere
    by_run = pd.read_csv(paper / "tables" / "by_run.csv")  # pooled runs told apart by their folder's name
    assert set(by_run["hue"]) == {"reference", "generalization"} and set(by_run["step"]) == {1024}
    for change, named in ((('step = 1024 },\n', 'stp = 1024 },\n'), "row 1: unknown key 'stp'"),
                          (("reference/grades.parquet\", where = \"diversity == 4", "nowhere.parquet\", where = \"diversity == 4"),
                           "nowhere.parquet does not exist"),
                          (('where = "quality == 0.5"', 'where = "colour == 1"'), "where"),
                          (('splits = { ID = "id", OOD = "ood_family" }', 'splits = ["id"]'), "splits must be a table")):
        assert change[0] in spec
        (paper / "figures.toml").write_text(spec.replace(*change))
        assert main(["figures", "--paper", str(paper)]) == 2
        err = capsys.readouterr().err
        assert named in err and len(err.strip().splitlines()) == 1, err


def test_every_number_in_the_paper_is_quoted_from_the_file_it_comes_from():
    from scaling.report.quotes import check_paper, quotes_of

    paper = Path(__file__).resolve().parents[2] / "paper" / "paper.md"
    assert len(quotes_of(paper)) >= 10
    assert check_paper(paper) == []


def test_a_grouped_fits_returns_rows_name_their_group(project):
    """Each group's gains sit on rows of their own in the returns figure: the labels say whose they are."""
    gains = returns_rows(pd.read_csv(project / "fits" / "power" / "returns.csv"))
    assert set(gains["task"]) == {"a", "b"}
    assert all(label.startswith(f"{task} · ") for task, label in zip(gains["task"], gains["label"]))
    assert gains["label"].is_unique


def test_a_grouped_backtest_gets_a_panel_per_group_titled_with_its_coverage(project):
    """The backtest figure draws each group alone and says how many of its held-out rows the 90% intervals hold,
    counted from backtest.csv itself."""
    table = pd.read_csv(project / "fits" / "power" / "backtest.csv")
    panels = backtest_panels(table, ("task",))
    assert [name.split(":")[0] for name, _ in panels] == ["a", "b"]
    for name, rows in panels:
        held = rows[rows["held_out"]]
        covered = int(((held["lo"] <= held["observed"]) & (held["observed"] <= held["hi"])).sum())
        assert name.endswith(f"{covered / len(held):.2f} of {len(held)} held out covered")
        assert set(rows["task"]) == {name.split(":")[0]}
    # A prediction that misses lowers its group's count and no other's.
    missed = table.copy()
    first_a = missed.index[(missed["task"] == "a") & missed["held_out"]][0]
    missed.loc[first_a, ["lo", "hi"]] = missed.loc[first_a, "observed"] + np.array([1.0, 2.0])
    before, after = dict(panels), dict(backtest_panels(missed, ("task",)))
    assert [n for n in after if n.startswith("a")] != [n for n in before if n.startswith("a")]
    assert [n for n in after if n.startswith("b")] == [n for n in before if n.startswith("b")]
    assert backtest_panels(table, ())[0][0].endswith(f"of {int(table['held_out'].sum())} held out covered")


def test_a_backtest_panel_puts_the_law_beside_persistence_and_old_folders_still_draw(project):
    """Each panel says the law's and persistence's mean absolute error on its held-out rows; a backtest.csv
    written before the persistence column draws as it did."""
    table = pd.read_csv(project / "fits" / "power" / "backtest.csv")
    for name, rows in backtest_panels(table, ("task",)):
        held = rows[rows["held_out"]]
        law, carried = ((held[c] - held["observed"]).abs().mean() for c in ("mean", "persistence"))
        assert f"MAE {law:.3g} vs persistence {carried:.3g}, " in name
    old = backtest_panels(table.drop(columns="persistence"), ("task",))
    assert all("persistence" not in name and name.endswith("held out covered") for name, _ in old)


def test_the_paper_quotes_no_parameter_the_data_did_not_determine():
    """Every quote of a fit's summary.csv selects a row labelled `data` in its `identified` column
    (scaling.fit.identify): never a parameter the data cannot inform (`prior`: quality fixed at 1.0 leaves rho and
    gamma to the prior), one the prior places along a ridge (`ridge`), or a prior–data conflict (`conflict`)."""
    from scaling.report.quotes import quotes_of

    paper = Path(__file__).resolve().parents[2] / "paper" / "paper.md"
    quoted = [q for q in quotes_of(paper) if q.path.name == "summary.csv"]
    assert quoted
    problems = []
    for quote in quoted:
        table = pd.read_csv(quote.path)
        if "identified" not in table.columns:
            problems.append(f"{quote.path.parent.name}/summary.csv has no `identified` column: relabel the fit")
            continue
        chosen = table
        for column, value in quote.row:
            numeric = pd.api.types.is_numeric_dtype(chosen[column])
            chosen = chosen[chosen[column] == float(value)] if numeric else chosen[chosen[column].astype(str) == value]
        if set(chosen["identified"]) != {"data"}:
            problems.append(f"line {quote.line} quotes {quote.column} of {dict(quote.row)}, labelled "
                            f"{', '.join(map(str, sorted(set(chosen['identified']))))}")
    assert not problems, "\n".join(sorted(set(problems)))


def test_the_posterior_figure_knows_every_column_a_fit_summary_has():
    """A summary.csv without --by groups must not have a statistic taken for its group column: the figure's list
    of statistics holds every column scaling fit writes (it names them itself: reports never import the fitting
    modules)."""
    from scaling.fit.groups import SUMMARY_COLUMNS
    from scaling.report.figures import SUMMARY_STATISTICS

    assert {*SUMMARY_COLUMNS, "converged"} <= set(SUMMARY_STATISTICS)
