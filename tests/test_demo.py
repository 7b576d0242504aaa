"""End to end: the demo pipeline at small settings writes results, a fit and figures that load."""

import dataclasses
import sys
import tomllib

import arviz as az
import pandas as pd
import pytest

from scaling import open_results
from scaling.demo import DemoConfig, demo_spec, run_demo
from scaling.report.paper import regenerate_figures
from scaling.grid.spec import expand
from scaling.errors import UserError
from scaling.fit.infer import SamplerConfig
from signal_helpers import assert_terminated_in_one_line, signalled

SMALL = DemoConfig(
    sizes=("tiny",),
    diversities=(1, 2),
    examples=120,
    budgets=(4, 8, 16),
    eval_n=8,
    memorization_n=8,
    sampler=SamplerConfig(warmup=150, samples=150, chains=2),
)


@pytest.mark.slow
def test_demo_writes_results_fit_and_figures_that_load(tmp_path):
    out = tmp_path / "demo"
    paths = run_demo(SMALL, out, say=lambda *_: None)
    results = open_results(paths["results"])
    assert {"size", "pretrain_tokens", "diversity", "quality", "cot", "seed", "step", "split"} <= set(results.dims)
    assert list(results.step.values) == [4, 8, 16]
    assert list(results.split.values) == ["train", "id", "ood_family", "ood_phrasing"]
    assert (results["status"] == "done").all()
    assert results["answer_acc"].notnull().all() and (results["loss"] > 0).all()
    entropy = results["family_phrasing_entropy"].squeeze()
    assert float(entropy.sel(diversity=2)) > float(entropy.sel(diversity=1)) > 0
    assert "jax==" in results.attrs["versions"] and results.attrs["spec"] == paths["grid"].read_text()
    assert len(list(paths["cells"].glob("*.nc"))) == len(expand(demo_spec(SMALL))) == 2
    assert sorted(p.name for p in out.iterdir()) == ["cells", "data_version", "demo.toml", "families.parquet", "figures",
                                                     "fit", "grades.parquet", "grid.toml", "results.nc"]

    # The fit is `scaling fit`'s own: its outputs, its fit.toml, its figure function. It compares trained
    # families: a curve per size × family × diversity, only where the cell trained the family (reverse: diversity 2).
    summary = pd.read_csv(paths["summary"])
    assert list(summary.columns) == ["size", "family", "diversity", "param", "mean", "sd", "hdi_5%", "hdi_95%", "r_hat",
                                     "ess_bulk", "contraction", "prior_share", "prior_tail", "identified", "p_positive",
                                     "converged"]
    assert set(zip(summary["size"], summary["family"], summary["diversity"])) == {
        ("tiny", "add", 1), ("tiny", "add", 2), ("tiny", "reverse", 2)}
    assert set(summary["param"]) == {"C", "x50", "k"}
    posterior = az.from_netcdf(paths["posterior"]).posterior
    assert list(posterior["x50"].coords["group"].values) == [
        "size=tiny, family=add, diversity=1", "size=tiny, family=add, diversity=2", "size=tiny, family=reverse, diversity=2"]
    record = tomllib.loads(paths["fit spec"].read_text())
    assert record["fit"]["law"] == "accuracy" and record["fit"]["n"] == "n"
    assert record["fit"]["by"] == ["size", "family", "diversity"] and record["fit"]["where"] == "split == 'id' and trained"
    assert record["fit"]["input"] == "../families.parquet"  # relative to the fit folder: it moved with the demo's folder
    assert {"returns.csv", "backtest.csv"} <= {p.name for p in paths["fit"].iterdir()}
    assert results["train_loss"].notnull().all()  # every cell's training curve, between its budgets too
    assert list(results.train_step.values) == list(range(1, 17))
    for figure in ("figure", "figure pdf", "accuracy", "curves"):
        assert paths[figure].stat().st_size > 5_000

    # `scaling figures` draws the demo's fit like any other.
    paper = tmp_path / "paper"
    paper.mkdir()
    (paper / "figures.toml").write_text('[[figure]]\nname = "demo_fit"\nkind = "law_fit"\nfit = "demo/fit"\n'
                                        '[[figure]]\nname = "demo_returns"\nkind = "returns"\nfit = "demo/fit"\n')
    drawn = regenerate_figures(paper, say=lambda *_: None)
    assert {"demo_fit.png", "demo_returns.png", "INDEX"} <= {p.name for p in drawn}


@pytest.mark.slow
def test_the_demo_can_fit_the_power_law_to_losses(tmp_path):
    cfg = dataclasses.replace(SMALL, sizes=("tiny",), diversities=(1,), fit_metric="loss", fit_law="power")
    paths = run_demo(cfg, tmp_path / "demo", say=lambda *_: None)
    assert set(pd.read_csv(paths["summary"])["param"]) == {"E", "A", "alpha"}
    assert paths["figure"].stat().st_size > 5_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no staging folder left


def test_a_failing_demo_leaves_nothing_behind(tmp_path):
    broken = DemoConfig(sizes=("tiny",), diversities=(1,), ood_families=("add",), examples=20, budgets=(1, 2, 3))
    with pytest.raises(UserError, match="also in families"):
        run_demo(broken, tmp_path / "demo", say=lambda *_: None)
    assert list(tmp_path.iterdir()) == []


def test_only_a_folder_the_demo_wrote_is_replaced(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    with pytest.raises(UserError, match="not written by `scaling demo`"):
        run_demo(SMALL, foreign, say=lambda *_: None)
    with pytest.raises(UserError, match="is a file"):
        run_demo(SMALL, foreign / "notes.txt", say=lambda *_: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"] and (foreign / "notes.txt").read_text() == "precious"


def test_the_grid_is_the_product_of_its_axes():
    cells = expand(demo_spec(DemoConfig()))
    assert len(cells) == 4
    assert {(c.size, c.diversity) for c in cells} == {("tiny", 1), ("tiny", 2), ("xs", 1), ("xs", 2)}


def test_the_default_demo_is_at_least_the_promised_grid():
    cfg = DemoConfig()
    assert len(cfg.sizes) >= 2 and len(cfg.diversities) >= 2 and len(cfg.budgets) >= 4
    assert len(cfg.families) >= 2 and cfg.ood_families and not set(cfg.ood_families) & set(cfg.families)
    assert {"train", "id", "ood_family"} <= set(cfg.splits)


def test_an_accuracy_fit_needs_a_metric_graded_per_family():
    with pytest.raises(ValueError, match="per family"):
        DemoConfig(fit_metric="loss")  # the accuracy law is fitted per trained family; losses are per cell only


# `scaling demo` itself, through the CLI's own entry point, with its config shrunk to SMALL so that every
# stage comes within seconds.
SMALL_DEMO_COMMAND = f"""
import sys
import scaling.demo
from scaling.cli import main
from scaling.demo import DemoConfig
from scaling.fit.infer import SamplerConfig

scaling.demo.DemoConfig = lambda: {SMALL!r}
sys.exit(main(["demo", "--out", sys.argv[1]]))
"""
# The moments a demo is stopped at, each seen in its staging folder: training its first cell, training its
# second with the first cell's file written, and fitting (the fit's own staging folder inside the demo's).
MOMENTS = {
    "first cell": lambda staging: any(staging.glob("locks/*.lock")),
    "second cell": lambda staging: any(staging.glob("cells/*.nc")),
    "fit": lambda staging: any(staging.glob(".fit.*.tmp")),
}


@pytest.mark.slow
@pytest.mark.parametrize("moment", MOMENTS)
def test_sigterm_leaves_no_demo_staging(tmp_path, moment):
    """What `timeout`, SLURM and Kubernetes send: the demo stops in one line, status 143, its staging folder
    removed, unwound as on Ctrl-C: its cells do not stop at a checkpoint, since a stopped demo is not resumed."""
    out = tmp_path / "demo"
    reached = lambda _: any(MOMENTS[moment](staging) for staging in tmp_path.glob(".demo.*.tmp"))  # noqa: E731
    ended = signalled([sys.executable, "-c", SMALL_DEMO_COMMAND, str(out)], tmp_path, reached)
    assert ended.signalled, f"the demo ended before {moment}: {ended}"
    assert_terminated_in_one_line(ended)
    assert "scaling: terminated (SIGTERM)" in ended.err.splitlines() and "rerun" not in ended.err, ended.err
    assert list(tmp_path.iterdir()) == []
