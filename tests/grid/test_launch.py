"""The grid's launch: one executor protocol chosen by name, its options checked first, and the progress bar
counting each cell once, whichever worker reports it."""

import io
from pathlib import Path

import pytest
from rich.console import Console

from scaling.errors import UserError
from scaling.grid.executors import ExecutorOptions, choose_executor
from scaling.grid.executors.local import LocalExecutor
from scaling.grid import launch
from scaling.grid.launch import GridProgress, RunReport
from scaling.grid.runner import ALREADY_FINISHED, RUNNING_ELSEWHERE, Outcome
from scaling.grid.spec import EXECUTORS, expand, parse_spec
from scaling.results import DONE, CellStatus
from runs_helpers import tiny_grid

SPEC = parse_spec(tiny_grid(pretrain_tokens=(0,), seeds=(0, 1)))


def test_the_bar_counts_each_cell_once_however_many_workers_report_it():
    first, second = expand(SPEC)
    # Two worker processes each walk every cell: one computes it, the other finds it finished.
    reports = [(first, Outcome(first.cell_id, DONE, True)), (second, Outcome(second.cell_id, RUNNING_ELSEWHERE, False)),
               (second, Outcome(second.cell_id, DONE, True)), (first, Outcome(first.cell_id, ALREADY_FINISHED, False))]
    with GridProgress(Console(file=io.StringIO()), total=2, finished=0) as progress:
        counts = []
        for cell, outcome in reports:
            progress.on_event("end", cell, outcome)
            counts.append(progress.progress.tasks[0].completed)
    assert counts == [1, 1, 2, 2]


def test_a_cell_another_runner_holds_or_finished_is_no_failure():
    outcomes = (Outcome("a", RUNNING_ELSEWHERE, False), Outcome("b", ALREADY_FINISHED, False),
                Outcome("c", CellStatus("failed", "loss became nan at step 3"), True), Outcome("d", DONE, True))
    report = RunReport("run", 4, outcomes)
    assert [o.cell_id for o in report.failed] == ["c"] and report.computed == ["c", "d"]


@pytest.mark.parametrize("name", EXECUTORS)
def test_every_executor_name_makes_the_executor_of_that_name(name):
    assert choose_executor(name, SPEC, ExecutorOptions()).name == name


def test_the_local_executor_takes_its_workers_from_the_options_over_the_spec():
    assert choose_executor("local", SPEC, ExecutorOptions()) == LocalExecutor(workers=1)
    assert choose_executor("local", SPEC, ExecutorOptions(workers=3)) == LocalExecutor(workers=3)


@pytest.mark.parametrize("name, options, message", [
    ("local", ExecutorOptions(address="127.0.0.1:6379"),
     "--address joins a Ray cluster: it needs --executor ray (the executor here is local)"),
    ("slurm", ExecutorOptions(address="127.0.0.1:6379"),
     "--address joins a Ray cluster: it needs --executor ray (the executor here is slurm)"),
    ("ray", ExecutorOptions(workers=2), "--workers sets the local executor's processes: the ray executor schedules its own"),
    ("slurm", ExecutorOptions(workers=2),
     "--workers sets the local executor's processes: the slurm executor schedules its own"),
])
def test_an_option_the_chosen_executor_does_not_take_is_refused(name, options, message):
    with pytest.raises(UserError) as refused:
        choose_executor(name, SPEC, options)
    assert str(refused.value) == message


def test_options_that_ask_for_nothing_are_refused_at_once():
    with pytest.raises(UserError, match="--workers must be >= 1, got 0"):
        ExecutorOptions(workers=0)
    with pytest.raises(UserError, match="--executor must be one of local, ray, slurm, got 'k8s'"):
        choose_executor("k8s", SPEC, ExecutorOptions())


@pytest.mark.parametrize("name, options", [("ray", ExecutorOptions()), ("slurm", ExecutorOptions()),
                                           ("local", ExecutorOptions(workers=2))])
def test_cells_in_other_processes_cannot_reach_an_in_memory_run_folder(name, options):
    with pytest.raises(UserError, match=f"the {name} executor cannot use memory://run: its cells run in other processes"):
        choose_executor(name, SPEC, options).check("memory://run")


def test_cells_in_this_process_can_use_an_in_memory_run_folder():
    choose_executor("local", SPEC, ExecutorOptions()).check("memory://run")


def test_the_launch_never_asks_which_executor_it_has():
    source = Path(launch.__file__).read_text()
    assert not [name for name in EXECUTORS if f'"{name}"' in source or f"'{name}'" in source]
