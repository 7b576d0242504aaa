"""SIGTERM at any moment of any command that writes: exit 143 in one line, nothing partial on disk.

Real processes get real signals (`timeout`, SLURM, Kubernetes and `kill` send SIGTERM; a closed terminal
SIGHUP). A property test draws the command and the moment; each case starts `python -m scaling` on a fresh
copy of a work folder (a finished demo run, its fit, a paper folder, a tiny Hugging Face checkpoint and a
model folder) and checks what any moment must leave: every output as it was or complete, nothing else
changed, no hidden temporary anywhere. `scaling run`'s cell work is the preemption tests' (it checkpoints
and stops); here `run` meets the signal in its checks before any cell (its grid is already finished).
"""

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cli_helpers import snapshot
from scaling import open_results
from scaling.demo import outputs, run_demo
from scaling.fit.record import read_fit
from scaling.hf import check_hf_checkpoint, import_hf, load_model_folder
from scaling.interrupts import Terminated, handling, raise_terminated, unwinding_on_termination
from signal_helpers import SCALING, STOPPED, TERMINATED, Ended, Run, assert_terminated_in_one_line, signalled, signalled_together, temporaries
from test_demo import SMALL, SMALL_DEMO_COMMAND

FIT_FAMILIES = ["fit", "demo/families.parquet", "--law", "accuracy", "--y", "answer_acc", "--n", "n",
                "--by", "size,family,diversity", "--where", "split == 'id' and trained", "--chains", "2",
                "--warmup", "40", "--samples", "40", "--allow-unconverged", "--quiet"]
PAPER = ('[[figure]]\nname = "demo_fit"\nkind = "law_fit"\nfit = "demo/fit"\n'
         '[[figure]]\nname = "demo_curves"\nkind = "training_curves"\nresults = "demo/results.nc"\n'
         'group_by = ["size", "diversity"]\n')


def complete_demo(work: Path) -> None:
    paths = outputs(work / "demo")
    assert all(path.exists() for path in paths.values()), paths
    open_results(paths["results"]).close()
    complete_fit(paths["fit"])


def complete_fit(folder: Path) -> None:
    read_fit(folder)
    assert {"posterior.nc", "summary.csv", "returns.csv", "backtest.csv"} <= {p.name for p in folder.iterdir()}
    assert len(pd.read_csv(folder / "summary.csv")) > 0


def complete_collection(work: Path) -> None:
    open_results(work / "demo" / "results.nc").close()
    pd.read_parquet(work / "demo" / "grades.parquet")
    pd.read_parquet(work / "demo" / "families.parquet")


def complete_figures(work: Path) -> None:
    drawn = {p.name for p in (work / "paper" / "figures").iterdir()}
    assert {"INDEX", "demo_fit.png", "demo_fit.pdf", "demo_curves.png", "demo_curves.pdf"} <= drawn, drawn


@dataclass(frozen=True)
class Command:
    argv: list[str]  # run in the work folder (the demo's through a launcher that shrinks its config)
    outputs: tuple[str, ...]  # what it may change, relative to the work folder (beside the cache)
    complete: Callable[[Path], None] | None  # asserts that the outputs, once changed, are whole
    seconds: float  # about how long it takes: the signal comes within it
    quiet: bool = True  # whether stderr holds nothing before the termination line (the demo and run report progress)


COMMANDS = {
    "demo": Command([sys.executable, "-c", SMALL_DEMO_COMMAND, "demo"], ("demo",), complete_demo, 25, quiet=False),
    "fit": Command([*SCALING, *FIT_FAMILIES, "--out", "demo/fit"], ("demo/fit",),
                   lambda work: complete_fit(work / "demo" / "fit"), 12),
    "collect": Command([*SCALING, "collect", "demo"], ("demo/results.nc", "demo/grades.parquet", "demo/families.parquet"),
                       complete_collection, 8),
    "figures": Command([*SCALING, "figures", "--paper", "paper"], ("paper/figures",), complete_figures, 10),
    "import-hf": Command([*SCALING, "import-hf", "hf", "--out", "imported"], ("imported",),
                         lambda work: load_model_folder(work / "imported"), 6),
    "export-hf": Command([*SCALING, "export-hf", "model", "--out", "exported"], ("exported",),
                         lambda work: check_hf_checkpoint(work / "exported"), 6),
    # Its cells are all done: only the checks before cells run (spec, cell files, run folder) meet the signal.
    "run": Command([*SCALING, "run", "demo/grid.toml", "--out", "demo"], (), None, 6, quiet=False),
    "data sample": Command([*SCALING, "data", "sample", "--family", "add", "--split", "train", "--n", "100000"], (), None, 6),
}
WARNING = re.compile(r"\S+:\d+: \w*Warning: |  warnings\.warn\(")  # the two lines of a Python warning
CACHE = "cache"  # the commands' cache ($SCALING_CACHE): compiled kernels may be added, temporaries never left


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The work folder every case starts from a copy of: a finished one-cell demo (a run folder, its fit),
    a paper folder drawing from them, a tiny Hugging Face checkpoint and its model folder."""
    from hf_helpers import hf_model, save

    work = tmp_path_factory.mktemp("signals") / "work"
    work.mkdir()
    run_demo(dataclasses.replace(SMALL, diversities=(1,)), work / "demo", say=lambda *_: None)
    (work / "paper").mkdir()
    (work / "paper" / "figures.toml").write_text(PAPER)
    save(hf_model("llama_gqa_untied"), work / "hf")
    import_hf(work / "hf", work / "model")
    (work / CACHE).mkdir()
    return work


def changed(before: dict, after: dict) -> set[str]:
    """Files changed, added or removed, and folders added or removed (a folder's time changes with its entries)."""
    return {path for path in before.keys() | after.keys()
            if path not in before or path not in after or before[path] != after[path] and before[path][0] != -1}


def under(path: str, outputs: tuple[str, ...]) -> bool:
    return any(path == output or path.startswith(output + "/") for output in outputs)


def check_what_is_left(case: str, work: Path, before: dict, ended: Ended) -> None:
    command, name = COMMANDS[case.split(" at ")[0]], case
    assert temporaries(work) == [], (name, ended)
    touched = changed(before, snapshot(work))
    assert all(under(path, (*command.outputs, CACHE)) for path in touched), (name, "changed beyond its outputs", touched)
    if any(not under(path, (CACHE,)) for path in touched):
        command.complete(work)
    if ended.code == -signal.SIGTERM:
        # After its work, while the interpreter exits and `scaling`'s handler is gone: the default action ends
        # it, everything written (checked above); a shell reports 143 all the same.
        assert ended.signalled and not any(map(STOPPED.fullmatch, ended.err.splitlines())), (name, ended)
    elif ended.code != 0 or any(map(STOPPED.fullmatch, ended.err.splitlines())):
        assert_terminated_in_one_line(ended, name)
        if command.quiet:  # a Python warning may come as the interpreter exits (JAX's, of a backend init cut short)
            assert [line for line in ended.err.splitlines() if not WARNING.match(line)] == [TERMINATED], (name, ended.err)


# Two examples (the first signals every command just after its handler is in place), not shrunk: each
# example is eight real commands, and a failure names its command and moment as drawn.
SIGNALS = settings(max_examples=2, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.slow
@SIGNALS
@given(moments=st.fixed_dictionaries({name: st.floats(0.0, 1.0) for name in COMMANDS}))
def test_sigterm_at_any_moment_leaves_outputs_as_they_were_or_complete(template, tmp_path_factory, moments):
    """Every command at once, each in its own copy of the work folder, each signalled at its drawn moment."""
    works = {name: shutil.copytree(template, tmp_path_factory.mktemp("case") / "work") for name in COMMANDS}
    before = {name: snapshot(work) for name, work in works.items()}
    runs = [Run(command.argv, works[name], lambda seconds, at=moments[name] * command.seconds: seconds >= at,
                env={**os.environ, "SCALING_CACHE": str(works[name] / CACHE)})
            for name, command in COMMANDS.items()]
    for name, ended in zip(COMMANDS, signalled_together(runs)):
        check_what_is_left(f"{name} at {moments[name] * COMMANDS[name].seconds:.2f} s", works[name], before[name], ended)


def test_sighup_unwinds_as_sigterm_does(tmp_path):
    """A closed terminal or a dropped ssh session: the same unwinding, status 129."""
    ended = signalled([*SCALING, "data", "sample", "--family", "add", "--split", "train", "--n", "100000"], tmp_path,
                      lambda seconds: seconds >= 1, sig=signal.SIGHUP)
    assert ended.signalled and ended.code == 129, ended
    assert ended.err.strip() == "scaling: terminated (SIGHUP)" and list(tmp_path.iterdir()) == []


def test_a_signal_ignored_from_the_start_stays_ignored(tmp_path):
    """`nohup` ignores SIGHUP so that a command outlives its terminal: scaling keeps that choice."""
    ended = signalled(["nohup", *SCALING, "data", "sample", "--family", "add", "--split", "id", "--n", "5000"],
                      tmp_path, lambda seconds: seconds >= 0.1, sig=signal.SIGHUP)
    assert ended.signalled and ended.code == 0, ended


def test_a_repeated_termination_does_not_interrupt_the_cleanup():
    cleaned = []
    with unwinding_on_termination():
        with pytest.raises(Terminated) as terminated:
            try:
                signal.raise_signal(signal.SIGTERM)
            finally:
                signal.raise_signal(signal.SIGTERM)  # SLURM and process managers may signal again
                signal.raise_signal(signal.SIGHUP)
                cleaned.append(True)
    assert cleaned and terminated.value.exit_status == 143 and terminated.value.name == "SIGTERM"


def test_a_handler_put_in_place_for_a_block_gives_the_previous_one_back():
    """How a run's cells stop gracefully instead (scaling.grid.preempt), then hand SIGTERM back."""
    seen = []
    with unwinding_on_termination():
        with handling(signal.SIGTERM, lambda signum, frame: seen.append(signum)):
            signal.raise_signal(signal.SIGTERM)
        assert seen == [signal.SIGTERM] and signal.getsignal(signal.SIGTERM) is raise_terminated
        with pytest.raises(Terminated):
            signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


class SignalsWhenCollected:
    def __del__(self):
        signal.raise_signal(signal.SIGTERM)  # the handler runs here, where Python prints exceptions and drops them


def test_a_termination_inside_a_finalizer_is_not_lost():
    """Seen: a demo signalled while the garbage collector ran a weakref callback printed "Exception ignored",
    went on, and finished with status 0."""
    with unwinding_on_termination():
        with pytest.raises(Terminated):
            SignalsWhenCollected()  # collected at once
            time.sleep(10)  # the signal, sent again, ends this


# A program whose termination cuts an object short in its construction; its finalizer then fails on the half-made
# object (seen: h5netcdf's File, signalled as `scaling figures` opened a results file).
HALF_MADE = """
import signal, sys
from scaling.interrupts import Terminated, unwinding_on_termination

class HalfMade:
    def __init__(self):
        signal.raise_signal(signal.SIGTERM)
        self.closed = False

    def __del__(self):
        self.closed

try:
    with unwinding_on_termination(ignore_after=sys.argv[1] == "program"):
        made = HalfMade()
except Terminated as terminated:
    print("terminated", file=sys.stderr)
    sys.exit(terminated.exit_status)
"""


@pytest.mark.parametrize("caller", ["program", "main(argv)"])
def test_a_finalizer_failing_on_what_a_termination_cut_short_prints_no_traceback(caller):
    """Both ways in: the program itself, and `scaling.cli.main(argv)` called from a script, whose block restores
    what it changed when it ends without a termination (seen in CI: the demo signalled while fitting printed
    h5netcdf's traceback after its one line)."""
    ended = subprocess.run([sys.executable, "-c", HALF_MADE, caller], capture_output=True, text=True, timeout=60)
    assert ended.returncode == 143 and ended.stderr == "terminated\n", ended


# A module that is signalled while it is being imported, then finishes.
SIGNALLED_MODULE = """
import signal
signal.raise_signal(signal.SIGTERM)  # its handler runs here, inside the import
complete = True
"""
IMPORT_IT = """
import sys, time
from scaling.interrupts import Terminated, unwinding_on_termination

with unwinding_on_termination():
    try:
        import signalled_module
        print("imported", signalled_module.complete, flush=True)
        time.sleep(30)  # the signal, sent again, ends this
    except Terminated as terminated:
        sys.exit(terminated.exit_status)
"""


def test_a_termination_during_an_import_waits_for_the_import_to_finish(tmp_path):
    """Raised inside an import, Terminated left jaxlib's and torch's initialization half done: ImportError,
    RuntimeError, SIGSEGV or SIGABRT instead of a clean exit (6 of 42 commands signalled just after start)."""
    (tmp_path / "signalled_module.py").write_text(SIGNALLED_MODULE)
    ended = subprocess.run([sys.executable, "-c", IMPORT_IT], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])})
    assert ended.returncode == 143 and ended.stdout == "imported True\n", ended
