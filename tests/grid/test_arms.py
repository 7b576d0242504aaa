"""The arms after SFT as grid axes ([rl], [rft]): spec sections, a real tiny run's results, resume after kill -9."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from scaling.cli import main
from scaling.errors import UserError
from scaling.grid.arms import CheckpointIds
from scaling.grid.spec import expand, parse_spec
from scaling.results import open_results, results_table
from scaling.schema import AXES
from scaling.trainer.flops import PHASES
from runs_helpers import SCALING, tiny_grid

GRID = tiny_grid("arms", pretrain_tokens=(0,), budgets=(32, 96), checkpoint_every=0)
RFT = "[rft]\nfrom_budgets = [96]\nbudgets = [0, 2, 4]\nsamples = 8\ntemperature = 0.2\nprompts = 64\nbatch_size = 4\ncheckpoint_every = 1\n"
RL = ("[rl]\nfrom_budgets = [96]\nbudgets = [0, 2, 4]\ngroup_size = 4\nprompts_per_step = 4\nprocess_credit = 0.5\n"
      "checkpoint_every = 1\n")
# The cell's phases after SFT (scaling.grid.arms.CheckpointIds): RL's, then RFT's, past SFT's last checkpoint id
# (trunk step 96 with both budgets done: 96 x 3 + 2).
PHASES_OF = CheckpointIds(96 * 3 + 2)
ARM_PHASE = {"rl": 0, "rft": 1}


def test_a_grid_without_arms_keeps_its_cell_ids_and_one_with_them_gets_its_own():
    plain = [c.cell_id for c in expand(parse_spec(GRID))]
    assert [c.cell_id for c in expand(parse_spec(GRID + RFT))] != plain
    assert parse_spec(GRID).results_content().keys() == {"axes", "data", "train", "eval"}


@pytest.mark.parametrize("section, why", [
    ("[rl]\nfrom_budgets = [96]\nbudgets = [0, 4]\ngroup_size = 1", "[rl] group_size must be >= 2"),
    ("[rl]\nfrom_budgets = [96]\nbudgets = [0, 4]\ntemperature = 0", "[rl] temperature must be > 0"),
    ("[rft]\nfrom_budgets = [96]\nbudgets = [0, 4]\ntemperature = -1", "[rft] temperature must be > 0"),
    ("[rl]\nfrom_budgets = [50]\nbudgets = [0, 4]", "[rl] from_budgets: 50 is no SFT budget"),
    ("[rl]\nbudgets = [0, 4]", "[rl] from_budgets is required"),
    ("[rl]\nfrom_budgets = [96]\nbudgets = [0, 4]\nprompts_per_step = 201", "[rl] prompts_per_step 201 is more than"),
    ("[rft]\nfrom_budgets = [96]\nbudgets = [0, 4]\nprompts = 500", "[rft] prompts 500 is more than"),
    ("[rft]\nfrom_budgets = [96]\nbudgets = [0, 4]\nschedule = \"linear\"", "[rft] schedule must be one of"),  # RFTConfig's
])
def test_bad_arm_input_is_one_line_and_exit_2_with_nothing_written(tmp_path, capsys, section, why):
    spec = tmp_path / "grid.toml"
    spec.write_text(GRID + section + "\n")
    assert main(["run", str(spec), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert why in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_data_whose_grader_rewards_no_training_answer_is_refused_for_rl(tmp_path):
    rows = [f'{{"prompt": "q{i}", "completion": "so #### {i}", "answer": "{i + 1}", "family": "g"}}' for i in range(40)]
    (tmp_path / "data.jsonl").write_text("\n".join(rows) + "\n")
    text = ('name = "d"\n[axes]\nsize = ["tiny"]\n[data]\nsource = "data.jsonl"\ngroups = ["g"]\nexamples = 20\n'
            '[train]\nbudgets = [4]\n[eval]\nn = 4\n[rl]\nfrom_budgets = [4]\nbudgets = [0, 2]\nprompts_per_step = 2\n')
    with pytest.raises(UserError, match=r"\[rl\] the data has no verifier"):
        parse_spec(text, base_dir=tmp_path)
    (tmp_path / "data.jsonl").write_text("\n".join(row.replace('"answer"', '"note"') for row in rows) + "\n")
    assert parse_spec(text, base_dir=tmp_path).rl is not None  # references read from the completions: verifiable


@pytest.fixture(scope="module")
def arms_run(tmp_path_factory) -> Path:
    """A cell with both arms from its SFT model at 96 steps, run uninterrupted and collected."""
    folder = tmp_path_factory.mktemp("arms")
    (folder / "grid.toml").write_text(GRID + RFT + RL)
    assert main(["run", str(folder / "grid.toml"), "--out", str(folder / "run")]) == 0
    assert main(["collect", str(folder / "run")]) == 0
    return folder


@pytest.mark.slow
def test_the_rft_arm_is_stored_beside_sft_with_its_compute_by_phase(arms_run):
    run = arms_run / "run"
    cube = open_results(run / "results.nc")
    arm = cube.sel(arm="rft", sft_step=96).squeeze()
    # Arm step 0 is the SFT model at the budget it starts from: the same scores.
    np.testing.assert_array_equal(arm.arm_answer_acc.sel(arm_step=0).values, cube.answer_acc.sel(step=96).squeeze().values)
    flops = arm.arm_flops.to_pandas()  # arm_step x phase
    np.testing.assert_array_equal(flops.loc[0].values, cube.flops_by_phase.sel(step=96).squeeze().values)
    assert flops.loc[4, "rft_sampling"] > 0 and flops.loc[4, "rl_update"] == 0
    assert 0 < flops.loc[2, "rft_update"] < flops.loc[4, "rft_update"]  # samples were kept and fine-tuned on
    assert list(cube.phase.values) == list(PHASES)
    # Every existing table reads as before: the arms' and the phases' variables are none of its columns.
    assert not {"arm", "sft_step", "arm_step", "phase"} & set(results_table(cube, "id").columns)
    grades, arm_grades = pd.read_parquet(run / "grades.parquet"), pd.read_parquet(run / "arm_grades.parquet")
    keys = 2 + len(AXES)  # the cell id, the grid axes and control
    assert list(arm_grades.columns) == [*grades.columns[:keys], "arm", "sft_step", *grades.columns[keys:]]
    assert (grades.groupby("step").flops.first() == cube.flops_by_phase.sum("phase").squeeze().to_pandas()).all()
    at_zero = arm_grades[(arm_grades.arm == "rft") & (arm_grades.step == 0)].drop(columns=["arm", "sft_step", "step"]).reset_index(drop=True)
    sft = grades[grades.step == 96].drop(columns=["step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(at_zero, sft)


@pytest.mark.slow
def test_the_rl_arm_is_stored_beside_sft_with_its_reward_and_compute_by_phase(arms_run):
    run = arms_run / "run"
    cube = open_results(run / "results.nc")
    arm = cube.sel(arm="rl", sft_step=96).squeeze()
    # Arm step 0 is the SFT model at the budget it starts from: the same scores, the same compute.
    for metric in ("answer_acc", "loss", "process_acc"):
        np.testing.assert_array_equal(arm[f"arm_{metric}"].sel(arm_step=0).values,
                                      cube[metric].sel(step=96).squeeze().values)
    flops = arm.arm_flops.to_pandas()  # arm_step x phase
    np.testing.assert_array_equal(flops.loc[0].values, cube.flops_by_phase.sel(step=96).squeeze().values)
    for phase in ("rl_sampling", "rl_update"):
        assert 0 < flops.loc[2, phase] < flops.loc[4, phase]
    assert (flops[["rft_sampling", "rft_update"]] == 0).all().all()
    assert (flops.loc[4, ["pretraining", "sft"]] == flops.loc[0, ["pretraining", "sft"]]).all()
    # The mean training reward: none before any RL step, a share of rewards in [0, 1 + process_credit] after.
    reward = arm.rl_reward.to_pandas()
    assert np.isnan(reward[0]) and all(0 <= reward[s] <= 1.5 for s in (2, 4))
    arm_grades = pd.read_parquet(run / "arm_grades.parquet")
    rl = arm_grades[arm_grades.arm == "rl"]
    assert sorted(rl.step.unique()) == [0, 2, 4] and (rl.sft_step == 96).all()
    n = cube.n.sel(step=96).squeeze().to_pandas()  # examples evaluated per split
    counts = rl.groupby(["step", "split"]).size().unstack()  # arm step x split
    assert (counts[n.index] == n).all().all()
    for step in (2, 4):  # each arm step's grades are its stored scores, and carry its compute
        graded = rl[rl.step == step]
        assert graded.groupby("split").answer_correct.mean().to_dict() == pytest.approx(
            arm.arm_answer_acc.sel(arm_step=step).to_pandas().to_dict())
        assert graded.flops.to_numpy() == pytest.approx(flops.loc[step].sum(), rel=1e-12)


def _runner(spec: Path, run: Path) -> subprocess.Popen:
    return subprocess.Popen([*SCALING, "run", str(spec), "--out", str(run)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_inside(arm: str, runner: subprocess.Popen, run: Path, after: int = 1) -> None:
    """Until the cell has written `after` checkpoints inside `arm` (the runner still running)."""
    checkpoints = run / "scratch" / "checkpoints"

    def inside() -> bool:
        ids = [int(p.name) for p in checkpoints.glob("*/*") if p.name.isdigit()]
        return sum(PHASES_OF.phase_of(i) == ARM_PHASE[arm] for i in ids) >= after

    deadline = time.monotonic() + 240
    while not inside() and runner.poll() is None:
        assert time.monotonic() < deadline, f"the runner never reached the {arm} arm"
        time.sleep(0.05)
    assert runner.poll() is None, f"the cell finished before a checkpoint inside the {arm} arm"


def _assert_same_cells(run: Path, reference: Path) -> None:
    cells = list((reference / "cells").glob("*.nc"))
    assert cells
    for cell in cells:
        with xr.open_dataset(cell, engine="h5netcdf") as want, xr.open_dataset(run / "cells" / cell.name,
                                                                               engine="h5netcdf") as got:
            names = [name for name in want.data_vars if name != "wall_seconds"]
            xr.testing.assert_equal(got[names].load(), want[names].load())
    for table in ("grades", "arm_grades"):
        for cell in (reference / "cells").glob(f"*.{table}.parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(run / "cells" / cell.name), pd.read_parquet(cell))


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["rl", "rft"])
def test_kill_9_inside_an_arm_then_rerun_gives_the_same_numbers(arms_run, tmp_path, arm):
    """Killed inside RL (the first phase after SFT: its policy, optimizer and tally resumed) or inside RFT (the
    second: RL's finished record resumed with it), the rerun's cell files equal an uninterrupted run's."""
    run = tmp_path / "run"
    runner = _runner(arms_run / "grid.toml", run)
    _wait_inside(arm, runner, run, after=2)  # past the arm's step-0 checkpoint: mid-arm state to resume
    os.killpg(runner.pid, signal.SIGKILL)
    runner.communicate()
    assert not list((run / "cells").glob("*.nc"))
    assert main(["run", str(arms_run / "grid.toml"), "--out", str(run)]) == 0
    _assert_same_cells(run, arms_run / "run")


STOPPED_IN_RL = re.compile(r"scaling: stopped by SIGTERM: cell [0-9a-f]{16} checkpointed in rl from SFT step 96: "
                           r"step ([0-4]) of 4; rerun to resume")


@pytest.mark.slow
def test_sigterm_inside_rl_names_the_arm_and_its_step_and_the_rerun_resumes_there(arms_run, tmp_path):
    run = tmp_path / "run"
    runner = _runner(arms_run / "grid.toml", run)
    _wait_inside("rl", runner, run)
    runner.send_signal(signal.SIGTERM)
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 143, err
    stopped = [line for line in err.splitlines() if line.startswith("scaling: stopped by")]
    assert len(stopped) == 1 and STOPPED_IN_RL.fullmatch(stopped[0]), err
    assert main(["run", str(arms_run / "grid.toml"), "--out", str(run)]) == 0
    _assert_same_cells(run, arms_run / "run")


def test_scaling_arms_compares_each_arm_point_with_its_start_and_says_where_sft_stops_short(arms_run, capsys):
    """The grid's SFT budgets end at the arms' starting budget, so no SFT model matches their compute."""
    assert main(["arms", str(arms_run / "run"), "--split", "id"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].split()[:4] == ["arm", "sft_step", "step", "split"]
    assert {tuple(line.split()[:4]) for line in shown[1:]} == {(arm, "96", step, "id") for arm in ("rl", "rft")
                                                               for step in ("2", "4")}
    assert all("the SFT budgets stop short of this compute" in line for line in shown[1:])


def test_scaling_arms_on_a_grid_without_arms_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"split": ["id"]}).to_parquet(run / "grades.parquet")
    assert main(["arms", str(run)]) == 2
    assert capsys.readouterr().err == f"scaling: error: {run} has no arms after SFT (its grid has no [rl] or [rft] section)\n"
