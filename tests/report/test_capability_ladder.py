"""The capability ladder's tables (report/ladder.py): each base read at multiples of its own memorization step,
and each base against the one below it on the same items."""

import numpy as np
import pandas as pd

from scaling.report import ladder

ITEMS = 40


def _grades(size: str, cell: str, right: dict[tuple[int, str], np.ndarray], control: str = "") -> pd.DataFrame:
    """Graded rows of one cell: for each (step, split), one row per item, right where `right` says."""
    rows = []
    for (step, split), correct in right.items():
        for item, ok in enumerate(correct):
            rows.append({"cell_id": cell, "size": size, "base": size, "control": control, "step": step, "split": split,
                         "family": "add", "key": f"k{item}", "chance": 0.01, "answer_correct": bool(ok)})
    return pd.DataFrame(rows)


def _bases(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cell_id", "size", "base_probe_acc", "base_loss", "memorization_step"]).assign(
        base=lambda t: t["size"])


def _share(k: int) -> np.ndarray:
    return np.arange(ITEMS) < k


def test_rungs_read_each_base_at_multiples_of_its_own_memorization_step():
    grades = _grades("weak", "a", {(s, "ood_family"): _share(k) for s, k in ((16, 0), (32, 4), (64, 8), (128, 10))})
    rungs = ladder.rungs(_bases(("a", "weak", 0.3, 4.0, 32.0)), grades, ["ood_family"])
    assert rungs["step"].tolist() == [32, 64, 128]
    assert rungs["k"].tolist() == [4, 8, 10] and (rungs["n"] == ITEMS).all()
    assert np.allclose(rungs["acc"], [0.1, 0.2, 0.25])
    assert ((rungs["lo"] < rungs["acc"]) & (rungs["acc"] < rungs["hi"])).all()
    assert (rungs["interval"] == "items only").all() and rungs["reached"].all()


def test_rungs_say_why_a_multiple_is_missing():
    grades = pd.concat([_grades("weak", "a", {(s, "id"): _share(1) for s in (16, 32, 64)}),
                        _grades("none", "b", {(s, "id"): _share(0) for s in (16, 32, 64)})])
    rungs = ladder.rungs(_bases(("a", "weak", 0.3, 4.0, 32.0), ("b", "none", 0.3, 4.0, np.nan)), grades, ["id"])
    weak, never = rungs[rungs["base"] == "weak"], rungs[rungs["base"] == "none"]
    assert weak["reached"].tolist() == [True, True, False]
    assert weak["reason"].iloc[2] == "budgets end at 64, before 4 x 32"
    assert (never["reason"] == "never memorized").all() and not never["reached"].any()


def test_rungs_carry_the_headroom_of_the_base_own_control():
    grades = pd.concat([_grades("weak", "a", {(32, "ood_length"): _share(2)}),
                        _grades("weak", "c", {(16, "ood_length"): _share(10), (64, "ood_length"): _share(30)},
                                control="ood_length")])
    rungs = ladder.rungs(_bases(("a", "weak", 0.3, 4.0, 32.0)), grades, ["ood_length", "id"], factors=(1,))
    assert rungs.set_index("split")["headroom"].to_dict()["ood_length"] == 0.75  # the control's last budget
    assert np.isnan(rungs.set_index("split")["headroom"]["id"])


def _ladder(lower_right: np.ndarray, upper_right: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    grades = pd.concat([
        _grades("weak", "a", {(s, "ood_family"): lower_right for s in (32, 64, 128)}),
        _grades("strong", "b", {(s, "ood_family"): upper_right for s in (8, 16, 32, 64)})])
    bases = _bases(("a", "weak", 0.3, 4.0, 32.0), ("b", "strong", 0.6, 2.0, 8.0))
    return ladder.rungs(bases, grades, ["ood_family"]), grades


def test_ceilings_call_a_base_higher_only_where_the_paired_interval_excludes_zero():
    rungs, grades = _ladder(_share(2), _share(30))
    (row,) = ladder.ceilings(rungs, grades, ["ood_family"]).to_dict("records")
    assert (row["lower"], row["upper"], row["factor"], row["n"]) == ("weak", "strong", 4, ITEMS)
    assert row["difference"] == 0.7 and row["lo"] > 0 and row["verdict"] == "higher"
    assert row["chance"] == 0.01 and row["upper_above_chance"]


def test_ceilings_say_when_the_higher_base_is_still_within_chance():
    rungs, grades = _ladder(_share(0), _share(1))
    grades["chance"] = 0.05  # one right of 40 is what guessing gives
    rungs = ladder.rungs(_bases(("a", "weak", 0.3, 4.0, 32.0), ("b", "strong", 0.6, 2.0, 8.0)), grades, ["ood_family"])
    (row,) = ladder.ceilings(rungs, grades, ["ood_family"]).to_dict("records")
    assert row["acc_upper"] == 1 / ITEMS and not row["upper_above_chance"]


def test_ceilings_find_no_difference_between_bases_that_answer_alike():
    rungs, grades = _ladder(_share(10), _share(10))
    (row,) = ladder.ceilings(rungs, grades, ["ood_family"]).to_dict("records")
    assert row["difference"] == 0 and row["lo"] <= 0 <= row["hi"] and row["verdict"] == "no difference detected"


def test_ceilings_refuse_a_verdict_where_neither_base_leaves_zero():
    rungs, grades = _ladder(_share(0), _share(0))
    (row,) = ladder.ceilings(rungs, grades, ["ood_family"]).to_dict("records")
    assert row["verdict"] == "not measurable" and "neither base" in row["reason"]


def test_ceilings_use_the_largest_multiple_every_base_reached():
    rungs, grades = _ladder(_share(2), _share(30))
    rungs.loc[(rungs["base"] == "weak") & (rungs["factor"] == 4), "reached"] = False
    (row,) = ladder.ceilings(rungs, grades, ["ood_family"]).to_dict("records")
    assert row["factor"] == 2
    assert set(row) >= {"acc_lower", "acc_upper"} and row["verdict"] in ladder.VERDICTS


def test_a_lora_cell_of_a_base_is_a_rung_of_its_own():
    results = pd.DataFrame({"size": ["s", "s"], "adapter": ["full", "lora-r8-a16"], "base_probe_acc": [0.5, 0.5],
                            "base_loss": [2.0, 2.0], "memorization_step": [32.0, 64.0]})
    grades = pd.DataFrame({"cell_id": ["a", "b"], "size": ["s", "s"], "adapter": ["full", "lora-r8-a16"],
                           "control": ["", ""]})
    rows = ladder.base_rows(results, grades)
    assert rows.set_index("base")["memorization_step"].to_dict() == {"s": 32.0, "s (lora-r8-a16)": 64.0}


def test_rungs_of_one_folder_stand_weakest_first_by_measured_capability():
    results = pd.DataFrame({"size": ["strong", "weak"], "base_probe_acc": [0.6, 0.3], "base_loss": [2.0, 4.0],
                            "memorization_step": [16.0, 64.0]})
    grades = pd.DataFrame({"cell_id": ["a", "b"], "size": ["strong", "weak"], "control": ["", ""]})
    assert ladder.base_rows(results, grades)["base"].tolist() == ["weak", "strong"]
