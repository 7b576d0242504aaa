"""Item-level law fits (scaling.fit.items): per-example 0/1 grades with crossed run and item effects, fitted,
predicted and written by `scaling fit`."""

import tomllib

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.fit.infer import SamplerConfig
from scaling.fit.items import ITEM_SD, POPULATIONS, fit_items, item_backtest, item_data
from scaling.fit.laws import LAWS

SHORT = SamplerConfig(warmup=300, samples=300, chains=2, seed=0)
TRUTH = {"C": 0.8, "x50": 150.0, "k": 1.5, "tau": 0.3, ITEM_SD: 1.0}
STEPS = np.geomspace(16, 2048, 6)


def crossed_grades(runs: int, items: int, seed: int = 0, truth: dict = TRUTH) -> pd.DataFrame:
    """Grades of the same `items` in every run and step: the accuracy law's mean, a run offset and an item
    effect on the logit, drawn by hand (not from the model that is fitted)."""
    rng = np.random.default_rng(seed)
    offset, effect = rng.normal(0, truth["tau"], runs), rng.normal(0, truth[ITEM_SD], items)
    mean = truth["C"] / (1 + (STEPS / truth["x50"]) ** -truth["k"])
    logit = np.log(mean / (1 - mean))[None, :, None] + offset[:, None, None] + effect[None, None, :]
    correct = rng.uniform(size=logit.shape) < 1 / (1 + np.exp(-logit))
    run, step, item = np.meshgrid(np.arange(runs), np.arange(len(STEPS)), np.arange(items), indexing="ij")
    return pd.DataFrame({"cell_id": [f"run{r}" for r in run.ravel()], "step": STEPS[step.ravel()],
                         "key": [f"item{j}" for j in item.ravel()], "correct": correct.ravel()})


def test_the_item_fit_recovers_a_known_item_spread_and_the_laws_parameters():
    law = LAWS["accuracy"]
    grades = crossed_grades(runs=6, items=40)
    data = item_data(grades.assign(correct=grades["correct"].astype(float)), law, {"x": "step"}, "correct", "key",
                     ("cell_id",), None)
    assert (len(data.cell_unit), len(data.items), data.n_units, data.n_budgets) == (36, 40, 6, 36)
    fit = fit_items(law, data, SHORT)
    summary = fit.summary.set_index("param")
    assert list(summary.index) == ["C", "x50", "k", ITEM_SD]
    for name in ("C", "x50", "k", ITEM_SD):
        assert summary.loc[name, "hdi_5%"] <= TRUTH[name] <= summary.loc[name, "hdi_95%"], (name, summary.loc[name])
    assert fit.divergences == 0
    assert abs(summary.loc[ITEM_SD, "mean"] - TRUTH[ITEM_SD]) < 0.3  # 40 items: the spread is measured, not the prior's
    backtest = item_backtest(fit, data, {"x": "step"}, held_out=False)
    assert len(backtest) == 36 and (backtest["items"] == 40).all() and (backtest["population"] == POPULATIONS["these"]).all()
    assert ((backtest.observed >= backtest.lo) & (backtest.observed <= backtest.hi)).mean() >= 0.8


@pytest.fixture(scope="module")
def grades_folder(tmp_path_factory):
    """A grid's grades.parquet (no per-cell columns) with its families.parquet beside it."""
    folder = tmp_path_factory.mktemp("run")
    grades = crossed_grades(runs=4, items=12, seed=1)
    grades["family"] = "add"
    grades.to_parquet(folder / "grades.parquet")
    cells = pd.DataFrame({"cell_id": [f"run{r}" for r in range(4)], "family": "add", "n": 12,
                          "base_probe_acc": [0.25, 0.25, 0.5, 0.5]})
    cells.to_parquet(folder / "families.parquet")
    return folder


def test_a_fit_of_grades_is_item_level_and_its_folder_says_so(grades_folder, tmp_path, capsys):
    out = tmp_path / "fit"
    # base_probe_acc lives in families.parquet only: the grades are joined with their cells' columns.
    argv = ["fit", str(grades_folder / "grades.parquet"), "--law", "accuracy", "--y", "correct", "--x", "x=step",
            "--where", "base_probe_acc > 0", "--holdout", "step > 1000", "--out", str(out), "--warmup", "150",
            "--samples", "150", "--chains", "2", "--allow-unconverged", "--quiet"]
    assert main(argv) == 0
    record = tomllib.loads((out / "fit.toml").read_text())
    assert record["likelihood"]["kind"] == "item-level Bernoulli"
    assert record["likelihood"]["item_column"] == "key" and record["likelihood"]["run_unit"] == "cell_id × family"
    assert record["likelihood"]["population"]["backtest"] == POPULATIONS["these"]
    backtest = pd.read_csv(out / "backtest.csv")
    assert len(backtest) == 4 and backtest["held_out"].all() and (backtest["items"] == 12).all()  # a row per run's step
    assert (backtest["population"] == POPULATIONS["these"]).all()
    assert (pd.read_csv(out / "returns.csv")["population"] == POPULATIONS["median"]).all()
    assert ITEM_SD in set(pd.read_csv(out / "summary.csv")["param"])


def test_an_aggregated_fit_names_its_likelihood(grades_folder, tmp_path):
    out = tmp_path / "fit"
    argv = ["fit", str(grades_folder / "families.parquet"), "--law", "accuracy", "--y", "base_probe_acc", "--n", "n",
            "--x", "x=n", "--out", str(out), "--warmup", "20", "--samples", "20", "--chains", "2", "--allow-unconverged",
            "--quiet"]
    assert main(argv) == 0
    assert tomllib.loads((out / "fit.toml").read_text())["likelihood"]["kind"] == "aggregated Beta-Binomial"


@pytest.mark.parametrize("extra, named", [
    (["--item", "problem"], "--item: no column 'problem'"),
    (["--item", "key", "--y", "step"], "needs one 0/1 outcome per row"),
    (["--item", "key", "--n", "step"], "--item 'key' fits one 0/1 grade per row"),
    (["--method", "svi"], "is sampled by NUTS"),
])
def test_bad_item_level_input_exits_2_with_one_line(extra, named, grades_folder, tmp_path, capsys):
    argv = ["fit", str(grades_folder / "grades.parquet"), "--law", "accuracy", "--y", "correct", "--x", "x=step",
            "--out", str(tmp_path / "fit"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "fit").exists()


def test_pooled_families_share_one_item_level_fit_with_a_spread_each(tmp_path):
    """--by family --pool: one joint fit, a summary per family with that family's own item spread; a run's two
    families are two units."""
    folder = tmp_path / "run"
    folder.mkdir()
    grades = pd.concat([crossed_grades(runs=3, items=8, seed=2).assign(family="add"),
                        crossed_grades(runs=3, items=8, seed=3).assign(family="sort")], ignore_index=True)
    grades.to_parquet(folder / "grades.parquet")
    out = tmp_path / "fit"
    argv = ["fit", str(folder / "grades.parquet"), "--law", "accuracy", "--y", "correct", "--x", "x=step", "--by", "family",
            "--pool", "--out", str(out), "--warmup", "100", "--samples", "100", "--chains", "2", "--allow-unconverged",
            "--quiet"]
    assert main(argv) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.loc[summary.param == ITEM_SD, "family"]) == {"add", "sort"}
    backtest = pd.read_csv(out / "backtest.csv")
    assert backtest.groupby("family")["run"].nunique().to_dict() == {"add": 3, "sort": 3} and len(backtest) == 36


def test_compare_refuses_per_example_grades(grades_folder, tmp_path, capsys):
    argv = ["fit", str(grades_folder / "grades.parquet"), "--compare", "accuracy,logistic", "--y", "correct",
            "--x", "x=step", "--out", str(tmp_path / "fit")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--compare fits aggregated rows" in err and len(err.splitlines()) == 1, err
