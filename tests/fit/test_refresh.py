"""A fit folder's returns and backtest baseline recomputed from what it holds, without refitting."""

import tomllib

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.fit.refresh import write_refreshed

QUICK = ["--chains", "2", "--samples", "200", "--warmup", "200", "--allow-unconverged"]


def test_a_folder_written_before_the_baseline_gets_it_back_as_a_fresh_fit_writes_it(tmp_path):
    rng = np.random.default_rng(0)
    step = np.repeat(np.geomspace(16, 4096, 8), 2)
    loss = (1.0 + 3.0 * step ** -0.4) * np.exp(rng.normal(0, 0.01, step.size))
    pd.DataFrame({"step": step, "loss": loss}).to_csv(tmp_path / "losses.csv", index=False)
    out = tmp_path / "fit"
    assert main(["fit", str(tmp_path / "losses.csv"), "--law", "power", "--y", "loss", "--x", "x=step",
                 "--holdout", "step > 2000", "--out", str(out), *QUICK]) == 0
    fresh = {name: pd.read_csv(out / name) for name in ("returns.csv", "backtest.csv")}
    scores = tomllib.loads((out / "fit.toml").read_text())["backtest"]
    # As an older version wrote it: no persistence column or scores, no returns notes.
    fresh["backtest.csv"].drop(columns="persistence").to_csv(out / "backtest.csv", index=False)
    fresh["returns.csv"].drop(columns=["extrapolated", "note"]).to_csv(out / "returns.csv", index=False)
    record = (out / "fit.toml").read_text()
    (out / "fit.toml").write_text(record.replace("mae_persistence = ", "old_mae_persistence = "))
    write_refreshed(out, root=tmp_path)
    for name, table in fresh.items():
        pd.testing.assert_frame_equal(pd.read_csv(out / name), table)
    # The command does the same; a folder scaling fit did not write is refused in one line.
    fresh["backtest.csv"].drop(columns="persistence").to_csv(out / "backtest.csv", index=False)
    assert main(["fit", "--refresh", str(out)]) == 0
    assert main(["fit", "--refresh", str(tmp_path)]) == 2
    for name, table in fresh.items():
        pd.testing.assert_frame_equal(pd.read_csv(out / name), table)
    assert tomllib.loads((out / "fit.toml").read_text())["backtest"]["all"] == pytest.approx(scores["all"])
    assert scores["all"]["persistence_rows"] == 2  # the one run's two rows at 4096, from its largest fitted budget
