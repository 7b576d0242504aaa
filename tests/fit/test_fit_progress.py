"""A fit shows which group it is fitting and how far each chain has got, on a terminal only, without
changing a single draw and without writing to stdout."""

import io

import numpy as np
import pandas as pd
from rich.console import Console

from scaling.cli import main
from scaling.fit import progress
from scaling.fit.infer import FitData, SamplerConfig, fit_law
from scaling.fit.laws import LAWS

SAMPLER = SamplerConfig(warmup=150, samples=100, chains=2, seed=3)


def _data() -> FitData:
    x = np.geomspace(10, 10_000, 12)
    return FitData({"x": x}, (1.5 + 4 * x ** -0.5) * np.exp(np.random.default_rng(0).normal(0, 0.03, x.size)))


def test_every_chain_reports_its_way_through_warmup_and_sampling_and_draws_are_unchanged():
    seen: list[tuple[int, int]] = []
    terminal = Console(file=io.StringIO(), force_terminal=True, width=100)
    with progress.fit_progress(console=terminal):
        display = progress._active
        original = display.tick
        display.tick = lambda chain, done: (seen.append((chain, done)), original(chain, done))
        progress.stage("group a", 0, 1)
        watched = fit_law(LAWS["power"], _data(), "nuts", SAMPLER)
        assert [task.completed for task in display.progress.tasks[1:]] == [250, 250]  # both chains' bars full
        assert display.progress.tasks[0].description == "group a" and display.progress.tasks[0].total == 1
    for chain in (0, 1):
        done = [d for c, d in seen if c == chain]
        assert done == sorted(done) and done[0] <= 5 and done[-1] == 250 and len(done) >= 50
    quiet = fit_law(LAWS["power"], _data(), "nuts", SAMPLER)
    for name in ("E", "A", "alpha"):
        np.testing.assert_array_equal(watched.posterior.posterior[name].values, quiet.posterior.posterior[name].values)
    assert progress._active is None  # the display is gone with its block (and later chains compile no callback)


def test_the_fit_report_on_stdout_is_the_same_with_or_without_quiet(tmp_path, capsys):
    table = tmp_path / "losses.csv"
    data = _data()
    pd.DataFrame({"tokens": data.x["x"], "loss": data.y}).to_csv(table, index=False)
    argv = ["fit", str(table), "--law", "power", "--y", "loss", "--x", "x=tokens", "--chains", "2", "--samples", "200",
            "--warmup", "200", "--allow-unconverged"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    shown = capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert shown.out.replace(str(tmp_path / "a"), "OUT") == quiet.out.replace(str(tmp_path / "b"), "OUT")
    assert "chain" not in shown.err  # stderr is not a terminal here: nothing drawn
