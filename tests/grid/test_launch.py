"""The grid's progress bar: each cell counted once, whichever worker reports it."""

import io

from rich.console import Console

from scaling.grid.launch import GridProgress
from scaling.grid.runner import Outcome
from scaling.grid.spec import expand, parse_spec
from runs_helpers import tiny_grid


def test_the_bar_counts_each_cell_once_however_many_workers_report_it():
    first, second = expand(parse_spec(tiny_grid(pretrain_tokens=(0,), seeds=(0, 1))))
    # Two worker processes each walk every cell: one computes it, the other finds it finished.
    reports = [(first, Outcome(first.cell_id, "done", True)), (second, Outcome(second.cell_id, "skipped: running elsewhere", False)),
               (second, Outcome(second.cell_id, "done", True)), (first, Outcome(first.cell_id, "skipped: already finished", False))]
    with GridProgress(Console(file=io.StringIO()), total=2, finished=0) as progress:
        counts = []
        for cell, outcome in reports:
            progress.on_event("end", cell, outcome)
            counts.append(progress.progress.tasks[0].completed)
    assert counts == [1, 1, 2, 2]
