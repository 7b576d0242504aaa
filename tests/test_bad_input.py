"""Named regressions: each bad input once found to run code, print a traceback, hang, or write partial output."""

import ast
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_helpers import assert_refused, run_cli

GRID = """name = "g"
[axes]
size = ["tiny"]
[data]
families = ["add"]
ood_families = ["sub"]
examples = 100
[train]
budgets = [8]
batch_size = 4
[eval]
splits = ["id"]
n = 8
"""


@pytest.fixture
def work(tmp_path) -> Path:
    """A working folder with a good table and a good grid spec; every test checks nothing else appears in it."""
    tokens = np.geomspace(10, 10_000, 8)
    pd.DataFrame({"tokens": tokens, "loss": 1.5 + 4 * tokens ** -0.5, "acc": np.arange(1, 9) / 10, "n": 10,
                  "task": ["a", "b"] * 4}).to_csv(tmp_path / "table.csv", index=False)
    (tmp_path / "grid.toml").write_text(GRID)
    return tmp_path


FIT = ["fit", "table.csv", "--law", "power", "--y", "loss", "--x", "x=tokens"]


# 1. Expressions could run code through DataFrame.eval's `@` names and method calls.

def test_holdout_cannot_run_a_shell_command(work):
    line = assert_refused([*FIT, "--holdout", "@pd.io.common.os.system('touch pwned') == 0"], work)
    assert "--holdout" in line and "'@pd.io.common.os.sys...' at character 1" in line
    assert not (work / "pwned").exists()


def test_where_cannot_write_a_file(work):
    line = assert_refused([*FIT, "--where", "step > 0 and @Path('owned.txt').write_text('owned') > 0"], work)
    assert "--where" in line and "at character 14" in line
    assert not (work / "owned.txt").exists()


def test_where_cannot_save_an_array(work):
    assert_refused([*FIT, "--where", "@np.save('saved.npy', 1)"], work)
    assert not (work / "saved.npy").exists()


def test_no_user_text_is_evaluated_anywhere_in_the_package():
    """No builtin eval/exec/compile/__import__, and no pandas-style `.eval(text)` / `.query(text)` call."""
    package = Path(__file__).resolve().parents[1] / "scaling"
    found = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            if isinstance(function, ast.Name) and function.id in ("eval", "exec", "compile", "__import__"):
                found.append((path.name, node.lineno))
            # `self.query(x)` is the attention's own projection; a DataFrame's query/eval is called on a table.
            if (isinstance(function, ast.Attribute) and function.attr in ("eval", "query") and node.args
                    and not (isinstance(function.value, ast.Name) and function.value.id == "self")):
                found.append((path.name, node.lineno))
    assert not found


# 2. Tracebacks for numeric columns holding text, and for a --by column that is not there.

@pytest.mark.parametrize("column, argv, named", [
    ("loss", FIT, "--y column 'loss' holds 'n/a?' at row 3: not a number"),
    ("tokens", FIT, "--x column 'tokens' holds 'n/a?' at row 3: not a number"),
    ("n", ["fit", "table.csv", "--law", "accuracy", "--y", "acc", "--x", "x=tokens", "--n", "n"],
     "--n column 'n' holds 'n/a?' at row 3: not a number"),
])
def test_a_numeric_column_holding_text_names_the_column_and_row(column, argv, named, work):
    table = pd.read_csv(work / "table.csv").astype({column: object})
    table.at[2, column] = "n/a?"
    table.to_csv(work / "table.csv", index=False)
    assert_refused(argv, work, named=named)


def test_a_missing_by_column_is_named(work):
    assert_refused([*FIT, "--by", "family"], work, named="--by: no column 'family'; columns are tokens, loss, acc, n, task")


# 3. A hang: a billion examples were drawn before the first was printed.

def test_sampling_far_more_examples_than_a_call_draws_is_refused_at_once(work):
    assert_refused(["data", "sample", "--family", "add", "--split", "id", "--n", "1000000000"], work,
                   named="--n 1000000000 is more than 100,000")


# 4. Partial writes: a run folder was created before the executor's options were checked.

def test_a_ray_address_that_is_no_address_writes_nothing(work):
    assert_refused(["run", "grid.toml", "--executor", "ray", "--address", "notahost", "--out", "new"], work,
                   named="--address 'notahost' must be HOST:PORT")


@pytest.mark.skipif(shutil.which("srun") is not None, reason="this machine has SLURM")
def test_the_slurm_executor_without_slurm_writes_nothing(work, monkeypatch):
    monkeypatch.delenv("SCALING_SUBMITIT_CLUSTER", raising=False)
    assert_refused(["run", "grid.toml", "--executor", "slurm", "--out", "new"], work, named="found no SLURM here")


# 6. Smaller ones.

@pytest.mark.parametrize("option, value", [("--chains", "0"), ("--samples", "0"), ("--warmup", "-1")])
def test_sampler_options_are_named(option, value, work):
    assert_refused([*FIT, option, value], work, named=f"{option} must be at least 1, got {value}")


def test_one_chain_is_refused_before_sampling(work):
    assert_refused([*FIT, "--chains", "1"], work, named="--chains must be at least 2 with --method nuts")


def test_an_accuracy_that_is_no_count_out_of_n_is_refused(work):
    table = pd.read_csv(work / "table.csv")
    table.loc[4, "acc"] = 0.333
    table.to_csv(work / "table.csv", index=False)
    assert_refused(["fit", "table.csv", "--law", "accuracy", "--y", "acc", "--x", "x=tokens", "--n", "n"], work,
                   named="--y column 'acc' holds 0.333 at row 5: times --n 'n' that is not a whole number of correct answers")


def test_address_with_the_local_executor_is_refused(work):
    assert_refused(["run", "grid.toml", "--address", "127.0.0.1:6379", "--out", "new"], work,
                   named="--address joins a Ray cluster: it needs --executor ray")


def test_a_folder_as_fit_input_is_called_a_folder(work):
    (work / "run").mkdir()
    (work / "run" / "results.nc").write_bytes(b"")
    assert_refused(["fit", "run", "--law", "power", "--y", "loss"], work,
                   named="input run is a folder: give a results.nc, a .csv or a .parquet file; did you mean run/results.nc?")


@pytest.mark.parametrize("holdout", ["tokens >", "nope > 3", "tokens + 1", ""])
def test_a_bad_holdout_is_refused_before_fitting_is_announced(holdout, work):
    assert_refused([*FIT, "--holdout", holdout], work, named="--holdout")  # and nothing on stdout


@pytest.mark.parametrize("threshold", ["0", "-1", "nan", "inf"])
def test_a_threshold_must_be_a_positive_number(threshold, work):
    assert_refused([*FIT, "--threshold", threshold], work, named="--threshold must be a positive number")


def test_a_column_name_cannot_break_the_error_line(work):
    (work / "odd.csv").write_text("a\x1eb,loss\n1,2\n")
    assert_refused(["fit", "odd.csv", "--law", "power", "--y", "loss", "--x", "x=tokens"], work, named="a\\x1eb")


@pytest.mark.slow
def test_rows_with_missing_values_are_left_out_and_counted(work):
    table = pd.read_csv(work / "table.csv")
    table.loc[[1, 5], "loss"] = math.nan
    table.to_csv(work / "table.csv", index=False)
    result = run_cli([*FIT, "--method", "huber", "--out", "fit"], work)
    assert result.code == 0, result
    assert result.out.splitlines()[0] == "left out 2 rows with a missing value in tokens, loss"
    assert "(6 rows)" in result.out.splitlines()[1]


# 7. The test run died ("lost sys.stderr") when the slurm test above ran after modules that imported absl under
#    pytest's capture: importing submitit (with the slurm executor) configured logging, which closed every handler
#    of the process, and absl's handler closes its stream unless it is the stderr of that moment; here the
#    stderr of that moment was run_cli's, and the stream closed was pytest's captured stderr.

SUBMITIT_IMPORT = """
import contextlib, io, logging, sys
held = io.StringIO()
sys.stderr = held  # pytest's capture, or a caller's redirection, when absl is imported
from absl import logging as absl_logging  # its handler writes to the stderr of this moment, and closes it
closed = []
class Recording(logging.StreamHandler):
    def close(self):
        closed.append(self)
        super().close()
logging.getLogger("mine").addHandler(Recording(held))
with contextlib.redirect_stderr(io.StringIO()):
    import scaling.grid.executors.slurm
sys.stderr = sys.__stderr__
print(held.closed, len(closed), logging.getLogger("mine").handlers[0] in [h() for h in logging._handlerList])
"""


def test_importing_the_slurm_executor_closes_no_logging_handler_or_stream_of_the_process():
    """In a fresh process (submitit configures logging once, when first imported)."""
    environment = {k: v for k, v in os.environ.items() if k != "SUBMITIT_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", SUBMITIT_IMPORT], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[1], env=environment)
    assert result.stdout.split() == ["False", "0", "True"], result
