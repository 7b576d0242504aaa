"""Signalling real `scaling` processes mid-command, and checking what a termination may leave behind."""

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
class Ended:
    code: int  # exit status (negative: killed by that signal without unwinding)
    out: str
    err: str
    signalled: bool  # whether the signal was sent before the process ended on its own


def signalled(command: list[str], cwd: Path, when: Callable[[float], bool], sig: int = signal.SIGTERM,
              timeout_s: float = 180) -> Ended:
    """Run command in cwd and send it sig as soon as when(seconds since start) holds; wait for it to end.
    Its output goes to files, not pipes: a full pipe would stall it before the moment came."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, text=True)
        started, sent = time.monotonic(), False
        try:
            while process.poll() is None and time.monotonic() - started < timeout_s:
                if when(time.monotonic() - started):
                    process.send_signal(sig)
                    sent = True
                    break
                time.sleep(0.02)
            code = process.wait(timeout=timeout_s)
        finally:
            if process.poll() is None:  # a test must never leave a runaway process
                process.kill()
                process.wait()
        out.seek(0)
        err.seek(0)
        return Ended(code, out.read(), err.read(), sent)


def temporaries(root: Path) -> list[Path]:
    """Every hidden temporary (scaling.staging's names) under root."""
    return sorted(p for p in root.rglob(f"{TEMPORARY_PREFIX}*{TEMPORARY_SUFFIX}"))


def assert_terminated_in_one_line(ended: Ended) -> None:
    """Exit status 143, no traceback, and the termination said once, last (a command's progress may come before)."""
    assert ended.code == 143, ended
    assert "Traceback" not in ended.err + ended.out, ended.err
    lines = ended.err.strip().splitlines()
    assert lines[-1] == TERMINATED and ended.err.count(TERMINATED) == 1, ended.err
