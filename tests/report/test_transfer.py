"""report/transfer.py and `scaling transfer`: accuracy against chance and a positive control's headroom,
from hand-made grades (cells x items of right and wrong answers), with runs and items both random."""

import numpy as np
import pandas as pd
import pytest

from cli_helpers import assert_refused, run_cli
from scaling.errors import UserError
from scaling.report.intervals import binomial_interval
from scaling.report.transfer import transfer_table

STEP = 64


def cells(right_CxK, split="ood_family", family="sum3", chance=0.25, control="", name="run", size="xs",
          distance=0, step=STEP, keys=None) -> pd.DataFrame:
    """Grades of one cell per row of right_CxK (1 right, 0 wrong), one item per column, on one split/family."""
    right_CxK = np.asarray(right_CxK)
    keys = keys if keys is not None else [f"{family}-{k}" for k in range(right_CxK.shape[1])]
    rows = [{"cell_id": f"{name}{c}-{size}", "size": size, "pretrain_tokens": 0, "diversity": 1, "quality": 1.0,
             "cot": "full", "seed": c, "step": step, "split": split, "trained": False, "family": family,
             "phrasing": 0, "difficulty": 3, "key": keys[k], "chance": chance, "answer_correct": bool(right),
             "process_score": 0.0, "chain_correct": False, "steps": 1, "generated_tokens": 8,
             "distance": distance, "control": control}
            for c, row in enumerate(right_CxK) for k, right in enumerate(row)]
    return pd.DataFrame(rows)


def at_chance(runs: int, items: int) -> np.ndarray:
    """Exactly a quarter right on every item and in every run (chance 0.25): no evidence either way."""
    return np.array([[(c + k) % 4 == 0 for k in range(items)] for c in range(runs)])


def learned(runs: int, items: int, rate=0.8, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((runs, items)) < rate


def row(table: pd.DataFrame, **where) -> pd.Series:
    picked = table
    for column, value in where.items():
        picked = picked[picked[column] == value]
    assert len(picked) == 1, (where, table)
    return picked.iloc[0]


def test_transfer_is_undefined_not_zero_where_the_control_stays_at_chance():
    grades = pd.concat([cells(learned(6, 40)), cells(at_chance(4, 40), control="ood_family", name="ctl")])
    result = row(transfer_table(grades), split="ood_family")
    assert result["verdict"] == "above chance"
    assert result["control_verdict"] == "not above chance"
    assert np.isnan(result["transfer"]) and np.isnan(result["transfer_lo"]) and np.isnan(result["transfer_hi"])
    assert result["reason"] == "control not above chance"
    assert result["headroom"] == pytest.approx(0.25) and result["control_runs"] == 4


def test_transfer_is_one_where_the_regular_cells_match_the_control_and_zero_where_they_sit_at_chance():
    control = cells(learned(4, 60, seed=1), control="ood_family", name="ctl")
    same = row(transfer_table(pd.concat([cells(learned(4, 60, seed=1)), control])), split="ood_family")
    assert same["transfer"] == pytest.approx(1.0) and same["transfer_lo"] < 1.0 < same["transfer_hi"]
    assert same["reason"] == "" and same["control_verdict"] == "above chance"
    floor = row(transfer_table(pd.concat([cells(at_chance(8, 60)), control])), split="ood_family")
    assert floor["transfer"] == pytest.approx(0.0) and floor["transfer_lo"] < 0.0 < floor["transfer_hi"]
    assert floor["verdict"] == "not above chance"
    assert floor["transfer_hi"] < 0.5  # a floor is told apart from transfer, not just "not significant"


def test_a_family_below_its_chance_is_flagged_below_never_called_at_chance():
    below = cells(learned(6, 40, rate=0.05), family="sub", chance=0.5)
    level = cells(at_chance(6, 40), family="sum3")
    table = transfer_table(pd.concat([below, level]))
    assert row(table, family="sub")["verdict"] == "below chance"
    assert row(table, family="sub")["p_below"] >= 0.95
    assert row(table, family="sum3")["verdict"] == "not above chance"
    assert row(table, family="sub")["reason"] == "no control"
    assert "at chance" not in set(table["verdict"])


def test_nothing_right_where_guessing_would_get_nothing_right_either_is_not_below_chance():
    # 0 right of 400 with a chance of 0.0005: the bootstrap has nothing to resample (no share of draws to count),
    # and guessing expects 0.2 right and scores 0 most of the time.
    rare = row(transfer_table(cells(np.zeros((10, 40)), chance=0.0005)), split="ood_family")
    assert np.isnan(rare["p_below"]) and rare["p_guessing"] > 0.5
    assert rare["verdict"] == "not above chance"
    # Guessing expects 50 right of 1,000, and 0 right of 100 distinct items puts the exact interval below 0.05.
    common = row(transfer_table(cells(np.zeros((10, 100)), chance=0.05)), split="ood_family")
    assert common["p_guessing"] < 0.01 and common["acc_hi"] < 0.05 and common["verdict"] == "below chance"


def test_items_are_a_random_factor_item_effects_widen_the_interval():
    runs, items = 20, 100
    # The same mean (0.5): items always right or always wrong in every run, against noise independent per run
    # and item. Counting 2,000 rows as binomial draws gives both the same narrow interval; they are not alike.
    fixed = np.tile(np.arange(items) % 2 == 0, (runs, 1))
    noise = np.random.default_rng(3).random((runs, items)) < 0.5
    width = {}
    for name, right in (("fixed", fixed), ("noise", noise)):
        result = row(transfer_table(cells(right, chance=0.0)), split="ood_family")
        assert result["runs"] == runs and result["items"] == items and result["n"] == runs * items
        width[name] = result["acc_hi"] - result["acc_lo"]
    binomial = 2 * 1.645 * np.sqrt(0.25 / (runs * items))
    assert width["fixed"] > 2 * width["noise"]
    assert width["fixed"] > 3 * binomial


def test_runs_are_a_random_factor_run_effects_widen_the_interval():
    runs, items = 8, 200
    fixed = np.repeat((np.arange(runs) % 2 == 0)[:, None], items, axis=1)  # runs that learned it and runs that did not
    noise = np.random.default_rng(4).random((runs, items)) < 0.5
    widths = [np.ptp(row(transfer_table(cells(r, chance=0.0)), split="ood_family")[["acc_lo", "acc_hi"]])
              for r in (fixed, noise)]
    assert widths[0] > 3 * widths[1]


def test_the_distance_ladder_gives_each_distance_its_own_row_and_its_own_control():
    regular = pd.concat([cells(learned(4, 40, rate=0.6, seed=d), split="ood_length", family="add", distance=d,
                               keys=[f"d{d}-{k}" for k in range(40)]) for d in (1, 2)])
    control = pd.concat([cells(learned(3, 40, rate=0.9, seed=9), split="ood_length", family="add", distance=1,
                               control="ood_length", name="ctl", keys=[f"d1-{k}" for k in range(40)]),
                         cells(at_chance(3, 40), split="ood_length", family="add", distance=2, control="ood_length",
                               name="ctl", keys=[f"d2-{k}" for k in range(40)])])
    table = transfer_table(pd.concat([regular, control]), by=("split", "family", "distance"))
    assert list(table["distance"]) == [1, 2]
    near, far = row(table, distance=1), row(table, distance=2)
    assert near["reason"] == "" and 0.3 < near["transfer"] < 0.8
    assert far["reason"] == "control not above chance" and np.isnan(far["transfer"])
    assert near["items"] == far["items"] == 40


def test_headroom_comes_from_the_control_of_the_same_split_and_base():
    regular = pd.concat([cells(learned(4, 40, seed=s), size=size) for s, size in enumerate(("xs", "s"))])
    control = pd.concat([cells(learned(2, 40, rate=rate, seed=5), control="ood_family", name="ctl", size=size)
                         for rate, size in ((0.5, "xs"), (1.0, "s"))])
    other = cells(np.ones((2, 40)), control="ood_phrasing", name="other")  # a control of another split: ignored
    per_base = transfer_table(pd.concat([regular, control, other]), by=("split", "family", "size"))
    assert row(per_base, size="s")["headroom"] == 1.0
    assert row(per_base, size="xs")["headroom"] < 0.7
    pooled = row(transfer_table(pd.concat([regular, control, other])), split="ood_family")
    assert pooled["headroom"] == pytest.approx(per_base["headroom"].mean()) and pooled["control_runs"] == 4
    assert pooled["runs"] == 8  # control cells never count as runs of the regular cells
    lacking = row(transfer_table(pd.concat([regular, control[control["size"] == "s"]])), split="ood_family")
    assert lacking["reason"] == "no control for size=xs, pretrain_tokens=0, cot=full" and np.isnan(lacking["transfer"])


def test_the_last_budget_by_default_and_the_training_split_left_out():
    grades = pd.concat([cells(learned(3, 20), step=32), cells(np.ones((3, 20)), step=STEP),
                        cells(np.ones((3, 20)), split="train")])
    assert list(transfer_table(grades)["split"]) == ["ood_family"]
    assert row(transfer_table(grades), split="ood_family")["acc"] == 1.0
    assert row(transfer_table(grades, step=32), split="ood_family")["acc"] < 1.0


def test_the_same_seed_gives_the_same_table_and_no_control_column_means_no_control():
    grades = cells(learned(3, 30)).drop(columns="control")
    first, again = transfer_table(grades, seed=7), transfer_table(grades, seed=7)
    pd.testing.assert_frame_equal(first, again)
    assert row(first, split="ood_family")["reason"] == "no control"


@pytest.mark.parametrize("kwargs, named", [
    ({"by": ("family",)}, "must include split"),
    ({"by": ("split", "colour")}, "'colour'"),
    ({"step": 5}, "steps are 64"),
    ({"where": "size == 'xl'"}, "where \"size == 'xl'\" selects no rows"),
])
def test_bad_requests_are_user_errors_that_name_what_is_wrong(kwargs, named):
    with pytest.raises(UserError, match=named):
        transfer_table(cells(learned(2, 10)), **kwargs)


# --- `scaling transfer RUN_DIR` ----------------------------------------------------------------------

@pytest.fixture
def run_dir(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    pd.concat([cells(learned(3, 30)), cells(learned(2, 30, seed=2), control="ood_family", name="ctl"),
               cells(learned(3, 30, rate=0.1), split="ood_length", family="add", distance=2)]
              ).to_parquet(folder / "grades.parquet", index=False)
    return folder


def test_the_command_prints_the_table_and_writes_its_csv(run_dir, tmp_path):
    out = tmp_path / "tables" / "transfer.csv"
    result = run_cli(["transfer", str(run_dir), "--by", "distance", "--csv", str(out)], tmp_path)
    assert result.code == 0, result
    assert "ood_family" in result.out and result.err == ""
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns[:4]) == ["split", "family", "distance", "step"]
    assert {"acc", "acc_lo", "acc_hi", "chance", "p_above", "verdict", "headroom", "transfer", "reason"} <= set(table.columns)
    assert row(table, split="ood_length")["reason"] == "no control"
    # beside each interval what it counts: 3 regular runs (runs and items), 2 control runs (items only)
    assert "runs and items" in result.out and "items only: 2 runs" in result.out
    assert row(table, split="ood_family")[["interval", "control_interval"]].tolist() == ["runs and items", "items only: 2 runs"]
    picked = run_cli(["transfer", str(run_dir), "--where", "split == 'ood_length'"], tmp_path)
    assert picked.code == 0 and "ood_family" not in picked.out and "ood_length" in picked.out


@pytest.mark.parametrize("argv, named", [
    (["transfer", "missing"], "no run folder"),
    (["transfer", "empty"], "scaling collect"),
    (["transfer", "run", "--by", "colour"], "'colour'"),
    (["transfer", "run", "--step", "3"], "steps are 64"),
    (["transfer", "run", "--csv", "run"], "is a folder"),
    (["transfer", "run", "--where", "colour == 1", "--csv", "out.csv"], "names no column 'colour'"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(run_dir, tmp_path, argv, named):
    (tmp_path / "empty").mkdir()
    assert_refused(argv, tmp_path, named)


# --- the `transfer` table kind and the headroom in accuracy_by_family, through `scaling figures` -------------

def families_of(grades: pd.DataFrame) -> pd.DataFrame:
    """A families.parquet as collect writes it: per cell, step, split and family, with the control's accuracy
    of the same base, split and family as `headroom` (NaN where the grid has none)."""
    keys = ["cell_id", "size", "pretrain_tokens", "diversity", "quality", "cot", "seed", "step", "split", "family",
            "trained", "control"]
    table = grades.groupby(keys, as_index=False).agg(answer_acc=("answer_correct", "mean"), chance=("chance", "mean"))
    ceiling = (table[table["control"] == table["split"]].groupby(["size", "step", "split", "family"], as_index=False)
               .agg(headroom=("answer_acc", "mean")))
    return table.merge(ceiling, on=["size", "step", "split", "family"], how="left")


def test_the_paper_draws_a_transfer_table_and_headroom_beside_chance(tmp_path, capsys):
    from scaling.cli import main

    grades = pd.concat([cells(learned(3, 30, seed=s), step=step) for s, step in enumerate((32, STEP))]
                       + [cells(learned(2, 30, rate=0.9, seed=5), control="ood_family", name="ctl", step=step)
                          for step in (32, STEP)])
    (tmp_path / "run").mkdir()
    grades.to_parquet(tmp_path / "run" / "grades.parquet", index=False)
    families_of(grades).to_parquet(tmp_path / "run" / "families.parquet", index=False)
    families_of(grades).drop(columns="headroom").to_parquet(tmp_path / "run" / "plain.parquet", index=False)
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "figures.toml").write_text(
        '[[figure]]\nname = "ceiling"\nkind = "accuracy_by_family"\nfamilies = "run/families.parquet"\n\n'
        '[[figure]]\nname = "plain"\nkind = "accuracy_by_family"\nfamilies = "run/plain.parquet"\n\n'
        '[[table]]\nname = "transfer"\nkind = "transfer"\ngrades = "run/grades.parquet"\nstep = 32\n')
    assert main(["figures", "--paper", str(tmp_path / "paper")]) == 0, capsys.readouterr().err
    table = pd.read_csv(tmp_path / "paper" / "tables" / "transfer.csv", keep_default_na=False)
    assert list(table["step"]) == [32] and table.loc[0, "control_verdict"] == "above chance"
    figures = tmp_path / "paper" / "figures"
    # The control cells' rows give the headroom line, never a line of their own: only that line tells them apart.
    assert (figures / "ceiling.png").read_bytes() != (figures / "plain.png").read_bytes()
    (tmp_path / "paper" / "figures.toml").write_text(
        (tmp_path / "paper" / "figures.toml").read_text().replace("step = 32", 'by = ["split", "colour"]'))
    assert main(["figures", "--paper", str(tmp_path / "paper")]) == 2
    assert "'colour'" in capsys.readouterr().err


# --- every interval says what it counts (issue 33): never zero-width, never across fewer than 3 runs -------

def test_transfer_intervals_are_never_zero_width():
    # Every answer wrong (one run x 256 items, chance 0.004), or every answer right: the bootstrap has nothing to
    # resample and printed acc 0 [0, 0] and headroom 1 [1, 1]. The exact interval counts the 256 distinct items.
    wrong = cells(np.zeros((1, 256)), family="add_then_sort", chance=0.004)
    control = cells(np.ones((1, 256)), family="add_then_sort", chance=0.004, control="ood_family", name="ctl")
    result = row(transfer_table(pd.concat([wrong, control])), split="ood_family")
    assert result["acc"] == 0.0 and result["acc_lo"] == 0.0
    assert result["acc_hi"] == pytest.approx(1 - 0.05 ** (1 / 256))  # Clopper-Pearson, 0 of 256, 90%
    assert result["interval"] == "exact over 256 items, all wrong"
    assert result["headroom_lo"] == pytest.approx(0.05 ** (1 / 256)) and result["headroom_hi"] == 1.0
    assert result["control_interval"] == "exact over 256 items, all right"
    # Transfer is not shown to be negative where the accuracy is not shown to be below chance: its interval
    # takes both ends, and holds 0.
    assert result["verdict"] == "not above chance" and np.isnan(result["p_above"]) and np.isnan(result["p_below"])
    assert result["transfer_lo"] < 0.0 < result["transfer_hi"]
    assert result["transfer_interval"] == "ends of acc and headroom at 95%"
    # Ten runs on the same 40 items are 40 items, not 400 draws: [0, 0.072] does not exclude a chance of 0.05.
    shared = row(transfer_table(cells(np.zeros((10, 40)), chance=0.05)), split="ood_family")
    assert shared["interval"] == "exact over 40 items, all wrong" and shared["acc_hi"] > 0.05
    assert shared["verdict"] == "not above chance"


def test_transfer_rows_below_three_runs_say_so():
    # Two runs far apart (0.9 and 0.1 right): a bootstrap over two runs draws the same run twice half the time
    # and printed about [0.1, 0.9]; they say nothing about other runs, so the runs are held fixed.
    apart = np.vstack([learned(1, 200, rate=0.9, seed=1), learned(1, 200, rate=0.1, seed=2)])
    two = row(transfer_table(cells(apart, chance=0.0)), split="ood_family")
    assert two["interval"] == "items only: 2 runs" and two["acc_hi"] - two["acc_lo"] < 0.15
    one = row(transfer_table(cells(apart[:1], chance=0.0)), split="ood_family")
    assert one["interval"] == "items only: 1 run" and 0 < one["acc_hi"] - one["acc_lo"] < 0.1
    # One run that answered 2 of 256 items: its exact interval (as accuracy_rows gives one run), not a percentile
    # bootstrap that ended at 0.016 and so excluded a chance of 0.02 the verdict did not claim to exclude.
    few = row(transfer_table(cells(np.arange(256)[None, :] < 2, chance=0.02)), split="ood_family")
    assert (few["acc_lo"], few["acc_hi"]) == pytest.approx(binomial_interval(2, 256))
    assert few["acc_lo"] < 0.02 < few["acc_hi"] and few["verdict"] == "not above chance"
    three = row(transfer_table(cells(np.vstack([apart, apart[:1]]), chance=0.0)), split="ood_family")
    assert three["interval"] == "runs and items" and three["acc_hi"] - three["acc_lo"] > 0.3
    control = cells(learned(2, 200, rate=0.8, seed=5), control="ood_family", name="ctl")
    ratio = {runs: row(transfer_table(pd.concat([cells(learned(runs, 200, rate=0.5), chance=0.25), control])),
                       split="ood_family") for runs in (2, 3)}
    assert ratio[2]["control_interval"] == "items only: 2 runs"
    assert ratio[2]["transfer_interval"] == "items only: 2 runs, 2 control runs"
    assert ratio[3]["transfer_interval"] == "runs and items; control items only: 2 runs"


def committed_transfer_tables() -> list[pd.DataFrame]:
    from pathlib import Path

    tables = Path(__file__).parents[2] / "paper" / "tables"
    return [pd.read_csv(tables / f"generalization_{name}.csv", keep_default_na=False, na_values=[""])
            for name in ("transfer", "length_ladder")]


@pytest.mark.parametrize("table", committed_transfer_tables(), ids=["transfer", "length_ladder"])
def test_the_papers_transfer_tables_label_every_interval_and_agree_with_their_verdicts(table):
    for name, label in (("acc", "interval"), ("headroom", "control_interval"), ("transfer", "transfer_interval")):
        shown = table[table[name].notna()]
        assert (shown[f"{name}_lo"] < shown[f"{name}_hi"]).all(), name
        assert shown[label].str.match(r"runs and items|items only: \d+ runs?|exact over \d+ items|ends of").all()
    assert (table.loc[table["runs"] < 3, "interval"].str.match(r"items only|exact")).all()
    above, below, neither = (table[table["verdict"] == verdict]
                             for verdict in ("above chance", "below chance", "not above chance"))
    assert (above["acc_lo"] > above["chance"]).all() and (below["acc_hi"] < below["chance"]).all()
    assert ((neither["acc_lo"] <= neither["chance"]) & (neither["chance"] <= neither["acc_hi"])).all()
    defined = neither[neither["transfer"].notna()]
    assert ((defined["transfer_lo"] <= 0) & (0 <= defined["transfer_hi"])).all()
