"""Planning from a pilot: spreads recovered from grades of known spreads, minimum detectable differences that
simulated grids detect at the stated power, and `scaling power` on a small grades table and on bad input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cli_helpers import run_cli, snapshot
from scaling.power import (Design, Spreads, conditions_mdd, conditions_test, estimate_spreads, gain_mdd, gain_test,
                           power_table, read_grades, simulated_power)

ROOT = Path(__file__).resolve().parents[1]


def pilot_grades(conditions=4, seeds=4, items=24, run_sd=0.6, item_sd=1.0, interaction_sd=0.4, gain=1.0,
                 seed=0) -> pd.DataFrame:
    """A grid's grades drawn from a logistic model with crossed run and item effects: every cell graded on the
    same items at budgets 64, 128 and 256, memorizing its train split at 64 (so a 4 x gain reaches 256)."""
    rng = np.random.default_rng(seed)
    item = rng.normal(0, item_sd, items)
    rows = []
    for c in range(conditions):
        interaction = rng.normal(0, interaction_sd, items)
        for s in range(seeds):
            run, cell = rng.normal(0, run_sd), f"c{c}s{s}"
            for step, lift in ((64, 0.0), (128, gain / 2), (256, gain)):
                p = 1 / (1 + np.exp(-(-0.3 + 0.2 * c + run + item + interaction + lift)))
                right = rng.random(items) < p
                rows += [{"cell_id": cell, "diversity": c + 1, "seed": s, "step": step, "split": "id", "family": "add",
                          "key": f"k{i}", "answer_correct": bool(r)} for i, r in enumerate(right)]
                rows += [{"cell_id": cell, "diversity": c + 1, "seed": s, "step": step, "split": "train", "family": "add",
                          "key": f"t{i}", "answer_correct": True} for i in range(4)]
    return pd.DataFrame(rows)


def test_spreads_separate_runs_items_and_their_interaction():
    # Strong run effects and no item effects, then the other way round: the shares follow.
    runs = estimate_spreads(pilot_grades(run_sd=1.5, item_sd=0.0, interaction_sd=0.0, seeds=6))[0]
    items = estimate_spreads(pilot_grades(run_sd=0.0, item_sd=1.5, interaction_sd=0.0, seeds=6))[0]
    assert runs.run > 0.1 > runs.item and items.item > 0.1 > items.run
    assert runs.run + runs.item + runs.interaction + runs.residual == pytest.approx(1.0)
    assert (runs.conditions, runs.runs, runs.items, runs.step) == (4, 6, 24, 256)
    assert runs.gain_runs == 24 and not runs.gain_reason


def test_a_larger_grid_detects_smaller_differences():
    s = estimate_spreads(pilot_grades())[0]
    assert conditions_mdd(s, 3, 24) > conditions_mdd(s, 8, 24) > conditions_mdd(s, 8, 96) > 0
    assert gain_mdd(s, 3, 24) > gain_mdd(s, 8, 96) > 0


# Spreads of the kind the study's pilot shows for `id` families (study-core, step 2048: run 0.05, item 0.17,
# item x condition 0.06 of p(1 - p) for add), at a moderate accuracy where the normal approximation holds.
PLANNED = Spreads(split="id", family="add", step=2048, level=0.4, conditions=12, runs=3, items=16, run=0.05, item=0.17,
                  interaction=0.06, residual=0.72, gain_runs=12, gain_level=0.3, gain_shares=(0.05, 0.2, 0.75),
                  gain_carry=(0.5, 0.8, 0.3))
GRIDS = 400


@pytest.mark.parametrize("contrast, mdd", [("conditions", conditions_mdd), ("gain", gain_mdd)])
def test_simulated_grids_detect_the_minimum_detectable_difference_at_the_stated_power(contrast, mdd):
    seeds, items = 6, 48
    difference = mdd(PLANNED, seeds, items)
    share = simulated_power(PLANNED, seeds, items, difference, contrast, grids=GRIDS, seed=1)
    error = np.sqrt(0.8 * 0.2 / GRIDS)
    assert abs(share - 0.8) < 3 * error, (difference, share)
    # Without a true difference the test rejects as rarely as planned: at most alpha (it is conservative).
    test = (conditions_test(PLANNED, (PLANNED.level, PLANNED.level), seeds, items) if contrast == "conditions"
            else gain_test(PLANNED, 0.0, seeds, items))
    planned_size = test.power(0.0, 0.05)
    size = simulated_power(PLANNED, seeds, items, 0.0, contrast, grids=GRIDS, seed=2)
    assert planned_size <= 0.05 and abs(size - planned_size) < 3 * np.sqrt(planned_size * (1 - planned_size) / GRIDS) + 0.005


def test_a_difference_below_the_minimum_is_detected_less_often():
    difference = conditions_mdd(PLANNED, 6, 48)
    assert simulated_power(PLANNED, 6, 48, difference / 2, grids=GRIDS) < 0.5


def test_detect_names_the_seeds_and_items_a_difference_needs():
    s = estimate_spreads(pilot_grades())[0]
    table = power_table([s], Design(seeds=4, detect=0.2))
    row = table.iloc[0]
    assert row["seeds_for_conditions"] >= 2
    # The seeds found are enough, one fewer is not (at the planned items).
    assert conditions_mdd(s, int(row["seeds_for_conditions"]), 24) <= 0.2
    assert row["seeds_for_conditions"] == 2 or conditions_mdd(s, int(row["seeds_for_conditions"]) - 1, 24) > 0.2


def test_power_prints_the_table_and_writes_the_csv(tmp_path):
    pilot_grades().to_csv(tmp_path / "grades.csv", index=False)
    result = run_cli(["power", "grades.csv", "--detect", "0.2", "--seeds", "5", "--csv", "plan.csv"], tmp_path)
    assert result.code == 0, result.err
    assert "mdd_conditions" in result.out and "To detect 0.2" in result.out and "Assumptions" in result.out
    written = pd.read_csv(tmp_path / "plan.csv")
    assert list(written[["split", "family", "seeds", "items"]].iloc[0]) == ["id", "add", 5, 24]
    assert 0 < written["mdd_conditions"].iloc[0] < 1 and 0 < written["mdd_gain"].iloc[0] < 1


@pytest.mark.parametrize("make, argv, says", [
    (lambda d: pilot_grades().drop(columns="key").to_parquet(d / "grades.parquet"), ["power", "."], "no column 'key'"),
    (lambda d: (d / "run").mkdir(), ["power", "run"], "has no grades.parquet"),
    (lambda d: None, ["power", "nowhere"], "no run folder or grades table"),
    (lambda d: pilot_grades().to_csv(d / "g.csv", index=False), ["power", "g.csv", "--step", "5"], "no grades at step 5"),
    (lambda d: pilot_grades().to_csv(d / "g.csv", index=False), ["power", "g.csv", "--detect", "2"], "--detect"),
    (lambda d: pilot_grades().assign(answer_correct="maybe").to_csv(d / "g.csv", index=False), ["power", "g.csv"],
     "answer_correct must hold"),
    (lambda d: (d / "g.txt").write_text("x"), ["power", "g.txt"], "not a grades table"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, make, argv, says):
    make(tmp_path)
    before = snapshot(tmp_path)
    result = run_cli([*argv, "--csv", "out.csv"], tmp_path)
    assert result.code == 2 and says in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert snapshot(tmp_path) == before  # nothing written


def test_the_study_pilot_plans():
    grades = read_grades(ROOT / "runs" / "study-core")
    table = power_table(estimate_spreads(grades), Design())
    add = table[(table["split"] == "id") & (table["family"] == "add")].iloc[0]
    assert (add["seeds"], add["items"], add["step"]) == (3, 16, 2048)
    assert 0.2 < add["mdd_conditions"] < 0.6  # three seeds and 16 items see large differences only
    everything_wrong = table[(table["split"] == "ood_length") & (table["family"] == "add")].iloc[0]
    assert np.isnan(everything_wrong["mdd_conditions"]) and everything_wrong["reason"]


def test_the_mdd_is_where_the_noncentral_t_reaches_the_power():
    # estimate / estimated se = (noncentral t) x se / estimated se: at the MDD its two tails hold 0.8.
    d = conditions_mdd(PLANNED, 6, 48)
    test = conditions_test(PLANNED, (PLANNED.level, PLANNED.level + d), 6, 48)
    critical = stats.t.ppf(0.975, test.df) * test.estimated_se / test.se
    tails = stats.nct.sf(critical, test.df, d / test.se) + stats.nct.cdf(-critical, test.df, d / test.se)
    assert tails == pytest.approx(0.8, abs=1e-4) and test.estimated_se > test.se


PLANNED_GRID = """
name = "t"
[axes]
size = ["tiny"]
seed = [0, 1, 2, 3]
[data]
families = ["add", "reverse"]
ood_families = ["sub"]
[train]
budgets = [4, 8]
[eval]
splits = ["train", "id"]
n = 40
"""


def test_a_grid_with_a_pilot_plans_at_its_own_seeds_and_items(tmp_path):
    from scaling.grid.estimate import describe_power
    from scaling.grid.spec import expand, load_spec, parse_spec

    (tmp_path / "pilot").mkdir()
    pilot_grades().to_parquet(tmp_path / "pilot" / "grades.parquet")
    (tmp_path / "grid.toml").write_text(PLANNED_GRID + '[design]\npilot = "pilot"\n')
    spec = load_spec(tmp_path / "grid.toml")
    said = []
    describe_power(spec, said.append)
    printed = "\n".join(said)
    row = next(line.split() for line in printed.splitlines() if line.split()[:2] == ["id", "add"])
    assert row[8:10] == ["4", "40"]  # the grid's seeds and its items of id/add, not the pilot's 4 and 24
    # Planning changes no cell's id: the same grid without a pilot has the same cells.
    assert [c.cell_id for c in expand(spec)] == [c.cell_id for c in expand(parse_spec(PLANNED_GRID))]


def test_a_missing_pilot_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "grid.toml").write_text(PLANNED_GRID + '[design]\npilot = "nowhere"\n')
    result = run_cli(["run", "grid.toml", "--dry-run"], tmp_path)
    assert result.code == 2 and "[design] pilot" in result.err and "nowhere" in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
