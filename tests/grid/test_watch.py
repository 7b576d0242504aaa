"""Watching long work: a running cell's progress in `scaling status` (and `--watch`), its training curve in
the cell file and in TensorBoard or W&B, and nothing of it on stdout when stdout is not a terminal."""

import json
import os
import re
import subprocess
import time

import numpy as np
import pytest
import xarray as xr

from scaling.cli import main
from scaling.grid.collect import collect_run
from scaling.grid.watch import CellProgress, CellReporter
from scaling.report.figures import training_curves_figure
from scaling.trainer.config import TrainConfig
from runs_helpers import SCALING, tiny_grid, write_spec


def _one_cell(run) -> tuple[str, xr.Dataset]:
    (path,) = (run / "cells").glob("*.nc")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return path.stem, ds.load()


def _run(spec, run, env=None) -> subprocess.CompletedProcess:
    done = subprocess.run([*SCALING, "run", str(spec), "--out", str(run)], capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.slow
def test_tensorboard_holds_the_cells_curve_and_scores_and_stdout_stays_clean(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = write_spec(tmp_path, tiny_grid(pretrain_tokens=(0,), run='[run]\nlog = "tensorboard"\n'))
    run = tmp_path / "run"
    done = _run(spec, run)
    assert done.stdout == ""  # the bar, the cell lines and the summary go to stderr; rich draws no live bar to a pipe
    assert re.search(r"cell [0-9a-f]{16} done \(\d+ s, [\d,]+ tok/s\)", done.stderr)
    cell_id, cell = _one_cell(run)

    events = EventAccumulator(str(run / "logs" / cell_id))
    events.Reload()
    losses = {e.step: e.value for e in events.Scalars("train/loss")}
    assert list(losses) == cell.train_step.values.tolist() == list(range(1, 33))  # every step of a 32-step cell
    np.testing.assert_allclose(list(losses.values()), cell.train_loss.values, rtol=1e-6)  # float32 in the event file
    accuracy = {e.step: e.value for e in events.Scalars("eval/id/answer_acc")}
    assert list(accuracy) == cell.step.values.tolist()
    np.testing.assert_allclose(list(accuracy.values()), cell.answer_acc.sel(split="id").values, rtol=1e-6)
    assert "train/lr" in events.Tags()["scalars"] and "train/tokens_per_s" in events.Tags()["scalars"]

    results, _ = collect_run(str(run))  # the curve reaches the hypercube, one per cell, and a figure
    assert results.train_loss.dims[-1] == "train_step"
    np.testing.assert_array_equal(results.train_loss.values.reshape(-1), cell.train_loss.values)
    drawn = training_curves_figure(run / "results.nc", ("diversity",), tmp_path / "figures" / "curves")
    assert all(path.stat().st_size > 0 for path in drawn)


@pytest.mark.slow
def test_wandb_logs_each_cell_as_an_offline_run_grouped_by_grid(tmp_path):
    spec = write_spec(tmp_path, tiny_grid(name="watched", pretrain_tokens=(0,), run='[run]\nlog = "wandb"\n'))
    run = tmp_path / "run"
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}  # offline by default
    _run(spec, run, env)
    cell_id, cell = _one_cell(run)
    (folder,) = (run / "logs" / "wandb").glob(f"offline-run-*-{cell_id}")
    records = _wandb_records(next(folder.glob("*.wandb")))  # what `wandb sync` uploads
    (started,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (started.run_id, started.run_group) == (cell_id, "watched")
    config = {item.key: json.loads(item.value_json) for item in started.config.update}
    assert config["cell_id"] == cell_id and config["diversity"] == 1 and config["seed"] == 0
    rows = [{"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]
    losses = {row["train_step"]: row["train/loss"] for row in rows if "train/loss" in row}
    assert list(losses) == cell.train_step.values.tolist()
    np.testing.assert_allclose(list(losses.values()), cell.train_loss.values, rtol=1e-12)  # JSON keeps float64
    accuracy = {row["train_step"]: row["eval/id/answer_acc"] for row in rows if "eval/id/answer_acc" in row}
    assert list(accuracy) == cell.step.values.tolist()


def _wandb_records(path):
    """The records of a W&B transaction log: a 7-byte W&B header, then LevelDB log chunks (4-byte checksum,
    2-byte length, 1-byte type: 1 whole record, 2/3/4 its first/middle/last part) in 32 KiB blocks."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, records, partial, position = path.read_bytes(), [], b"", 7
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        if (left := 32768 - position % 32768) < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        length, kind = struct.unpack("<HB", data[position + 4:position + 7])
        partial += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(partial)
            records.append(record)
            partial = b""
    return records


@pytest.mark.slow
def test_status_shows_a_running_cells_progress_and_watch_exits_when_the_grid_is_done(tmp_path, capsys):
    spec = write_spec(tmp_path, tiny_grid(pretrain_tokens=(0,), seeds=(0, 1), budgets=(8, 16, 32, 64),
                                          run="[run]\nheartbeat_s = 0.5\nstale_after_s = 30\n"))
    run = tmp_path / "run"
    driver = subprocess.Popen([*SCALING, "run", str(spec), "--out", str(run)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    deadline, progress = time.monotonic() + 300, None
    while progress is None and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        if (run / "grid.toml").exists():
            assert main(["status", str(run), "--json"]) == 0
            states = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            progress = next((s["progress"] for s in states if "progress" in s), None)
    # Every optimizer step the cell runs: the trunk to the last budget's fork, and each budget's decay branch.
    assert progress is not None and progress["total_steps"] == TrainConfig(budgets=(8, 16, 32, 64)).total_steps
    watch = subprocess.run([*SCALING, "status", str(run), "--watch", "--every", "0.2"], capture_output=True, text=True,
                           timeout=600)
    assert driver.wait(timeout=600) == 0, driver.stderr.read()
    assert watch.returncode == 0, watch.stderr
    # Not a terminal: a new block each time a cell changes state or budget, ending with the finished grid.
    assert re.search(r"running  [0-9a-f]{16} .*; step [\d,]+/[\d,]+ · (training to|evaluating) \d+", watch.stdout)
    assert watch.stdout.strip().split("\n\n")[-1].splitlines()[-1].startswith("2 done")
    assert not list((run / "locks").glob("*.progress"))  # a finished cell leaves no progress record


def test_a_reporter_measures_speed_without_evaluation_time_and_says_what_is_left():
    shown = []
    reporter = CellReporter(total_steps=100, budgets=(50, 100), tokens_per_step=1000, show=shown.append,
                            show_every_s=0.0)
    for step in range(1, 11):
        reporter.trained(step, 1.0)
        time.sleep(0.01)
    reporter.evaluating(50)
    assert shown[-1].phase == "evaluate" and shown[-1].budget == 50
    assert 10_000 < shown[-1].tokens_per_s < 110_000  # 1000 tokens every ~10 ms
    time.sleep(0.2)  # a slow evaluation: it counts toward the ETA, never toward the speed
    from scaling.trainer.curve import LossCurve

    reporter.evaluated(50, {"id": {"answer_acc": 0.5}}, LossCurve(1))
    for step in range(11, 21):
        reporter.trained(step, 1.0)
        time.sleep(0.01)
    last = shown[-1]
    assert last.phase == "train" and last.budget == 100 and last.steps_done == 20
    assert 10_000 < last.mean_tokens_per_s < 110_000
    assert last.eta_s > 0.2  # 80 steps at ~10 ms, plus one more evaluation of ~0.2 s
    assert re.fullmatch(r"step 20/100 · training to 100 · [\d.]+k tok/s · \d+ s left", last.describe())
    assert CellProgress.from_json(last.to_json()) == last and CellProgress.from_json(b"{") is None


def test_an_unknown_log_is_refused_in_one_line(tmp_path):
    spec = write_spec(tmp_path, tiny_grid(run='[run]\nlog = "mlflow"\n'))
    done = subprocess.run([*SCALING, "run", str(spec), "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert done.returncode == 2 and "log must be one of none, tensorboard, wandb" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
