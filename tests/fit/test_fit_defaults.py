"""Published checks a user would try, with `scaling fit`'s default settings: they must fit without refusal
(no --allow-unconverged, no sampler flags) and match the published accuracy. Data and sources:
tests/data/README.md."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main

DATA = Path(__file__).parents[1] / "data"


@pytest.mark.slow
def test_lin_et_al_flan_curves_fit_per_model_by_default_to_the_published_accuracy(tmp_path):
    """`rectified --by model` over the 30 FLAN fine-tuning curves: every group converges, and the median
    RMSD in log loss is within 1.5x of the authors' own fits (0.0062)."""
    wide = pd.read_csv(DATA / "flan_finetune.csv")
    sizes = [c for c in wide.columns if c.isdigit() and int(c) >= 200]  # the authors fit sizes >= 200
    model = wide.columns[0]  # "Config name", after a byte-order mark in the published file
    long = wide.melt(id_vars=[model], value_vars=sizes, var_name="D", value_name="loss").rename(columns={model: "model"})
    long["D"] = long["D"].astype(float)
    long.to_csv(tmp_path / "flan.csv", index=False)
    out = tmp_path / "fit"
    assert main(["fit", str(tmp_path / "flan.csv"), "--law", "rectified", "--y", "loss", "--x", "D=D", "--by", "model",
                 "--out", str(out)]) == 0
    backtest = pd.read_csv(out / "backtest.csv")
    rmsd = backtest.groupby("model").apply(
        lambda g: np.sqrt(np.mean((np.log(g["mean"]) - np.log(g["observed"])) ** 2)), include_groups=False)
    published = pd.read_csv(DATA / "rmsd_published.csv")
    published = published[published.dataset.str.lower() == "flan"].set_index("model")["our_rmsd_under_log"]
    assert len(rmsd) == 30 and set(rmsd.index) == set(published.index)
    assert rmsd.median() <= 1.5 * published.median(), (rmsd.median(), published.median())


@pytest.mark.slow
def test_pythia_lambada_accuracy_over_the_five_smallest_sizes_predicts_the_three_largest_by_default(tmp_path):
    """`logistic` on LAMBADA accuracy (Beta-Binomial over its 5,153 examples), fitted on 70m-1.4b with the
    default sampler: no refusal, and 2.8b, 6.9b and 12b predicted within 2 points."""
    out = tmp_path / "fit"
    assert main(["fit", str(DATA / "pythia_lambada_acc.csv"), "--law", "logistic", "--y", "value", "--n", "n",
                 "--x", "x=params_nonembed", "--holdout", "params_nonembed > 1.5e9", "--out", str(out)]) == 0
    backtest = pd.read_csv(out / "backtest.csv")
    held = backtest[backtest.held_out]
    assert len(held) == 3 and (held["mean"] - held["observed"]).abs().mean() < 0.02
