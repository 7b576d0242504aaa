"""Signalling real `scaling` processes mid-command, and checking what a termination may leave behind."""

import contextlib
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scaling.staging import TEMPORARY_PREFIX, TEMPORARY_SUFFIX

SCALING = [sys.executable, "-m", "scaling"]
TERMINATED = "scaling: terminated (SIGTERM)"


@dataclass(frozen=True)
class Run:
    command: list[str]
    cwd: Path
    when: Callable[[float], bool]  # given the seconds since its clock started: whether to signal it now
    sig: int = signal.SIGTERM
    env: dict[str, str] | None = None  # None: this process's
    # True: the clock starts once the process catches SIGTERM (`scaling` has put its handlers in place),
    # so that a drawn moment falls in the command, not in Python's start; False: at the start
    from_handler: bool = True


def catches(pid: int, sig: int) -> bool:
    """Whether the process has a handler for sig in place (Linux: /proc/PID/status's SigCgt mask); True
    where that cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    mask = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), None)
    return mask is None or bool(int(mask, 16) >> (sig - 1) & 1)


@dataclass(frozen=True)
class Ended:
    code: int  # exit status (negative: ended by that signal's default action, without unwinding)
    out: str
    err: str
    signalled: bool  # whether the signal was sent before the process ended on its own


def _as_from_a_terminal() -> None:
    """In the child before exec: SIGHUP and SIGINT at their defaults, as a command typed at a terminal gets them,
    whatever this test run inherited (under `nohup`, or as a shell's background job, they arrive ignored, and
    scaling rightly keeps an ignored signal ignored)."""
    for sig in (signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def signalled_together(runs: list[Run], timeout_s: float = 300) -> list[Ended]:
    """Start every run at once, send each its signal as soon as its `when` holds, and wait for all to end.
    Their output goes to files, not pipes: a full pipe would stall a process before its moment came."""
    with contextlib.ExitStack() as stack:
        files = [(stack.enter_context(tempfile.TemporaryFile("w+")), stack.enter_context(tempfile.TemporaryFile("w+")))
                 for _ in runs]
        started = time.monotonic()
        processes = [subprocess.Popen(run.command, cwd=run.cwd, stdout=out, stderr=err, text=True, env=run.env,
                                      preexec_fn=_as_from_a_terminal) for run, (out, err) in zip(runs, files)]
        for process in processes:  # a test must never leave a runaway process
            stack.callback(lambda p=process: (p.kill(), p.wait()) if p.poll() is None else None)
        sent = [False] * len(runs)
        clocks = [None if run.from_handler else started for run in runs]  # when each one's clock started
        while any(p.poll() is None for p in processes) and time.monotonic() - started < timeout_s:
            for i, (run, process) in enumerate(zip(runs, processes)):
                if sent[i] or process.poll() is not None:
                    continue
                if clocks[i] is None and catches(process.pid, signal.SIGTERM):
                    clocks[i] = time.monotonic()
                if clocks[i] is not None and run.when(time.monotonic() - clocks[i]):
                    process.send_signal(run.sig)
                    sent[i] = True
            time.sleep(0.01)
        codes = [process.wait(timeout=max(1.0, timeout_s - (time.monotonic() - started))) for process in processes]
        ended = []
        for code, was_sent, (out, err) in zip(codes, sent, files):
            out.seek(0)
            err.seek(0)
            ended.append(Ended(code, out.read(), err.read(), was_sent))
        return ended


def signalled(command: list[str], cwd: Path, when: Callable[[float], bool], sig: int = signal.SIGTERM,
              from_handler: bool = True) -> Ended:
    """Run command in cwd, send it sig as soon as `when` holds (see Run), and wait for it to end."""
    return signalled_together([Run(command, cwd, when, sig, from_handler=from_handler)])[0]


def temporaries(root: Path) -> list[Path]:
    """Every hidden temporary (scaling.staging's names) under root."""
    return sorted(p for p in root.rglob(f"{TEMPORARY_PREFIX}*{TEMPORARY_SUFFIX}"))


# The one line a command stopped by SIGTERM ends with: unwound (scaling.interrupts), or, while a grid's cells
# are worked on (the demo's too), stopped between steps with the cell checkpointed (scaling.grid.preempt).
STOPPED = re.compile(r"scaling: (terminated \(SIGTERM\)|stopped by SIGTERM: .+)")


def assert_terminated_in_one_line(ended: Ended, name: str = "") -> None:
    """Exit status 143, no traceback, and the termination said once (a command's progress may come around it:
    the demo's progress display is drawn a last time as it closes)."""
    assert ended.code == 143, (name, ended)
    assert "Traceback" not in ended.err + ended.out, (name, ended.err)
    assert sum(bool(STOPPED.fullmatch(line)) for line in ended.err.splitlines()) == 1, (name, ended.err)
